// Package tracing sets hookbridge's OpenTelemetry tracing up from the
// standard OTEL_* environment: the sampler, the resource, a bounded span
// queue that drops (and counts) rather than wait, and an OTLP/HTTP exporter.
//
// The exporter is written against the OTLP protobuf messages instead of
// using the OpenTelemetry OTLP/HTTP exporter module, whose dependencies link
// gRPC into the binary; it speaks http/protobuf only.
//
// When the environment asks for no tracing, Start returns a nil *Provider and
// nothing runs: no goroutine, no exporter, and the ingest handler, given no
// TracerProvider, does no tracing work at all.
package tracing

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Options are what Start needs beyond the Config.
type Options struct {
	Version string // service.version and the exporter's User-Agent
	Log     zerolog.Logger
	Stats   Stats // may be nil
}

// Provider is a running tracer provider with its span queue and exporter.
type Provider struct {
	tp *sdktrace.TracerProvider
	q  *queue
}

// Start starts tracing as c says. It returns nil when c.Enabled is false.
func Start(c Config, o Options) (*Provider, error) {
	if !c.Enabled {
		return nil, nil
	}
	if o.Stats == nil {
		o.Stats = nopStats{}
	}
	log := o.Log.With().Str("component", "tracing").Logger()
	// The SDK reports its own errors (rare) through the global handler,
	// which by default prints plain text to stderr.
	warn := log.Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Minute})
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		warn.Warn().Err(err).Msg("opentelemetry")
	}))
	q := newQueue(newExporter(c, o.Version), c, o.Stats, log)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sampler(c.Sampler, c.SamplerArg)),
		sdktrace.WithResource(newResource(c, o.Version)),
		sdktrace.WithSpanProcessor(q),
	)
	log.Info().Interface("tracing", c.Summary()).Msg("tracing on: spans are exported with OTLP/HTTP")
	return &Provider{tp: tp, q: q}, nil
}

// TracerProvider returns the provider for ingest.HandlerConfig; nil (a nil
// interface, which turns tracing off) when p is nil.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil {
		return nil
	}
	return p.tp
}

// Queued is the number of spans waiting for export.
func (p *Provider) Queued() int {
	if p == nil {
		return 0
	}
	return p.q.Len()
}

// Shutdown exports the spans still queued and stops, bounded by ctx: spans
// that do not make it in time are dropped and counted.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	// The queue first: the SDK's Shutdown returns at once, without calling
	// its processors, when ctx has already ended, and the queue would go on
	// exporting (and holding a hung export) after the shutdown step.
	err := errors.Join(p.q.Shutdown(ctx), p.tp.Shutdown(ctx))
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return errors.New("spans still queued were dropped: the collector did not take them in time")
	}
	return err
}

func sampler(name string, ratio float64) sdktrace.Sampler {
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio)
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
	}
	return sdktrace.ParentBased(sdktrace.AlwaysSample())
}

func newResource(c Config, version string) *resource.Resource {
	attrs := make([]attribute.KeyValue, 0, len(c.Resource)+7)
	if h, err := os.Hostname(); err == nil {
		attrs = append(attrs, attribute.String("host.name", h))
	}
	attrs = append(attrs,
		attribute.String("service.version", version),
		attribute.String("telemetry.sdk.name", "opentelemetry"),
		attribute.String("telemetry.sdk.language", "go"),
		attribute.String("telemetry.sdk.version", sdk.Version()),
	)
	// The last of repeated keys wins: OTEL_RESOURCE_ATTRIBUTES over what is
	// detected, OTEL_SERVICE_NAME over both.
	attrs = append(attrs, c.Resource...)
	attrs = append(attrs, attribute.String("service.name", c.ServiceName))
	return resource.NewSchemaless(attrs...)
}

type nopStats struct{}

func (nopStats) SpansExported(int)        {}
func (nopStats) SpansDropped(string, int) {}
