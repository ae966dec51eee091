package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/hookbridge/hookbridge/publish"
)

// tailKafka follows the <prefix>.* topics matching filters (or one topic in
// single-topic mode). It reads through a consumer group because kafka-go
// reads several topics only that way; without --group the group is
// ephemeral and never commits, so it does not disturb real consumers.
func tailKafka(ctx context.Context, cfg publish.KafkaConfig, filters []string, group string, all, asJSON bool, count int, out io.Writer) (int, error) {
	var topics []string
	if cfg.Topic != "" {
		topics = []string{cfg.Topic}
	} else {
		names, err := publish.ListKafkaTopics(ctx, cfg)
		if err != nil {
			return 0, fmt.Errorf("list topics on %s: %w", strings.Join(cfg.Brokers, ","), err)
		}
		for _, n := range names {
			for _, f := range filters {
				if publish.SubjectMatches(f, n) {
					topics = append(topics, n)
					break
				}
			}
		}
	}
	if len(topics) == 0 {
		return 0, fmt.Errorf("no topic matches %s", strings.Join(filters, ", "))
	}
	commit := group != ""
	if group == "" {
		group = "hookbridge-tail-" + randomHex(6)
	}
	rc, err := cfg.ReaderConfig(topics, group)
	if err != nil {
		return 0, err
	}
	rc.StartOffset = kafka.LastOffset
	if all {
		rc.StartOffset = kafka.FirstOffset
	}
	r := kafka.NewReader(rc)
	defer r.Close()
	n := 0
	for count == 0 || n < count {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		n++
		h := make(map[string][]string, len(m.Headers))
		for _, kv := range m.Headers {
			h[kv.Key] = append(h[kv.Key], string(kv.Value))
		}
		printEvent(out, m.Topic, h, m.Value, asJSON)
		if commit {
			if err := r.CommitMessages(ctx, m); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}
