package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookbridge/hookbridge/ingest"
)

// enableInFlight registers what the handler's global in-flight bounds hold
// and refuse. Overloaded (the handler's OverloadObserver) counts refusals.
func (m *metrics) enableInFlight(h *ingest.Handler) {
	m.overloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hookbridge_overload_refusals_total",
		Help: "Requests answered 503 without reading their body because a global in-flight bound was reached, by bound (requests, body_bytes).",
	}, []string{"bound"})
	for _, b := range []string{"requests", "body_bytes"} {
		m.overloads.WithLabelValues(b)
	}
	m.registry.MustRegister(m.overloads,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hookbridge_in_flight_requests",
			Help: "Requests past the header checks and not yet answered (bound: HOOKBRIDGE_MAX_IN_FLIGHT_REQUESTS).",
		}, func() float64 { n, _ := h.InFlight(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hookbridge_in_flight_body_bytes",
			Help: "Body bytes held by requests not yet answered (bound: HOOKBRIDGE_MAX_IN_FLIGHT_BYTES).",
		}, func() float64 { _, b := h.InFlight(); return float64(b) }),
	)
}

func (m *metrics) Overloaded(bound string) {
	if m.overloads != nil {
		m.overloads.WithLabelValues(bound).Inc()
	}
}
