package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/schema"
)

const testSecret = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="

var testNow = time.Unix(1_790_000_000, 0)

const testBody = `{"id":"evt_1","object":"event","created_at":1790000000,"type":"batch.completed","data":{"id":"batch_1"}}`

// fakePublisher records deliveries; err, if set, fails every publish. It
// answers duplicate for a dedup key it already stored, as JetStream does
// within its window.
type fakePublisher struct {
	mu    sync.Mutex
	got   []*schema.Delivery
	calls int
	err   error
	// failFirst, if set, fails the first that many publishes with err and
	// lets the later ones through.
	failFirst int
	wait      chan struct{} // if set, Publish blocks until it is closed
}

func (p *fakePublisher) Publish(ctx context.Context, d *schema.Delivery) (bool, error) {
	if p.wait != nil {
		select {
		case <-p.wait:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.err != nil && (p.failFirst == 0 || p.calls <= p.failFirst) {
		return false, p.err
	}
	for _, g := range p.got {
		if g.DedupKey() == d.DedupKey() {
			return true, nil
		}
	}
	p.got = append(p.got, d)
	return false, nil
}

func (p *fakePublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

func (p *fakePublisher) attempts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// maybeStoredErr is a publish failure whose outcome is unknown.
type maybeStoredErr struct{}

func (maybeStoredErr) Error() string     { return "no ack in time" }
func (maybeStoredErr) MaybeStored() bool { return true }

// fakeDeduper records calls; claim answers with status/err.
type fakeDeduper struct {
	mu                        sync.Mutex
	status                    ClaimStatus
	err                       error
	claims, completes, relses []string
	owners                    []Owner // passed to Release
}

const fakeOwner Owner = 0x5eed

func (d *fakeDeduper) Claim(_ context.Context, id string) (ClaimStatus, Owner, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.claims = append(d.claims, id)
	if d.status == ClaimNew {
		return d.status, fakeOwner, d.err
	}
	return d.status, 0, d.err
}

func (d *fakeDeduper) Complete(_ context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.completes = append(d.completes, id)
	return nil
}

func (d *fakeDeduper) Release(_ context.Context, id string, owner Owner) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.relses = append(d.relses, id)
	d.owners = append(d.owners, owner)
	return nil
}

func (d *fakeDeduper) calls() (claims, completes, releases []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.claims...), append([]string(nil), d.completes...), append([]string(nil), d.relses...)
}

// signRaw returns the v1 signature of id.ts.body under testSecret.
func signRaw(t testing.TB, id, ts string, body []byte) string {
	t.Helper()
	s, err := ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := Sign(s, id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func signedRequest(t testing.TB, id string, ts int64, body string) *http.Request {
	t.Helper()
	tss := strconv.FormatInt(ts, 10)
	r := httptest.NewRequest(http.MethodPost, "/webhooks/openai", strings.NewReader(body))
	r.Header.Set("webhook-id", id)
	r.Header.Set("webhook-timestamp", tss)
	r.Header.Set("webhook-signature", signRaw(t, id, tss, []byte(body)))
	r.Header.Set("Content-Type", "application/json")
	return r
}

func newTestHandler(t testing.TB, pub Publisher, dd Deduper) *Handler {
	t.Helper()
	return newTestHandlerWith(t, HandlerConfig{Publisher: pub, Deduper: dd})
}

// newTestHandlerWith fills in the verifier and the test defaults around cfg.
func newTestHandlerWith(t testing.TB, cfg HandlerConfig) *Handler {
	t.Helper()
	s, err := ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier([]Secret{s}, WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Verifier = v
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 4096
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 200 * time.Millisecond
	}
	if dd, ok := cfg.Deduper.(*fakeDeduper); ok && dd == nil {
		cfg.Deduper = nil // a typed nil in the interface would not be "off"
	}
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

type response struct {
	Status  string `json:"status"`
	Error   string `json:"error"`
	Message string `json:"message"`
}

func do(t testing.TB, h http.Handler, r *http.Request) (*httptest.ResponseRecorder, response) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var resp response
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatalf("response body is not JSON: %q: %v", w.Body.String(), err)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	return w, resp
}

// TestHandler_StatusTable walks every row of the status table.
func TestHandler_StatusTable(t *testing.T) {
	now := testNow.Unix()
	tests := []struct {
		name       string
		req        func(t *testing.T) *http.Request
		pubErr     error
		dedup      *fakeDeduper
		wantStatus int
		wantCode   string
		wantPub    int    // deliveries published
		wantSubj   string // dead-letter reason, if any
		retryAfter bool
	}{
		{name: "published", req: func(t *testing.T) *http.Request { return signedRequest(t, "wh_1", now, testBody) },
			wantStatus: 200, wantCode: "published", wantPub: 1},
		{name: "duplicate of completed", dedup: &fakeDeduper{status: ClaimDone},
			req:        func(t *testing.T) *http.Request { return signedRequest(t, "wh_1", now, testBody) },
			wantStatus: 200, wantCode: "duplicate"},
		{name: "dead-lettered non-JSON", req: func(t *testing.T) *http.Request { return signedRequest(t, "wh_1", now, "not json") },
			wantStatus: 200, wantCode: "deadlettered", wantPub: 1, wantSubj: schema.ReasonNotJSON},
		{name: "dead-lettered unroutable type", req: func(t *testing.T) *http.Request {
			return signedRequest(t, "wh_1", now, `{"type":"Batch Completed","data":{}}`)
		}, wantStatus: 200, wantCode: "deadlettered", wantPub: 1, wantSubj: schema.ReasonUnroutableType},
		{name: "unknown routable type published", req: func(t *testing.T) *http.Request {
			return signedRequest(t, "wh_1", now, `{"id":"evt_2","type":"brand.new_thing","data":{"id":"x"}}`)
		}, wantStatus: 200, wantCode: "published", wantPub: 1},
		{name: "missing webhook-id", req: func(t *testing.T) *http.Request {
			r := signedRequest(t, "wh_1", now, testBody)
			r.Header.Del("webhook-id")
			return r
		}, wantStatus: 400, wantCode: "bad_request"},
		{name: "empty webhook-signature", req: func(t *testing.T) *http.Request {
			r := signedRequest(t, "wh_1", now, testBody)
			r.Header.Set("webhook-signature", "")
			return r
		}, wantStatus: 400, wantCode: "bad_request"},
		{name: "malformed timestamp", req: func(t *testing.T) *http.Request {
			r := signedRequest(t, "wh_1", now, testBody)
			r.Header.Set("webhook-timestamp", "yesterday")
			return r
		}, wantStatus: 400, wantCode: "bad_request"},
		{name: "timestamp too old", req: func(t *testing.T) *http.Request { return signedRequest(t, "wh_1", now-301, testBody) },
			wantStatus: 401, wantCode: "invalid_signature"},
		{name: "timestamp too new", req: func(t *testing.T) *http.Request { return signedRequest(t, "wh_1", now+301, testBody) },
			wantStatus: 401, wantCode: "invalid_signature"},
		{name: "no signature matches", req: func(t *testing.T) *http.Request {
			r := signedRequest(t, "wh_1", now, testBody)
			r.Body = io.NopCloser(strings.NewReader(strings.Replace(testBody, "batch_1", "batch_2", 1)))
			return r
		}, wantStatus: 401, wantCode: "invalid_signature"},
		{name: "wrong path", req: func(t *testing.T) *http.Request {
			r := signedRequest(t, "wh_1", now, testBody)
			r.URL.Path = "/webhooks/openai/../admin"
			return r
		}, wantStatus: 404, wantCode: "not_found"},
		{name: "wrong method", req: func(t *testing.T) *http.Request {
			return httptest.NewRequest(http.MethodGet, "/webhooks/openai", nil)
		}, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "in flight", dedup: &fakeDeduper{status: ClaimInFlight},
			req:        func(t *testing.T) *http.Request { return signedRequest(t, "wh_1", now, testBody) },
			wantStatus: 409, wantCode: "in_flight", retryAfter: true},
		{name: "too large by Content-Length", req: func(t *testing.T) *http.Request {
			return signedRequest(t, "wh_1", now, `{"type":"batch.completed","pad":"`+strings.Repeat("x", 5000)+`"}`)
		}, wantStatus: 413, wantCode: "too_large"},
		{name: "too large without Content-Length", req: func(t *testing.T) *http.Request {
			r := signedRequest(t, "wh_1", now, `{"pad":"`+strings.Repeat("x", 5000)+`"}`)
			r.ContentLength = -1
			return r
		}, wantStatus: 413, wantCode: "too_large"},
		{name: "broker unavailable", pubErr: errors.New("no responders"),
			req:        func(t *testing.T) *http.Request { return signedRequest(t, "wh_1", now, testBody) },
			wantStatus: 503, wantCode: "unavailable", retryAfter: true},
		{name: "dedup store unavailable", dedup: &fakeDeduper{err: errors.New("kv down")},
			req:        func(t *testing.T) *http.Request { return signedRequest(t, "wh_1", now, testBody) },
			wantStatus: 503, wantCode: "unavailable", retryAfter: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &fakePublisher{err: tt.pubErr}
			var dd Deduper
			if tt.dedup != nil {
				dd = tt.dedup
			}
			h := newTestHandler(t, pub, dd)
			w, resp := do(t, h, tt.req(t))
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", w.Code, tt.wantStatus, w.Body)
			}
			code := resp.Status + resp.Error
			if code != tt.wantCode {
				t.Errorf("code = %q, want %q", code, tt.wantCode)
			}
			if w.Code >= 300 && resp.Message == "" {
				t.Errorf("error response without a message: %s", w.Body)
			}
			if got := pub.count(); got != tt.wantPub {
				t.Errorf("published %d, want %d", got, tt.wantPub)
			}
			if tt.wantSubj != "" && pub.count() == 1 {
				if d := pub.got[0]; d.Event != nil || d.DeadLetterReason != tt.wantSubj {
					t.Errorf("dead letter = (event %v, reason %q), want reason %q", d.Event, d.DeadLetterReason, tt.wantSubj)
				}
			}
			if ra := w.Header().Get("Retry-After"); tt.retryAfter != (ra != "") {
				t.Errorf("Retry-After = %q, want present=%v", ra, tt.retryAfter)
			}
			if tt.wantStatus == 405 && w.Header().Get("Allow") != "POST" {
				t.Errorf("Allow = %q, want POST", w.Header().Get("Allow"))
			}
			if w.Code == 301 || w.Code == 302 || w.Code == 410 {
				t.Errorf("status %d is never allowed", w.Code)
			}
		})
	}
}

// Unverified input must never reach the dedup store or the broker.
func TestHandler_RejectedRequestsTouchNothing(t *testing.T) {
	pub, dd := &fakePublisher{}, &fakeDeduper{}
	h := newTestHandler(t, pub, dd)
	bad := []*http.Request{
		signedRequest(t, "wh_1", testNow.Unix()-1000, testBody),
		func() *http.Request {
			r := signedRequest(t, "wh_1", testNow.Unix(), testBody)
			r.Header.Set("webhook-signature", "v1,AAAA")
			return r
		}(),
		httptest.NewRequest(http.MethodPut, "/webhooks/openai", strings.NewReader(testBody)),
	}
	for _, r := range bad {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code < 400 {
			t.Fatalf("status %d for a bad request", w.Code)
		}
	}
	if pub.count() != 0 || len(dd.claims) != 0 {
		t.Fatalf("rejected requests reached the broker (%d) or the dedup store (%d)", pub.count(), len(dd.claims))
	}
}

func TestHandler_ClaimPublishCompleteRelease(t *testing.T) {
	t.Run("success completes", func(t *testing.T) {
		dd := &fakeDeduper{}
		h := newTestHandler(t, &fakePublisher{}, dd)
		do(t, h, signedRequest(t, "wh_ok", testNow.Unix(), testBody))
		if len(dd.completes) != 1 || len(dd.relses) != 0 {
			t.Fatalf("completes %v releases %v", dd.completes, dd.relses)
		}
	})
	t.Run("failure releases the claim it took", func(t *testing.T) {
		dd := &fakeDeduper{}
		h := newTestHandler(t, &fakePublisher{err: errors.New("down")}, dd)
		do(t, h, signedRequest(t, "wh_bad", testNow.Unix(), testBody))
		if len(dd.completes) != 0 || len(dd.relses) != 1 || dd.relses[0] != "wh_bad" || dd.owners[0] != fakeOwner {
			t.Fatalf("completes %v releases %v owners %v", dd.completes, dd.relses, dd.owners)
		}
	})
	t.Run("publish timeout is 503 within the budget", func(t *testing.T) {
		dd := &fakeDeduper{}
		pub := &fakePublisher{wait: make(chan struct{})} // never acks
		defer close(pub.wait)
		h := newTestHandler(t, pub, dd)
		w, resp := do(t, h, signedRequest(t, "wh_slow", testNow.Unix(), testBody))
		if w.Code != 503 || resp.Error != "unavailable" || len(dd.relses) != 1 {
			t.Fatalf("status %d %+v releases %v", w.Code, resp, dd.relses)
		}
	})
}

// The delivery handed to the publisher carries the raw body and headers.
func TestHandler_DeliveryIsByteExact(t *testing.T) {
	pub := &fakePublisher{}
	h := newTestHandler(t, pub, nil)
	body := "{\"id\":\"evt_1\", \"object\":\"event\",\"created_at\":1790000000,\n \"type\":\"batch.completed\",\"data\":{\"id\":\"batch_\u00e9\"}}"
	r := signedRequest(t, "wh_exact", testNow.Unix(), body)
	r.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	do(t, h, r)
	if pub.count() != 1 {
		t.Fatal("not published")
	}
	d := pub.got[0]
	if string(d.Body) != body {
		t.Errorf("body changed:\n got %q\nwant %q", d.Body, body)
	}
	if d.WebhookID != "wh_exact" || d.Timestamp != strconv.FormatInt(testNow.Unix(), 10) || !strings.HasPrefix(d.Signature, "v1,") {
		t.Errorf("headers not carried: %+v", d)
	}
	if d.Event == nil || d.Event.Type != "batch.completed" || d.TraceParent == "" {
		t.Errorf("event/trace not carried: %+v", d)
	}
}

// No secret or signature may appear in a response body or a log line.
func TestHandler_NoSecretsInResponsesOrLogs(t *testing.T) {
	var logs strings.Builder
	s, _ := ParseSecret(testSecret)
	v, _ := NewVerifier([]Secret{s}, WithClock(func() time.Time { return testNow }))
	h, err := NewHandler(HandlerConfig{Verifier: v, Publisher: &fakePublisher{err: errors.New("down")},
		Log: zerolog.New(&logs).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	var bodies strings.Builder
	reqs := []*http.Request{
		signedRequest(t, "wh_1", testNow.Unix(), testBody),
		signedRequest(t, "wh_2", testNow.Unix()-999, testBody),
	}
	sigs := []string{reqs[0].Header.Get("webhook-signature"), reqs[1].Header.Get("webhook-signature")}
	for _, r := range reqs {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		bodies.WriteString(w.Body.String())
	}
	for _, where := range []string{logs.String(), bodies.String()} {
		for _, secret := range append(sigs, testSecret, strings.TrimPrefix(testSecret, "whsec_"), strings.TrimPrefix(sigs[0], "v1,")) {
			if strings.Contains(where, secret) {
				t.Fatalf("%q leaked into %q", secret, where)
			}
		}
		if strings.Contains(where, "batch_1") {
			t.Fatalf("body content leaked into %q", where)
		}
	}
	if !strings.Contains(logs.String(), "publish failed") {
		t.Fatalf("expected the failure to be logged, got %q", logs.String())
	}
}
