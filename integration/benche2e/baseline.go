package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runBaseline is the yardstick: the minimal correct Go handler. net/http, crypto/hmac verification of
// id.timestamp.body with a ±5 min timestamp check, one JetStream publish
// (async, waiting for its ack) to a fixed subject, 200 after the ack, 503
// otherwise. No dedup, no envelope parsing, no headers on the message, no
// metrics, no logs.
func runBaseline(args []string) int {
	fs := flag.NewFlagSet("baseline", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	natsURL := fs.String("nats", nats.DefaultURL, "NATS URL")
	secret := fs.String("secret", "", "whsec_ secret")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (for -profile)")
	_ = fs.Parse(args)
	if *pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.Handle("/debug/pprof/allocs", pprof.Handler("allocs"))
		go func() { _ = http.ListenAndServe(*pprofAddr, mux) }()
	}
	key, err := secretKey(*secret)
	if err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		return 2
	}
	nc, err := nats.Connect(*natsURL, nats.Name("benche2e-baseline"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		return 1
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "BASELINE", Subjects: []string{"baseline.>"}, Storage: jetstream.FileStorage,
		MaxAge: 7 * 24 * time.Hour, Duplicates: 2 * time.Minute,
	})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "baseline: stream:", err)
		return 1
	}

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body", http.StatusBadRequest)
			return
		}
		id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
		t, err := strconv.ParseInt(ts, 10, 64)
		if id == "" || sig == "" || err != nil {
			http.Error(w, "headers", http.StatusBadRequest)
			return
		}
		if d := time.Now().Unix() - t; d > 300 || d < -300 {
			http.Error(w, "timestamp", http.StatusUnauthorized)
			return
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write([]byte(ts))
		m.Write([]byte{'.'})
		m.Write(body)
		want := base64.StdEncoding.EncodeToString(m.Sum(nil))
		okSig := false
		for _, s := range strings.Fields(sig) {
			if v, ok := strings.CutPrefix(s, "v1,"); ok && hmac.Equal([]byte(v), []byte(want)) {
				okSig = true
			}
		}
		if !okSig {
			http.Error(w, "signature", http.StatusUnauthorized)
			return
		}
		f, err := js.PublishAsync("baseline.event", body)
		if err == nil {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			select {
			case <-f.Ok():
			case err = <-f.Err():
			case <-ctx.Done():
				err = ctx.Err()
			}
			cancel()
		}
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"published"}`+"\n")
	})
	return serveUntilSignal(*addr, h)
}

// runNoop answers every request 200 after reading the body: the ceiling of
// a load generator on this machine.
func runNoop(args []string) int {
	fs := flag.NewFlagSet("noop", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	_ = fs.Parse(args)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"published"}`+"\n")
	})
	return serveUntilSignal(*addr, h)
}

func serveUntilSignal(addr string, h http.Handler) int {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 20 * time.Second, IdleTimeout: 90 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	return 0
}
