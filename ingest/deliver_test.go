package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/schema"
)

// recordingObserver keeps what the handler reported about dedup.
type recordingObserver struct {
	nopObserver
	mu          sync.Mutex
	paths       []DedupPath
	republished []string
	dups        int
}

func (o *recordingObserver) DedupPath(p DedupPath) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.paths = append(o.paths, p)
}

func (o *recordingObserver) Published(_ *schema.Event, _ time.Duration, dup bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if dup {
		o.dups++
	}
}

func (o *recordingObserver) Republished(r string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.republished = append(o.republished, r)
}

func (o *recordingObserver) results() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.republished...)
}

// bodyCreatedAt is testBody created at ts.
func bodyCreatedAt(ts int64) string {
	return strings.Replace(testBody, `"created_at":1790000000`, `"created_at":`+strconv.FormatInt(ts, 10), 1)
}

// TestDeliverPaths: which path each delivery takes, and what it asks of the
// store. testNow is the verifier's clock; the margin defaults to the
// tolerance (5 min) + 1 min.
func TestDeliverPaths(t *testing.T) {
	const window = 2 * time.Hour
	now := testNow.Unix()
	tests := []struct {
		name      string
		dedup     bool
		window    time.Duration
		body      string
		path      DedupPath
		claims    int
		completes int
	}{
		{"young with a store", true, window, bodyCreatedAt(now), PathWindow, 0, 1},
		{"young, created 1h53m ago", true, window, bodyCreatedAt(now - 6779), PathWindow, 0, 1},
		{"old: created 1h54m ago", true, window, bodyCreatedAt(now - 6841), PathStore, 1, 1},
		{"old: created 3h ago", true, window, bodyCreatedAt(now - 3*3600), PathStore, 1, 1},
		{"created 5 min ahead: inside the margin", true, window, bodyCreatedAt(now + 300), PathWindow, 0, 1},
		{"created 7 min ahead: says nothing", true, window, bodyCreatedAt(now + 420), PathStore, 1, 1},
		{"no created_at", true, window, `{"type":"batch.completed","data":{}}`, PathStore, 1, 1},
		{"dead letter", true, window, "not json", PathStore, 1, 1},
		{"no window: every delivery claims", true, 0, bodyCreatedAt(now), PathStore, 1, 1},
		{"window without a store: old ones too", false, window, bodyCreatedAt(now - 3*3600), PathWindow, 0, 0},
		{"window without a store: dead letters too", false, window, "not json", PathWindow, 0, 0},
		{"neither", false, 0, bodyCreatedAt(now), PathNone, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := &recordingObserver{}
			var dd *fakeDeduper
			if tt.dedup {
				dd = &fakeDeduper{}
			}
			pub := &fakePublisher{}
			h := newTestHandlerWith(t, HandlerConfig{Publisher: pub, Deduper: dd, BrokerWindow: tt.window, Observer: obs})
			w, _ := do(t, h, signedRequest(t, "wh_path", now, tt.body))
			if w.Code != 200 || pub.count() != 1 {
				t.Fatalf("status %d, published %d", w.Code, pub.count())
			}
			if len(obs.paths) != 1 || obs.paths[0] != tt.path {
				t.Errorf("paths %v, want %v", obs.paths, tt.path)
			}
			if dd != nil {
				claims, completes, releases := dd.calls()
				if len(claims) != tt.claims || len(completes) != tt.completes || len(releases) != 0 {
					t.Errorf("claims %v completes %v releases %v; want %d claims, %d completes", claims, completes, releases, tt.claims, tt.completes)
				}
			}
		})
	}
}

// On the window path a repeat is answered duplicate by the broker and
// recorded again; concurrent copies are all 2xx, none 409.
func TestDeliverWindowDuplicates(t *testing.T) {
	obs := &recordingObserver{}
	dd := &fakeDeduper{status: ClaimInFlight} // would 409 if it were asked
	pub := &fakePublisher{}
	h := newTestHandlerWith(t, HandlerConfig{Publisher: pub, Deduper: dd, BrokerWindow: 2 * time.Hour, Observer: obs})
	const copies = 30
	codes := make([]string, copies)
	var wg sync.WaitGroup
	for i := range copies {
		wg.Go(func() {
			w, resp := do(t, h, signedRequest(t, "wh_hot", testNow.Unix(), testBody))
			codes[i] = fmt.Sprintf("%d %s", w.Code, resp.Status+resp.Error)
		})
	}
	wg.Wait()
	count := map[string]int{}
	for _, c := range codes {
		count[c]++
	}
	if count["200 published"] != 1 || count["200 duplicate"] != copies-1 {
		t.Errorf("answers %v, want 1 published and %d duplicate", count, copies-1)
	}
	claims, completes, _ := dd.calls()
	if pub.count() != 1 || len(claims) != 0 || len(completes) != copies || obs.dups != copies-1 {
		t.Errorf("published %d, claims %d, records %d, duplicates observed %d", pub.count(), len(claims), len(completes), obs.dups)
	}
}

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// storingPublisher stores every message but loses the first answer, as a
// connection dropping after the send does.
type storingPublisher struct {
	fakePublisher
	lost bool
}

