package publish

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"

	"github.com/hookbridge/hookbridge/schema"
)

// MaxMessageBytes returns the largest record a publish can write: the least
// of the writer's limit (KafkaConfig.MaxMessageBytes), the base topic's
// max.message.bytes (the single topic, or the dead-letter topic) and the
// controller's message.max.bytes, which topics created on first use
// inherit. A broker value that cannot be read is left out; when the topic's
// cannot be read either, the error says why, with the writer's limit.
func (k *Kafka) MaxMessageBytes(ctx context.Context) (int64, error) {
	limit := k.cfg.MaxMessageBytes
	base := k.cfg.topicFor(&schema.Delivery{})
	res := []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: base, ConfigNames: []string{"max.message.bytes"},
	}}
	if md, err := k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}}); err == nil && md.Controller.ID >= 0 {
		res = append(res, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeBroker, ResourceName: strconv.Itoa(md.Controller.ID), ConfigNames: []string{"message.max.bytes"},
		})
	}
	out, err := k.client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: res})
	if err != nil {
		return limit, fmt.Errorf("publish: kafka: reading max.message.bytes of %s: %w", base, err)
	}
	var topicErr error = errors.New("not in the answer")
	for _, r := range out.Resources {
		if r.Error != nil {
			if r.ResourceName == base {
				topicErr = r.Error
			}
			continue
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName != "max.message.bytes" && e.ConfigName != "message.max.bytes" {
				continue
			}
			v, err := strconv.ParseInt(e.ConfigValue, 10, 64)
			if err != nil || v <= 0 {
				continue
			}
			if r.ResourceName == base {
				topicErr = nil
			}
			limit = min(limit, v)
		}
	}
	if topicErr != nil {
		return limit, fmt.Errorf("publish: kafka: reading max.message.bytes of %s: %w", base, topicErr)
	}
	return limit, nil
}
