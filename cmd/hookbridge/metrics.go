package main

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/ingest/dedup"
	"github.com/hookbridge/hookbridge/publish"
	"github.com/hookbridge/hookbridge/schema"
)

// outcomeRateLimited is the outcome of a request refused by the per-source
// rate limit (ratelimit.go), before it reaches the ingest handler.
const outcomeRateLimited ingest.Outcome = "rate_limited"

// Label values known at construction. Their children are resolved once, so the
// hot path does a map lookup instead of WithLabelValues (which hashes the
// label values and takes a lock on every call); they also exist at 0 from the
// start, so rate() and absent-series alerts work before the first request.
var (
	knownOutcomes = []ingest.Outcome{
		ingest.OutcomePublished, ingest.OutcomeDuplicate, ingest.OutcomeDeadLettered,
		ingest.OutcomeBadRequest, ingest.OutcomeInvalidSignature, ingest.OutcomeNotFound,
		ingest.OutcomeMethodNotAllowed, ingest.OutcomeInFlight, ingest.OutcomeTooLarge,
		ingest.OutcomeTimeout, ingest.OutcomeUnavailable, outcomeRateLimited,
	}
	knownReasons = []*ingest.VerifyError{
		ingest.ErrMissingSignature, ingest.ErrMissingTimestamp, ingest.ErrMissingID,
		ingest.ErrBadTimestamp, ingest.ErrTooOld, ingest.ErrTooNew, ingest.ErrNoMatch,
	}
	knownDedupResults = []string{"new", "in_flight", "done", "error"}
	knownDedupPaths   = []ingest.DedupPath{ingest.PathWindow, ingest.PathStore, ingest.PathNone}
	knownRepublish    = []string{ingest.RepublishStored, ingest.RepublishDuplicate, ingest.RepublishGaveUp, ingest.RepublishDropped}
)

// maxSecretLabel bounds the secret-position label: positions from here on are
// counted as "other".
const maxSecretLabel = 16

// metrics implements ingest.Observer with Prometheus collectors on a private
// registry. Every label value is bounded: outcomes, reasons, catalogue types
// (plus "other"), secret positions — never ids.
type metrics struct {
	registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	sigFailures   *prometheus.CounterVec
	events        *prometheus.CounterVec
	publishDur    *prometheus.HistogramVec
	publishErrors *prometheus.CounterVec
	acks          *prometheus.CounterVec
	dedup         *prometheus.CounterVec
	dedupPaths    *prometheus.CounterVec
	republish     *prometheus.CounterVec

	secretReloadErrors prometheus.Counter
	secretsLoaded      prometheus.Gauge
	tlsReloadErrors    prometheus.Counter
	tlsNotAfter        prometheus.Gauge

	broker string

	// Pre-resolved children (read-only after newMetrics).
	byOutcome   map[ingest.Outcome]outcomeObs
	byReason    map[string]prometheus.Counter
	byType      map[schema.Type]prometheus.Counter
	otherType   prometheus.Counter
	deadLetter  prometheus.Counter
	byDedup     map[string]prometheus.Counter
	byPath      map[ingest.DedupPath]prometheus.Counter
	byRepublish map[string]prometheus.Counter
	ackStored   prometheus.Counter
	ackDup      prometheus.Counter
	publishOK   prometheus.Observer
	publishErr  prometheus.Observer
	publishErrN prometheus.Counter
	bySecret    secretCounters
	// overloads counts refusals by the in-flight bounds (enableInFlight).
	overloads *prometheus.CounterVec
}

type outcomeObs struct {
	n prometheus.Counter
	d prometheus.Observer
}

