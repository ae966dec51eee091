package dedup_test

import (
	"bytes"
	"context"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/ingest/dedup"
	"github.com/hookbridge/hookbridge/publish"
	"github.com/hookbridge/hookbridge/schema"
)

// BenchmarkPipelineNATS is the request path end to end minus the HTTP
// transport: the real Handler (verify, parse, dedup, reply) and the real
// JetStream publisher against an in-process nats-server over loopback TCP
// (file store), 64 requests in flight as behind 64 connections. It is the
// benchmark to profile (-cpuprofile, -memprofile) for the bridge's share of
// `make bench-e2e`. "dedup_nats" takes the window path (young events, what
// serve does by default); "dedup_nats_old" the KV claim protocol.
func BenchmarkPipelineNATS(b *testing.B) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: b.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		b.Fatal(err)
	}
	go s.Start()
	b.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		b.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	ctx := context.Background()
	pub, err := publish.NewNATS(ctx, nc, publish.NATSConfig{MaxMsgSize: 1 << 20}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	kv, err := dedup.NewKV(ctx, pub.JetStream(), dedup.KVOptions{Writer: pub})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = kv.Close(ctx) })
	window, _ := pub.DedupWindow()
	sec, err := ingest.ParseSecret(benchSecret)
	if err != nil {
		b.Fatal(err)
	}
	verifier, err := ingest.NewVerifier([]ingest.Secret{sec})
	if err != nil {
		b.Fatal(err)
	}
	sample, _ := schema.Sample(schema.RealtimeCallIncoming)
	var seq atomic.Int64
	for _, bc := range []struct {
		name   string
		dd     func() ingest.Deduper
		window time.Duration
		fresh  bool
	}{
		{"dedup_off", func() ingest.Deduper { return nil }, 0, true},
		{"dedup_memory", func() ingest.Deduper {
			d, _ := dedup.NewMemory(dedup.MemoryOptions{})
			return d
		}, 0, true},
		{"dedup_nats", func() ingest.Deduper { return kv }, window, true},
		{"dedup_nats_old", func() ingest.Deduper { return kv }, window, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := ingest.HandlerConfig{Verifier: verifier, Publisher: pub, BrokerWindow: bc.window,
				MaxBodyBytes: 1 << 20, PublishTimeout: 5 * time.Second, Log: zerolog.Nop()}
			if dd := bc.dd(); dd != nil {
				cfg.Deduper = dd
			}
			h, err := ingest.NewHandler(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = h.Close(ctx) })
			body := sample
			if bc.fresh {
				body = withCreatedAt(b, sample, time.Now().Unix())
			}
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				signer, err := ingest.NewSigner(sec)
				if err != nil {
					b.Error(err)
					return
				}
				bb := &benchBody{}
				r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/webhooks/openai", bb)
				r.ContentLength = int64(len(body))
				w := &benchWriter{h: http.Header{}}
				for pb.Next() {
					id := "wh_" + strconv.FormatInt(seq.Add(1), 16) + "0123456789abcdef0123"
					ts := strconv.FormatInt(time.Now().Unix(), 10)
					r.Header = http.Header{
						"Content-Type":      {"application/json"},
						"Webhook-Id":        {id},
						"Webhook-Timestamp": {ts},
						"Webhook-Signature": {signer.Sign(id, ts, body)},
					}
					bb.Reset(body)
					clear(w.h)
					h.ServeHTTP(w, r)
					if w.code != http.StatusOK {
						b.Errorf("status %d", w.code)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

const benchSecret = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="

// withCreatedAt returns body with its created_at replaced by ts (same
// number of digits, so the size stays).
func withCreatedAt(b *testing.B, body []byte, ts int64) []byte {
	ev, err := schema.Parse(body)
	if err != nil {
		b.Fatal(err)
	}
	old := []byte(`"created_at":` + strconv.FormatInt(ev.CreatedAt, 10))
	repl := []byte(`"created_at":` + strconv.FormatInt(ts, 10))
	if len(old) != len(repl) || !bytes.Contains(body, old) {
		b.Fatal("sample created_at not found")
	}
	return bytes.Replace(body, old, repl, 1)
}

// benchWriter is a reusable http.ResponseWriter that keeps nothing.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }

// benchBody is a reusable request body.
type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }
