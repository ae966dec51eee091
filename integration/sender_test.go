package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/schema"
)

// The retrying sender behaves like OpenAI's webhook delivery: every webhook-id
// is delivered until it is acknowledged (any 2xx); each attempt is re-signed
// with a fresh timestamp; any other status or a transport error is retried
// with exponential backoff (here shortened from minutes to milliseconds).
// It records, per id, whether it was acknowledged and after how many
// attempts, and for the whole run the longest stretch in which no attempt
// succeeded: the unavailability a real sender would have seen.

type senderOpts struct {
	URLs []string // attempts of one id rotate over these (replicas behind a balancer)
	// Fanout delivers every id to all URLs at once, each with its own retry
	// loop (the same id arriving at several replicas concurrently).
	Fanout      bool
	Count       int     // unique webhook-ids to send at most
	Concurrency int     // parallel ids in flight
	Rate        float64 // new ids per second across all workers; 0 = as fast as possible
	// Body returns the body of the i-th id; default: catalogue samples in turn.
	Body       func(i int) []byte
	Timeout    time.Duration // per attempt (OpenAI: a few seconds); default 5s
	BackoffMin time.Duration // default 25ms
	BackoffMax time.Duration // default 1s
	// Horizon bounds the whole run: ids not acknowledged by then are given
	// up (OpenAI's 72 h, shortened). Default 60s.
	Horizon time.Duration
}

// idRecord is what the sender knows about one webhook-id.
type idRecord struct {
	ID       string
	Body     []byte
	Acked    bool
	AckCode  string // "200 published", "200 duplicate", …
	Attempts int
	Last     string // last answer ("503 unavailable", "error: …")
}

// sender is a running retrying sender; stop it with finish.
type sender struct {
	t      testing.TB
	o      senderOpts
	client *http.Client
	start  time.Time
	hardNs atomic.Int64 // horizon, unix ns

	next    atomic.Int64
	stopped atomic.Bool
	acked   atomic.Int64
	attempt atomic.Int64
	wg      sync.WaitGroup

	mu      sync.Mutex
	recs    []*idRecord
	answers map[string]int // every attempt's answer, counted
	lastOK  time.Time
	longest time.Duration
	longAt  time.Duration // when (since start) the longest stretch ended
	// cutOff lists transport errors on requests that had been written
	// completely: the server dropped a request it had received.
	cutOff []string
}

// senderReport is the outcome of a run.
type senderReport struct {
	Records        []*idRecord
	Sent, Acked    int
	Attempts       int
	Answers        map[string]int
	Longest        time.Duration // longest stretch without any 2xx
	LongestEndedAt time.Duration
	Elapsed        time.Duration
	CutOff         []string
}

func (r senderReport) answersString() string {
	keys := make([]string, 0, len(r.Answers))
	for k := range r.Answers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s×%d", k, r.Answers[k])
	}
	return b.String()
}

func startSender(t testing.TB, o senderOpts) *sender {
	t.Helper()
	if len(o.URLs) == 0 || o.Count <= 0 {
		t.Fatal("sender: URLs and Count are required")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 25 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Second
	}
	if o.Horizon <= 0 {
		o.Horizon = 60 * time.Second
	}
	if o.Body == nil {
		types := schema.Types()
		o.Body = func(i int) []byte { return mustSample(t, types[i%len(types)]) }
	}
	conns := o.Concurrency
	if o.Fanout {
		conns *= len(o.URLs)
	}
	s := &sender{
		t: t, o: o,
		client: &http.Client{
			Timeout: o.Timeout,
			Transport: &http.Transport{
				MaxIdleConnsPerHost: conns,
				MaxConnsPerHost:     conns,
				DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			},
		},
		start:   time.Now(),
		answers: map[string]int{},
	}
	s.hardNs.Store(s.start.Add(o.Horizon).UnixNano())
	s.lastOK = s.start
	var tick <-chan time.Time
	if o.Rate > 0 {
		tk := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
		t.Cleanup(tk.Stop)
		tick = tk.C
	}
	for range o.Concurrency {
		s.wg.Go(func() {
			for {
				if tick != nil {
					select {
					case <-tick:
					case <-time.After(time.Until(s.hard())):
					}
				}
				if s.stopped.Load() || time.Now().After(s.hard()) {
					return
				}
				i := int(s.next.Add(1) - 1)
				if i >= o.Count {
					return
				}
				rec := &idRecord{ID: newID(), Body: o.Body(i)}
				s.mu.Lock()
				s.recs = append(s.recs, rec)
				s.mu.Unlock()
				s.deliver(i, rec)
			}
		})
	}
	t.Cleanup(func() { s.stopped.Store(true); s.hardNs.Store(time.Now().UnixNano()); s.wg.Wait() })
	return s
}

func (s *sender) hard() time.Time { return time.Unix(0, s.hardNs.Load()) }

// deliver retries rec until acknowledged or the horizon.
func (s *sender) deliver(i int, rec *idRecord) {
	if !s.o.Fanout {
		s.retry(rec, func(k int) string { return s.o.URLs[(i+k)%len(s.o.URLs)] })
		return
	}
	var wg sync.WaitGroup
	for _, u := range s.o.URLs {
		wg.Go(func() { s.retry(rec, func(int) string { return u }) })
	}
	wg.Wait()
}