func (p *storingPublisher) Publish(ctx context.Context, d *schema.Delivery) (bool, error) {
	dup, err := p.fakePublisher.Publish(ctx, d)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.lost {
		p.lost = true
		return false, fmt.Errorf("publish: %w", maybeStoredErr{})
	}
	return dup, err
}

// A publish whose outcome is unknown is answered 503 and re-published in
// the background until the broker answers; then the key is recorded.
func TestDeliverRepublish(t *testing.T) {
	for _, tt := range []struct {
		name     string
		pub      Publisher
		dedup    bool
		body     string
		result   string
		releases int
	}{
		{"never arrived, window path", &fakePublisher{err: maybeStoredErr{}, failFirst: 2}, true, testBody, RepublishStored, 0},
		{"had arrived, window path", &storingPublisher{}, true, testBody, RepublishDuplicate, 0},
		{"had arrived, store path", &storingPublisher{}, true, bodyCreatedAt(testNow.Unix() - 3*3600), RepublishDuplicate, 1},
		{"without a store", &storingPublisher{}, false, testBody, RepublishDuplicate, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			obs := &recordingObserver{}
			var dd *fakeDeduper
			if tt.dedup {
				dd = &fakeDeduper{}
			}
			h := newTestHandlerWith(t, HandlerConfig{Publisher: tt.pub, Deduper: dd, BrokerWindow: 2 * time.Hour, Observer: obs})
			w, resp := do(t, h, signedRequest(t, "wh_unknown", testNow.Unix(), tt.body))
			if w.Code != 503 || resp.Error != "unavailable" {
				t.Fatalf("status %d %+v, want 503 unavailable", w.Code, resp)
			}
			waitFor(t, "re-publish settled", func() bool { return len(obs.results()) == 1 })
			if got := obs.results(); got[0] != tt.result {
				t.Errorf("re-publish result %v, want %s", got, tt.result)
			}
			if h.RepublishPending() != 0 {
				t.Errorf("%d still pending", h.RepublishPending())
			}
			if dd != nil {
				_, completes, releases := dd.calls()
				if len(completes) != 1 || completes[0] != "wh_unknown" || len(releases) != tt.releases {
					t.Errorf("records %v releases %v, want the key recorded once and %d releases", completes, releases, tt.releases)
				}
			}
		})
	}
}

// A failure that says nothing was stored is not re-published; neither is
// anything without a broker window (Kafka: a repeat would be stored again).
func TestDeliverNoRepublish(t *testing.T) {
	for _, tt := range []struct {
		name   string
		err    error
		window time.Duration
	}{
		{"refused", errors.New("no responders"), 2 * time.Hour},
		{"no window", maybeStoredErr{}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			obs := &recordingObserver{}
			pub := &fakePublisher{err: tt.err}
			h := newTestHandlerWith(t, HandlerConfig{Publisher: pub, BrokerWindow: tt.window, Observer: obs})
			if w, _ := do(t, h, signedRequest(t, "wh_x", testNow.Unix(), testBody)); w.Code != 503 {
				t.Fatalf("status %d", w.Code)
			}
			time.Sleep(50 * time.Millisecond)
			if pub.attempts() != 1 || h.RepublishPending() != 0 || len(obs.results()) != 0 {
				t.Errorf("attempts %d, pending %d, results %v: re-published", pub.attempts(), h.RepublishPending(), obs.results())
			}
		})
	}
}

