package schema

import (
	"encoding/json"
	"time"
)

// Type is an OpenAI webhook event type, e.g. "batch.completed".
type Type string

// Event is the JSON envelope OpenAI sends for every webhook.
//
// Data is kept raw: the bridge never re-encodes a body, and workers decode Data
// into the typed struct for Type with DecodeData or DecodeDataAs.
type Event struct {
	ID        string          `json:"id"`
	Object    string          `json:"object"`
	CreatedAt int64           `json:"created_at"`
	Type      Type            `json:"type"`
	Data      json.RawMessage `json:"data"`

	objectID string // computed by Parse; see ObjectID
	parsed   bool   // objectID is set
}

// Time returns CreatedAt as a time.Time (zero when CreatedAt is unset).
func (e *Event) Time() time.Time {
	if e.CreatedAt == 0 {
		return time.Time{}
	}
	return time.Unix(e.CreatedAt, 0).UTC()
}

// Delivery is one verified webhook request on its way to the bus. ingest builds
// it, publish consumes it; it lives here because both depend on schema and
// neither may depend on the other.
type Delivery struct {
	WebhookID string // webhook-id header: delivery identity, dedup key, Nats-Msg-Id
	Timestamp string // webhook-timestamp header text as received
	Signature string // webhook-signature header as received, so workers can re-verify
	Body      []byte // the exact verified request body, never re-encoded

	// Event is the parsed envelope, or nil when the body cannot be routed and
	// goes to the dead-letter subject with DeadLetterReason.
	Event            *Event
	DeadLetterReason string

	// W3C trace context from the request, forwarded when present.
	TraceParent string
	TraceState  string

	// Route is the endpoint the delivery arrived on, nil outside a bridge
	// with routes. One event sent to two OpenAI endpoints arrives twice with
	// one webhook-id, once per route. A pointer to a value shared by the
	// route's deliveries: it costs a request no allocation.
	Route *Route
}

// Route is an endpoint of the bridge: its name, which travels in the
// hookbridge-route header and in the dedup key, and its subject/topic prefix
// ("" for the publisher's own). It is never modified once deliveries carry it.
type Route struct {
	Name   string
	Prefix string
}

// DefaultRoute is the name of the route the single-endpoint configuration
// forms. Its dedup keys are bare webhook-ids, as before routes existed, so
// that the streams and dedup stores of existing deployments keep working.
const DefaultRoute = "default"

// DedupKey is the identity under which d is deduplicated: the key in every
// dedup store and the Nats-Msg-Id on the bus. Every component derives it
// here, so that anything added to a delivery's identity is added once. It is
// the webhook-id, prefixed by "<route>/" on every route but the default one,
// because OpenAI sends one event to several endpoints under one webhook-id and
// each endpoint's copy must be published.
func (d *Delivery) DedupKey() string {
	if d.Route == nil || d.Route.Name == "" || d.Route.Name == DefaultRoute {
		return d.WebhookID
	}
	return d.Route.Name + "/" + d.WebhookID
}
