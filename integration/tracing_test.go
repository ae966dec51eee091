package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/hookbridge/hookbridge/integration/otlptest"
	"github.com/hookbridge/hookbridge/schema"
)

const (
	itCallerTrace  = "0af7651916cd43dd8448eb211c80319c"
	itCallerSpan   = "b7ad6b7169203331"
	itCallerParent = "00-" + itCallerTrace + "-" + itCallerSpan + "-01"
	itCallerState  = "vendor=opaque"
)

// tracingEnv turns tracing on towards col, exporting quickly.
func tracingEnv(env map[string]string, col *otlptest.Collector) map[string]string {
	env["OTEL_EXPORTER_OTLP_ENDPOINT"] = col.URL
	env["OTEL_BSP_SCHEDULE_DELAY"] = "50"
	env["OTEL_SERVICE_NAME"] = "hookbridge-it"
	return env
}

// checkExported waits until the producer span a message's traceparent names
// has reached the collector, and checks it and its server span: the message
// carries the id of a producer span that was exported, in the trace of a
// server span, with the messaging attributes. It returns the server span.
func checkExported(t *testing.T, col *otlptest.Collector, h schema.Headers, system, dest, webhookID string) otlptest.Span {
	t.Helper()
	tid, sid, ok := schema.ParseTraceParent(h.Get("traceparent"))
	if !ok {
		t.Fatalf("%s: message without a valid traceparent: %v", webhookID, h)
	}
	var producer, server otlptest.Span
	if !col.Wait(15*time.Second, func(spans []otlptest.Span) bool {
		producer, _ = otlptest.Find(spans, sid)
		if producer.Span != nil {
			server, _ = otlptest.Find(spans, producer.ParentID())
		}
		return producer.Span != nil && server.Span != nil
	}) {
		t.Fatalf("%s: producer span %s (and its parent) never exported; %d spans received", webhookID, sid, len(col.Spans()))
	}
	if producer.TraceID() != tid || producer.Kind != tracepb.Span_SPAN_KIND_PRODUCER {
		t.Errorf("%s: producer span trace %s kind %v, want trace %s, producer", webhookID, producer.TraceID(), producer.Kind, tid)
	}
	for k, want := range map[string]string{
		"messaging.system": system, "messaging.destination.name": dest, "messaging.message.id": webhookID,
		"hookbridge.route": "default",
	} {
		if got, _ := producer.Attr(k); got != want {
			t.Errorf("%s: producer %s = %q, want %q", webhookID, k, got, want)
		}
	}
	if server.Kind != tracepb.Span_SPAN_KIND_SERVER || server.TraceID() != tid {
		t.Errorf("%s: parent of the producer span is %q (%v)", webhookID, server.Name, server.Kind)
	}
	if got, _ := server.Attr("hookbridge.webhook.id"); got != webhookID {
		t.Errorf("%s: server span for %q", webhookID, got)
	}
	if server.Resource["service.name"] != "hookbridge-it" {
		t.Errorf("resource %v", server.Resource)
	}
	// A worker continues the trace as the README shows.
	ctx := propagation.TraceContext{}.Extract(context.Background(), h)
	if sc := trace.SpanContextFromContext(ctx); sc.TraceID().String() != tid || sc.SpanID().String() != sid || !sc.IsRemote() {
		t.Errorf("%s: extracted span context %v", webhookID, sc)
	}
	return server
}

