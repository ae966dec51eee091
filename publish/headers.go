package publish

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/segmentio/kafka-go"

	"github.com/hookbridge/hookbridge/schema"
)

// Header names on the bus. Keys are lower-case because nats.go's Header.Get is
// case-sensitive and Kafka header keys are raw strings.
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
	HeaderContentType      = "content-type"
	HeaderReason           = "hookbridge-reason" // why a message was dead-lettered
	HeaderRoute            = "hookbridge-route"  // the route (endpoint) the delivery arrived on
	HeaderTraceParent      = "traceparent"
	HeaderTraceState       = "tracestate"

	// DeadLetterToken is the last subject/topic token for verified bodies
	// that cannot be routed by type.
	DeadLetterToken = "deadletter"

	// DefaultSource is the CloudEvents source attribute unless configured.
	DefaultSource = "https://api.openai.com"

	contentTypeJSON = "application/json"
)

// HeaderOptions controls the metadata attached to each message.
type HeaderOptions struct {
	// Source is the CloudEvents "source" attribute (default DefaultSource).
	Source string
	// OmitSignature drops the webhook-signature header (workers then cannot
	// re-verify). webhook-id and webhook-timestamp are always forwarded.
	OmitSignature bool
}

// Destination is the subject or topic a delivery is published to:
// <prefix>.<type>, or <prefix>.deadletter when it has no routable type. The
// delivery's own prefix (its route's) wins over prefix.
func Destination(prefix string, d *schema.Delivery) string {
	if d.Route != nil && d.Route.Prefix != "" {
		prefix = d.Route.Prefix
	}
	if d.Event == nil {
		return prefix + "." + DeadLetterToken
	}
	return prefix + "." + string(d.Event.Type)
}

// visitHeaders calls set for every header of d in a fixed order. ce is the
// CloudEvents attribute prefix of the transport: "ce-" for NATS, "ce_" for
// Kafka. Dead letters carry no CloudEvents attributes except the webhook id:
// their body is not an event, so claiming ce-type or ce-id would be a lie.
func visitHeaders(d *schema.Delivery, o HeaderOptions, ce string, set func(k, v string)) {
	set(HeaderContentType, contentTypeJSON)
	set(HeaderWebhookID, d.WebhookID)
	set(HeaderWebhookTimestamp, d.Timestamp)
	if !o.OmitSignature && d.Signature != "" {
		set(HeaderWebhookSignature, d.Signature)
	}
	if d.Route != nil && d.Route.Name != "" {
		set(HeaderRoute, d.Route.Name)
	}
	if d.TraceParent != "" {
		set(HeaderTraceParent, d.TraceParent)
		if d.TraceState != "" {
			set(HeaderTraceState, d.TraceState)
		}
	}
	k := ceKeysFor(ce)
	set(k.webhookID, d.WebhookID)
	if d.Event == nil {
		set(HeaderReason, d.DeadLetterReason)
		return
	}
	ev := d.Event
	source := o.Source
	if source == "" {
		source = DefaultSource
	}
	id := ev.ID
	if id == "" {
		id = d.WebhookID // ce-id is required; the delivery id is the next best identity
	}
	set(k.specversion, "1.0")
	set(k.id, id)
	set(k.source, source)
	set(k.typ, string(ev.Type))
	if ev.CreatedAt != 0 {
		set(k.time, time.Unix(ev.CreatedAt, 0).UTC().Format(time.RFC3339))
	}
	if sub := ev.ObjectID(); sub != "" {
		set(k.subject, sub)
	}
	if ce == "ce-" {
		// The NATS binding maps datacontenttype to ce-datacontenttype; the Kafka
		// binding maps it to the plain content-type header set above.
		set(k.datacontenttype, contentTypeJSON)
	}
}

// ceKeys are the CloudEvents header names of one transport, concatenated
// once rather than on every message.
type ceKeys struct {
	webhookID, specversion, id, source, typ, time, subject, datacontenttype string
}

func newCEKeys(ce string) *ceKeys {
	return &ceKeys{
		webhookID: ce + "webhookid", specversion: ce + "specversion", id: ce + "id",
		source: ce + "source", typ: ce + "type", time: ce + "time", subject: ce + "subject",
		datacontenttype: ce + "datacontenttype",
	}
}

var ceKeysNATS, ceKeysKafka = newCEKeys("ce-"), newCEKeys("ce_")

func ceKeysFor(ce string) *ceKeys {
	switch ce {
	case "ce-":
		return ceKeysNATS
	case "ce_":
		return ceKeysKafka
	}
	return newCEKeys(ce)
}

// natsHeader builds the NATS message headers for d, including Nats-Msg-Id,
// which makes JetStream drop a republish of the same webhook-id inside the
// stream's duplicate window.
func natsHeader(d *schema.Delivery, o HeaderOptions) nats.Header {
	// Sized for every header visitHeaders can set, Nats-Msg-Id and the
	// Nats-Expected-Stream the publisher adds, so the map never grows. The
	// one-element value slices share one backing array (capped, so an append
	// to one cannot overwrite the next): two allocations instead of one per
	// header.
	h := make(nats.Header, natsHeaderCap)
	vals := make([]string, 0, natsHeaderCap)
	put := func(k, v string) {
		vals = append(vals, v)
		n := len(vals)
		h[k] = vals[n-1 : n : n]
	}
	put(nats.MsgIdHdr, sanitize(d.DedupKey()))
	visitHeaders(d, o, "ce-", func(k, v string) { put(k, sanitize(v)) })
	return h
}

// natsHeaderCap bounds the headers of one NATS message: Nats-Msg-Id, the
// 16 visitHeaders sets at most, Nats-Expected-Stream.
const natsHeaderCap = 18

// kafkaHeaders builds the Kafka record headers for d (CloudEvents Kafka
// binding: ce_ prefix, datacontenttype as content-type).
func kafkaHeaders(d *schema.Delivery, o HeaderOptions) []kafka.Header {
	hs := make([]kafka.Header, 0, 15)
	visitHeaders(d, o, "ce_", func(k, v string) {
		hs = append(hs, kafka.Header{Key: k, Value: []byte(v)})
	})
	return hs
}

// sanitize keeps a header value on one line: NATS headers are a text
// protocol, and a CR or LF in a value forwarded from the request would
// corrupt the message. net/http already rejects such values, so this only
// matters for deliveries built by other callers.
func sanitize(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		return strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	return v
}
