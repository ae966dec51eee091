package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// pprof is opt-in: profiling endpoints leak internals and cost CPU, so they
// must not appear unless HOOKBRIDGE_PPROF asks for them.
func TestAdminMux_PProfOptIn(t *testing.T) {
	var shutting atomic.Bool
	ready := newReadiness(map[string]checker{}, &shutting)
	for _, on := range []bool{false, true} {
		mux := adminMux(ready, prometheus.NewRegistry(), on)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if w.Code != want {
			t.Errorf("pprof=%v: /debug/pprof/ answered %d, want %d", on, w.Code, want)
		}
		w = httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if w.Code != http.StatusOK {
			t.Errorf("pprof=%v: /healthz answered %d", on, w.Code)
		}
	}
}
