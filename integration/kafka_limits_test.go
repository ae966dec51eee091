package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/hookbridge/hookbridge/publish"
	"github.com/hookbridge/hookbridge/schema"
)

// Types outside the catalogue create topics on first use, up to
// MaxTopics; deliveries of further new types are kept on the dead-letter
// topic with reason too_many_topics, and no topic is created for them.
func TestKafkaMaxTopics(t *testing.T) {
	forEachKafka(t, func(t *testing.T, kc *kafkaCluster) {
		prefix := uniqueKafkaPrefix(t)
		cfg := kc.config(prefix, "batch.completed")
		cfg.MaxTopics = 3
		k := newKafka(t, cfg, zerolog.Nop())

		var ds []*schema.Delivery
		for i := range 5 {
			typ := schema.Type(fmt.Sprintf("brand_new.kind_%d", i))
			ds = append(ds, kafkaDelivery(t, typ, i))
		}
		ds = append(ds, kafkaDelivery(t, "batch.completed", 0), kafkaDelivery(t, "brand_new.kind_0", 9))
		for _, d := range ds { // one by one: which types come first decides
			ctx, cancel := kafkaPublishCtx(t)
			if _, err := k.Publish(ctx, d); err != nil {
				t.Fatalf("publish %s: %v", d.WebhookID, err)
			}
			cancel()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		recs := kafkaByWebhookID(t, kc.readAll(ctx, t, "^"+prefix+`\..*`, len(ds)))
		for i, d := range ds {
			rs := recs[d.WebhookID]
			if len(rs) != 1 {
				t.Fatalf("%s: %d records", d.WebhookID, len(rs))
			}
			r := rs[0]
			overCap := i == 3 || i == 4 // kinds 3 and 4: the 4th and 5th new topics
			want := prefix + "." + string(d.Event.Type)
			if overCap {
				want = prefix + ".deadletter"
			}
			if r.Topic != want {
				t.Errorf("%s (%s): topic %s, want %s", d.WebhookID, d.Event.Type, r.Topic, want)
			}
			if reason := kafkaHeaderMap(t, r)["hookbridge-reason"]; overCap != (reason == publish.ReasonTooManyTopics) {
				t.Errorf("%s: hookbridge-reason %q", d.WebhookID, reason)
			}
			if overCap && string(r.Value) != string(d.Body) {
				t.Errorf("%s: dead letter body differs", d.WebhookID)
			}
		}
		adm := kadm.NewClient(kc.kgoClient(t))
		td, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{3, 4} {
			if _, ok := td[fmt.Sprintf("%s.brand_new.kind_%d", prefix, i)]; ok {
				t.Errorf("a topic beyond the limit was created for kind_%d", i)
			}
		}
	})
}

// MaxMessageBytes reads what the cluster accepts: the topic's
// max.message.bytes, the broker's message.max.bytes, the writer's limit.
func TestKafkaMaxMessageBytes(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.BrokerConfigs(map[string]string{"message.max.bytes": "300000"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	kc := &kafkaCluster{name: "kfake-small", brokers: c.ListenAddrs(), fake: c, rf: 1}
	k := newKafka(t, kc.config(uniqueKafkaPrefix(t)), zerolog.Nop())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := k.MaxMessageBytes(ctx)
	if err != nil || got != 300000 {
		t.Errorf("MaxMessageBytes = %d, %v; want 300000 (the broker's message.max.bytes)", got, err)
	}

	big := startKfake(t)
	cfg := big.config(uniqueKafkaPrefix(t))
	cfg.MaxMessageBytes = 200000
	k = newKafka(t, cfg, zerolog.Nop())
	if got, err := k.MaxMessageBytes(ctx); err != nil || got != 200000 {
		t.Errorf("MaxMessageBytes = %d, %v; want 200000 (the writer's limit)", got, err)
	}
}
