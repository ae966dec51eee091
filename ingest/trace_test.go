package ingest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/hookbridge/hookbridge/ingest/tracing"
	"github.com/hookbridge/hookbridge/integration/otlptest"
	"github.com/hookbridge/hookbridge/schema"
)

const (
	callerTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan   = "00f067aa0ba902b7"
	callerParent = "00-" + callerTrace + "-" + callerSpan + "-01"
	callerState  = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
)

// namedPublisher is a fakePublisher that names its destinations, as the
// NATS and Kafka publishers do.
type namedPublisher struct{ fakePublisher }

func (*namedPublisher) MessagingSystem() string { return "nats" }
func (*namedPublisher) DestinationName(d *schema.Delivery) string {
	if d.Event == nil {
		return "openai.deadletter"
	}
	return "openai." + string(d.Event.Type)
}

// tracedHandler is a handler whose spans go to a loopback OTLP/HTTP
// collector through the bridge's own tracing set-up.
func tracedHandler(t *testing.T, pub Publisher, dd Deduper, env map[string]string) (*Handler, *otlptest.Collector, *tracing.Provider) {
	t.Helper()
	col := otlptest.Start(t)
	full := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL, "OTEL_BSP_SCHEDULE_DELAY": "10"}
	for k, v := range env {
		full[k] = v
	}
	c, err := tracing.FromEnv(full)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tracing.Start(c, tracing.Options{Version: "test", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	cfg := newTestHandler(t, pub, dd).cfg
	cfg.TracerProvider = p.TracerProvider()
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h, col, p
}

// spanTree indexes one trace's spans by name.
func byName(spans []otlptest.Span) map[string]otlptest.Span {
	m := map[string]otlptest.Span{}
	for _, s := range spans {
		m[s.Name] = s
	}
	return m
}

func wantAttrs(t *testing.T, s otlptest.Span, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := s.Attr(k); !ok || got != v {
			t.Errorf("span %q: %s = %q (present %v), want %q", s.Name, k, got, ok, v)
		}
	}
}

// TestTrace_DeliverySpans: a delivery with the caller's traceparent gives a
// server span that continues the caller's trace, with verify, dedup and a
// producer span as children; the message's traceparent names the producer
// span and keeps the caller's tracestate.
func TestTrace_DeliverySpans(t *testing.T) {
	pub := &namedPublisher{}
	h, col, _ := tracedHandler(t, pub, &fakeDeduper{status: ClaimNew}, nil)
	r := signedRequest(t, "wh_traced", testNow.Unix(), testBody)
	r.Header.Set("traceparent", callerParent)
	r.Header.Set("tracestate", callerState)
	if w, resp := do(t, h, r); w.Code != 200 || resp.Status != "published" {
		t.Fatalf("%d %+v", w.Code, resp)
	}
	if !col.Wait(5*time.Second, func(s []otlptest.Span) bool { return len(s) == 4 }) {
		t.Fatalf("spans: %v", col.Spans())
	}
	spans := byName(col.Spans())
	server, verify, dedup, send := spans["POST /webhooks/openai"], spans["verify"], spans["dedup claim"], spans["send openai.batch.completed"]
	for name, s := range map[string]otlptest.Span{"server": server, "verify": verify, "dedup": dedup, "send": send} {
		if s.Span == nil {
			t.Fatalf("no %s span among %v", name, col.Spans())
		}
		if s.TraceID() != callerTrace {
			t.Errorf("%s span in trace %s, want the caller's %s", name, s.TraceID(), callerTrace)
		}
	}
	if server.ParentID() != callerSpan || server.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("server span: parent %s kind %v; want the caller's span %s, server", server.ParentID(), server.Kind, callerSpan)
	}
	for _, c := range []otlptest.Span{verify, dedup, send} {
		if c.ParentID() != server.SpanID() {
			t.Errorf("%s: parent %s, want the server span %s", c.Name, c.ParentID(), server.SpanID())
		}
		if c.StartTimeUnixNano < server.StartTimeUnixNano || c.EndTimeUnixNano > server.EndTimeUnixNano {
			t.Errorf("%s [%d,%d] outside the server span [%d,%d]", c.Name, c.StartTimeUnixNano, c.EndTimeUnixNano,
				server.StartTimeUnixNano, server.EndTimeUnixNano)
		}
	}
	if !(verify.EndTimeUnixNano <= dedup.StartTimeUnixNano && dedup.EndTimeUnixNano <= send.StartTimeUnixNano) {
		t.Errorf("order: verify ends %d, dedup %d-%d, send starts %d", verify.EndTimeUnixNano,
			dedup.StartTimeUnixNano, dedup.EndTimeUnixNano, send.StartTimeUnixNano)
	}
	wantAttrs(t, server, map[string]string{
		"http.request.method": "POST", "http.route": "/webhooks/openai", "url.path": "/webhooks/openai",
		"http.response.status_code": "200", "hookbridge.outcome": "published", "hookbridge.route": "default",
		"hookbridge.webhook.id": "wh_traced", "url.scheme": "http",
	})
	wantAttrs(t, verify, map[string]string{"hookbridge.verify.result": "ok", "hookbridge.verify.secret_index": "0"})
	wantAttrs(t, dedup, map[string]string{"hookbridge.dedup.path": "store", "hookbridge.dedup.result": "new"})
	if send.Kind != tracepb.Span_SPAN_KIND_PRODUCER {
		t.Errorf("send span kind %v, want producer", send.Kind)
	}
	wantAttrs(t, send, map[string]string{
		"messaging.system": "nats", "messaging.destination.name": "openai.batch.completed",
		"messaging.operation.type": "send", "messaging.message.id": "wh_traced",
		"messaging.message.body.size": strconv.Itoa(len(testBody)), "cloudevents.event_type": "batch.completed",
		"cloudevents.event_id": "evt_1", "hookbridge.route": "default",
	})
	for _, s := range []otlptest.Span{server, verify, dedup, send} {
		if s.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
			t.Errorf("%s: status %v on success", s.Name, s.Status)
		}
	}

	if pub.count() != 1 {
		t.Fatalf("published %d", pub.count())
	}
	d := pub.got[0]
	wantTP := "00-" + callerTrace + "-" + send.SpanID() + "-01"
	if d.TraceParent != wantTP || d.TraceState != callerState {
		t.Errorf("message trace context %q %q, want %q %q", d.TraceParent, d.TraceState, wantTP, callerState)
	}
	if server.Resource["service.name"] != "hookbridge" {
		t.Errorf("resource %v", server.Resource)
	}
}

