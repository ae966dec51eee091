package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startDedupNATS runs a JetStream-enabled nats-server on a free loopback port.
func startDedupNATS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir() // registered first, so removed after the shutdown below
	s, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready within 10s")
	}
	return s.ClientURL()
}

// dedupNATSTargets are the servers the KV tests run against: always an
// in-process one, plus HOOKBRIDGE_IT_NATS_URL (the deployment's version, 2.9
// on CI) when set. In CI it must be set: a silent skip would hide a defect.
func dedupNATSTargets(t *testing.T) map[string]string {
	t.Helper()
	targets := map[string]string{"embedded": startDedupNATS(t)}
	if u := os.Getenv("HOOKBRIDGE_IT_NATS_URL"); u != "" {
		targets["external"] = u
	} else if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but HOOKBRIDGE_IT_NATS_URL is unset: the KV store would go untested against the real server")
	} else {
		t.Log("HOOKBRIDGE_IT_NATS_URL unset: testing against the in-process server only")
	}
	return targets
}

func dedupJetStream(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// dedupTestBucket returns a bucket name no other run uses. On a shared
// server it is deleted after t. The in-process server's buckets go with its
// directory instead: nats-server removes an emptied streams directory
// asynchronously after a delete, which races with the next subtest's bucket
// creation ("could not create storage directory").
func dedupTestBucket(t *testing.T, js jetstream.JetStream, shared bool) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	bucket := "HOOKBRIDGE_DEDUP_TEST_" + strings.ToUpper(hex.EncodeToString(b))
	if !shared {
		return bucket
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteKeyValue(ctx, bucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Errorf("delete bucket %s: %v", bucket, err)
		}
	})
	return bucket
}

func dedupCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// kvDedupUnderTest lets the contract advance the store's lease clock.
type kvDedupUnderTest struct {
	*KVDeduper
	*dedupFakeClock
}

func TestKVDeduperContract(t *testing.T) {
	for name, url := range dedupNATSTargets(t) {
		for _, withWriter := range []bool{false, true} {
			sub := name
			if withWriter {
				sub += "/writer"
			}
			t.Run(sub, func(t *testing.T) {
				nc, js := dedupJetStream(t, url)
				testDeduperContract(t, func(t *testing.T, lease, ttl time.Duration) Deduper {
					// Leases are judged by the replica's clock, so a fake one makes
					// takeover deterministic; the TTL stays the server's business.
					clock := newDedupFakeClock()
					opts := KVOptions{Bucket: dedupTestBucket(t, js, name == "external"), TTL: ttl, Lease: lease, Now: clock.Now}
					if withWriter {
						opts.Writer = testKVWriter{nc: nc, js: js}
					}
					d, err := NewKVDeduper(dedupCtx(t), js, opts)
					if err != nil {
						t.Fatal(err)
					}
					if withWriter && d.w == nil {
						t.Fatal("the writer is not used")
					}
					return kvDedupUnderTest{d, clock}
				})
			})
		}
	}
}

// testKVWriter sends what publish.NATS sends for a KVWriter, through the
// jetstream API (ingest cannot import publish).
type testKVWriter struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func (w testKVWriter) PublishIfNew(ctx context.Context, subject string, data []byte) error {
	_, err := w.js.Publish(ctx, subject, data, jetstream.WithExpectLastSequencePerSubject(0))
	return err
}

func (w testKVWriter) PublishNoAck(subject string, data []byte) error {
	return w.nc.Publish(subject, data)
}