// The re-publisher is bounded: beyond RepublishMax a delivery is dropped
// with a log line; past half the window it gives up; at Close it drops what
// is left, naming the ids.
func TestRepublishBounds(t *testing.T) {
	t.Run("full", func(t *testing.T) {
		obs := &recordingObserver{}
		pub := &fakePublisher{err: maybeStoredErr{}}
		var logs syncBuffer
		h := newTestHandlerWith(t, HandlerConfig{Publisher: pub, BrokerWindow: 2 * time.Hour, Observer: obs,
			RepublishMax: 2, Log: zerolog.New(&logs)})
		for i := range 3 {
			do(t, h, signedRequest(t, fmt.Sprintf("wh_full_%d", i), testNow.Unix(), testBody))
		}
		if got := obs.results(); len(got) != 1 || got[0] != RepublishDropped {
			t.Errorf("results %v, want one dropped", got)
		}
		if !strings.Contains(logs.String(), "re-publish queue is full") || !strings.Contains(logs.String(), "wh_full_2") {
			t.Errorf("no log line for the dropped delivery:\n%s", logs.String())
		}
	})
	t.Run("gives up after half the window", func(t *testing.T) {
		obs := &recordingObserver{}
		pub := &fakePublisher{err: maybeStoredErr{}}
		h := newTestHandlerWith(t, HandlerConfig{Publisher: pub, BrokerWindow: 600 * time.Millisecond,
			WindowMargin: DefaultTolerance, Observer: obs})
		start := time.Now()
		do(t, h, signedRequest(t, "wh_lost", testNow.Unix(), testBody))
		waitFor(t, "given up", func() bool { return len(obs.results()) == 1 })
		if got := obs.results(); got[0] != RepublishGaveUp {
			t.Errorf("result %v, want gave_up", got)
		}
		if took := time.Since(start); took < 300*time.Millisecond {
			t.Errorf("gave up after %s, before half the window", took)
		}
		if pub.attempts() < 2 {
			t.Errorf("%d attempts: never re-published", pub.attempts())
		}
	})
	t.Run("close drops what is left", func(t *testing.T) {
		obs := &recordingObserver{}
		pub := &fakePublisher{err: maybeStoredErr{}}
		var logs syncBuffer
		h := newTestHandlerWith(t, HandlerConfig{Publisher: pub, BrokerWindow: 2 * time.Hour, Observer: obs, Log: zerolog.New(&logs)})
		do(t, h, signedRequest(t, "wh_left", testNow.Unix(), testBody))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if got := obs.results(); len(got) != 1 || got[0] != RepublishDropped {
			t.Errorf("results %v, want one dropped", got)
		}
		if !strings.Contains(logs.String(), "shutting down with publish outcomes still unknown") || !strings.Contains(logs.String(), "wh_left") {
			t.Errorf("no shutdown log line naming the id:\n%s", logs.String())
		}
	})
	t.Run("close settles what it can", func(t *testing.T) {
		obs := &recordingObserver{}
		pub := &fakePublisher{err: maybeStoredErr{}, failFirst: 1}
		h := newTestHandlerWith(t, HandlerConfig{Publisher: pub, BrokerWindow: 2 * time.Hour, Observer: obs})
		h.rep.cancel() // hold the background loop, so that Close finds the delivery queued
		<-h.rep.done
		h.rep.done = make(chan struct{})
		close(h.rep.done)
		do(t, h, signedRequest(t, "wh_late", testNow.Unix(), testBody))
		if err := h.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := obs.results(); len(got) != 1 || got[0] != RepublishStored {
			t.Errorf("results %v, want stored at close", got)
		}
	})
}

func TestHandlerConfigWindow(t *testing.T) {
	s, _ := ParseSecret(testSecret)
	v, _ := NewVerifier([]Secret{s})
	for _, cfg := range []HandlerConfig{
		{Verifier: v, Publisher: &fakePublisher{}, BrokerWindow: -time.Second},
		{Verifier: v, Publisher: &fakePublisher{}, BrokerWindow: time.Hour, WindowMargin: time.Minute}, // below the tolerance
	} {
		if _, err := NewHandler(cfg); err == nil {
			t.Errorf("NewHandler(window %v, margin %v) accepted", cfg.BrokerWindow, cfg.WindowMargin)
		}
	}
	var _ http.Handler = (*Handler)(nil)
}

// syncBuffer is a log sink for the handler's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// refusingPublisher loses the first answer for every id, then refuses bad
// for good and stores the rest.
type refusingPublisher struct {
	mu   sync.Mutex
	seen map[string]bool
	bad  string
}

func (p *refusingPublisher) Publish(_ context.Context, d *schema.Delivery) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.seen[d.WebhookID] {
		p.seen[d.WebhookID] = true
		return false, maybeStoredErr{}
	}
	if d.WebhookID == p.bad {
		return false, errors.New("refused")
	}
	return false, nil
}

// A delivery the broker keeps refusing does not hold up the ones behind it.
func TestRepublishNoHeadOfLineBlocking(t *testing.T) {
	obs := &recordingObserver{}
	pub := &refusingPublisher{seen: map[string]bool{}, bad: "wh_refused"}
	h := newTestHandlerWith(t, HandlerConfig{Publisher: pub, BrokerWindow: 2 * time.Hour, Observer: obs})
	for _, id := range []string{"wh_refused", "wh_fine"} {
		if w, _ := do(t, h, signedRequest(t, id, testNow.Unix(), testBody)); w.Code != 503 {
			t.Fatalf("%s: status %d", id, w.Code)
		}
	}
	waitFor(t, "the second delivery settled", func() bool { return len(obs.results()) == 1 })
	if got := obs.results(); got[0] != RepublishStored || h.RepublishPending() != 1 {
		t.Errorf("results %v, pending %d; want the second stored and the first still pending", got, h.RepublishPending())
	}
}
