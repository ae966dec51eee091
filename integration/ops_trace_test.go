package integration

import (
	"testing"

	"github.com/hookbridge/hookbridge/schema"
)

// TestOps_TraceContextReachesTheBus: a W3C traceparent/tracestate on the
// webhook request is forwarded as message headers (lowercase keys, as nats.go
// headers are case-sensitive), and a request without one gets none.
func TestOps_TraceContextReachesTheBus(t *testing.T) {
	p := startNATS(t)
	env, _, stream := natsEnv(t, p.URL())
	b := startBridge(t, env)
	s := opsSecret{Text: itSecret}

	const (
		tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		ts = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
	)
	traced := delivery{ID: newID(), Body: mustSample(t, schema.ResponseCompleted)}
	plain := delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
	// Header names on the wire are case-insensitive; send them canonicalized.
	if r := opsPost(httpClient, b.URL, s, traced, map[string]string{"Traceparent": tp, "Tracestate": ts}); r.Code != "published" {
		t.Fatalf("traced: %d %q %v", r.Status, r.Code, r.Err)
	}
	if r := opsPost(httpClient, b.URL, s, plain, nil); r.Code != "published" {
		t.Fatalf("plain: %d %q %v", r.Status, r.Code, r.Err)
	}

	msgs := readStream(t, p.URL(), stream)
	if len(msgs) != 2 {
		t.Fatalf("stream has %d messages, want 2", len(msgs))
	}
	for _, m := range msgs {
		switch m.Header.Get("Nats-Msg-Id") {
		case traced.ID:
			if got := m.Header.Get("traceparent"); got != tp {
				t.Errorf("traceparent = %q, want %q (headers %v)", got, tp, m.Header)
			}
			if got := m.Header.Get("tracestate"); got != ts {
				t.Errorf("tracestate = %q, want %q", got, ts)
			}
		case plain.ID:
			if got := m.Header.Values("traceparent"); len(got) != 0 {
				t.Errorf("untraced request got traceparent %q", got)
			}
		default:
			t.Errorf("unexpected message %v", m.Header)
		}
	}
}
