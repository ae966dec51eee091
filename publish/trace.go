package publish

import "github.com/hookbridge/hookbridge/schema"

// Tracing: the publishers name their messaging system and each delivery's
// destination, so that the ingest handler's producer spans carry the
// OpenTelemetry messaging attributes (ingest.DestinationNamer). The trace
// context itself travels in the traceparent/tracestate headers (headers.go).

// MessagingSystem is "nats".
func (n *NATS) MessagingSystem() string { return "nats" }

// DestinationName is the subject d is published to.
func (n *NATS) DestinationName(d *schema.Delivery) string { return Destination(n.cfg.Prefix, d) }

// MessagingSystem is "kafka".
func (k *Kafka) MessagingSystem() string { return "kafka" }

// DestinationName is the topic d is written to.
func (k *Kafka) DestinationName(d *schema.Delivery) string { return k.cfg.topicFor(d) }