func TestKVDeduperBucket(t *testing.T) {
	for name, url := range dedupNATSTargets(t) {
		t.Run(name, func(t *testing.T) {
			_, js := dedupJetStream(t, url)
			ctx := dedupCtx(t)
			bucket := dedupTestBucket(t, js, name == "external")

			d, err := NewKVDeduper(ctx, js, KVOptions{Bucket: bucket, TTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Check(ctx); err != nil {
				t.Fatalf("Check: %v", err)
			}
			st, err := d.kv.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cfg := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config
			if st.TTL() != time.Hour || st.History() != 1 || cfg.Storage != jetstream.FileStorage {
				t.Fatalf("bucket TTL %v history %d storage %v; want 1h, 1, file", st.TTL(), st.History(), cfg.Storage)
			}

			// Opening it again with the same TTL reuses it, state included.
			if _, err := d.Claim(ctx, "kept"); err != nil {
				t.Fatal(err)
			}
			again, err := NewKVDeduper(ctx, js, KVOptions{Bucket: bucket, TTL: time.Hour})
			if err != nil {
				t.Fatalf("reopen with the same TTL: %v", err)
			}
			dedupClaim(t, again, "kept", ClaimInFlight)

			// Another TTL is refused, with the way out in the message.
			_, err = NewKVDeduper(ctx, js, KVOptions{Bucket: bucket, TTL: 72 * time.Hour})
			if !errors.Is(err, ErrDedupTTLMismatch) {
				t.Fatalf("reopen with another TTL: error %v, want ErrDedupTTLMismatch", err)
			}
			for _, want := range []string{"HOOKBRIDGE_DEDUP_TTL", bucket, "1h0m0s", "72h0m0s", "nats kv rm " + bucket} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			st, err = d.kv.Status(ctx)
			if err != nil || st.TTL() != time.Hour {
				t.Fatalf("bucket TTL after refused reopen = %v (%v), want untouched 1h", st.TTL(), err)
			}
		})
	}
}

func TestKVDeduperDefaultBucket(t *testing.T) {
	_, js := dedupJetStream(t, startDedupNATS(t)) // in-process only: do not touch a shared server's real bucket
	d, err := NewKVDeduper(dedupCtx(t), js, KVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.kv.Status(dedupCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Bucket() != DefaultDedupBucket || st.TTL() != DefaultDedupTTL || d.lease != DefaultDedupLease {
		t.Fatalf("bucket %s TTL %v lease %v; want the defaults", st.Bucket(), st.TTL(), d.lease)
	}
}

// TestKVDeduperStoreErrors checks that a broken connection surfaces as an
// error (the handler answers 503), never as a claim status.
func TestKVDeduperStoreErrors(t *testing.T) {
	nc, js := dedupJetStream(t, startDedupNATS(t))
	ctx := dedupCtx(t)
	d, err := NewKVDeduper(ctx, js, KVOptions{Bucket: "DEDUP_ERRORS"})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if st, err := d.Claim(ctx, "x"); err == nil {
		t.Errorf("Claim on a closed connection = %v, want an error", st)
	}
	for name, op := range map[string]func(context.Context, string) error{"Complete": d.Complete, "Release": d.Release} {
		if err := op(ctx, "x"); err == nil {
			t.Errorf("%s on a closed connection: no error", name)
		}
	}
	if err := d.Check(ctx); err == nil {
		t.Error("Check on a closed connection: no error")
	}
}

// TestKVDeduperCorruptValue: a value the store did not write is an error,
// not a guess.
func TestKVDeduperCorruptValue(t *testing.T) {
	_, js := dedupJetStream(t, startDedupNATS(t))
	ctx := dedupCtx(t)
	d, err := NewKVDeduper(ctx, js, KVOptions{Bucket: "DEDUP_CORRUPT"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.kv.Put(ctx, kvDedupKey("x"), []byte("inflight soon")); err != nil {
		t.Fatal(err)
	}
	if st, err := d.Claim(ctx, "x"); err == nil {
		t.Fatalf("Claim over a corrupt value = %v, want an error", st)
	}
}

func TestDedupParseKVValue(t *testing.T) {
	deadline := time.UnixMilli(1_700_000_000_123)
	tests := []struct {
		in       string
		done     bool
		deadline time.Time
		ok       bool
	}{
		{"done", true, time.Time{}, true},
		{kvInFlightValue(deadline), false, deadline, true},
		{"inflight 1700000000123", false, deadline, true},
		{"inflight", false, time.Time{}, false},
		{"inflight x", false, time.Time{}, false},
		{"DONE", false, time.Time{}, false},
		{"", false, time.Time{}, false},
	}
	for _, tt := range tests {
		done, dl, err := parseKVDedupValue([]byte(tt.in))
		if (err == nil) != tt.ok || done != tt.done || !dl.Equal(tt.deadline) {
			t.Errorf("parseKVDedupValue(%q) = %v, %v, %v; want %v, %v, ok=%v", tt.in, done, dl, err, tt.done, tt.deadline, tt.ok)
		}
	}
}

// BenchmarkKVDeduper measures Claim+Complete of unique ids (two JetStream
// round trips) against an in-process server, from parallel goroutines.
func BenchmarkKVDeduper(b *testing.B) {
	dir := b.TempDir()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		b.Fatal(err)
	}
	go s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	if !s.ReadyForConnections(10 * time.Second) {
		b.Fatal("nats-server not ready within 10s")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	d, err := NewKVDeduper(ctx, js, KVOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Uint64
	b.SetParallelism(32) // requests in flight, as behind an HTTP server
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := "wh_" + strconv.FormatUint(next.Add(1), 16)
			if st, err := d.Claim(ctx, id); err != nil || st != ClaimNew {
				b.Fatalf("Claim = %v, %v", st, err)
			}
			if err := d.Complete(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// CompleteAsync is what the handler calls after a publish: a claim it
// completed must read as done for the next delivery of the id, with or
// without a writer.
func TestKVDeduperCompleteAsync(t *testing.T) {
	for name, url := range dedupNATSTargets(t) {
		for _, withWriter := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/writer=%v", name, withWriter), func(t *testing.T) {
				nc, js := dedupJetStream(t, url)
				ctx := dedupCtx(t)
				opts := KVOptions{Bucket: dedupTestBucket(t, js, name == "external")}
				if withWriter {
					opts.Writer = testKVWriter{nc: nc, js: js}
				}
				d, err := NewKVDeduper(ctx, js, opts)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 20 {
					id := fmt.Sprintf("wh_async_%d", i)
					if st, err := d.Claim(ctx, id); err != nil || st != ClaimNew {
						t.Fatalf("Claim(%s) = %v, %v; want new", id, st, err)
					}
					if err := d.CompleteAsync(id); err != nil {
						t.Fatal(err)
					}
					// The same connection: stored in order, so the next claim
					// already sees it.
					if st, err := d.Claim(ctx, id); err != nil || st != ClaimDone {
						t.Fatalf("Claim(%s) after CompleteAsync = %v, %v; want done", id, st, err)
					}
				}
				if err := d.CompleteAsync(""); err == nil {
					t.Error("CompleteAsync of an empty id succeeded")
				}
			})
		}
	}
}