// TestTrace_NewTrace: without a caller traceparent the server span is a
// root, and the message still names the producer span of that trace.
func TestTrace_NewTrace(t *testing.T) {
	pub := &namedPublisher{}
	h, col, _ := tracedHandler(t, pub, nil, nil)
	if w, _ := do(t, h, signedRequest(t, "wh_root", testNow.Unix(), "not json")); w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	if !col.Wait(5*time.Second, func(s []otlptest.Span) bool { return len(s) == 3 }) {
		t.Fatalf("spans: %v", col.Spans())
	}
	spans := byName(col.Spans())
	server, send := spans["POST /webhooks/openai"], spans["send openai.deadletter"]
	if server.Span == nil || send.Span == nil || server.ParentID() != "" || send.TraceID() != server.TraceID() {
		t.Fatalf("spans %v", col.Spans())
	}
	wantAttrs(t, server, map[string]string{"hookbridge.outcome": "deadlettered"})
	wantAttrs(t, send, map[string]string{"hookbridge.deadletter.reason": schema.ReasonNotJSON, "messaging.destination.name": "openai.deadletter"})
	if _, ok := send.Attr("cloudevents.event_type"); ok {
		t.Error("a dead letter has no event type")
	}
	if d := pub.got[0]; d.TraceParent != "00-"+server.TraceID()+"-"+send.SpanID()+"-01" || d.TraceState != "" {
		t.Errorf("message trace context %q %q", d.TraceParent, d.TraceState)
	}
}

