package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestParseAck(t *testing.T) {
	noResp := nats.Header{"Status": {"503"}}
	for _, tc := range []struct {
		name    string
		data    string
		hdr     nats.Header
		seq     uint64
		dup     bool
		errCode jetstream.ErrorCode // of a *jetstream.APIError
		err     error
	}{
		{name: "stored", data: `{"stream":"OPENAI_WEBHOOKS","seq":12}`, seq: 12},
		{name: "duplicate with domain", data: `{"stream":"S","domain":"hub","seq":7,"duplicate":true}`, seq: 7, dup: true},
		{name: "duplicate as the server writes it", data: `{"stream":"S","seq":7,"duplicate": true}`, seq: 7, dup: true},
		{name: "not a duplicate", data: `{"stream":"S","seq":7,"duplicate":false}`, seq: 7},
		{name: "spaces", data: `{"stream": "S", "seq": 9}`, seq: 9},
		{name: "largest seq", data: `{"stream":"S","seq":18446744073709551615}`, seq: 18446744073709551615},
		{name: "seq last", data: `{"seq":3,"stream":"S"}`, seq: 3},
		{name: "stream full", data: `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"S","seq":0}`, errCode: 10077},
		{name: "kv conflict", data: `{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"}}`, errCode: jetstream.JSErrCodeStreamWrongLastSequence},
		{name: "stream named error", data: `{"stream":"error","seq":4}`, seq: 4},
		{name: "no responders", hdr: noResp, err: jetstream.ErrNoStreamResponse},
		{name: "empty", err: jetstream.ErrInvalidJSAck},
		{name: "not json", data: `+OK`, err: jetstream.ErrInvalidJSAck},
		{name: "no stream", data: `{"seq":1}`, err: jetstream.ErrInvalidJSAck},
		{name: "empty stream", data: `{"stream":"","seq":1}`, err: jetstream.ErrInvalidJSAck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := parseAck([]byte(tc.data), tc.hdr)
			switch {
			case tc.errCode != 0:
				var apiErr *jetstream.APIError
				if !errors.As(r.err, &apiErr) || apiErr.ErrorCode != tc.errCode {
					t.Fatalf("err = %v, want API error %d", r.err, tc.errCode)
				}
			case tc.err != nil:
				if !errors.Is(r.err, tc.err) {
					t.Fatalf("err = %v, want %v", r.err, tc.err)
				}
			case r.err != nil:
				t.Fatalf("err = %v", r.err)
			case r.seq != tc.seq || r.duplicate != tc.dup:
				t.Fatalf("seq %d dup %v, want %d %v", r.seq, r.duplicate, tc.seq, tc.dup)
			}
		})
	}
}

// FuzzParseAck compares the hand-written reader with encoding/json on every
// shape the server sends: what it reads must be what json reads.
func FuzzParseAck(f *testing.F) {
	f.Add("OPENAI_WEBHOOKS", "", uint64(1), false, 0, "")
	f.Add("S", "hub", uint64(1<<63), true, 0, "")
	f.Add(`we"ird`, `"error":{`, uint64(5), true, 0, "")
	f.Add("S", "", uint64(0), false, 10071, "wrong last sequence: 5")
	f.Fuzz(func(t *testing.T, stream, domain string, seq uint64, dup bool, code int, desc string) {
		type apiErr struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		}
		ack := struct {
			Error     *apiErr `json:"error,omitempty"`
			Stream    string  `json:"stream"`
			Domain    string  `json:"domain,omitempty"`
			Sequence  uint64  `json:"seq"`
			Duplicate bool    `json:"duplicate,omitempty"`
		}{Stream: stream, Domain: domain, Sequence: seq, Duplicate: dup}
		if code != 0 {
			ack.Error = &apiErr{Code: 400, ErrCode: code, Description: desc}
		}
		data, err := json.Marshal(ack)
		if err != nil {
			t.Skip()
		}
		got, want := parseAck(data, nil), parseAckJSON(data)
		if (got.err == nil) != (want.err == nil) || got.seq != want.seq || got.duplicate != want.duplicate {
			t.Fatalf("%s: parseAck = %+v, encoding/json = %+v", data, got, want)
		}
	})
}

// newTestMux is an ackMux on the test's connection, with a core subscriber
// on subj that swallows messages, so that a publish there waits for an ack
// that never comes.
func newTestMux(t *testing.T, env *natsEnv, subj string) *ackMux {
	t.Helper()
	m, err := newAckMux(env.nc, 8, 8, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.close)
	sub, err := env.nc.SubscribeSync(subj)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := env.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return m
}

func pendingAcks(m *ackMux) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending)
}

