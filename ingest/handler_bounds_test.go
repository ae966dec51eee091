package ingest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/schema"
)

// stallBody is a request body that yields its first bytes, then blocks until
// released, like a sender that declared more than it sends.
type stallBody struct {
	first   []byte
	release chan struct{}
	reads   chan struct{} // signalled when a Read blocks
	once    sync.Once
}

func newStallBody(first []byte) *stallBody {
	return &stallBody{first: first, release: make(chan struct{}), reads: make(chan struct{})}
}

func (b *stallBody) Read(p []byte) (int, error) {
	if len(b.first) > 0 {
		n := copy(p, b.first)
		b.first = b.first[n:]
		return n, nil
	}
	b.once.Do(func() { close(b.reads) })
	<-b.release
	return 0, io.ErrUnexpectedEOF
}

func (b *stallBody) Close() error { return nil }

// countingObserver records overload refusals.
type countingObserver struct {
	nopObserver
	mu       sync.Mutex
	refusals []string
}

func (o *countingObserver) Overloaded(bound string) {
	o.mu.Lock()
	o.refusals = append(o.refusals, bound)
	o.mu.Unlock()
}

func boundedHandler(t *testing.T, maxReq int, maxBytes int64, obs Observer) *Handler {
	t.Helper()
	h := newTestHandler(t, &fakePublisher{}, nil)
	cfg := h.cfg
	cfg.MaxBodyBytes = 1 << 20
	cfg.MaxInFlightRequests = maxReq
	cfg.MaxInFlightBytes = maxBytes
	cfg.Observer = obs
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// stalledRequest is a signed request declaring declared bytes of which it
// sends 16, then stalls.
func stalledRequest(t *testing.T, id string, declared int64) (*http.Request, *stallBody) {
	t.Helper()
	r := signedRequest(t, id, testNow.Unix(), testBody)
	sb := newStallBody([]byte(strings.Repeat("x", 16)))
	r.Body, r.ContentLength = sb, declared
	return r, sb
}

// A sender that declares a megabyte and sends 16 bytes holds the first
// buffer only, not the declared size.
func TestHandler_BodyBufferGrowsWithTheBytesReceived(t *testing.T) {
	h := boundedHandler(t, 10, 64<<20, nil)
	r, sb := stalledRequest(t, "wh_stall", 1<<20)
	done := make(chan int)
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		done <- w.Code
	}()
	<-sb.reads
	reqs, held := h.InFlight()
	if reqs != 1 || held > bodyFirstAlloc {
		t.Errorf("in flight: %d requests holding %d bytes, want 1 holding at most %d", reqs, held, bodyFirstAlloc)
	}
	close(sb.release)
	if code := <-done; code != http.StatusBadRequest {
		t.Errorf("short body: status %d, want 400", code)
	}
	if reqs, held := h.InFlight(); reqs != 0 || held != 0 {
		t.Errorf("after the answer: %d requests holding %d bytes, want 0 and 0", reqs, held)
	}
}

