package publish

import (
	"maps"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/hookbridge/hookbridge/schema"
)

// delivery builds a verified delivery the way ingest does: the envelope
// parsed from body, or a dead letter with the parse failure's reason.
func delivery(t testing.TB, webhookID, body string) *schema.Delivery {
	t.Helper()
	d := &schema.Delivery{
		WebhookID: webhookID,
		Timestamp: "1719168005",
		Signature: "v1,c2lnbmF0dXJl v1,b3RoZXI=",
		Body:      []byte(body),
	}
	ev, err := schema.Parse(d.Body)
	if err != nil {
		pe, ok := err.(*schema.ParseError)
		if !ok {
			t.Fatalf("Parse(%q): %v", body, err)
		}
		d.DeadLetterReason = pe.Reason
		return d
	}
	d.Event = ev
	return d
}

const (
	batchBody    = `{"id":"evt_batch","object":"event","created_at":1719168000,"type":"batch.completed","data":{"id":"batch_abc"}}`
	callBody     = `{"id":"evt_call","object":"event","created_at":1719168000,"type":"realtime.call.incoming","data":{"call_id":"rtc_123","sip_headers":[{"name":"From","value":"x"}]}}`
	sessionBody  = `{"id":"evt_sess","object":"event","created_at":1719168000,"type":"agent.session.created","data":{"session_id":"sess_9"}}`
	bareBody     = `{"type":"response.completed","data":{}}` // no id, no created_at, no object id
	notEventBody = `[1,2,3]`
)

func TestNATSHeader(t *testing.T) {
	base := func(ceType, ceID, subject string) map[string]string {
		h := map[string]string{
			"Nats-Msg-Id":        "wh_1",
			"content-type":       "application/json",
			"webhook-id":         "wh_1",
			"webhook-timestamp":  "1719168005",
			"webhook-signature":  "v1,c2lnbmF0dXJl v1,b3RoZXI=",
			"ce-webhookid":       "wh_1",
			"ce-specversion":     "1.0",
			"ce-id":              ceID,
			"ce-source":          "https://api.openai.com",
			"ce-type":            ceType,
			"ce-time":            "2024-06-23T18:40:00Z",
			"ce-datacontenttype": "application/json",
		}
		if subject != "" {
			h["ce-subject"] = subject
		}
		return h
	}
	with := func(h map[string]string, kv ...string) map[string]string {
		h = maps.Clone(h)
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(h, kv[i])
			} else {
				h[kv[i]] = kv[i+1]
			}
		}
		return h
	}

	tests := []struct {
		name    string
		body    string
		opts    HeaderOptions
		trace   [2]string // traceparent, tracestate
		subject string
		want    map[string]string
	}{
		{
			name:    "batch event",
			body:    batchBody,
			subject: "openai.batch.completed",
			want:    base("batch.completed", "evt_batch", "batch_abc"),
		},
		{
			name:    "realtime call uses call_id as subject",
			body:    callBody,
			subject: "openai.realtime.call.incoming",
			want:    base("realtime.call.incoming", "evt_call", "rtc_123"),
		},
		{
			name:    "live session uses session_id as subject",
			body:    sessionBody,
			subject: "openai.agent.session.created",
			want:    base("agent.session.created", "evt_sess", "sess_9"),
		},
		{
			name:    "no event id, no created_at, no object id",
			body:    bareBody,
			subject: "openai.response.completed",
			want:    with(base("response.completed", "wh_1", ""), "ce-time", ""),
		},
		{
			name:    "custom source and signature omitted",
			body:    batchBody,
			opts:    HeaderOptions{Source: "urn:example:openai", OmitSignature: true},
			subject: "openai.batch.completed",
			want: with(base("batch.completed", "evt_batch", "batch_abc"),
				"ce-source", "urn:example:openai", "webhook-signature", ""),
		},
		{
			name:    "trace context forwarded",
			body:    batchBody,
			trace:   [2]string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=1"},
			subject: "openai.batch.completed",
			want: with(base("batch.completed", "evt_batch", "batch_abc"),
				"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate", "vendor=1"),
		},
		{
			name:    "tracestate without traceparent is dropped",
			body:    batchBody,
			trace:   [2]string{"", "vendor=1"},
			subject: "openai.batch.completed",
			want:    base("batch.completed", "evt_batch", "batch_abc"),
		},
		{
			name:    "dead letter",
			body:    notEventBody,
			subject: "openai.deadletter",
			want: map[string]string{
				"Nats-Msg-Id":       "wh_1",
				"content-type":      "application/json",
				"webhook-id":        "wh_1",
				"webhook-timestamp": "1719168005",
				"webhook-signature": "v1,c2lnbmF0dXJl v1,b3RoZXI=",
				"ce-webhookid":      "wh_1",
				"hookbridge-reason": schema.ReasonNotObject,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := delivery(t, "wh_1", tt.body)
			d.TraceParent, d.TraceState = tt.trace[0], tt.trace[1]
			if got := Destination("openai", d); got != tt.subject {
				t.Errorf("Destination = %q, want %q", got, tt.subject)
			}
			got := map[string]string{}
			for k, vs := range natsHeader(d, tt.opts) {
				if len(vs) != 1 {
					t.Errorf("header %q has %d values %q, want 1", k, len(vs), vs)
				}
				got[k] = vs[0]
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("natsHeader mismatch\n got: %v\nwant: %v", got, tt.want)
			}
		})
	}
}

