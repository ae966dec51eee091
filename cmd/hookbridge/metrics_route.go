package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbridge/hookbridge/ingest"
)

// routeMetrics is the ingest.Observer of one route: everything the bridge's
// metrics count, plus the series labelled with the route. The label values
// are the configured route names, so the series stay bounded; the unlabelled
// series keep their meaning for dashboards written before routes.
type routeMetrics struct {
	*metrics
	byOutcome map[ingest.Outcome]prometheus.Counter
	bySecret  secretCounters // curried with the route
	loaded    prometheus.Gauge
}

// enableRoutes registers the per-route series and returns one observer per
// name, in order.
func (m *metrics) enableRoutes(names []string) []*routeMetrics {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookbridge_route_requests_total",
		Help: "Webhook requests by route and outcome (requests on no route's path are only in hookbridge_webhook_requests_total, as not_found).",
	}, []string{"route", "outcome"})
	matches := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookbridge_route_secret_matches_total",
		Help: "Verified requests by route and the position of the route's secret that matched (rotation: watch the old one reach zero).",
	}, []string{"route", "secret"})
	loaded := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hookbridge_route_secrets_loaded",
		Help: "Number of signing secrets in use, by route.",
	}, []string{"route"})
	m.registry.MustRegister(requests, matches, loaded)
	out := make([]*routeMetrics, len(names))
	for i, name := range names {
		r := &routeMetrics{
			metrics:   m,
			byOutcome: make(map[ingest.Outcome]prometheus.Counter, len(knownOutcomes)),
			bySecret:  secretCounters{vec: matches.MustCurryWith(prometheus.Labels{"route": name})},
			loaded:    loaded.WithLabelValues(name),
		}
		for _, o := range knownOutcomes {
			if o != ingest.OutcomeNotFound && o != outcomeRateLimited {
				r.byOutcome[o] = requests.WithLabelValues(name, string(o))
			}
		}
		out[i] = r
	}
	return out
}

func (r *routeMetrics) Request(o ingest.Outcome, d time.Duration) {
	r.metrics.Request(o, d)
	if c, ok := r.byOutcome[o]; ok {
		c.Inc()
	}
}

func (r *routeMetrics) SecretMatched(i int) {
	r.metrics.SecretMatched(i)
	r.bySecret.inc(i)
}