// TestTracing_NATS: with OTEL_EXPORTER_OTLP_ENDPOINT set, every message the
// real binary publishes to a real nats-server carries a traceparent whose
// trace and span ids reach the collector; a caller's trace is continued,
// a forged request does not join it, and tail prints the trace ids.
func TestTracing_NATS(t *testing.T) {
	for _, target := range natsTargets(t) {
		t.Run(target.name, func(t *testing.T) {
			col := otlptest.Start(t)
			env, prefix, stream := natsEnv(t, target.url)
			b := startBridge(t, tracingEnv(env, col))

			sent := map[string]delivery{}
			for _, typ := range schema.Types()[:8] {
				d := delivery{ID: newID(), Body: mustSample(t, typ)}
				if r := post(b.URL, d, nil); r.Code != "published" {
					t.Fatalf("%s: %d %q %v\n%s", typ, r.Status, r.Code, r.Err, b.logs)
				}
				sent[d.ID] = d
			}
			dead := delivery{ID: newID(), Body: []byte("not json")}
			if r := post(b.URL, dead, nil); r.Code != "deadlettered" {
				t.Fatalf("dead letter: %d %q", r.Status, r.Code)
			}
			sent[dead.ID] = dead
			traced := delivery{ID: newID(), Body: mustSample(t, schema.ResponseCompleted)}
			withCaller := func(req *http.Request) {
				req.Header.Set("traceparent", itCallerParent)
				req.Header.Set("tracestate", itCallerState)
			}
			if r := post(b.URL, traced, withCaller); r.Code != "published" {
				t.Fatalf("traced: %d %q", r.Status, r.Code)
			}
			sent[traced.ID] = traced
			if r := post(b.URL, traced, withCaller); r.Code != "duplicate" {
				t.Fatalf("repeat: %d %q", r.Status, r.Code)
			}
			forged := delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
			if r := post(b.URL, forged, func(req *http.Request) {
				withCaller(req)
				req.Header.Set("webhook-signature", "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
			}); r.Status != 401 {
				t.Fatalf("forged: %d %q", r.Status, r.Code)
			}

			msgs := readStream(t, target.url, stream)
			if len(msgs) != len(sent) {
				t.Fatalf("%d messages, want %d", len(msgs), len(sent))
			}
			traceIDs := map[string]bool{}
			for _, m := range msgs {
				id := m.Header.Get("Nats-Msg-Id")
				if _, ok := sent[id]; !ok {
					t.Fatalf("unexpected message %s", id)
				}
				h := schema.Headers(m.Header)
				server := checkExported(t, col, h, "nats", m.Subject, id)
				traceIDs[h.TraceID()] = true
				if id == traced.ID {
					if server.TraceID() != itCallerTrace || server.ParentID() != itCallerSpan {
						t.Errorf("caller's trace not continued: server span %s <- %s", server.TraceID(), server.ParentID())
					}
					if got := h.Get("tracestate"); got != itCallerState {
						t.Errorf("tracestate %q, want the caller's %q", got, itCallerState)
					}
				} else if server.ParentID() != "" {
					t.Errorf("%s: a request without traceparent has a server span with parent %s", id, server.ParentID())
				}
			}
			if len(traceIDs) != len(sent) {
				t.Errorf("%d distinct traces for %d deliveries", len(traceIDs), len(sent))
			}

			// The duplicate and the forged request have their own server
			// spans; the forged one is a root outside the caller's trace.
			if !col.Wait(10*time.Second, func(spans []otlptest.Span) bool {
				n := 0
				for _, s := range spans {
					if o, _ := s.Attr("hookbridge.outcome"); o == "duplicate" || o == "invalid_signature" {
						n++
					}
				}
				return n == 2
			}) {
				t.Fatal("no server spans for the duplicate and the forged request")
			}
			for _, s := range col.Spans() {
				if o, _ := s.Attr("hookbridge.outcome"); o == "invalid_signature" && (s.TraceID() == itCallerTrace || s.ParentID() != "") {
					t.Errorf("the forged request's span joined trace %s under %s", s.TraceID(), s.ParentID())
				}
			}

			out, code := runCLI(t, 60*time.Second, nil, "tail", "--nats", target.url, "--stream", stream,
				"--prefix", prefix, "--all", "--count", fmt.Sprint(len(sent)), "--wait", "30s")
			if code != 0 {
				t.Fatalf("tail exited %d:\n%s", code, out)
			}
			for tid := range traceIDs {
				if !strings.Contains(out, "trace="+tid) {
					t.Errorf("tail does not print trace=%s:\n%s", tid, out)
				}
			}
			if opsMetric(t, b.AdminURL, "hookbridge_trace_spans_exported_total") <= 0 {
				t.Error("hookbridge_trace_spans_exported_total not counting")
			}
		})
	}
}

// TestTracing_Kafka: the same on Kafka: each record's traceparent names an
// exported producer span with the topic as its destination.
func TestTracing_Kafka(t *testing.T) {
	forEachKafka(t, func(t *testing.T, kc *kafkaCluster) {
		col := otlptest.Start(t)
		prefix := uniqueKafkaPrefix(t)
		b := startBridge(t, tracingEnv(map[string]string{
			"HOOKBRIDGE_BROKER":                   "kafka",
			"HOOKBRIDGE_KAFKA_BROKERS":            strings.Join(kc.brokers, ","),
			"HOOKBRIDGE_TOPIC_PREFIX":             prefix,
			"HOOKBRIDGE_KAFKA_REPLICATION_FACTOR": fmt.Sprint(kc.rf),
			"HOOKBRIDGE_DEDUP":                    "memory",
		}, col))
		sent := map[string]bool{}
		for _, typ := range []schema.Type{schema.BatchCompleted, schema.ResponseCompleted, schema.RealtimeCallIncoming} {
			d := delivery{ID: newID(), Body: mustSample(t, typ)}
			if r := post(b.URL, d, nil); r.Code != "published" {
				t.Fatalf("%s: %d %q %v", typ, r.Status, r.Code, r.Err)
			}
			sent[d.ID] = true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		recs := kc.readAll(ctx, t, "^"+prefix+`\..*`, len(sent))
		for _, r := range recs {
			h := schema.KafkaHeaders(r.Headers)
			id := h.Get("ce_webhookid")
			if !sent[id] {
				t.Fatalf("unexpected record %s", id)
			}
			checkExported(t, col, h, "kafka", r.Topic, id)
		}
	})
}

// TestTracing_OffAndShutdown: with OTEL_TRACES_EXPORTER=none the collector
// hears nothing and the caller's trace context is forwarded as it came; with
// tracing on and a schedule that would never fire, SIGTERM exports the last
// spans before the process exits; with nothing listening at the endpoint,
// deliveries go on and the lost spans are counted.
func TestTracing_OffAndShutdown(t *testing.T) {
	p := startNATS(t)

	t.Run("off", func(t *testing.T) {
		col := otlptest.Start(t)
		env, _, stream := natsEnv(t, p.URL())
		env = tracingEnv(env, col)
		env["OTEL_TRACES_EXPORTER"] = "none"
		b := startBridge(t, env)
		d := delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
		if r := post(b.URL, d, func(req *http.Request) { req.Header.Set("traceparent", itCallerParent) }); r.Code != "published" {
			t.Fatalf("%d %q", r.Status, r.Code)
		}
		msgs := readStream(t, p.URL(), stream)
		if len(msgs) != 1 || msgs[0].Header.Get("traceparent") != itCallerParent {
			t.Fatalf("messages %v: want the caller's traceparent as it came", msgs)
		}
		if v := opsMetric(t, b.AdminURL, "hookbridge_trace_spans_exported_total"); v != -1 {
			t.Errorf("tracing metrics registered while off (%v)", v)
		}
		b.stop()
		if n := col.Requests(); n != 0 {
			t.Errorf("the collector received %d requests with tracing off", n)
		}
	})

	t.Run("flush on shutdown", func(t *testing.T) {
		col := otlptest.Start(t)
		env, _, stream := natsEnv(t, p.URL())
		env = tracingEnv(env, col)
		env["OTEL_BSP_SCHEDULE_DELAY"] = "600000"
		b := startBridge(t, env)
		for range 3 {
			d := delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
			if r := post(b.URL, d, nil); r.Code != "published" {
				t.Fatalf("%d %q", r.Status, r.Code)
			}
		}
		b.stop()
		if !strings.Contains(b.logs.String(), "trace flush and shutdown") {
			t.Errorf("no tracing shutdown step in the logs:\n%s", b.logs)
		}
		for _, m := range readStream(t, p.URL(), stream) {
			_, sid, _ := schema.ParseTraceParent(m.Header.Get("traceparent"))
			if _, ok := otlptest.Find(col.Spans(), sid); !ok {
				t.Errorf("producer span %s not exported before the process exited", sid)
			}
		}
	})

	t.Run("unreachable collector", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "http://" + ln.Addr().String()
		ln.Close()
		env, _, stream := natsEnv(t, p.URL())
		env["OTEL_EXPORTER_OTLP_ENDPOINT"] = dead
		env["OTEL_BSP_SCHEDULE_DELAY"] = "10"
		env["OTEL_BSP_EXPORT_TIMEOUT"] = "200"
		b := startBridge(t, env)
		for range 20 {
			d := delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
			if r := post(b.URL, d, nil); r.Code != "published" {
				t.Fatalf("%d %q %v", r.Status, r.Code, r.Err)
			}
		}
		for _, m := range readStream(t, p.URL(), stream) {
			if _, _, ok := schema.ParseTraceParent(m.Header.Get("traceparent")); !ok {
				t.Errorf("message without traceparent: %v", m.Header)
			}
		}
		if !opsWaitMetric(t, b.AdminURL, `hookbridge_trace_spans_dropped_total{reason="export_failed"}`, 10*time.Second,
			func(v float64) bool { return v > 0 }) {
			t.Error("spans lost to an unreachable collector are not counted")
		}
	})
}