func (s *sender) retry(rec *idRecord, url func(k int) string) {
	backoff := s.o.BackoffMin
	for k := 0; ; k++ {
		ans, ok := s.attemptOnce(url(k), rec)
		s.mu.Lock()
		rec.Attempts++
		rec.Last = ans
		if ok && !rec.Acked {
			rec.Acked, rec.AckCode = true, ans
			s.acked.Add(1)
		}
		s.mu.Unlock()
		// With fanout each URL keeps going until it has its own 2xx, as
		// if each replica had its own sender.
		if ok {
			return
		}
		jitter := time.Duration(rand.Int64N(int64(backoff)/2 + 1))
		wait := backoff/2 + jitter
		if time.Now().Add(wait).After(s.hard()) {
			return
		}
		time.Sleep(wait)
		backoff = min(backoff*2, s.o.BackoffMax)
	}
}

// attemptOnce signs rec with the current time and POSTs it.
func (s *sender) attemptOnce(url string, rec *idRecord) (string, bool) {
	s.attempt.Add(1)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(rec.Body))
	if err != nil {
		s.t.Errorf("sender: %v", err)
		return "error: request", false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", rec.ID)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", sign(itSecret, rec.ID, ts, rec.Body))
	var wrote atomic.Bool
	var connInfo atomic.Value
	req = req.WithContext(httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			connInfo.Store(fmt.Sprintf("reused=%v idle=%s", i.Reused, i.IdleTime.Round(time.Millisecond)))
		},
		WroteRequest: func(i httptrace.WroteRequestInfo) { wrote.Store(i.Err == nil) },
	}))
	resp, err := s.client.Do(req)
	var ans string
	ok := false
	if err != nil {
		ans = "error: " + classifyErr(err)
		if wrote.Load() && ans != "error: timeout" {
			s.mu.Lock()
			s.cutOff = append(s.cutOff, fmt.Sprintf("%s after %s (%v): %v", rec.ID, time.Since(s.start).Round(time.Millisecond), connInfo.Load(), err))
			s.mu.Unlock()
		}
	} else {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		var r struct{ Status, Error string }
		_ = json.Unmarshal(b, &r)
		ans = fmt.Sprintf("%d %s", resp.StatusCode, r.Status+r.Error)
		ok = resp.StatusCode >= 200 && resp.StatusCode < 300
	}
	s.mu.Lock()
	s.answers[ans]++
	if ok {
		now := time.Now()
		if gap := now.Sub(s.lastOK); gap > s.longest {
			s.longest, s.longAt = gap, now.Sub(s.start)
		}
		s.lastOK = now
	}
	s.mu.Unlock()
	return ans, ok
}

// classifyErr names a transport error by kind: refused (the request never
// left), reset/eof (the connection dropped), timeout.
func classifyErr(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other"
}

// waitAcked waits until at least n ids are acknowledged, bounded.
func (s *sender) waitAcked(n int64, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if s.acked.Load() >= n {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// stopNew stops starting new ids; those started keep being retried.
func (s *sender) stopNew() { s.stopped.Store(true) }

// finish stops starting new ids, waits (up to the horizon) for the started
// ones and reports.
func (s *sender) finish() senderReport {
	s.stopNew()
	return s.wait()
}

// wait waits until all Count ids are sent and acknowledged (or the horizon
// passes) and reports.
func (s *sender) wait() senderReport {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := senderReport{
		Records:        slices.Clone(s.recs),
		Sent:           len(s.recs),
		Attempts:       int(s.attempt.Load()),
		Answers:        s.answers,
		Longest:        s.longest,
		LongestEndedAt: s.longAt,
		Elapsed:        time.Since(s.start),
		CutOff:         slices.Clone(s.cutOff),
	}
	for _, rec := range s.recs {
		if rec.Acked {
			r.Acked++
		}
	}
	return r
}

// TestSender checks the sender itself against a stub that fails each id's
// first two attempts (503, then a dropped connection) and verifies the
// signature of every attempt: ids are acknowledged on the third attempt,
// each attempt carrying a fresh, valid signature.
func TestSender(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	var badSig atomic.Int64
	srv := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
		if r.Header.Get("webhook-signature") != sign(itSecret, id, ts, body) {
			badSig.Add(1)
		}
		mu.Lock()
		seen[id]++
		n := seen[id]
		mu.Unlock()
		switch n {
		case 1:
			w.WriteHeader(503)
		case 2:
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
		default:
			w.Write([]byte(`{"status":"published"}`))
		}
	}))
	s := startSender(t, senderOpts{URLs: []string{srv}, Count: 50, Concurrency: 8, Horizon: 20 * time.Second})
	rep := s.wait()
	if rep.Sent != 50 || rep.Acked != 50 {
		t.Fatalf("sent %d, acked %d; want 50/50 (%s)", rep.Sent, rep.Acked, rep.answersString())
	}
	for _, rec := range rep.Records {
		if rec.Attempts != 3 || rec.AckCode != "200 published" {
			t.Errorf("%s: %d attempts, ack %q", rec.ID, rec.Attempts, rec.AckCode)
		}
	}
	if badSig.Load() != 0 {
		t.Errorf("%d attempts carried a bad signature", badSig.Load())
	}
	if len(rep.CutOff) != 50 {
		t.Errorf("cut-off requests recorded: %d, want 50 (one per id)", len(rep.CutOff))
	}
	t.Logf("sender self-test: %s; longest unavailability %s", rep.answersString(), rep.Longest)
}

// newLoopbackServer serves h on a loopback port until the test ends.
func newLoopbackServer(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/webhooks/openai"
}
