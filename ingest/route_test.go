package ingest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/integration/otlptest"
)

const otherSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// routeObserver counts what one route's observer was told.
type routeObserver struct {
	nopObserver
	mu       sync.Mutex
	outcomes []Outcome
	failures []string
	matched  []int
}

func (o *routeObserver) Request(oc Outcome, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.outcomes = append(o.outcomes, oc)
}

func (o *routeObserver) SignatureFailure(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures = append(o.failures, reason)
}

func (o *routeObserver) SecretMatched(i int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.matched = append(o.matched, i)
}

func routeVerifier(t *testing.T, secret string) *Verifier {
	t.Helper()
	s, err := ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier([]Secret{s}, WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func routeRequest(t *testing.T, path, secret, id, body string) *http.Request {
	t.Helper()
	s, err := ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(testNow.Unix(), 10)
	sig, err := Sign(s, id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("webhook-id", id)
	r.Header.Set("webhook-timestamp", ts)
	r.Header.Set("webhook-signature", sig)
	return r
}

func TestHandler_Routes(t *testing.T) {
	pub := &fakePublisher{}
	dd := &fakeDeduper{}
	prodObs, stagingObs, global := &routeObserver{}, &routeObserver{}, &routeObserver{}
	h, err := NewHandler(HandlerConfig{
		Publisher: pub, Deduper: dd, Observer: global, PublishTimeout: time.Second,
		Routes: []Route{
			{Name: "prod", Path: "/hooks/prod", Prefix: "prod", Verifier: routeVerifier(t, testSecret), Observer: prodObs},
			{Name: "staging", Path: "/hooks/staging", Prefix: "staging", Verifier: routeVerifier(t, otherSecret), Observer: stagingObs},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(t.Context())
	tests := []struct {
		name, path, secret, id string
		status                 int
		outcome                string
	}{
		{"prod with its secret", "/hooks/prod", testSecret, "wh_1", 200, "published"},
		{"staging with its secret, same id", "/hooks/staging", otherSecret, "wh_1", 200, "published"},
		{"prod signed with staging's secret", "/hooks/prod", otherSecret, "wh_2", 401, "invalid_signature"},
		{"staging signed with prod's secret", "/hooks/staging", testSecret, "wh_2", 401, "invalid_signature"},
		{"the old single path", DefaultPath, testSecret, "wh_3", 404, "not_found"},
	}
	for _, tt := range tests {
		w, resp := do(t, h, routeRequest(t, tt.path, tt.secret, tt.id, testBody))
		if w.Code != tt.status || resp.Status+resp.Error != tt.outcome {
			t.Errorf("%s: %d %+v, want %d %s", tt.name, w.Code, resp, tt.status, tt.outcome)
		}
	}
	if pub.count() != 2 {
		t.Fatalf("%d published, want one per route", pub.count())
	}
	for i, want := range []struct{ route, prefix, key string }{{"prod", "prod", "prod/wh_1"}, {"staging", "staging", "staging/wh_1"}} {
		d := pub.got[i]
		if d.Route == nil || d.Route.Name != want.route || d.Route.Prefix != want.prefix || d.DedupKey() != want.key || string(d.Body) != testBody {
			t.Errorf("delivery %d: route %+v key %q, want %+v", i, d.Route, d.DedupKey(), want)
		}
	}
	if claims, _, _ := dd.calls(); len(claims) != 2 || claims[0] != "prod/wh_1" || claims[1] != "staging/wh_1" {
		t.Errorf("claims %q, want one per route", claims)
	}
	if len(prodObs.outcomes) != 2 || len(prodObs.matched) != 1 || len(prodObs.failures) != 1 {
		t.Errorf("prod observer: %+v", prodObs)
	}
	if len(stagingObs.outcomes) != 2 || len(stagingObs.matched) != 1 || len(stagingObs.failures) != 1 {
		t.Errorf("staging observer: %+v", stagingObs)
	}
	if len(global.outcomes) != 1 || global.outcomes[0] != OutcomeNotFound {
		t.Errorf("handler observer saw %q, want the unrouted not_found only", global.outcomes)
	}
}

func TestNewHandler_RouteErrors(t *testing.T) {
	v := routeVerifier(t, testSecret)
	for name, rs := range map[string][]Route{
		"no verifier": {{Name: "a", Path: "/a"}},
		"no path":     {{Name: "a", Verifier: v}},
		"same path":   {{Name: "a", Path: "/a", Verifier: v}, {Name: "b", Path: "/a", Verifier: v}},
		"same name":   {{Name: "a", Path: "/a", Verifier: v}, {Name: "a", Path: "/b", Verifier: v}},
	} {
		if _, err := NewHandler(HandlerConfig{Publisher: &fakePublisher{}, Routes: rs}); err == nil {
			t.Errorf("%s: NewHandler accepted %+v", name, rs)
		}
	}
}

// The single-route handler tags nothing: a delivery without a route is
// what library users built before routes existed.
func TestHandler_NoRoutesNoRouteName(t *testing.T) {
	pub := &fakePublisher{}
	h := newTestHandler(t, pub, nil)
	if w, _ := do(t, h, signedRequest(t, "wh_1", testNow.Unix(), testBody)); w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	if d := pub.got[0]; d.Route != nil || d.DedupKey() != "wh_1" {
		t.Errorf("delivery route %+v key %q", d.Route, d.DedupKey())
	}
}

// BenchmarkHandlerRoutes is BenchmarkHandler's dedup_off case on a handler
// with three routes, the requests on one of them: the cost of the path
// lookup and of the route's name in the dedup key.
func BenchmarkHandlerRoutes(b *testing.B) {
	const pool = 1 << 14
	reqs, bodies, body := benchRequests(b, pool)
	s, err := ParseSecret(testSecret)
	if err != nil {
		b.Fatal(err)
	}
	v, err := NewVerifier([]Secret{s}, WithClock(func() time.Time { return testNow }))
	if err != nil {
		b.Fatal(err)
	}
	h, err := NewHandler(HandlerConfig{Publisher: nopPublisher{}, MaxBodyBytes: 1 << 20, Routes: []Route{
		{Name: "prod", Path: "/webhooks/prod", Prefix: "prod", Verifier: v},
		{Name: "staging", Path: DefaultPath, Prefix: "staging", Verifier: v},
		{Name: "research", Path: "/webhooks/research", Prefix: "research", Verifier: v},
	}})
	if err != nil {
		b.Fatal(err)
	}
	w := &benchWriter{h: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i = (i + 1) % pool
		bodies[i].Seek(0, io.SeekStart)
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, reqs[i])
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

// TestTrace_Routes: a request on a route names the route's path in its
// server span and the route in hookbridge.route, on the producer span too.
func TestTrace_Routes(t *testing.T) {
	pub := &namedPublisher{}
	h, col, _ := tracedHandler(t, pub, nil, nil)
	cfg := h.cfg
	cfg.Routes = []Route{
		{Name: "prod", Path: "/hooks/prod", Verifier: routeVerifier(t, otherSecret)},
		{Name: "staging", Path: "/hooks/staging", Verifier: routeVerifier(t, testSecret)},
	}
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if w, resp := do(t, h, routeRequest(t, "/hooks/staging", testSecret, "wh_1", testBody)); w.Code != 200 {
		t.Fatalf("%d %+v", w.Code, resp)
	}
	if !col.Wait(5*time.Second, func(s []otlptest.Span) bool { return len(s) >= 3 }) {
		t.Fatalf("spans: %v", col.Spans())
	}
	spans := byName(col.Spans())
	wantAttrs(t, spans["POST /hooks/staging"], map[string]string{"http.route": "/hooks/staging", "hookbridge.route": "staging"})
	wantAttrs(t, spans["send openai.batch.completed"], map[string]string{"hookbridge.route": "staging"})
}
