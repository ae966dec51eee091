package ingest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/publish"
	"github.com/hookbridge/hookbridge/schema"
)

// BenchmarkPipelineNATS is the request path end to end minus the HTTP
// transport: the real Handler (verify, parse, dedup, reply) and the real
// JetStream publisher against an in-process nats-server over loopback TCP
// (file store), 64 requests in flight as behind 64 connections. It is the
// benchmark to profile (-cpuprofile, -memprofile) for the bridge's share of
// `make bench-e2e`.
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
	kv, err := NewKVDeduper(ctx, pub.JetStream(), KVOptions{Writer: pub})
	if err != nil {
		b.Fatal(err)
	}
	body, _ := schema.Sample(schema.RealtimeCallIncoming)
	var seq atomic.Int64
	for _, bc := range []struct {
		name string
		dd   func() Deduper
	}{
		{"dedup_off", func() Deduper { return nil }},
		{"dedup_memory", func() Deduper {
			d, _ := NewMemoryDeduper(MemoryOptions{})
			return d
		}},
		{"dedup_nats", func() Deduper { return kv }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newTestHandler(b, pub, bc.dd())
			h.cfg.MaxBodyBytes = 1 << 20
			h.cfg.PublishTimeout = 5 * time.Second
			ts := strconv.FormatInt(testNow.Unix(), 10)
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				bb := &benchBody{}
				r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/webhooks/openai", bb)
				r.ContentLength = int64(len(body))
				w := &benchWriter{h: http.Header{}}
				for pb.Next() {
					id := "wh_" + strconv.FormatInt(seq.Add(1), 16) + "0123456789abcdef0123"
					r.Header = http.Header{
						"Content-Type":      {"application/json"},
						"Webhook-Id":        {id},
						"Webhook-Timestamp": {ts},
						"Webhook-Signature": {signRaw(b, id, ts, body)},
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

var _ = bytes.MinRead
var _ = io.EOF
