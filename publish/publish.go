// Package publish puts verified webhook deliveries on a broker and reports
// success only once the broker has acknowledged them durably: JetStream
// (including an embedded nats-server for single-binary deployments) and Kafka.
//
// It owns the wire format on the bus (subject/topic naming, headers, record
// keys) and stream/topic provisioning. It knows nothing about HTTP; package
// ingest calls it through its own Publisher interface.
package publish

// maybeStored marks an error after which the broker may have stored the
// message all the same: the ack did not come in time, or the connection
// dropped after the message was sent. ingest.MaybeStored recognises it by
// its method, so that neither package imports the other.
type maybeStored struct{ err error }

func (e maybeStored) Error() string     { return e.err.Error() }
func (e maybeStored) Unwrap() error     { return e.err }
func (e maybeStored) MaybeStored() bool { return true }