// TestTrace_RejectedRequests: an unauthenticated request never joins the
// caller's trace and cannot force sampling; its outcome is recorded, and a
// 4xx is not an error of the bridge.
func TestTrace_RejectedRequests(t *testing.T) {
	h, col, _ := tracedHandler(t, &namedPublisher{}, nil, nil)
	bad := signedRequest(t, "wh_bad", testNow.Unix(), testBody)
	bad.Header.Set("webhook-signature", "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	bad.Header.Set("traceparent", callerParent)
	if w, _ := do(t, h, bad); w.Code != 401 {
		t.Fatalf("status %d", w.Code)
	}
	big := signedRequest(t, "wh_big", testNow.Unix(), strings.Repeat("x", 5000))
	big.Header.Set("traceparent", callerParent)
	if w, _ := do(t, h, big); w.Code != 413 {
		t.Fatalf("status %d", w.Code)
	}
	// Refused on its headers, before the body is read.
	old := signedRequest(t, "wh_old", testNow.Unix()-3600, testBody)
	old.Header.Set("traceparent", callerParent)
	if w, _ := do(t, h, old); w.Code != 401 {
		t.Fatalf("status %d", w.Code)
	}
	if !col.Wait(5*time.Second, func(s []otlptest.Span) bool { return len(s) == 5 }) {
		t.Fatalf("spans: %v", col.Spans())
	}
	var servers []otlptest.Span
	for _, s := range col.Spans() {
		if s.TraceID() == callerTrace {
			t.Errorf("span %q joined the caller's trace", s.Name)
		}
		if s.Kind == tracepb.Span_SPAN_KIND_SERVER {
			servers = append(servers, s)
			if s.ParentID() != "" || s.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
				t.Errorf("%s: parent %q status %v; want a root without error status", s.Name, s.ParentID(), s.Status)
			}
			if _, ok := s.Attr("hookbridge.webhook.id"); ok {
				t.Errorf("an unverified request's webhook-id is recorded")
			}
		}
	}
	if len(servers) != 3 {
		t.Fatalf("server spans %v", servers)
	}
	got := map[string]int{}
	for _, s := range servers {
		o, _ := s.Attr("hookbridge.outcome")
		code, _ := s.Attr("http.response.status_code")
		got[o+" "+code]++
	}
	if got["invalid_signature 401"] != 2 || got["too_large 413"] != 1 {
		t.Errorf("outcomes %v", got)
	}
	verdicts := map[string]bool{}
	for _, v := range col.Spans() {
		if v.Name == "verify" {
			r, _ := v.Attr("hookbridge.verify.result")
			verdicts[r] = true
			if v.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
				t.Errorf("a failed verification is an outcome, not an error: %v", v.Status)
			}
		}
	}
	if !verdicts[ErrNoMatch.Reason] || !verdicts[ErrTooOld.Reason] || len(verdicts) != 2 {
		t.Errorf("verify verdicts %v, want %s and %s", verdicts, ErrNoMatch.Reason, ErrTooOld.Reason)
	}

	// Sampling: with roots never sampled, the caller's sampled flag is
	// honoured for an authentic delivery and ignored for a forged one.
	pub := &namedPublisher{}
	h, col, _ = tracedHandler(t, pub, nil, map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_always_off"})
	do(t, h, bad)
	ok := signedRequest(t, "wh_ok", testNow.Unix(), testBody)
	ok.Header.Set("traceparent", callerParent)
	do(t, h, ok)
	plain := signedRequest(t, "wh_plain", testNow.Unix(), testBody)
	do(t, h, plain)
	if !col.Wait(5*time.Second, func(s []otlptest.Span) bool { return len(s) >= 3 }) {
		t.Fatalf("spans: %v", col.Spans())
	}
	time.Sleep(100 * time.Millisecond) // anything else would have been exported by now
	for _, s := range col.Spans() {
		if s.TraceID() != callerTrace {
			t.Errorf("span %q of trace %s exported; only the authentic caller's trace is sampled", s.Name, s.TraceID())
		}
	}
	// The unsampled delivery still carries a traceparent (flags 00) that
	// names its producer span.
	if len(pub.got) != 2 || !strings.HasSuffix(pub.got[1].TraceParent, "-00") {
		t.Errorf("unsampled message traceparent: %v", pub.got)
	}
}

// TestTrace_Failures: a broker failure is an error on the producer span and
// a 503 (server error) on the server span; a dedup store failure is an
// error on the dedup span.
func TestTrace_Failures(t *testing.T) {
	pub := &namedPublisher{fakePublisher{err: errors.New("nats: timeout")}}
	h, col, _ := tracedHandler(t, pub, nil, nil)
	if w, _ := do(t, h, signedRequest(t, "wh_f", testNow.Unix(), testBody)); w.Code != 503 {
		t.Fatalf("status %d", w.Code)
	}
	h2, col2, _ := tracedHandler(t, &namedPublisher{}, &fakeDeduper{err: errors.New("kv down")}, nil)
	if w, _ := do(t, h2, signedRequest(t, "wh_d", testNow.Unix(), testBody)); w.Code != 503 {
		t.Fatalf("status %d", w.Code)
	}
	h3, col3, _ := tracedHandler(t, &namedPublisher{}, &fakeDeduper{status: ClaimDone}, nil)
	if w, resp := do(t, h3, signedRequest(t, "wh_dup", testNow.Unix(), testBody)); w.Code != 200 || resp.Status != "duplicate" {
		t.Fatalf("status %d %+v", w.Code, resp)
	}
	for _, c := range []*otlptest.Collector{col, col2, col3} {
		if !c.Wait(5*time.Second, func(s []otlptest.Span) bool { return len(s) == 3 }) {
			t.Fatalf("spans: %v", c.Spans())
		}
	}

	spans := byName(col.Spans())
	server, send := spans["POST /webhooks/openai"], spans["send openai.batch.completed"]
	if server.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || send.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("statuses: server %v send %v", server.Status, send.Status)
	}
	wantAttrs(t, server, map[string]string{"http.response.status_code": "503", "error.type": "unavailable", "hookbridge.outcome": "unavailable"})
	if len(send.Events) != 1 || send.Events[0].Name != "exception" {
		t.Errorf("send events %v", send.Events)
	}

	dedup := byName(col2.Spans())["dedup claim"]
	wantAttrs(t, dedup, map[string]string{"hookbridge.dedup.result": "error"})
	if dedup.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("dedup status %v", dedup.Status)
	}

	spans = byName(col3.Spans())
	wantAttrs(t, spans["dedup claim"], map[string]string{"hookbridge.dedup.result": "done"})
	wantAttrs(t, spans["POST /webhooks/openai"], map[string]string{"hookbridge.outcome": "duplicate", "http.response.status_code": "200"})
}

