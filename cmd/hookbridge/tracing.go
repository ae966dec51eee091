package main

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/ingest/tracing"
	"github.com/hookbridge/hookbridge/publish"
)

// The publishers name their destinations for the producer spans.
var (
	_ ingest.DestinationNamer = (*publish.NATS)(nil)
	_ ingest.DestinationNamer = (*publish.Kafka)(nil)
)

// tracingHelp ends `hookbridge serve --help`.
const tracingHelp = `
Tracing (OpenTelemetry, standard variables; off unless an endpoint is set):
  OTEL_EXPORTER_OTLP_ENDPOINT
      the collector's OTLP/HTTP base URL (e.g. http://otel-collector:4318);
      spans go to <url>/v1/traces. Setting it turns tracing on
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
      the full traces URL instead (used as it is)
  OTEL_TRACES_EXPORTER
      otlp (with no endpoint: http://localhost:4318/v1/traces), or none: off
  OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT (ms, default 10000), _COMPRESSION
      (gzip|none), _CERTIFICATE, _CLIENT_CERTIFICATE, _CLIENT_KEY, _PROTOCOL
      (http/protobuf only: no gRPC), and their OTEL_EXPORTER_OTLP_TRACES_* forms
  OTEL_SERVICE_NAME (default hookbridge), OTEL_RESOURCE_ATTRIBUTES
  OTEL_TRACES_SAMPLER (default parentbased_always_on), OTEL_TRACES_SAMPLER_ARG
  OTEL_BSP_MAX_QUEUE_SIZE (default 2048 spans held, waiting or being
      exported; beyond it spans are dropped and counted in
      hookbridge_trace_spans_dropped_total), OTEL_BSP_SCHEDULE_DELAY
      (ms, 5000), OTEL_BSP_EXPORT_TIMEOUT (ms, 30000), OTEL_BSP_MAX_EXPORT_BATCH_SIZE (512)
  OTEL_SDK_DISABLED=true turns tracing off.
`

// otelCredentials are the credentials in the OTEL_* variables, for the log
// redaction (redact.go): the values of the export headers (API keys,
// tokens) and the userinfo and password of the endpoints.
func otelCredentials(environ map[string]string) []string {
	var out []string
	for _, name := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"} {
		for _, item := range strings.Split(environ[name], ",") {
			if _, v, ok := strings.Cut(item, "="); ok {
				out = append(out, strings.TrimSpace(v))
			}
		}
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if ui, _, ok := userinfo(strings.TrimSpace(environ[name])); ok {
			out = append(out, ui)
			if _, pw, ok := strings.Cut(ui, ":"); ok {
				out = append(out, pw)
			}
		}
	}
	return out
}

// traceFlushMax bounds the shutdown step that exports the last spans, so that
// an unreachable collector delays the exit by this much at most.
const traceFlushMax = 5 * time.Second

// startTracing starts the tracer provider when the OTEL_* variables ask for
// it, with its metrics on reg. It returns nil when tracing is off: then
// nothing is started or registered.
func startTracing(c tracing.Config, reg *prometheus.Registry, log zerolog.Logger) (*tracing.Provider, error) {
	if !c.Enabled {
		return nil, nil
	}
	st := newTraceStats()
	p, err := tracing.Start(c, tracing.Options{Version: version, Log: log, Stats: st})
	if err != nil {
		return nil, err
	}
	reg.MustRegister(st.exported, st.dropped, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hookbridge_trace_queue_spans",
		Help: "Ended spans held for export, waiting or being sent (at most OTEL_BSP_MAX_QUEUE_SIZE).",
	}, func() float64 { return float64(p.Queued()) }))
	return p, nil
}

// tracingSteps is the shutdown step of p: after the HTTP server has drained
// (every request's spans have ended), export what is queued, bounded.
func tracingSteps(p *tracing.Provider) []step {
	if p == nil {
		return nil
	}
	return []step{{stageTracing, "trace flush and shutdown", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, traceFlushMax)
		defer cancel()
		return p.Shutdown(ctx)
	}}}
}

// traceStats counts the span queue's work in Prometheus.
type traceStats struct {
	exported prometheus.Counter
	dropped  *prometheus.CounterVec
	byReason map[string]prometheus.Counter // resolved once: SpansDropped is on the request path
}

func newTraceStats() *traceStats {
	st := &traceStats{
		exported: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookbridge_trace_spans_exported_total",
			Help: "Spans the trace collector accepted.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_trace_spans_dropped_total",
			Help: "Spans not exported, by reason: queue_full (OTEL_BSP_MAX_QUEUE_SIZE reached), export_failed (collector unreachable or refusing), rejected (by the collector), shutdown.",
		}, []string{"reason"}),
	}
	st.byReason = map[string]prometheus.Counter{}
	for _, r := range []string{tracing.DropQueueFull, tracing.DropExportFailed, tracing.DropRejected, tracing.DropShutdown} {
		st.byReason[r] = st.dropped.WithLabelValues(r)
	}
	return st
}

func (s *traceStats) SpansExported(n int) { s.exported.Add(float64(n)) }

func (s *traceStats) SpansDropped(reason string, n int) {
	c, ok := s.byReason[reason]
	if !ok {
		c = s.dropped.WithLabelValues(reason)
	}
	c.Add(float64(n))
}
