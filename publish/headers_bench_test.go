package publish

import (
	"testing"

	"github.com/hookbridge/hookbridge/schema"
)

func benchHeaderDelivery(b *testing.B) *schema.Delivery {
	b.Helper()
	body, _ := schema.Sample(schema.RealtimeCallIncoming)
	ev, err := schema.Parse(body)
	if err != nil {
		b.Fatal(err)
	}
	return &schema.Delivery{
		WebhookID: "wh_6a23311d1a668190335d6b0aa8f9c01c",
		Timestamp: "1780691229",
		Signature: "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
		Body:      body,
		Event:     ev,
	}
}

// BenchmarkNATSHeader is the per-message header map (Nats-Msg-Id, webhook-*,
// CloudEvents) plus the subject.
func BenchmarkNATSHeader(b *testing.B) {
	d := benchHeaderDelivery(b)
	b.ReportAllocs()
	for b.Loop() {
		h := natsHeader(d, HeaderOptions{})
		if len(h) == 0 || Destination("openai", d) == "" {
			b.Fatal("empty")
		}
	}
}

// BenchmarkKafkaHeaders is the per-record header list.
func BenchmarkKafkaHeaders(b *testing.B) {
	d := benchHeaderDelivery(b)
	b.ReportAllocs()
	for b.Loop() {
		if hs := kafkaHeaders(d, HeaderOptions{}); len(hs) == 0 {
			b.Fatal("empty")
		}
	}
}