func newMetrics(version, broker string) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		registry: reg,
		broker:   broker,
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
		bySecret: secretCounters{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_signature_secret_matches_total",
			Help: "Verified requests by the position of the configured secret that matched (rotation: watch the old one reach zero).",
		}, []string{"secret"})},
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
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_publish_acks_total",
			Help: "Broker acknowledgements by what the broker answered: stored, or duplicate (it already held the webhook-id and dropped this copy).",
		}, []string{"broker", "result"}),
		dedup: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_dedup_claims_total",
			Help: "Claims in the dedup store by result (new, in_flight, done, error).",
		}, []string{"result"}),
		dedupPaths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_dedup_path_total",
			Help: "Verified deliveries by dedup path: window (the broker's duplicate window is the claim), store (claim in the dedup store), none.",
		}, []string{"path"}),
		republish: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookbridge_republish_total",
			Help: "Background re-publishes of deliveries whose outcome was unknown, by how they ended: stored, duplicate, gave_up, dropped.",
		}, []string{"result"}),
		secretReloadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookbridge_secret_reload_errors_total",
			Help: "Secret reloads (file change or SIGHUP) rejected; the previous secrets stay in use.",
		}),
		secretsLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookbridge_secrets_loaded",
			Help: "Number of signing secrets in use.",
		}),
		tlsReloadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookbridge_tls_reload_errors_total",
			Help: "TLS certificate reloads rejected; the previous certificate stays in use.",
		}),
		tlsNotAfter: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hookbridge_tls_cert_not_after_timestamp_seconds",
			Help: "Expiry (Unix time) of the certificate served on the public listener; absent without TLS.",
		}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hookbridge_build_info",
		Help: "Build information; the value is always 1.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(m.requests, m.duration, m.sigFailures, m.bySecret.vec, m.events,
		m.publishDur, m.publishErrors, m.acks, m.dedup, m.dedupPaths, m.republish,
		m.secretReloadErrors, m.secretsLoaded, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.resolveChildren()
	return m
}

// resolveChildren looks up, once, the children of every label value known
// at construction.
func (m *metrics) resolveChildren() {
	m.byOutcome = make(map[ingest.Outcome]outcomeObs, len(knownOutcomes))
	for _, o := range knownOutcomes {
		m.byOutcome[o] = outcomeObs{m.requests.WithLabelValues(string(o)), m.duration.WithLabelValues(string(o))}
	}
	m.byReason = make(map[string]prometheus.Counter, len(knownReasons))
	for _, r := range knownReasons {
		m.byReason[r.Reason] = m.sigFailures.WithLabelValues(r.Reason)
	}
	types := schema.Types()
	m.byType = make(map[schema.Type]prometheus.Counter, len(types))
	for _, t := range types {
		m.byType[t] = m.events.WithLabelValues(string(t))
	}
	m.otherType = m.events.WithLabelValues("other")
	m.deadLetter = m.events.WithLabelValues("deadletter")
	m.byDedup = make(map[string]prometheus.Counter, len(knownDedupResults))
	for _, r := range knownDedupResults {
		m.byDedup[r] = m.dedup.WithLabelValues(r)
	}
	m.byPath = make(map[ingest.DedupPath]prometheus.Counter, len(knownDedupPaths))
	for _, p := range knownDedupPaths {
		m.byPath[p] = m.dedupPaths.WithLabelValues(string(p))
	}
	m.byRepublish = make(map[string]prometheus.Counter, len(knownRepublish))
	for _, r := range knownRepublish {
		m.byRepublish[r] = m.republish.WithLabelValues(r)
	}
	m.ackStored = m.acks.WithLabelValues(m.broker, "stored")
	m.ackDup = m.acks.WithLabelValues(m.broker, "duplicate")
	m.publishOK = m.publishDur.WithLabelValues(m.broker, "ok")
	m.publishErr = m.publishDur.WithLabelValues(m.broker, "error")
	m.publishErrN = m.publishErrors.WithLabelValues(m.broker)
}

// brokerUp registers a gauge that reports the broker check of ready at
// scrape time. It shares readiness's evaluation, so scrapes and probes
// together ask the broker at most once a second.
func (m *metrics) brokerUp(ready *readiness) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "hookbridge_broker_up",
		Help:        "1 when the broker connection and stream/topics are ready, else 0.",
		ConstLabels: prometheus.Labels{"broker": m.broker},
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), readinessTimeout)
		defer cancel()
		if ready.evaluate(ctx)["broker"] != nil {
			return 0
		}
		return 1
	}))
}