func TestAckMuxAbandonedWait(t *testing.T) {
	env := newNATSEnv(t)
	subj := env.prefix + ".void"
	m := newTestMux(t, env, subj)
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, sent, err := m.publish(ctx, &nats.Msg{Subject: subj, Data: []byte(fmt.Sprint(i))})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || !sent {
			t.Fatalf("publish without an ack = sent %v, %v; want sent and the deadline", sent, err)
		}
	}
	if n := pendingAcks(m); n != 0 {
		t.Errorf("%d waits left behind by callers that gave up", n)
	}
	// Their semaphore slots came back: more publishes than slots still run.
	n := env.newNATS(t, env.config())
	for i := range cap(m.sem) + 2 {
		if _, err := n.Publish(testCtx(t), delivery(t, fmt.Sprintf("wh_ab%d", i), batchBody)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAckMuxFailsPendingOnDisconnect(t *testing.T) {
	if os.Getenv(itNATSURL) != "" {
		t.Skip("needs an in-process server to stop")
	}
	env := newNATSEnv(t)
	subj := env.prefix + ".void"
	m := newTestMux(t, env, subj)
	start := time.Now()
	errc := pendingPublish(t, m, subj)
	env.emb.Shutdown()
	select {
	case err := <-errc:
		if !errors.Is(err, errAckLost) {
			t.Fatalf("pending publish at disconnect = %v, want errAckLost", err)
		}
		t.Logf("failed %v after it started", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("a publish pending at disconnect waited for its deadline")
	}
}

func TestAckMuxClose(t *testing.T) {
	env := newNATSEnv(t)
	subj := env.prefix + ".void"
	m := newTestMux(t, env, subj)
	errc := pendingPublish(t, m, subj)
	m.close()
	if err := <-errc; !errors.Is(err, errMuxClosed) {
		t.Fatalf("pending publish at close = %v, want errMuxClosed", err)
	}
	if _, sent, err := m.publish(testCtx(t), &nats.Msg{Subject: subj}); !errors.Is(err, errMuxClosed) || sent {
		t.Fatalf("publish after close = sent %v, %v; want errMuxClosed, not sent", sent, err)
	}
	if err := m.publishAsync(&nats.Msg{Subject: subj}, func(error) { t.Error("callback after close") }); !errors.Is(err, errMuxClosed) {
		t.Fatalf("publishAsync after close = %v, want errMuxClosed", err)
	}
}

// An asynchronous publish without an ack is told so by the sweep, once; one
// pending at close is told errMuxClosed; beyond maxAsync none is taken.
func TestAckMuxAsync(t *testing.T) {
	env := newNATSEnv(t)
	subj := env.prefix + ".void"
	m := newTestMux(t, env, subj)
	results := make(chan error, 16)
	start := time.Now()
	if err := m.publishAsync(&nats.Msg{Subject: subj}, func(err error) { results <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-results:
		if !errors.Is(err, errAckTimeout) {
			t.Fatalf("async publish without an ack: %v, want errAckTimeout", err)
		}
		// The sweep's clock is up to one interval stale, and it runs once per
		// interval.
		if took := time.Since(start); took < asyncAckTimeout-sweepEvery || took > asyncAckTimeout+2*sweepEvery {
			t.Errorf("given up after %s, want %s to %s", took, asyncAckTimeout-sweepEvery, asyncAckTimeout+2*sweepEvery)
		}
	case <-time.After(asyncAckTimeout + 5*time.Second):
		t.Fatal("async publish never answered")
	}
	for range m.maxAsync {
		if err := m.publishAsync(&nats.Msg{Subject: subj}, func(err error) { results <- err }); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.publishAsync(&nats.Msg{Subject: subj}, func(error) {}); !errors.Is(err, errTooManyPending) {
		t.Errorf("async publish beyond the bound = %v, want errTooManyPending", err)
	}
	m.close()
	for range m.maxAsync {
		if err := <-results; !errors.Is(err, errMuxClosed) {
			t.Errorf("async publish pending at close: %v, want errMuxClosed", err)
		}
	}
	select {
	case err := <-results:
		t.Errorf("a callback ran twice: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}

// pendingPublish starts a publish to subj (whose ack never comes, see
// newTestMux) with a 10s budget and returns once it waits for its ack; its
// error arrives on the channel.
func pendingPublish(t *testing.T, m *ackMux, subj string) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, err := m.publish(ctx, &nats.Msg{Subject: subj, Data: []byte("x")})
		errc <- err
	}()
	waitFor(t, func() bool { return pendingAcks(m) == 1 })
	return errc
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A synchronous publish whose ack does not come within the attempt timeout
// is told so (by the next sweep), sent, so that the caller can send again
// within its own budget.
func TestAckMuxAttemptTimeout(t *testing.T) {
	env := newNATSEnv(t)
	subj := env.prefix + ".void"
	newTestMux(t, env, subj) // the subscriber that swallows messages
	m, err := newAckMux(env.nc, 8, 8, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	start := time.Now()
	_, sent, err := m.publish(testCtx(t), &nats.Msg{Subject: subj, Data: []byte("x")})
	if !errors.Is(err, errAckTimeout) || !sent {
		t.Fatalf("publish without an ack = sent %v, %v; want sent and errAckTimeout", sent, err)
	}
	if took := time.Since(start); took > 100*time.Millisecond+3*sweepEvery {
		t.Errorf("errAckTimeout after %s", took)
	}
	if n := pendingAcks(m); n != 0 {
		t.Errorf("%d waits left behind", n)
	}
}
