// Package schema describes the OpenAI webhook events that hookbridge forwards:
// the envelope, the catalogue of known event types with a typed data struct
// for each, realistic sample bodies, and the rule that makes a type safe to
// use as a subject or topic name.
//
// It depends only on the standard library, so workers consuming the bus can
// import it without pulling in broker clients.
//
// # Consuming events
//
// hookbridge publishes the webhook body exactly as OpenAI sent it, to
// <prefix>.<type> (openai.batch.completed by default); the message body is
// therefore the raw OpenAI JSON:
//
//	{"object":"event","id":"evt_…","type":"batch.completed","created_at":1780435613,"data":{"id":"batch_…"}}
//
// A worker parses the envelope with [Parse], then decodes data:
//
//	ev, err := schema.Parse(msg.Data)
//	if err != nil {
//		return err // not an event: only the dead-letter subject carries these
//	}
//	data, err := ev.DecodeData()
//	if err != nil {
//		return err
//	}
//	switch d := data.(type) {
//	case *schema.ResourceData: // batch.*, response.*, eval.run.*, …
//		refresh(ev.Type, d.ID)
//	case *schema.RealtimeCallIncomingData:
//		accept(d.CallID, d.SIPHeaders)
//	}
//
// or, when it subscribed to types whose data it knows, with [DecodeDataAs]:
//
//	d, err := schema.DecodeDataAs[schema.ResourceData](ev)
//
// OpenAI events are thin: data holds ids, not the resource. Fetch the batch,
// response or session from the OpenAI API for its state.
//
// OpenAI adds event types every few months. Parse accepts any type that is
// [Type.Routable], known or not, and hookbridge publishes it; [Type.Known]
// says whether this version of the package has a struct for it, and
// DecodeData returns a map[string]any for the others. Workers should ignore,
// not fail on, types they do not handle.
//
// The envelope id (evt_…) identifies the event; the webhook-id header
// (wh_…, also ce-webhookid) identifies the delivery. OpenAI does not promise
// order or exactly-once delivery, so handlers should be idempotent.
//
// [Sample] returns a realistic body for every known type (they live in
// testdata/events), for tests and for `hookbridge send`.
package schema
