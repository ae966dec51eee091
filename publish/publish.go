// Package publish puts verified webhook deliveries on a broker and reports
// success only once the broker has acknowledged them durably: JetStream
// (including an embedded nats-server for single-binary deployments) and Kafka.
//
// It owns the wire format on the bus (subject/topic naming, headers, record
// keys) and stream/topic provisioning. It knows nothing about HTTP; package
// ingest calls it through its own Publisher interface.
package publish

import "errors"

// ErrUnavailable marks a publish that did not get a broker ack, on any broker:
// broker down or unreachable, ack timeout, no stream or topic, ctx done,
// publisher closed. Callers answer 503 so that the sender retries.
var ErrUnavailable = errors.New("publish: broker unavailable")
