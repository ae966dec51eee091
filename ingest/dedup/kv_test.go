package dedup

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
	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/publish"
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
	*KV
	*dedupFakeClock
}

// kvWriters are the ways the KV store writes: the KeyValue API alone, the
// jetstream API as a KVWriter, and publish.NATS, the writer serve uses.
var kvWriters = []string{"kv", "jetstream", "publish"}

func kvWriter(t *testing.T, kind string, nc *nats.Conn, js jetstream.JetStream) KVWriter {
	t.Helper()
	switch kind {
	case "jetstream":
		return testKVWriter{js: js}
	case "publish":
		suffix := strings.ToLower(randHex(t))
		n, err := publish.NewNATS(dedupCtx(t), nc, publish.NATSConfig{Prefix: "dedupt" + suffix, Stream: "DEDUPT_" + strings.ToUpper(suffix)}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.Close(ctx)
			_ = js.DeleteStream(ctx, "DEDUPT_"+strings.ToUpper(suffix))
		})
		return n
	}
	return nil
}

func TestKVContract(t *testing.T) {
	for name, url := range dedupNATSTargets(t) {
		for _, kind := range kvWriters {
			t.Run(name+"/"+kind, func(t *testing.T) {
				nc, js := dedupJetStream(t, url)
				w := kvWriter(t, kind, nc, js)
				testDeduperContract(t, func(t *testing.T, lease, ttl time.Duration) Deduper {
					// Leases are judged by the replica's clock, so a fake one makes
					// takeover deterministic; the TTL stays the server's business.
					clock := newDedupFakeClock()
					opts := KVOptions{Bucket: dedupTestBucket(t, js, name == "external"), TTL: ttl, Lease: lease, Now: clock.Now, Writer: w}
					d, err := NewKV(dedupCtx(t), js, opts)
					if err != nil {
						t.Fatal(err)
					}
					if (w != nil) != (d.w != nil) {
						t.Fatal("the writer is not used")
					}
					t.Cleanup(func() { _ = d.Close(dedupCtx(t)) })
					return kvDedupUnderTest{d, clock}
				})
			})
		}
	}
}

// testKVWriter sends what publish.NATS sends for a KVWriter, through the
// jetstream API.
type testKVWriter struct {
	js jetstream.JetStream
}

func (w testKVWriter) PublishIfNew(ctx context.Context, subject string, data []byte) error {
	_, err := w.js.Publish(ctx, subject, data, jetstream.WithExpectLastSequencePerSubject(0))
	return err
}

func (w testKVWriter) PublishAsync(subject string, data []byte, done func(error)) error {
	f, err := w.js.PublishAsync(subject, data)
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-f.Ok():
			done(nil)
		case err := <-f.Err():
			done(err)
		}
	}()
	return nil
}

