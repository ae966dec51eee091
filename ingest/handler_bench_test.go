package ingest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/schema"
)

// nopPublisher acknowledges at once.
type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, *schema.Delivery) (bool, error) { return false, nil }

// nopDeduper answers every claim new and records nothing.
type nopDeduper struct{}

func (nopDeduper) Claim(context.Context, string) (ClaimStatus, Owner, error) { return ClaimNew, 1, nil }
func (nopDeduper) Complete(context.Context, string) error                    { return nil }
func (nopDeduper) Release(context.Context, string, Owner) error              { return nil }

// benchWriter is a reusable http.ResponseWriter that keeps nothing, so that
// allocs/op counts the handler's own allocations only.
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

// benchRequests pre-builds n signed requests of the 433-byte
// realtime.call.incoming sample with unique webhook-ids, as net/http would
// hand them to the handler (canonical header keys, known Content-Length).
func benchRequests(b *testing.B, n int) ([]*http.Request, []*benchBody, []byte) {
	b.Helper()
	sample, ok := schema.Sample(schema.RealtimeCallIncoming)
	if !ok {
		b.Fatal("no sample")
	}
	// Created at testNow, as a delivery OpenAI sends right away: young.
	ev, err := schema.Parse(sample)
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Replace(sample, []byte(`"created_at":`+strconv.FormatInt(ev.CreatedAt, 10)),
		[]byte(`"created_at":`+strconv.FormatInt(testNow.Unix(), 10)), 1)
	ts := strconv.FormatInt(testNow.Unix(), 10)
	reqs := make([]*http.Request, n)
	bodies := make([]*benchBody, n)
	for i := range reqs {
		id := "wh_" + strconv.FormatInt(int64(1e15)+int64(i), 16) + "0123456789abcdef"
		bb := &benchBody{}
		bb.Reset(body)
		r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1/webhooks/openai", bb)
		if err != nil {
			b.Fatal(err)
		}
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Webhook-Id", id)
		r.Header.Set("Webhook-Timestamp", ts)
		r.Header.Set("Webhook-Signature", signRaw(b, id, ts, body))
		reqs[i], bodies[i] = r, bb
	}
	return reqs, bodies, body
}

// BenchmarkHandler runs the whole handler (read, verify, parse, dedup,
// publish, reply) with a publisher that acknowledges at once and a store that
// costs nothing: the handler's own cost on each dedup path (the stores have
// their own benchmarks in ingest/dedup). allocs/op is the handler's own: the
// request and the writer are reused.
func BenchmarkHandler(b *testing.B) {
	const pool = 1 << 14
	for _, bc := range []struct {
		name   string
		dedup  Deduper
		window time.Duration
	}{
		{"dedup_off", nil, 0},
		{"window", nopDeduper{}, 2 * time.Hour}, // young events: publish, then record
		{"store", nopDeduper{}, 0},              // claim, publish, complete
		{"window_no_store", nil, 2 * time.Hour}, // the window alone
	} {
		b.Run(bc.name, func(b *testing.B) {
			reqs, bodies, body := benchRequests(b, pool)
			newH := func() *Handler {
				return newTestHandlerWith(b, HandlerConfig{Publisher: nopPublisher{}, Deduper: bc.dedup,
					BrokerWindow: bc.window, MaxBodyBytes: 1 << 20, PublishTimeout: 5 * time.Second})
			}
			h := newH()
			w := &benchWriter{h: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == pool {
					// Every id has been seen: start over with an empty store.
					b.StopTimer()
					h, i = newH(), 0
					b.StartTimer()
				}
				bodies[i].Seek(0, io.SeekStart)
				clear(w.h)
				w.code = 0
				h.ServeHTTP(w, reqs[i])
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
				i++
			}
		})
	}
}

// BenchmarkHandlerRejected is the cost of an unsigned request (401).
func BenchmarkHandlerRejected(b *testing.B) {
	reqs, bodies, _ := benchRequests(b, 1)
	reqs[0].Header.Set("Webhook-Signature", "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	h := newTestHandler(b, nopPublisher{}, nil)
	h.cfg.Log = zerolog.Nop()
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		bodies[0].Seek(0, io.SeekStart)
		clear(w.h)
		h.ServeHTTP(w, reqs[0])
		if w.code != http.StatusUnauthorized {
			b.Fatalf("status %d", w.code)
		}
	}
}
