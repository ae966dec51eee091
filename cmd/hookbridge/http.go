package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// publicServer serves the webhook endpoint with every timeout set, so that a
// slow or idle client cannot hold a connection without bound.
func publicServer(cfg *config, h http.Handler, certs *certReloader, log zerolog.Logger) *http.Server {
	s := &http.Server{
		Addr:    cfg.ListenAddr,
		Handler: h,
		// Slow-loris headers are cut off as soon as slow bodies are.
		ReadHeaderTimeout: min(5*time.Second, cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		// Writing starts after the body is read and the broker answered.
		WriteTimeout:   cfg.ReadTimeout + cfg.PublishTimeout + 5*time.Second,
		IdleTimeout:    90 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       newStdLogger(log, "http"),
		// HTTP/2 (with TLS): net/http would allow 250 streams per
		// connection, each a request in flight.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: maxConcurrentStreams},
	}
	if certs != nil {
		s.TLSConfig = certs.tlsConfig()
	}
	return s
}

// adminServer serves health, readiness and metrics.
func adminServer(cfg *config, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              cfg.AdminAddr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}

// shutdownServer is the shutdown step of s: stop accepting and wait for the
// requests in flight; those still running at the deadline are cut rather
// than let the shutdown overrun its grace period.
func shutdownServer(s *http.Server) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
			return err
		}
		return nil
	}
}

// listen opens addr, naming variable (the setting it came from) in errors.
func listen(addr, variable string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s: %s is already in use; choose another address", variable, addr)
		}
		return nil, fmt.Errorf("%s: %w", variable, err)
	}
	return ln, nil
}

// hostForURL is the host:port a client on this machine reaches a listener
// at: loopback for one on every interface.
func hostForURL(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta.IP.IsUnspecified() {
		if ok {
			return fmt.Sprintf("127.0.0.1:%d", ta.Port)
		}
		return a.String()
	}
	return ta.String()
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
