// Package publish puts verified webhook deliveries on a broker and reports
// success only once the broker has acknowledged them durably: JetStream
// (including an embedded nats-server for single-binary deployments) and Kafka.
//
// It owns the wire format on the bus (subject/topic naming, headers, record
// keys) and stream/topic provisioning. It knows nothing about HTTP; package
// ingest calls it through its own Publisher interface.
package publish