// Bodies of every size around the growth steps arrive intact, with a known
// length and chunked.
func TestHandler_BodySizes(t *testing.T) {
	for _, n := range []int{0, 1, bodyFirstAlloc - 1, bodyFirstAlloc, bodyFirstAlloc + 1, 3*bodyFirstAlloc + 7, 1<<20 - 1, 1 << 20} {
		for _, chunked := range []bool{false, true} {
			pub := &fakePublisher{}
			h := newTestHandler(t, pub, nil)
			h.cfg.MaxBodyBytes = 1 << 20
			body := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
			r := signedRequest(t, "wh_"+strconv.Itoa(n), testNow.Unix(), string(body))
			if chunked {
				r.ContentLength = -1
				r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body))) // hides the length
			}
			w, _ := do(t, h, r)
			if w.Code != 200 || pub.count() != 1 || !bytes.Equal(pub.got[0].Body, body) {
				t.Errorf("%d bytes (chunked %v): status %d, published %d, byte-exact %v", n, chunked, w.Code, pub.count(),
					pub.count() == 1 && bytes.Equal(pub.got[0].Body, body))
			}
			if reqs, held := h.InFlight(); reqs != 0 || held != 0 {
				t.Errorf("%d bytes: %d requests holding %d bytes after the answer", n, reqs, held)
			}
		}
	}
	// One byte over the limit, chunked: 413 while reading.
	h := newTestHandler(t, &fakePublisher{}, nil)
	body := strings.Repeat("z", int(h.cfg.MaxBodyBytes)+1)
	r := signedRequest(t, "wh_big", testNow.Unix(), body)
	r.ContentLength = -1
	r.Body = io.NopCloser(strings.NewReader(body))
	if w, resp := do(t, h, r); w.Code != 413 || resp.Error != "too_large" {
		t.Errorf("chunked over the limit: %d %q", w.Code, resp.Error)
	}
	// A body longer or shorter than its Content-Length is a bad request.
	for _, delta := range []int64{-1, 1} {
		r := signedRequest(t, "wh_len", testNow.Unix(), testBody)
		r.ContentLength = int64(len(testBody)) + delta
		if w, resp := do(t, h, r); w.Code != 400 || resp.Error != "bad_request" {
			t.Errorf("Content-Length off by %d: %d %q", delta, w.Code, resp.Error)
		}
	}
}

// Stale, future, incomplete and malformed headers are answered before a
// single body byte is read, with the verifier's verdicts.
func TestHandler_HeaderChecksBeforeTheBody(t *testing.T) {
	h := boundedHandler(t, 10, 64<<20, nil)
	for _, c := range []struct {
		name   string
		mutate func(r *http.Request)
		status int
		msg    string
	}{
		{"stale", func(r *http.Request) { r.Header.Set("webhook-timestamp", strconv.FormatInt(testNow.Unix()-301, 10)) }, 401, ErrTooOld.Message},
		{"future", func(r *http.Request) { r.Header.Set("webhook-timestamp", strconv.FormatInt(testNow.Unix()+301, 10)) }, 401, ErrTooNew.Message},
		{"malformed timestamp", func(r *http.Request) { r.Header.Set("webhook-timestamp", "soon") }, 400, ErrBadTimestamp.Message},
		{"no id", func(r *http.Request) { r.Header.Del("webhook-id") }, 400, ErrMissingID.Message},
		{"no timestamp", func(r *http.Request) { r.Header.Del("webhook-timestamp") }, 400, ErrMissingTimestamp.Message},
		{"no signature", func(r *http.Request) { r.Header.Del("webhook-signature") }, 400, ErrMissingSignature.Message},
	} {
		r, sb := stalledRequest(t, "wh_early", 1<<20)
		sb.first = nil // not one byte
		c.mutate(r)
		done := make(chan struct{})
		var w *httptest.ResponseRecorder
		var resp response
		go func() { w, resp = do(t, h, r); close(done) }()
		select {
		case <-done:
		case <-sb.reads:
			close(sb.release)
			<-done
			t.Errorf("%s: the handler read the body", c.name)
			continue
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no answer", c.name)
		}
		if w.Code != c.status || resp.Message != c.msg {
			t.Errorf("%s: %d %q, want %d %q", c.name, w.Code, resp.Message, c.status, c.msg)
		}
		if w.Header().Get("Connection") != "close" {
			t.Errorf("%s: answered without reading the body but keeps the connection", c.name)
		}
	}
}

