package publish

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/schema"
)

// itNATSURL, when set, points the tests at a running server (the machine's
// nats-server 2.9.10) instead of an in-process one, to prove compatibility.
const itNATSURL = "HOOKBRIDGE_IT_NATS_URL"

// natsEnv is one server, a bridge connection and an inspection client, with
// a stream name and prefix unique to the test so runs against a shared
// server do not meet.
type natsEnv struct {
	url    string
	emb    *Embedded // nil against an external server
	dir    string    // embedded store
	nc     *nats.Conn
	js     jetstream.JetStream // inspection: a separate connection
	prefix string
	stream string
}

func newNATSEnv(t testing.TB) *natsEnv {
	t.Helper()
	suffix := randHex(t)
	env := &natsEnv{prefix: "hbt" + suffix + ".openai", stream: "HBT_" + strings.ToUpper(suffix)}
	if url := os.Getenv(itNATSURL); url != "" {
		env.url = url
	} else {
		env.dir = t.TempDir()
		env.emb = startEmbedded(t, "127.0.0.1:0", env.dir)
		env.url = env.emb.ClientURL()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := Connect(ctx, ConnConfig{URL: env.url, Name: "hookbridge-test"}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	env.nc = nc
	inspect, err := nats.Connect(env.url)
	if err != nil {
		t.Fatal(err)
	}
	env.js, err = jetstream.New(inspect)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Streams are per test; on a shared server leave nothing behind.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		names := env.js.StreamNames(ctx)
		for name := range names.Name() {
			if strings.HasPrefix(name, "HBT_"+strings.ToUpper(suffix)) {
				if err := env.js.DeleteStream(ctx, name); err != nil {
					t.Errorf("delete stream %s: %v", name, err)
				}
			}
		}
		inspect.Close()
		env.nc.Close()
		if env.emb != nil {
			env.emb.Shutdown()
		}
	})
	return env
}

func (env *natsEnv) config() NATSConfig {
	return NATSConfig{Prefix: env.prefix, Stream: env.stream, MaxMsgSize: 512 << 10}
}

