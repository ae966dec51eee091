package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/propagation"

	"github.com/hookbridge/hookbridge/integration/otlptest"
	"github.com/hookbridge/hookbridge/schema"
)

// Workers extract the bridge's trace context with schema.Headers.
var _ propagation.TextMapCarrier = schema.Headers{}

// TestConfigTracing: the OTEL_* variables are checked with the rest of the
// configuration, every problem at once; tracing is off without an endpoint;
// the start-up log shows tracing without its credentials.
func TestConfigTracing(t *testing.T) {
	cfg, err := loadConfig(map[string]string{"HOOKBRIDGE_SECRETS": testSecret0, "OTEL_SERVICE_NAME": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.tracing.Enabled {
		t.Error("tracing on without an endpoint")
	}
	if p, err := startTracing(cfg.tracing, newMetrics("t", "nats").registry, zerolog.Nop()); p != nil || err != nil {
		t.Errorf("startTracing with tracing off = %v, %v", p, err)
	}
	if tracingSteps(nil) != nil {
		t.Error("a shutdown step without tracing")
	}

	_, err = loadConfig(map[string]string{
		"HOOKBRIDGE_SECRETS": testSecret0, "HOOKBRIDGE_LOG_LEVEL": "loud",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_TRACES_SAMPLER": "sometimes",
	})
	for _, want := range []string{"HOOKBRIDGE_LOG_LEVEL", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to name %s", err, want)
		}
	}

	cfg, err = loadConfig(map[string]string{
		"HOOKBRIDGE_SECRETS":          testSecret0,
		"OTEL_EXPORTER_OTLP_ENDPOINT": "https://u:hunter2@collector:4318",
		"OTEL_EXPORTER_OTLP_HEADERS":  "authorization=Bearer%20hunter2",
	})
	if err != nil {
		t.Fatal(err)
	}
	logged := fmt.Sprint(cfg.redacted())
	if !cfg.tracing.Enabled || strings.Contains(logged, "hunter2") || !strings.Contains(logged, "collector:4318/v1/traces") {
		t.Errorf("start-up configuration: %s", logged)
	}
}

func TestServeHelpListsTracing(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"serve", "--help"}, stdio{in: strings.NewReader(""), out: &out, err: &errOut, env: nil}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER", "OTEL_BSP_MAX_QUEUE_SIZE", "hookbridge_trace_spans_dropped_total"} {
		if !strings.Contains(errOut.String(), v) {
			t.Errorf("serve --help does not mention %s", v)
		}
	}
}

// TestTracingMetricsAndShutdownStep: with tracing on, the queue's work is in
// the bridge's registry, and the shutdown step exports the last spans, after
// the publishers and before the admin listener, within its bound.
func TestTracingMetricsAndShutdownStep(t *testing.T) {
	col := otlptest.Start(t)
	cfg, err := loadConfig(map[string]string{
		"HOOKBRIDGE_SECRETS": testSecret0, "OTEL_EXPORTER_OTLP_ENDPOINT": col.URL,
		"OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_BSP_MAX_QUEUE_SIZE": "2",
	})
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics("t", "nats")
	p, err := startTracing(cfg.tracing, m.registry, zerolog.Nop())
	if err != nil || p == nil {
		t.Fatalf("startTracing: %v %v", p, err)
	}
	// A queue of 2 makes batches of 2, exported at once: the collector
	// holds the export, so that the two spans stay held while it lasts.
	col.Hold()
	tr := p.TracerProvider().Tracer("t")
	for range 5 {
		_, s := tr.Start(context.Background(), "s")
		s.End()
	}
	if got := gather(t, m); got[`hookbridge_trace_queue_spans`] != 2 || got[`hookbridge_trace_spans_dropped_total{reason="queue_full"}`] != 3 {
		t.Errorf("queue gauge %v, queue_full drops %v", got[`hookbridge_trace_queue_spans`], got[`hookbridge_trace_spans_dropped_total{reason="queue_full"}`])
	}
	col.Release()

	steps := tracingSteps(p)
	if len(steps) != 1 || !(steps[0].stage > stagePublisher && steps[0].stage > stageConn && steps[0].stage < stageAdmin) {
		t.Fatalf("tracing step %+v: want after the publisher and connections, before the admin listener", steps)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := steps[0].fn(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(col.Spans()); n != 2 {
		t.Errorf("%d spans exported at shutdown, want the 2 queued", n)
	}
	if got := gather(t, m); got[`hookbridge_trace_spans_exported_total`] != 2 {
		t.Errorf("exported %v", got[`hookbridge_trace_spans_exported_total`])
	}

	// Against a collector that never answers, the step ends with its
	// context and says what was lost.
	hung := otlptest.Start(t)
	hung.Hold()
	cfg.tracing.Endpoint = hung.URL + "/v1/traces"
	p, _ = startTracing(cfg.tracing, newMetrics("t", "nats").registry, zerolog.Nop())
	_, s := p.TracerProvider().Tracer("t").Start(context.Background(), "stuck")
	s.End()
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = tracingSteps(p)[0].fn(ctx)
	if err == nil || !strings.Contains(err.Error(), "dropped") || time.Since(start) > traceFlushMax {
		t.Errorf("step against a hung collector: %v after %v", err, time.Since(start))
	}
}

func TestPrintEventTraceID(t *testing.T) {
	body, _ := schema.Sample(schema.BatchCompleted)
	var b bytes.Buffer
	printEvent(&b, "openai.batch.completed", map[string][]string{
		"webhook-id":  {"wh_1"},
		"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	}, body, false)
	if !strings.Contains(b.String(), "trace=4bf92f3577b34da6a3ce929d0e0e4736") {
		t.Errorf("no trace id: %s", b.String())
	}
	b.Reset()
	printEvent(&b, "openai.batch.completed", map[string][]string{"webhook-id": {"wh_1"}}, body, false)
	if strings.Contains(b.String(), "trace=") {
		t.Errorf("trace id without a traceparent: %s", b.String())
	}
}

func TestPrintEventRoute(t *testing.T) {
	body, _ := schema.Sample(schema.BatchCompleted)
	for _, tt := range []struct{ route, want string }{
		{"staging", "route=staging"},
		{schema.DefaultRoute, ""},
		{"", ""},
	} {
		var b bytes.Buffer
		h := map[string][]string{"webhook-id": {"wh_1"}}
		if tt.route != "" {
			h["hookbridge-route"] = []string{tt.route}
		}
		printEvent(&b, "openai.batch.completed", h, body, false)
		if got := strings.Contains(b.String(), "route="); got != (tt.want != "") || !strings.Contains(b.String(), tt.want) {
			t.Errorf("route %q: %s", tt.route, b.String())
		}
	}
}

// The OTEL_* credentials (export header values, endpoint userinfo) join
// the texts every log line is scrubbed of.
func TestTracingCredentialsRedacted(t *testing.T) {
	creds := credentials(map[string]string{
		"OTEL_EXPORTER_OTLP_HEADERS":         "api-key=s3cr3t-value,x-tenant=acme",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://user:p4ss-word@collector:4318/v1/traces",
	})
	line := redactText(`{"msg":"export failed","detail":"key s3cr3t-value pw p4ss-word"}`, creds)
	if strings.Contains(line, "s3cr3t-value") || strings.Contains(line, "p4ss-word") {
		t.Errorf("credentials left in %s", line)
	}
}