// TestTrace_CollectorNeverSlowsDelivery: with the collector holding every
// export open (and, in the second part, with nothing listening), every
// delivery is still answered; spans beyond the queue are dropped. The
// publish path never waits on the exporter.
func TestTrace_CollectorNeverSlowsDelivery(t *testing.T) {
	for _, unreachable := range []bool{false, true} {
		pub := &namedPublisher{}
		h, col, p := tracedHandler(t, pub, nil, map[string]string{
			"OTEL_BSP_MAX_QUEUE_SIZE": "4", "OTEL_BSP_SCHEDULE_DELAY": "1", "OTEL_EXPORTER_OTLP_TIMEOUT": "60000",
			"OTEL_BSP_EXPORT_TIMEOUT": "500",
		})
		if unreachable {
			col.Close()
		} else {
			col.Hold()
		}
		const n = 200
		done := make(chan int, 1)
		go func() {
			ok := 0
			for i := range n {
				r := signedRequest(t, "wh_slow_"+strconv.Itoa(i), testNow.Unix(), testBody)
				if w, _ := do(t, h, r); w.Code == 200 {
					ok++
				}
			}
			done <- ok
		}()
		select {
		case ok := <-done:
			if ok != n {
				t.Errorf("unreachable=%v: %d of %d deliveries answered 200", unreachable, ok, n)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("unreachable=%v: deliveries stalled behind the trace exporter", unreachable)
		}
		if q := p.Queued(); q > 4 {
			t.Errorf("queue %d over its bound", q)
		}
		if pub.count() != n {
			t.Errorf("published %d", pub.count())
		}
		col.Release()
	}
}

// TestTrace_OffTouchesNothing: without a TracerProvider the delivery's
// trace context is forwarded as received, and nothing is wrapped. (That the
// request path then allocates as it did before tracing existed is
// TestHandlerAllocs.)
func TestTrace_OffTouchesNothing(t *testing.T) {
	pub := &namedPublisher{}
	dd := &fakeDeduper{}
	h := newTestHandler(t, pub, dd)
	if h.tr != nil || h.cfg.Publisher != Publisher(pub) || h.cfg.Deduper != Deduper(dd) {
		t.Fatal("tracing off must leave the handler as it is")
	}
	r := signedRequest(t, "wh_off", testNow.Unix(), testBody)
	r.Header.Set("traceparent", callerParent)
	r.Header.Set("tracestate", callerState)
	do(t, h, r)
	if d := pub.got[0]; d.TraceParent != callerParent || d.TraceState != callerState {
		t.Errorf("forwarded %q %q", d.TraceParent, d.TraceState)
	}
}

// BenchmarkHandlerTraced is BenchmarkHandler/dedup_off with tracing on: every
// request sampled and exported (to a loopback server that discards the
// exports: the collector's own work is not the bridge's), or none sampled.
// The export goroutine's work counts. Compare with BenchmarkHandler for the
// cost of tracing; with tracing off the handler runs no tracing code.
func BenchmarkHandlerTraced(b *testing.B) {
	const pool = 1 << 12
	for _, bc := range []struct{ name, sampler string }{
		{"sampled", "always_on"}, {"unsampled", "always_off"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
			}))
			defer sink.Close()
			c, err := tracing.FromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": sink.URL, "OTEL_TRACES_SAMPLER": bc.sampler})
			if err != nil {
				b.Fatal(err)
			}
			p, _ := tracing.Start(c, tracing.Options{Log: zerolog.Nop()})
			defer func() { _ = p.Shutdown(context.Background()) }()
			reqs, bodies, body := benchRequests(b, pool)
			h := newTestHandler(b, nopPublisher{}, nil)
			cfg := h.cfg
			cfg.MaxBodyBytes, cfg.PublishTimeout, cfg.TracerProvider = 1<<20, 5*time.Second, p.TracerProvider()
			if h, err = NewHandler(cfg); err != nil {
				b.Fatal(err)
			}
			w := &benchWriter{h: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i = (i + 1) % pool
				_, _ = bodies[i].Seek(0, io.SeekStart)
				clear(w.h)
				h.ServeHTTP(w, reqs[i])
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}
