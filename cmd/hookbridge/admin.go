package main

import (
	"fmt"
	"log"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

func (r *readiness) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var b strings.Builder
	ok := true
	if r.shutting.Load() {
		ok = false
		b.WriteString("[-]shutdown failed: shutting down\n")
	} else {
		b.WriteString("[+]shutdown ok\n")
	}
	res := r.evaluate(req.Context())
	for _, n := range r.names {
		if err := res[n]; err != nil {
			ok = false
			fmt.Fprintf(&b, "[-]%s failed: %v\n", n, err)
		} else {
			fmt.Fprintf(&b, "[+]%s ok\n", n)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	w.WriteHeader(status)
	_, verbose := req.URL.Query()["verbose"]
	if verbose {
		for _, rt := range r.routes {
			b.WriteString(rt + "\n")
		}
	}
	if verbose || !ok {
		_, _ = w.Write([]byte(b.String()))
	}
	if ok {
		_, _ = w.Write([]byte("ok\n"))
	}
}

func adminMux(ready http.Handler, reg *prometheus.Registry, pprofOn bool) http.Handler {
	mux := http.NewServeMux()
	if pprofOn {
		// Registered explicitly on the admin mux: importing net/http/pprof
		// for its side effect would put it on DefaultServeMux.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	health := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// Liveness checks no dependency: a broker outage must not turn into
		// a restart storm.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /healthz", health)
	mux.Handle("GET /livez", health)
	mux.Handle("GET /readyz", ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// newStdLogger routes net/http's internal errors (TLS handshakes, bad
// requests it rejects itself) into zerolog at debug level: they are
// attacker-controlled and would otherwise flood stderr.
func newStdLogger(l zerolog.Logger, component string) *log.Logger {
	return log.New(zerologWriter{l.With().Str("component", component).Logger()}, "", 0)
}

type zerologWriter struct{ l zerolog.Logger }

func (z zerologWriter) Write(p []byte) (int, error) {
	z.l.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