// Beyond the request bound, and beyond the byte bound, requests get 503 with
// Retry-After without their body being read; once the holders finish,
// requests pass again.
func TestHandler_InFlightBounds(t *testing.T) {
	for _, bc := range []struct {
		name     string
		maxReq   int
		maxBytes int64
		holders  int
		bound    string
	}{
		{"requests", 3, 64 << 20, 3, "requests"},
		{"body bytes", 100, 3 * bodyFirstAlloc, 3, "body_bytes"},
	} {
		t.Run(bc.name, func(t *testing.T) {
			obs := &countingObserver{}
			h := boundedHandler(t, bc.maxReq, bc.maxBytes, obs)
			var stalls []*stallBody
			var wg sync.WaitGroup
			for i := range bc.holders {
				r, sb := stalledRequest(t, "wh_hold"+strconv.Itoa(i), 1<<20)
				stalls = append(stalls, sb)
				wg.Go(func() { h.ServeHTTP(httptest.NewRecorder(), r) })
				<-sb.reads
			}
			r, sb := stalledRequest(t, "wh_refused", 1<<20)
			w, resp := do(t, h, r)
			if w.Code != 503 || resp.Error != "unavailable" || w.Header().Get("Retry-After") == "" {
				t.Errorf("beyond the bound: %d %q Retry-After %q, want 503 unavailable with Retry-After", w.Code, resp.Error, w.Header().Get("Retry-After"))
			}
			select {
			case <-sb.reads:
				t.Error("the refused request's body was read to its end")
			default:
			}
			if w.Header().Get("Connection") != "close" {
				t.Error("refused with its body unread, but the connection is kept")
			}
			if len(obs.refusals) != 1 || obs.refusals[0] != bc.bound {
				t.Errorf("overload observed %v, want [%s]", obs.refusals, bc.bound)
			}
			for _, s := range stalls {
				close(s.release)
			}
			wg.Wait()
			if reqs, held := h.InFlight(); reqs != 0 || held != 0 {
				t.Errorf("after the holders: %d requests holding %d bytes", reqs, held)
			}
			if w, resp := do(t, h, signedRequest(t, "wh_after", testNow.Unix(), testBody)); w.Code != 200 {
				t.Errorf("after the holders finished: %d %+v", w.Code, resp)
			}
		})
	}
}

// A body that outgrows the byte bound while arriving is refused at that
// point, and everything it held is given back.
func TestHandler_ByteBoundWhileGrowing(t *testing.T) {
	h := boundedHandler(t, 10, 5*bodyFirstAlloc, nil)
	body := strings.Repeat("q", 10*bodyFirstAlloc)
	w, resp := do(t, h, signedRequest(t, "wh_grow", testNow.Unix(), body))
	if w.Code != 503 || resp.Error != "unavailable" {
		t.Errorf("a body larger than the byte bound: %d %q, want 503 unavailable", w.Code, resp.Error)
	}
	if reqs, held := h.InFlight(); reqs != 0 || held != 0 {
		t.Errorf("after the answer: %d requests holding %d bytes", reqs, held)
	}
}

// The request path allocates no more than before the bounds existed: the
// three allocations of the handler itself (body, delivery+event, budget
// context on first use) with a known small Content-Length.
func TestHandlerAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector makes sync.Pool drop items on purpose")
	}
	body, _ := schema.Sample(schema.RealtimeCallIncoming)
	const n = 200
	reqs := make([]*http.Request, n+1)
	bodies := make([]*benchBody, n+1)
	ts := strconv.FormatInt(testNow.Unix(), 10)
	for i := range reqs {
		id := "wh_alloc" + strconv.Itoa(i)
		bodies[i] = &benchBody{}
		bodies[i].Reset(body)
		r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/webhooks/openai", bodies[i])
		r.ContentLength = int64(len(body))
		r.Header.Set("Webhook-Id", id)
		r.Header.Set("Webhook-Timestamp", ts)
		r.Header.Set("Webhook-Signature", signRaw(t, id, ts, body))
		reqs[i] = r
	}
	h := newTestHandler(t, nopPublisher{}, nil)
	h.cfg.MaxBodyBytes = 1 << 20
	w := &benchWriter{h: http.Header{}}
	i := 0
	allocs := testing.AllocsPerRun(n, func() {
		clear(w.h)
		h.ServeHTTP(w, reqs[i])
		if w.code != 200 {
			t.Fatalf("status %d", w.code)
		}
		i++
	})
	t.Logf("%.1f allocations per request", allocs)
	if allocs > 3 {
		t.Fatalf("the handler allocates %.1f times per request, want at most 3", allocs)
	}
}
