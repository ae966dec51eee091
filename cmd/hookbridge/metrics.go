package main

import (
	"context"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/schema"
)

// metrics implements ingest.Observer with Prometheus collectors on a private
// registry. Every label value is bounded: outcomes, reasons, catalogue types
// (plus "other"), secret positions — never ids.
type metrics struct {
	registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	sigFailures   *prometheus.CounterVec
	secretMatches *prometheus.CounterVec
	events        *prometheus.CounterVec
	publishDur    *prometheus.HistogramVec
	publishErrors *prometheus.CounterVec
	dedup         *prometheus.CounterVec

	broker string
}

func newMetrics(version string) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_webhook_requests_total",
			Help: "Webhook requests by outcome (published, duplicate, deadlettered, bad_request, invalid_signature, …).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookbridge_webhook_request_duration_seconds",
			Help:    "Time from request start to response, by outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
		sigFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_signature_failures_total",
			Help: "Rejected requests by verification reason.",
		}, []string{"reason"}),
		secretMatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_signature_secret_matches_total",
			Help: "Verified requests by the position of the configured secret that matched (rotation: watch the old one reach zero).",
		}, []string{"secret"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_events_published_total",
			Help: "Events acknowledged by the broker, by type (catalogue types; other for unknown; deadletter).",
		}, []string{"type"}),
		publishDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookbridge_publish_duration_seconds",
			Help:    "Time until the broker acknowledged (or the publish failed).",
			Buckets: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"broker", "result"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_publish_errors_total",
			Help: "Publishes the broker did not acknowledge in time (answered 503).",
		}, []string{"broker"}),
		dedup: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_dedup_claims_total",
			Help: "Dedup claims by result (new, in_flight, done, error).",
		}, []string{"result"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hookbridge_build_info",
		Help: "Build information; the value is always 1.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(m.requests, m.duration, m.sigFailures, m.secretMatches, m.events,
		m.publishDur, m.publishErrors, m.dedup, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// brokerUp registers a gauge that asks the publisher at scrape time.
func (m *metrics) brokerUp(broker string, c checker) {
	m.broker = broker
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "hookbridge_broker_up",
		Help:        "1 when the broker connection and stream/topics are ready, else 0.",
		ConstLabels: prometheus.Labels{"broker": broker},
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if c.Check(ctx) != nil {
			return 0
		}
		return 1
	}))
}

func (m *metrics) Request(o ingest.Outcome, d time.Duration) {
	m.requests.WithLabelValues(string(o)).Inc()
	m.duration.WithLabelValues(string(o)).Observe(d.Seconds())
}

func (m *metrics) SignatureFailure(reason string) { m.sigFailures.WithLabelValues(reason).Inc() }

func (m *metrics) SecretMatched(i int) {
	label := "other"
	if i >= 0 && i < 16 {
		label = strconv.Itoa(i)
	}
	m.secretMatches.WithLabelValues(label).Inc()
}

func (m *metrics) Published(ev *schema.Event, d time.Duration) {
	t := "deadletter"
	if ev != nil {
		t = "other"
		if ev.Type.Known() {
			t = string(ev.Type)
		}
	}
	m.events.WithLabelValues(t).Inc()
	m.publishDur.WithLabelValues(m.broker, "ok").Observe(d.Seconds())
}

func (m *metrics) PublishFailed(d time.Duration) {
	m.publishErrors.WithLabelValues(m.broker).Inc()
	m.publishDur.WithLabelValues(m.broker, "error").Observe(d.Seconds())
}

func (m *metrics) Dedup(result string) { m.dedup.WithLabelValues(result).Inc() }