func (env *natsEnv) newNATS(t testing.TB, cfg NATSConfig) *NATS {
	t.Helper()
	n, err := NewNATS(testCtx(t), env.nc, cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

func (env *natsEnv) streamInfo(t testing.TB) *jetstream.StreamInfo {
	t.Helper()
	s, err := env.js.Stream(testCtx(t), env.stream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo()
}

// readAll reads the stream the way a worker does, with an ordered consumer,
// until want messages arrived or the stream has no more.
func (env *natsEnv) readAll(t testing.TB, want int) []jetstream.Msg {
	t.Helper()
	ctx := testCtx(t)
	c, err := env.js.OrderedConsumer(ctx, env.stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for range 20 { // each fetch waits at most 500ms
		if len(msgs) >= want {
			break
		}
		batch, err := c.Fetch(want-len(msgs)+1, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		n := len(msgs)
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if len(msgs) == n && n >= want {
			break
		}
	}
	return msgs
}

func TestNATSPublishRoundTrip(t *testing.T) {
	env := newNATSEnv(t)
	n := env.newNATS(t, env.config())

	bodies := []string{batchBody, callBody, sessionBody, bareBody, notEventBody,
		`{"id":"evt_new","object":"event","created_at":1719168001,"type":"brand_new.kind","data":{"id":"x_1"}}`}
	var ds []*schema.Delivery
	for i := range 4 {
		for j, b := range bodies {
			ds = append(ds, delivery(t, fmt.Sprintf("wh_%d_%d", i, j), b))
		}
	}
	ds[0].TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	// Concurrently, as HTTP handlers call it.
	var wg sync.WaitGroup
	errs := make([]error, len(ds))
	dups := make([]bool, len(ds))
	for i, d := range ds {
		wg.Go(func() { dups[i], errs[i] = n.Publish(testCtx(t), d) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil || dups[i] {
			t.Fatalf("Publish %s: duplicate %v, %v", ds[i].WebhookID, dups[i], err)
		}
	}

	msgs := env.readAll(t, len(ds))
	if len(msgs) != len(ds) {
		t.Fatalf("read %d messages, want %d", len(msgs), len(ds))
	}
	byID := map[string]*schema.Delivery{}
	for _, d := range ds {
		byID[d.WebhookID] = d
	}
	for _, m := range msgs {
		id := m.Headers().Get(HeaderWebhookID)
		d, ok := byID[id]
		if !ok {
			t.Errorf("unexpected or repeated message %q on %s", id, m.Subject())
			continue
		}
		delete(byID, id)
		if want := Destination(env.prefix, d); m.Subject() != want {
			t.Errorf("%s: subject %q, want %q", id, m.Subject(), want)
		}
		if !bytes.Equal(m.Data(), d.Body) {
			t.Errorf("%s: body %q, want %q", id, m.Data(), d.Body)
		}
		for k, vs := range natsHeader(d, HeaderOptions{}) {
			if got := m.Headers().Values(k); len(got) != 1 || got[0] != vs[0] {
				t.Errorf("%s: header %s = %q, want %q", id, k, got, vs)
			}
		}
	}
	if got := env.streamInfo(t).State.Msgs; got != uint64(len(ds)) {
		t.Errorf("stream holds %d messages, want %d", got, len(ds))
	}
}

func TestNATSDuplicateWebhookID(t *testing.T) {
	env := newNATSEnv(t)
	n := env.newNATS(t, env.config())

	first := delivery(t, "wh_dup", batchBody)
	if dup, err := n.Publish(testCtx(t), first); err != nil || dup {
		t.Fatalf("first Publish: duplicate %v, %v", dup, err)
	}
	// A retry of the same webhook-id, sequentially and then concurrently:
	// every call succeeds, says duplicate, and nothing is added.
	again := delivery(t, "wh_dup", strings.Replace(batchBody, "batch_abc", "batch_other", 1))
	if dup, err := n.Publish(testCtx(t), again); err != nil || !dup {
		t.Fatalf("repeat Publish: duplicate %v, %v; want a duplicate", dup, err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if dup, err := n.Publish(testCtx(t), again); err != nil || !dup {
				t.Errorf("concurrent repeat: duplicate %v, %v", dup, err)
			}
		})
	}
	wg.Wait()

	msgs := env.readAll(t, 1)
	if len(msgs) != 1 {
		t.Fatalf("stream has %d messages, want 1", len(msgs))
	}
	if !bytes.Equal(msgs[0].Data(), first.Body) {
		t.Errorf("stored body %q, want the first delivery's", msgs[0].Data())
	}
}

func TestNATSProvisioning(t *testing.T) {
	tests := []struct {
		name     string
		existing func(env *natsEnv) *jetstream.StreamConfig // nil: no stream beforehand
		wantErr  []string                                   // substrings of the NewNATS error
		wantLog  string
		check    func(t *testing.T, env *natsEnv, got jetstream.StreamConfig)
	}{
		{
			name: "absent stream is created",
			check: func(t *testing.T, env *natsEnv, got jetstream.StreamConfig) {
				if len(got.Subjects) != 1 || got.Subjects[0] != env.prefix+".>" {
					t.Errorf("subjects %q", got.Subjects)
				}
				if got.Storage != jetstream.FileStorage || got.Retention != jetstream.LimitsPolicy || got.Discard != jetstream.DiscardOld {
					t.Errorf("storage %v retention %v discard %v", got.Storage, got.Retention, got.Discard)
				}
				if got.Duplicates != 2*time.Hour || got.MaxAge != 7*24*time.Hour || got.Replicas != 1 {
					t.Errorf("duplicates %v max age %v replicas %d", got.Duplicates, got.MaxAge, got.Replicas)
				}
				if got.MaxMsgSize != 512<<10+natsHeaderRoom {
					t.Errorf("max msg size %d", got.MaxMsgSize)
				}
			},
		},
		{
			name: "narrower subjects are refused",
			existing: func(env *natsEnv) *jetstream.StreamConfig {
				return &jetstream.StreamConfig{Subjects: []string{env.prefix + ".batch.>"}}
			},
			wantErr: []string{"HOOKBRIDGE_NATS_STREAM", "HOOKBRIDGE_TOPIC_PREFIX", "does not modify", ".batch.>"},
		},
		{
			name: "another prefix is refused",
			existing: func(env *natsEnv) *jetstream.StreamConfig {
				return &jetstream.StreamConfig{Subjects: []string{env.prefix + "x.>"}}
			},
			wantErr: []string{"HOOKBRIDGE_NATS_STREAM", "HOOKBRIDGE_TOPIC_PREFIX"},
		},
		{
			name: "compatible stream is left untouched",
			existing: func(env *natsEnv) *jetstream.StreamConfig {
				return &jetstream.StreamConfig{Subjects: []string{env.prefix + ".>"}, MaxAge: time.Hour, Duplicates: time.Minute}
			},
			wantLog: "shorter duplicate window",
			check: func(t *testing.T, env *natsEnv, got jetstream.StreamConfig) {
				if got.MaxAge != time.Hour || got.Duplicates != time.Minute || got.MaxMsgSize > 0 {
					t.Errorf("stream was rewritten: max age %v duplicates %v max msg size %d", got.MaxAge, got.Duplicates, got.MaxMsgSize)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newNATSEnv(t)
			if tt.existing != nil {
				sc := tt.existing(env)
				sc.Name, sc.Storage = env.stream, jetstream.MemoryStorage
				if _, err := env.js.CreateStream(testCtx(t), *sc); err != nil {
					t.Fatal(err)
				}
			}
			var logs syncBuffer
			n, err := NewNATS(testCtx(t), env.nc, env.config(), zerolog.New(&logs))
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("NewNATS succeeded, want an error")
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close(testCtx(t))
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log %q lacks %q", logs.String(), tt.wantLog)
			}
			tt.check(t, env, env.streamInfo(t).Config)
			if _, err := n.Publish(testCtx(t), delivery(t, "wh_prov", batchBody)); err != nil {
				t.Errorf("Publish: %v", err)
			}
		})
	}
}

func TestSubjectsCapture(t *testing.T) {
	tests := []struct {
		subjects []string
		want     bool
	}{
		{[]string{"openai.>"}, true},
		{[]string{">"}, true},
		{[]string{"*.>"}, true},
		{[]string{"other.>", "openai.>"}, true},
		{[]string{"openai.batch.>"}, false},
		{[]string{"openai.*"}, false}, // misses openai.batch.completed
		{[]string{"openai"}, false},
		{[]string{"openaix.>"}, false},
		{[]string{"open.>"}, false},
		{nil, false}, // mirrors and sourced streams have no subjects
	}
	for _, tt := range tests {
		if got := subjectsCapture(tt.subjects, "openai.>"); got != tt.want {
			t.Errorf("subjectsCapture(%q, openai.>) = %v, want %v", tt.subjects, got, tt.want)
		}
	}
	if !subjectsCapture([]string{"acme.*.>"}, "acme.prod.>") || subjectsCapture([]string{"acme.prod.>"}, "acme.*.>") {
		t.Error("multi-token prefixes")
	}
}

func TestNATSCheckAndStreamLoss(t *testing.T) {
	env := newNATSEnv(t)
	n := env.newNATS(t, env.config())
	if err := n.Check(testCtx(t)); err != nil {
		t.Fatalf("Check on a healthy stream: %v", err)
	}
	if err := env.js.DeleteStream(testCtx(t), env.stream); err != nil {
		t.Fatal(err)
	}
	if err := n.Check(testCtx(t)); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("Check without the stream = %v, want ErrStreamNotFound", err)
	}
	// No stream answers: tried again until the budget is spent, and nothing
	// can have been stored.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := n.Publish(ctx, delivery(t, "wh_nostream", batchBody))
	if !errors.Is(err, jetstream.ErrNoStreamResponse) || maybeStoredErr(err) {
		t.Errorf("Publish without the stream = %v, want ErrNoStreamResponse, not maybe stored", err)
	}
	if got := n.Retries()[retryNoResponders]; got == 0 {
		t.Errorf("no retry counted for no responders")
	}

	// A subject captured by another stream must not be silently accepted;
	// the refusal is final, not tried again.
	other := env.stream + "_OTHER"
	if _, err := env.js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: other, Subjects: []string{env.prefix + ".>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = n.Publish(testCtx(t), delivery(t, "wh_otherstream", batchBody))
	if err == nil || !strings.Contains(err.Error(), "other than") || maybeStoredErr(err) {
		t.Errorf("Publish into another stream = %v, want a refusal naming the stream", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a refusal took %s: it was tried again", took)
	}
}

// maybeStoredErr is what ingest.MaybeStored checks.
func maybeStoredErr(err error) bool {
	var m interface{ MaybeStored() bool }
	return errors.As(err, &m) && m.MaybeStored()
}

// TestNATSAckTimeoutMaybeStored: a message that reaches a subscriber but
// never gets a JetStream ack is sent again each attempt, and the error says
// it may have been stored.
func TestNATSAckTimeoutMaybeStored(t *testing.T) {
	env := newNATSEnv(t)
	n := env.newNATS(t, env.config())
	if err := env.js.DeleteStream(testCtx(t), env.stream); err != nil {
		t.Fatal(err)
	}
	sub, err := env.nc.SubscribeSync(env.prefix + ".>") // takes the messages, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 3*natsAttemptTimeout)
	defer cancel()
	_, err = n.Publish(ctx, delivery(t, "wh_silent", batchBody))
	if !maybeStoredErr(err) {
		t.Errorf("Publish with no ack = %v, want a maybe-stored error", err)
	}
	retries := n.Retries()[retryTimeout]
	if retries < 1 || retries > 3 {
		t.Errorf("timeout retries = %d, want 1 to 3 in 3 attempt timeouts", retries)
	}
	// The last attempt's message may still be on its way to the subscriber.
	var got int
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got, _, _ = sub.Pending(); uint64(got) >= retries+1 || time.Now().After(deadline) {
			break
		}
	}
	if uint64(got) != retries+1 {
		t.Errorf("the message was sent %d times, want %d", got, retries+1)
	}
}

func TestNATSClose(t *testing.T) {
	env := newNATSEnv(t)
	n := env.newNATS(t, env.config())
	if _, err := n.Publish(testCtx(t), delivery(t, "wh_before_close", batchBody)); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(testCtx(t)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := n.Publish(testCtx(t), delivery(t, "wh_after_close", batchBody)); err == nil || maybeStoredErr(err) {
		t.Errorf("Publish after Close = %v, want an error, not maybe stored", err)
	}
	if !env.nc.IsConnected() {
		t.Error("Close closed the caller's connection")
	}
}

func TestNATSServerRestart(t *testing.T) {
	if os.Getenv(itNATSURL) != "" {
		t.Skip("needs an in-process server to stop and restart")
	}
	env := newNATSEnv(t)
	n := env.newNATS(t, env.config())
	if _, err := n.Publish(testCtx(t), delivery(t, "wh_r1", batchBody)); err != nil {
		t.Fatal(err)
	}
	if err := n.Check(testCtx(t)); err != nil {
		t.Fatal(err)
	}

	addr := strings.TrimPrefix(env.url, "nats://")
	env.emb.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := n.Publish(ctx, delivery(t, "wh_r2", batchBody)); err == nil {
		t.Errorf("Publish with the server down succeeded")
	}
	if err := n.Check(ctx); err == nil {
		t.Errorf("Check with the server down succeeded")
	}

	// A publish made while the server is down waits for the reconnect within
	// its budget instead of failing at once.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := n.Publish(ctx, delivery(t, "wh_r4", batchBody))
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	env.emb = startEmbedded(t, addr, env.dir)
	if err := <-done; err != nil {
		t.Errorf("Publish across the restart: %v", err)
	}
	waitConnected(t, env.nc)
	if err := n.Check(testCtx(t)); err != nil {
		t.Errorf("Check after restart: %v", err)
	}
	if _, err := n.Publish(testCtx(t), delivery(t, "wh_r3", batchBody)); err != nil {
		t.Errorf("Publish after restart: %v", err)
	}
	// The stream came back from disk with the first message and the
	// duplicate window.
	if dup, err := n.Publish(testCtx(t), delivery(t, "wh_r1", batchBody)); err != nil || !dup {
		t.Errorf("repeat Publish after restart: duplicate %v, %v; want a duplicate", dup, err)
	}
	// wh_r1, wh_r3, wh_r4 (+ wh_r2 only if it got through).
	if got := env.streamInfo(t).State.Msgs; got < 3 || got > 4 {
		t.Errorf("stream holds %d messages after restart, want 3 or 4", got)
	}
}

func TestNATSPublishAsync(t *testing.T) {
	env := newNATSEnv(t)
	n := env.newNATS(t, env.config())
	const count = 50
	results := make(chan error, count)
	for i := range count {
		if err := n.PublishAsync(fmt.Sprintf("%s.async.%d", env.prefix, i), []byte("x"), func(err error) { results <- err }); err != nil {
			t.Fatal(err)
		}
	}
	for range count {
		select {
		case err := <-results:
			if err != nil {
				t.Errorf("async publish: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("an async publish was never answered")
		}
	}
	if got := env.streamInfo(t).State.Msgs; got != count {
		t.Errorf("stream holds %d messages, want %d", got, count)
	}
	// Without a stream every one is told so, exactly once.
	if err := env.js.DeleteStream(testCtx(t), env.stream); err != nil {
		t.Fatal(err)
	}
	for i := range count {
		if err := n.PublishAsync(fmt.Sprintf("%s.async.%d", env.prefix, i), []byte("x"), func(err error) { results <- err }); err != nil {
			t.Fatal(err)
		}
	}
	for range count {
		select {
		case err := <-results:
			if !errors.Is(err, jetstream.ErrNoStreamResponse) {
				t.Errorf("async publish without a stream: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("an async publish was never answered")
		}
	}
	select {
	case err := <-results:
		t.Errorf("a callback ran twice: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestDedupWindow(t *testing.T) {
	ok := jetstream.StreamConfig{Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
		MaxAge: 7 * 24 * time.Hour, Duplicates: 2 * time.Hour, MaxMsgs: -1, MaxBytes: -1, MaxMsgsPerSubject: -1}
	tests := []struct {
		name   string
		change func(c *jetstream.StreamConfig)
		want   time.Duration
	}{
		{"hookbridge's own stream", func(*jetstream.StreamConfig) {}, 2 * time.Hour},
		{"unlimited age", func(c *jetstream.StreamConfig) { c.MaxAge = 0 }, 2 * time.Hour},
		{"age equal to the window", func(c *jetstream.StreamConfig) { c.MaxAge = 2 * time.Hour }, 2 * time.Hour},
		{"byte limit with discard new", func(c *jetstream.StreamConfig) { c.MaxBytes, c.Discard = 1<<30, jetstream.DiscardNew }, 2 * time.Hour},
		{"no window", func(c *jetstream.StreamConfig) { c.Duplicates = 0 }, 0},
		{"work queue", func(c *jetstream.StreamConfig) { c.Retention = jetstream.WorkQueuePolicy }, 0},
		{"interest", func(c *jetstream.StreamConfig) { c.Retention = jetstream.InterestPolicy }, 0},
		{"age below the window", func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour }, 0},
		{"message limit, discard old", func(c *jetstream.StreamConfig) { c.MaxMsgs = 1000 }, 0},
		{"byte limit, discard old", func(c *jetstream.StreamConfig) { c.MaxBytes = 1 << 30 }, 0},
		{"per-subject limit", func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 1 }, 0},
		{"mirror", func(c *jetstream.StreamConfig) { c.Mirror = &jetstream.StreamSource{Name: "X"} }, 0},
	}
	for _, tt := range tests {
		c := ok
		tt.change(&c)
		got, why := dedupWindow(c)
		if got != tt.want || (got == 0) == (why == "") {
			t.Errorf("%s: dedupWindow = %v, %q; want %v and a reason only for 0", tt.name, got, why, tt.want)
		}
	}
	// NewNATS reads it from the stream as it is.
	env := newNATSEnv(t)
	n := env.newNATS(t, env.config())
	if w, why := n.DedupWindow(); w != DefaultNATSDuplicates {
		t.Errorf("DedupWindow of a created stream = %v (%s), want %v", w, why, DefaultNATSDuplicates)
	}
}

func TestConnectUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	// A port just released: nothing listens there.
	e := startEmbedded(t, "127.0.0.1:0", t.TempDir())
	url := e.ClientURL()
	e.Shutdown()
	nc, err := Connect(ctx, ConnConfig{URL: strings.Replace(url, "nats://", "nats://user:s3cret@", 1)}, testLog(t))
	if err == nil {
		nc.Close()
		t.Fatal("Connect succeeded with no server")
	}
	if !strings.Contains(err.Error(), "HOOKBRIDGE_NATS_URL") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q: want HOOKBRIDGE_NATS_URL named and no password", err)
	}
}

// BenchmarkNATSPublish measures Publish at the concurrency of 64 HTTP
// connections, against an in-process server over loopback TCP
// (HOOKBRIDGE_BROKER=nats) and over the in-process connection (embedded).
func BenchmarkNATSPublish(b *testing.B) {
	env := newNATSEnv(b)
	conns := map[string]*nats.Conn{"tcp": env.nc}
	if env.emb != nil {
		inproc, err := env.emb.Connect(testLog(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(inproc.Close)
		conns["inproc"] = inproc
	}
	body := `{"id":"evt_685343","object":"event","created_at":1719168000,"type":"response.completed","data":{"id":"resp_abc123def456ghi789jkl012mno345pqr678stu901vwx234yz"},` +
		`"padding":"` + strings.Repeat("x", 220) + `"}`
	tmpl := delivery(b, "wh", body)
	var seq atomic.Uint64 // unique webhook-ids across every run
	for _, conn := range []string{"tcp", "inproc"} {
		nc := conns[conn]
		if nc == nil {
			continue
		}
		n, err := NewNATS(testCtx(b), nc, env.config(), testLog(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close(context.Background()) })
		b.Run(conn, func(b *testing.B) {
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					d := *tmpl
					d.WebhookID = "wh_" + strconv.FormatUint(seq.Add(1), 10)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := n.Publish(ctx, &d)
					cancel()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

func startEmbedded(t testing.TB, addr, dir string) *Embedded {
	t.Helper()
	e, err := StartEmbedded(EmbeddedConfig{Addr: addr, DataDir: dir}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// waitConnected waits, at most 30s, for the client to reconnect.
func waitConnected(t testing.TB, nc *nats.Conn) {
	t.Helper()
	for range 300 {
		if nc.IsConnected() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("not reconnected: %v", nc.Status())
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testLog logs through t until the test's cleanups are done; the client's
// handlers may still fire after that, when t.Log would panic.
func testLog(t testing.TB) zerolog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return zerolog.New(zerolog.ConsoleWriter{Out: w, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName}}).Level(zerolog.InfoLevel)
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func randHex(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// syncBuffer is a log sink safe for the client's callback goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