func TestNATSHeaderKeepsValuesOnOneLine(t *testing.T) {
	d := delivery(t, "wh_1", batchBody)
	d.Signature = "v1,abc\r\nX-Injected: 1"
	h := natsHeader(d, HeaderOptions{})
	if got := h.Get(HeaderWebhookSignature); got != "v1,abc  X-Injected: 1" {
		t.Errorf("webhook-signature = %q", got)
	}
	if h.Get(nats.MsgIdHdr) != "wh_1" {
		t.Errorf("Nats-Msg-Id = %q", h.Get(nats.MsgIdHdr))
	}
}

func TestKafkaHeaders(t *testing.T) {
	tests := []struct {
		name string
		body string
		opts HeaderOptions
		want map[string]string
	}{
		{
			name: "event uses ce_ and plain content-type",
			body: callBody,
			want: map[string]string{
				"content-type":      "application/json",
				"webhook-id":        "wh_2",
				"webhook-timestamp": "1719168005",
				"webhook-signature": "v1,c2lnbmF0dXJl v1,b3RoZXI=",
				"ce_webhookid":      "wh_2",
				"ce_specversion":    "1.0",
				"ce_id":             "evt_call",
				"ce_source":         "https://api.openai.com",
				"ce_type":           "realtime.call.incoming",
				"ce_time":           "2024-06-23T18:40:00Z",
				"ce_subject":        "rtc_123",
			},
		},
		{
			name: "dead letter, signature omitted",
			body: "not json",
			opts: HeaderOptions{OmitSignature: true},
			want: map[string]string{
				"content-type":      "application/json",
				"webhook-id":        "wh_2",
				"webhook-timestamp": "1719168005",
				"ce_webhookid":      "wh_2",
				"hookbridge-reason": schema.ReasonNotJSON,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := delivery(t, "wh_2", tt.body)
			hs := kafkaHeaders(d, tt.opts)
			got := map[string]string{}
			for _, h := range hs {
				if _, dup := got[h.Key]; dup {
					t.Errorf("header %q repeated", h.Key)
				}
				got[h.Key] = string(h.Value)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("kafkaHeaders mismatch\n got: %v\nwant: %v", got, tt.want)
			}
			if _, ok := got["ce_datacontenttype"]; ok {
				t.Error("Kafka binding maps datacontenttype to content-type, not ce_datacontenttype")
			}
		})
	}
}

func TestDestination(t *testing.T) {
	tests := []struct {
		prefix, body, want string
	}{
		{"openai", batchBody, "openai.batch.completed"},
		{"acme.prod", batchBody, "acme.prod.batch.completed"},
		{"openai", `{"type":"brand_new.thing_v2"}`, "openai.brand_new.thing_v2"},
		{"openai", `{"type":"Bad Type"}`, "openai.deadletter"},
		{"openai", `{"id":"evt"}`, "openai.deadletter"},
	}
	for _, tt := range tests {
		if got := Destination(tt.prefix, delivery(t, "wh", tt.body)); got != tt.want {
			t.Errorf("Destination(%q, %s) = %q, want %q", tt.prefix, tt.body, got, tt.want)
		}
	}
}
