package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// fakeClock is a manually advanced time source.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

func newTestLimiter(rate float64, burst int) (*rateLimiter, *fakeClock, *int) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	limited := 0
	l := newRateLimiter(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	}), rate, burst, func(time.Duration) { limited++ })
	l.now = clock.now
	return l, clock, &limited
}

func do(l http.Handler, remote string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/openai", nil)
	req.RemoteAddr = remote
	rec := httptest.NewRecorder()
	l.ServeHTTP(rec, req)
	return rec
}

func TestRateLimitPerSource(t *testing.T) {
	l, clock, limited := newTestLimiter(2, 3) // 2/s, burst 3
	a, b := "192.0.2.1:40000", "192.0.2.2:40000"
	for i := range 3 {
		if rec := do(l, a); rec.Code != 200 {
			t.Fatalf("request %d within the burst: %d", i, rec.Code)
		}
	}
	rec := do(l, a)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("over the burst: %d, want 429", rec.Code)
	}
	if ra, _ := strconv.Atoi(rec.Header().Get("Retry-After")); ra < 1 {
		t.Errorf("Retry-After = %q, want ≥ 1", rec.Header().Get("Retry-After"))
	}
	var body struct{ Error, Message string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != "rate_limited" || body.Message == "" {
		t.Errorf("body %q (%v), want {\"error\":\"rate_limited\",…}", rec.Body, err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	// Another source is not affected; the same source from another port is.
	if rec := do(l, b); rec.Code != 200 {
		t.Errorf("other source: %d", rec.Code)
	}
	if rec := do(l, "192.0.2.1:50000"); rec.Code != 429 {
		t.Errorf("same IP, other port: %d, want 429", rec.Code)
	}
	// Half a second refills one token at 2/s.
	clock.add(500 * time.Millisecond)
	if rec := do(l, a); rec.Code != 200 {
		t.Errorf("after refill: %d", rec.Code)
	}
	if rec := do(l, a); rec.Code != 429 {
		t.Errorf("refill gave more than one token: %d", rec.Code)
	}
	if *limited != 3 {
		t.Errorf("limited hook called %d times, want 3", *limited)
	}
	// IPv6 peers key on the address too.
	for range 3 {
		do(l, "[2001:db8::1]:1")
	}
	if rec := do(l, "[2001:db8::1]:2"); rec.Code != 429 {
		t.Errorf("IPv6 over the burst: %d", rec.Code)
	}
}

func TestRateLimitRetryAfter(t *testing.T) {
	l, _, _ := newTestLimiter(0.2, 1) // one request per 5 s
	do(l, "192.0.2.9:1")
	rec := do(l, "192.0.2.9:1")
	if got := rec.Header().Get("Retry-After"); got != "5" {
		t.Errorf("Retry-After = %q, want 5", got)
	}
}

func TestRateLimitBoundedTable(t *testing.T) {
	l, clock, _ := newTestLimiter(10, 10)
	l.max = 100
	for i := range 1000 {
		do(l, "10.0."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256)+":1")
		if len(l.sources) > l.max {
			t.Fatalf("table grew to %d entries, bound %d", len(l.sources), l.max)
		}
	}
	// Idle entries are swept once they have refilled.
	clock.add(2 * time.Minute)
	do(l, "10.9.9.9:1")
	if len(l.sources) != 1 {
		t.Errorf("after idling, %d entries remain, want 1", len(l.sources))
	}
}

func TestRateLimitSourceKey(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.1:40000":                      "192.0.2.1",
		"[::ffff:192.0.2.1]:40000":             "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:443":           "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:ffff:ffff:ffff]:1": "2001:db8:1:2::/64",
		"[fe80::1%eth0]:1":                     "fe80::/64",
		"[::1]:9":                              "::/64",
		"not an address":                       "not an address",
	} {
		if got := sourceKey(remote); got != want {
			t.Errorf("sourceKey(%q) = %q, want %q", remote, got, want)
		}
	}
}

// A host rotating through the addresses of its IPv6 /64 shares one bucket;
// the neighbouring /64 has its own.
func TestRateLimitIPv6By64(t *testing.T) {
	l, _, limited := newTestLimiter(1, 3)
	for i := range 3 {
		if rec := do(l, "[2001:db8:0:1::"+strconv.FormatInt(int64(i+1), 16)+"]:5000"); rec.Code != 200 {
			t.Fatalf("request %d within the burst: %d", i+1, rec.Code)
		}
	}
	if rec := do(l, "[2001:db8:0:1:dead:beef:0:1]:5000"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("another address of the same /64 after the burst: %d, want 429", rec.Code)
	}
	if rec := do(l, "[2001:db8:0:2::1]:5000"); rec.Code != 200 {
		t.Fatalf("the next /64: %d, want 200", rec.Code)
	}
	if *limited != 1 {
		t.Errorf("limited %d times, want 1", *limited)
	}
}