// natsRetries registers the NATS publisher's attempts repeated within a
// request's budget, by reason.
func (m *metrics) natsRetries(n *publish.NATS) {
	for i, reason := range publish.RetryReasons {
		m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "hookbridge_nats_publish_retries_total",
			Help:        "JetStream publishes sent again within the request's budget: no_responders (no stream leader), in_process (a concurrent copy being stored), timeout (no ack in time), disconnected.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(n.Retries()[i]) }))
	}
}

// kvRecords registers the KV dedup store's record queue.
func (m *metrics) kvRecords(kv *dedup.KV) {
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hookbridge_dedup_records_pending",
			Help: "Dedup records (webhook-ids remembered beyond the duplicate window) sent and not yet acknowledged, or waiting to be sent again.",
		}, func() float64 { return float64(kv.PendingRecords()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hookbridge_dedup_records_lost_total",
			Help: "Dedup records given up (resend queue full, or unacknowledged at shutdown).",
		}, func() float64 { return float64(kv.LostRecords()) }),
	)
}

// republishPending registers the handler's re-publish queue.
func (m *metrics) republishPending(h *ingest.Handler) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hookbridge_republish_pending",
		Help: "Deliveries whose outcome is unknown, waiting to be re-published.",
	}, func() float64 { return float64(h.RepublishPending()) }))
}

// enableTLS registers the TLS metrics; without TLS they are absent.
func (m *metrics) enableTLS() {
	m.registry.MustRegister(m.tlsReloadErrors, m.tlsNotAfter)
}

func (m *metrics) Request(o ingest.Outcome, d time.Duration) {
	obs, ok := m.byOutcome[o]
	if !ok {
		obs = outcomeObs{m.requests.WithLabelValues(string(o)), m.duration.WithLabelValues(string(o))}
	}
	obs.n.Inc()
	obs.d.Observe(d.Seconds())
}

func (m *metrics) SignatureFailure(reason string) {
	if c, ok := m.byReason[reason]; ok {
		c.Inc()
		return
	}
	m.sigFailures.WithLabelValues(reason).Inc()
}

func (m *metrics) SecretMatched(i int) { m.bySecret.inc(i) }

// secretCounters counts matches by secret position. The children are
// resolved on first use, so that only positions that ever matched are
// exported; positions from maxSecretLabel on are counted as "other".
type secretCounters struct {
	vec *prometheus.CounterVec // labelled with the position only
	c   [maxSecretLabel + 1]atomic.Pointer[prometheus.Counter]
}

func (s *secretCounters) inc(i int) {
	if i < 0 || i >= maxSecretLabel {
		i = maxSecretLabel
	}
	if c := s.c[i].Load(); c != nil {
		(*c).Inc()
		return
	}
	label := "other"
	if i < maxSecretLabel {
		label = strconv.Itoa(i)
	}
	c := s.vec.WithLabelValues(label)
	s.c[i].Store(&c)
	c.Inc()
}

func (m *metrics) Published(ev *schema.Event, d time.Duration, duplicate bool) {
	m.publishOK.Observe(d.Seconds())
	if duplicate {
		m.ackDup.Inc()
		return
	}
	m.ackStored.Inc()
	c := m.deadLetter
	if ev != nil {
		c = m.otherType
		if k, ok := m.byType[ev.Type]; ok {
			c = k
		}
	}
	c.Inc()
}

func (m *metrics) PublishFailed(d time.Duration) {
	m.publishErrN.Inc()
	m.publishErr.Observe(d.Seconds())
}

func (m *metrics) Dedup(result string) {
	if c, ok := m.byDedup[result]; ok {
		c.Inc()
		return
	}
	m.dedup.WithLabelValues(result).Inc()
}

func (m *metrics) DedupPath(p ingest.DedupPath) {
	if c, ok := m.byPath[p]; ok {
		c.Inc()
		return
	}
	m.dedupPaths.WithLabelValues(string(p)).Inc()
}

func (m *metrics) Republished(result string) {
	if c, ok := m.byRepublish[result]; ok {
		c.Inc()
		return
	}
	m.republish.WithLabelValues(result).Inc()
}