func randHex(t testing.TB) string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func TestKVBucket(t *testing.T) {
	for name, url := range dedupNATSTargets(t) {
		t.Run(name, func(t *testing.T) {
			_, js := dedupJetStream(t, url)
			ctx := dedupCtx(t)
			bucket := dedupTestBucket(t, js, name == "external")

			d, err := NewKV(ctx, js, KVOptions{Bucket: bucket, TTL: time.Hour})
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
			if _, _, err := d.Claim(ctx, "kept"); err != nil {
				t.Fatal(err)
			}
			again, err := NewKV(ctx, js, KVOptions{Bucket: bucket, TTL: time.Hour})
			if err != nil {
				t.Fatalf("reopen with the same TTL: %v", err)
			}
			dedupClaim(t, again, "kept", ClaimInFlight)

			// Another TTL is refused, with the way out in the message.
			_, err = NewKV(ctx, js, KVOptions{Bucket: bucket, TTL: 72 * time.Hour})
			if !errors.Is(err, ErrTTLMismatch) {
				t.Fatalf("reopen with another TTL: error %v, want ErrTTLMismatch", err)
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

func TestKVDefaultBucket(t *testing.T) {
	_, js := dedupJetStream(t, startDedupNATS(t)) // in-process only: do not touch a shared server's real bucket
	d, err := NewKV(dedupCtx(t), js, KVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.kv.Status(dedupCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Bucket() != DefaultBucket || st.TTL() != DefaultTTL || d.lease != DefaultLease {
		t.Fatalf("bucket %s TTL %v lease %v; want the defaults", st.Bucket(), st.TTL(), d.lease)
	}
}

// TestKVStoreErrors checks that a broken connection surfaces as an
// error (the handler answers 503), never as a claim status.
func TestKVStoreErrors(t *testing.T) {
	nc, js := dedupJetStream(t, startDedupNATS(t))
	ctx := dedupCtx(t)
	d, err := NewKV(ctx, js, KVOptions{Bucket: "DEDUP_ERRORS"})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if st, _, err := d.Claim(ctx, "x"); err == nil {
		t.Errorf("Claim on a closed connection = %v, want an error", st)
	}
	if err := d.Complete(ctx, "x"); err == nil {
		t.Errorf("Complete on a closed connection: no error")
	}
	if err := d.Release(ctx, "x", 1); err == nil {
		t.Errorf("Release on a closed connection: no error")
	}
	if err := d.Check(ctx); err == nil {
		t.Error("Check on a closed connection: no error")
	}
}

// TestKVCorruptValue: a value the store did not write is an error,
// not a guess.
func TestKVCorruptValue(t *testing.T) {
	_, js := dedupJetStream(t, startDedupNATS(t))
	ctx := dedupCtx(t)
	d, err := NewKV(ctx, js, KVOptions{Bucket: "DEDUP_CORRUPT"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.kv.Put(ctx, kvKey("x"), []byte("inflight soon")); err != nil {
		t.Fatal(err)
	}
	if st, _, err := d.Claim(ctx, "x"); err == nil {
		t.Fatalf("Claim over a corrupt value = %v, want an error", st)
	}
}

func TestParseKVValue(t *testing.T) {
	deadline := time.UnixMilli(1_700_000_000_123)
	tests := []struct {
		in   string
		want kvValue
		ok   bool
	}{
		{"done", kvValue{done: true}, true},
		{kvInFlightValue(deadline, 0xabc), kvValue{deadline: deadline, owner: 0xabc}, true},
		{"inflight 1700000000123 ffffffffffffffff", kvValue{deadline: deadline, owner: 1<<64 - 1}, true},
		{"inflight 1700000000123", kvValue{deadline: deadline}, true}, // written before owners
		{"inflight", kvValue{}, false},
		{"inflight x", kvValue{}, false},
		{"inflight 1700000000123 xyz", kvValue{}, false},
		{"DONE", kvValue{}, false},
		{"", kvValue{}, false},
	}
	for _, tt := range tests {
		got, err := parseKVValue([]byte(tt.in))
		if (err == nil) != tt.ok || got.done != tt.want.done || !got.deadline.Equal(tt.want.deadline) || got.owner != tt.want.owner {
			t.Errorf("parseKVValue(%q) = %+v, %v; want %+v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestKVOwnClaimStoredTwice: a claim whose answer was lost is sent again by
// the writer and meets itself; the store must recognise its own owner and
// answer new, not in flight (a 409 for a delivery nobody else holds).
func TestKVOwnClaimStoredTwice(t *testing.T) {
	nc, js := dedupJetStream(t, startDedupNATS(t))
	w := &twiceWriter{KVWriter: testKVWriter{js: js}}
	d, err := NewKV(dedupCtx(t), js, KVOptions{Bucket: "DEDUP_TWICE", Writer: w})
	if err != nil {
		t.Fatal(err)
	}
	_ = nc
	owner := dedupClaim(t, d, "wh_twice", ClaimNew)
	dedupClaim(t, d, "wh_twice", ClaimInFlight)
	dedupRelease(t, d, "wh_twice", owner)
	dedupClaim(t, d, "wh_twice", ClaimNew)
}

// twiceWriter stores each conditional write, then reports the conflict its
// repeat would get, as when the first answer was lost.
type twiceWriter struct{ KVWriter }

func (w *twiceWriter) PublishIfNew(ctx context.Context, subject string, data []byte) error {
	if err := w.KVWriter.PublishIfNew(ctx, subject, data); err != nil {
		return err
	}
	return w.KVWriter.PublishIfNew(ctx, subject, data)
}

// TestKVRecordsResent: records that JetStream does not store (here: no
// stream answers while the bucket is gone) are kept and sent again, and land
// once the bucket is back.
func TestKVRecordsResent(t *testing.T) {
	nc, js := dedupJetStream(t, startDedupNATS(t))
	w := kvWriter(t, "publish", nc, js)
	ctx := dedupCtx(t)
	d, err := NewKV(ctx, js, KVOptions{Bucket: "DEDUP_RESEND", TTL: time.Hour, Writer: w})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	if err := js.DeleteKeyValue(ctx, "DEDUP_RESEND"); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		if err := d.Complete(ctx, fmt.Sprintf("wh_resend_%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // answered "no responders", queued
	if got := d.PendingRecords(); got != n {
		t.Fatalf("%d records pending, want %d", got, n)
	}
	if _, err := NewKV(ctx, js, KVOptions{Bucket: "DEDUP_RESEND", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); d.PendingRecords() > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d records still pending after the bucket came back", d.PendingRecords())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range n {
		dedupClaim(t, d, fmt.Sprintf("wh_resend_%d", i), ClaimDone)
	}
	if got := d.LostRecords(); got != 0 {
		t.Errorf("%d records lost", got)
	}
}

// BenchmarkKV measures Claim+Complete of unique ids (two JetStream round
// trips) against an in-process server, from parallel goroutines.
func BenchmarkKV(b *testing.B) {
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
	d, err := NewKV(ctx, js, KVOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Uint64
	b.SetParallelism(32) // requests in flight, as behind an HTTP server
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := "wh_" + strconv.FormatUint(next.Add(1), 16)
			if st, _, err := d.Claim(ctx, id); err != nil || st != ClaimNew {
				b.Fatalf("Claim = %v, %v", st, err)
			}
			if err := d.Complete(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Complete with a writer does not wait for the record: a claim completed
// must still read as done for the next delivery of the id.
func TestKVCompleteThenClaim(t *testing.T) {
	for name, url := range dedupNATSTargets(t) {
		for _, kind := range kvWriters {
			t.Run(name+"/"+kind, func(t *testing.T) {
				nc, js := dedupJetStream(t, url)
				ctx := dedupCtx(t)
				opts := KVOptions{Bucket: dedupTestBucket(t, js, name == "external"), Writer: kvWriter(t, kind, nc, js)}
				d, err := NewKV(ctx, js, opts)
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close(ctx)
				for i := range 20 {
					id := fmt.Sprintf("wh_async_%d", i)
					if st, _, err := d.Claim(ctx, id); err != nil || st != ClaimNew {
						t.Fatalf("Claim(%s) = %v, %v; want new", id, st, err)
					}
					if err := d.Complete(ctx, id); err != nil {
						t.Fatal(err)
					}
					// The same connection: stored in order, so the next claim
					// already sees it.
					if st, _, err := d.Claim(ctx, id); err != nil || st != ClaimDone {
						t.Fatalf("Claim(%s) after Complete = %v, %v; want done", id, st, err)
					}
				}
				if err := d.Complete(ctx, ""); err == nil {
					t.Error("Complete of an empty id succeeded")
				}
			})
		}
	}
}
