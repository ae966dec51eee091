package integration

// Hostile and broken input against a running `hookbridge serve` (the real
// net/http server with its timeouts and limits). Every case checks the
// status and the JSON error code; nothing unverified may reach the dedup
// store or the broker.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/schema"
)

// signHeaders returns the three webhook headers for id and body, now.
func signHeaders(id string, body []byte) (ts, sig string) {
	ts = strconv.FormatInt(time.Now().Unix(), 10)
	return ts, sign(itSecret, id, ts, body)
}

// rawAnswer is a response read off a raw connection.
type rawAnswer struct {
	Status int
	Code   string
	Header http.Header
	Err    error // no response: connection closed or timed out
}

func readAnswer(br *bufio.Reader) rawAnswer { return readAnswerTo(br, nil) }

func readAnswerTo(br *bufio.Reader, req *http.Request) rawAnswer {
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return rawAnswer{Err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var r struct{ Status, Error string }
	_ = json.Unmarshal(b, &r)
	return rawAnswer{Status: resp.StatusCode, Code: r.Status + r.Error, Header: resp.Header}
}

func dialBridge(t *testing.T, b *bridge) net.Conn {
	t.Helper()
	u, _ := url.Parse(b.URL)
	c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawRequest writes req as is and reads one answer within d.
func rawRequest(t *testing.T, b *bridge, req string, d time.Duration) rawAnswer {
	t.Helper()
	c := dialBridge(t, b)
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c, req); err != nil {
		return rawAnswer{Err: err}
	}
	var sent *http.Request
	if strings.HasPrefix(req, "HEAD ") {
		sent = &http.Request{Method: http.MethodHead} // no body follows
	}
	return readAnswerTo(bufio.NewReader(c), sent)
}

// streamCount is the number of messages in stream.
func streamCount(t *testing.T, url, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, info := openStream(t, ctx, url, stream)
	return info.State.Msgs
}

// kvState is the dedup bucket's message count and last sequence: any
// write, even one later deleted, moves the sequence.
func kvState(t *testing.T, url, bucket string) (uint64, uint64) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs, info.State.LastSeq
}

func TestHostile(t *testing.T) {
	p := startNATS(t)
	env, prefix, stream := natsEnv(t, p.URL())
	env["HOOKBRIDGE_READ_TIMEOUT"] = "2s"
	bucket := env["HOOKBRIDGE_DEDUP_BUCKET"]
	b := startBridge(t, env)
	u, _ := url.Parse(b.URL)
	host := u.Host
	const limit = 1 << 20

	t.Run("content-length over the limit refused before the body", func(t *testing.T) {
		id := newID()
		ts, sig := signHeaders(id, nil)
		start := time.Now()
		a := rawRequest(t, b, "POST /webhooks/openai HTTP/1.1\r\nHost: "+host+"\r\nContent-Type: application/json\r\n"+
			"webhook-id: "+id+"\r\nwebhook-timestamp: "+ts+"\r\nwebhook-signature: "+sig+"\r\n"+
			"Content-Length: 104857600\r\n\r\n", 5*time.Second)
		// Not one byte of the 100 MB was written: the answer cannot have
		// waited for it.
		if a.Err != nil || a.Status != 413 || a.Code != "too_large" {
			t.Fatalf("100 MB Content-Length, no body sent: %d %q %v, want 413 too_large", a.Status, a.Code, a.Err)
		}
		t.Logf("413 after %s with 0 of 104857600 body bytes sent", time.Since(start).Round(time.Millisecond))
	})

	t.Run("content-length just over the limit", func(t *testing.T) {
		body := bytes.Repeat([]byte("a"), limit+1)
		r := post(b.URL, delivery{ID: newID(), Body: body}, nil)
		if r.Status != 413 || r.Code != "too_large" {
			t.Fatalf("%d %q %v, want 413 too_large", r.Status, r.Code, r.Err)
		}
	})

	t.Run("chunked body over the limit refused while streaming", func(t *testing.T) {
		c := dialBridge(t, b)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		id := newID()
		ts, sig := signHeaders(id, nil)
		if _, err := io.WriteString(c, "POST /webhooks/openai HTTP/1.1\r\nHost: "+host+"\r\nContent-Type: application/json\r\n"+
			"webhook-id: "+id+"\r\nwebhook-timestamp: "+ts+"\r\nwebhook-signature: "+sig+"\r\n"+
			"Transfer-Encoding: chunked\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		// Stream up to 100 MB of chunks; stop when the answer comes.
		var written atomic.Int64
		answered := make(chan struct{})
		go func() {
			chunk := fmt.Appendf(nil, "%x\r\n%s\r\n", 64<<10, bytes.Repeat([]byte("x"), 64<<10))
			for written.Load() < 100<<20 {
				select {
				case <-answered:
					return
				default:
				}
				if _, err := c.Write(chunk); err != nil {
					return
				}
				written.Add(64 << 10)
			}
		}()
		a := readAnswer(bufio.NewReader(c))
		close(answered)
		if a.Err != nil || a.Status != 413 || a.Code != "too_large" {
			t.Fatalf("chunked 100 MB: %d %q %v, want 413 too_large", a.Status, a.Code, a.Err)
		}
		if w := written.Load(); w > 16<<20 {
			t.Errorf("the answer came after %d bytes: the server read far beyond the 1 MiB limit", w)
		} else {
			t.Logf("413 after %d body bytes written (limit %d)", w, limit)
		}
	})

	t.Run("slow-loris headers cut off", func(t *testing.T) {
		c := dialBridge(t, b)
		start := time.Now()
		_, _ = io.WriteString(c, "POST /webhooks/openai HTTP/1.1\r\nHost: "+host+"\r\n")
		closed := false
		for i := 0; i < 40 && !closed; i++ { // at most 20s
			time.Sleep(500 * time.Millisecond)
			if _, err := io.WriteString(c, "x"); err != nil {
				closed = true
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			var one [512]byte
			if n, err := c.Read(one[:]); n > 0 || (err != nil && !isTimeout(err)) {
				closed = true
				// net/http answers a header read cut short by its deadline
				// itself (plain text, the handler never runs): 408 or 400
				// depending on where the deadline fell.
				if n > 0 && !bytes.HasPrefix(one[:n], []byte("HTTP/1.1 408")) && !bytes.HasPrefix(one[:n], []byte("HTTP/1.1 400")) {
					t.Errorf("answer to slow headers: %q", one[:n])
				}
			}
		}
		took := time.Since(start)
		if !closed {
			t.Fatalf("a request trickling its headers for %s was never cut off", took)
		}
		if took > 12*time.Second {
			t.Errorf("slow headers cut off after %s, want within the header timeout (5s) plus slack", took)
		}
		t.Logf("slow headers cut off after %s", took.Round(time.Millisecond))
	})

	t.Run("slow-loris body gets 408", func(t *testing.T) {
		c := dialBridge(t, b)
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		body := mustSample(t, schema.BatchCompleted)
		id := newID()
		ts, sig := signHeaders(id, body)
		start := time.Now()
		_, _ = io.WriteString(c, "POST /webhooks/openai HTTP/1.1\r\nHost: "+host+"\r\nContent-Type: application/json\r\n"+
			"webhook-id: "+id+"\r\nwebhook-timestamp: "+ts+"\r\nwebhook-signature: "+sig+"\r\n"+
			"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
		answered := make(chan rawAnswer, 1)
		go func() { answered <- readAnswer(bufio.NewReader(c)) }()
		var a rawAnswer
	trickle:
		for i := 0; i < len(body); i++ {
			select {
			case a = <-answered:
				break trickle
			case <-time.After(300 * time.Millisecond):
				if _, err := c.Write(body[i : i+1]); err != nil {
					a = <-answered
					break trickle
				}
			}
		}
		took := time.Since(start)
		if a.Err != nil || a.Status != 408 || a.Code != "timeout" {
			t.Fatalf("slow body: %d %q %v after %s, want 408 timeout", a.Status, a.Code, a.Err, took)
		}
		if took > 8*time.Second {
			t.Errorf("slow body answered after %s, want about HOOKBRIDGE_READ_TIMEOUT (2s)", took)
		}
		t.Logf("slow body: 408 timeout after %s", took.Round(time.Millisecond))
	})

	t.Run("thousands of headers", func(t *testing.T) {
		// Over 64 KiB of headers: net/http's own 431 (plain text, the
		// handler never runs).
		var h strings.Builder
		for i := range 5000 {
			fmt.Fprintf(&h, "X-Filler-%d: %s\r\n", i, strings.Repeat("v", 10))
		}
		a := rawRequest(t, b, "POST /webhooks/openai HTTP/1.1\r\nHost: "+host+"\r\n"+h.String()+"Content-Length: 0\r\n\r\n", 10*time.Second)
		if a.Err != nil || a.Status != 431 {
			t.Fatalf("5000 headers (%d bytes): %d %v, want 431", h.Len(), a.Status, a.Err)
		}
		// 2000 small headers under the limit: still verified and published.
		d := delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
		r := post(b.URL, d, func(req *http.Request) {
			for i := range 2000 {
				req.Header.Set("X-F"+strconv.Itoa(i), "v")
			}
		})
		if r.Status != 200 || r.Code != "published" {
			t.Fatalf("2000 headers under the limit: %d %q %v, want 200 published", r.Status, r.Code, r.Err)
		}
	})

	t.Run("duplicate signature headers: the first counts, as in openai-go", func(t *testing.T) {
		for _, order := range []string{"good first", "bad first"} {
			d := delivery{ID: newID(), Body: mustSample(t, schema.ResponseCompleted)}
			r := post(b.URL, d, func(req *http.Request) {
				good := req.Header.Get("webhook-signature")
				bad := "v1," + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
				if order == "good first" {
					req.Header["Webhook-Signature"] = []string{good, bad}
				} else {
					req.Header["Webhook-Signature"] = []string{bad, good}
				}
			})
			want, code := 200, "published"
			if order == "bad first" {
				want, code = 401, "invalid_signature"
			}
			if r.Status != want || r.Code != code {
				t.Errorf("%s: %d %q %v, want %d %s", order, r.Status, r.Code, r.Err, want, code)
			}
		}
	})

	t.Run("wrong methods", func(t *testing.T) {
		for _, m := range []string{"GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECTX"} {
			a := rawRequest(t, b, m+" /webhooks/openai HTTP/1.1\r\nHost: "+host+"\r\nContent-Length: 0\r\n\r\n", 5*time.Second)
			if a.Err != nil || a.Status != 405 || a.Header.Get("Allow") != "POST" {
				t.Errorf("%s: %d Allow=%q %v, want 405 Allow: POST", m, a.Status, a.Header.Get("Allow"), a.Err)
			}
			if m != "HEAD" && a.Code != "method_not_allowed" {
				t.Errorf("%s: code %q, want method_not_allowed", m, a.Code)
			}
		}
	})

	t.Run("paths with traversal", func(t *testing.T) {
		body := mustSample(t, schema.BatchCompleted)
		for _, path := range []string{
			"/webhooks/../webhooks/openai", "/webhooks/openai/", "/webhooks/openai/../openai",
			"/webhooks/openai/../../etc/passwd", "/%2e%2e/webhooks/openai", "/webhooks/%2e%2e/webhooks/openai",
			"//webhooks/openai", "/webhooks//openai", "/WEBHOOKS/OPENAI", "/webhooks/openai%00", "/webhooks/openai;x",
			"/", "/metrics", "/readyz",
		} {
			id := newID()
			ts, sig := signHeaders(id, body)
			a := rawRequest(t, b, "POST "+path+" HTTP/1.1\r\nHost: "+host+"\r\nContent-Type: application/json\r\n"+
				"webhook-id: "+id+"\r\nwebhook-timestamp: "+ts+"\r\nwebhook-signature: "+sig+"\r\n"+
				"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+string(body), 5*time.Second)
			if a.Err != nil || a.Status != 404 || a.Code != "not_found" {
				t.Errorf("POST %s: %d %q %v, want 404 not_found (never a redirect)", path, a.Status, a.Code, a.Err)
			}
		}
		// A query string is not part of the path.
		if r := post(b.URL+"?../../x=1", delivery{ID: newID(), Body: body}, nil); r.Status != 200 {
			t.Errorf("query string: %d %q", r.Status, r.Code)
		}
	})

	type kept struct {
		d      delivery
		code   string
		reason string
	}
	var keep []kept

	t.Run("non-UTF-8 bodies kept byte for byte", func(t *testing.T) {
		for _, body := range [][]byte{
			[]byte("\xff\xfe\x00not json at all\x80\x81"),
			[]byte(`{"id":"evt_1","object":"event","created_at":1780000000,"type":"batch.completed","data":{"id":"batch_` + "\xff\xc3\x28" + `"}}`),
			[]byte(`{"id":"evt_2","object":"event","created_at":1780000000,"type":"batch.` + "\xe2\x82" + `","data":{"id":"b"}}`),
			append([]byte{0xef, 0xbb, 0xbf}, mustSample(t, schema.BatchCompleted)...), // BOM
		} {
			d := delivery{ID: newID(), Body: body}
			r := post(b.URL, d, nil)
			if r.Status != 200 || (r.Code != "published" && r.Code != "deadlettered") {
				t.Errorf("%q: %d %q %v, want 200 published or deadlettered", body[:min(len(body), 40)], r.Status, r.Code, r.Err)
				continue
			}
			keep = append(keep, kept{d: d, code: r.Code})
		}
	})

	t.Run("JSON bombs and deep nesting dead-lettered, bounded", func(t *testing.T) {
		// Deeper than encoding/json's 10,000 levels is not JSON to the
		// bridge (nor to a Go worker): dead-lettered as not_json, by design
		// (schema.Parse validates with json.Valid so nothing recurses).
		nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
		deep := nest(500000)
		cases := []struct {
			name, body, reason string
		}{
			{"500k nested arrays", deep, schema.ReasonNotJSON},
			{"1M unclosed arrays", strings.Repeat("[", 1000000), schema.ReasonNotJSON},
			{"object 100k deep, no type", `{"data":` + strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000) + `}`, schema.ReasonNotJSON},
			{"5k nested arrays", nest(5000), schema.ReasonNotObject},
			{"object 5k deep, no type", `{"data":` + strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000) + `}`, schema.ReasonMissingType},
			{"100k members, no type", "{" + strings.Repeat(`"k":1,`, 100000) + `"z":0}`, schema.ReasonMissingType},
			{"unroutable type, 5k deep data", `{"id":"evt_x","object":"event","created_at":1,"type":"not a type!","data":` + nest(5000) + `}`, schema.ReasonUnroutableType},
			{"type not a string, 100k members", `{"type":{` + strings.Repeat(`"k":[1],`, 100000) + `"z":0}}`, schema.ReasonUnroutableType},
		}
		for _, c := range cases {
			d := delivery{ID: newID(), Body: []byte(c.body)}
			start := time.Now()
			r := post(b.URL, d, nil)
			took := time.Since(start)
			if r.Status != 200 || r.Code != "deadlettered" {
				t.Errorf("%s: %d %q %v, want 200 deadlettered", c.name, r.Status, r.Code, r.Err)
				continue
			}
			if took > 5*time.Second {
				t.Errorf("%s took %s", c.name, took)
			}
			t.Logf("%s (%d bytes): deadlettered in %s", c.name, len(c.body), took.Round(time.Millisecond))
			keep = append(keep, kept{d: d, code: "deadlettered", reason: c.reason})
		}
	})

	t.Run("stored as answered", func(t *testing.T) {
		msgs := readStream(t, p.URL(), stream)
		byID := map[string]storedMsg{}
		for _, m := range msgs {
			byID[m.Header.Get("webhook-id")] = m
		}
		for _, k := range keep {
			m, ok := byID[k.d.ID]
			if !ok {
				t.Errorf("%s (%s) not in the stream", k.d.ID, k.code)
				continue
			}
			if !bytes.Equal(m.Data, k.d.Body) {
				t.Errorf("%s: stored body differs from the request body", k.d.ID)
			}
			if k.code == "deadlettered" {
				if m.Subject != prefix+".deadletter" {
					t.Errorf("%s: dead letter on %s", k.d.ID, m.Subject)
				}
				if k.reason != "" && m.Header.Get("hookbridge-reason") != k.reason {
					t.Errorf("%s: reason %q, want %q", k.d.ID, m.Header.Get("hookbridge-reason"), k.reason)
				}
			} else if ev, err := schema.Parse(k.d.Body); err != nil || m.Subject != prefix+"."+string(ev.Type) {
				t.Errorf("%s: published on %s (parse %v)", k.d.ID, m.Subject, err)
			}
		}
	})

	t.Run("flood of invalid signatures", func(t *testing.T) {
		msgsBefore := streamCount(t, p.URL(), stream)
		kvMsgsBefore, kvSeqBefore := kvState(t, p.URL(), bucket)
		logBefore := strings.Count(b.logs.String(), "\n")

		valid := func(n int) ([]time.Duration, []string) {
			var lat []time.Duration
			var ids []string
			for range n {
				d := delivery{ID: newID(), Body: mustSample(t, schema.ResponseCompleted)}
				start := time.Now()
				r := post(b.URL, d, nil)
				lat = append(lat, time.Since(start))
				if r.Status != 200 || r.Code != "published" {
					t.Errorf("valid delivery during the flood test: %d %q %v", r.Status, r.Code, r.Err)
				}
				ids = append(ids, d.ID)
			}
			return lat, ids
		}
		pct := func(l []time.Duration, q float64) time.Duration {
			s := slices.Clone(l)
			slices.Sort(s)
			return s[int(q*float64(len(s)-1))]
		}
		baseLat, baseIDs := valid(200)

		const floodN, floodC = 5000, 32
		var next, ok401, other atomic.Int64
		var wrong sync.Map
		flood := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: floodC, MaxConnsPerHost: floodC}}
		var wg sync.WaitGroup
		floodStart := time.Now()
		body := mustSample(t, schema.BatchCompleted)
		for range floodC {
			wg.Go(func() {
				for next.Add(1) <= floodN {
					req, _ := http.NewRequest("POST", b.URL, bytes.NewReader(body))
					req.Header.Set("webhook-id", newID())
					req.Header.Set("webhook-timestamp", strconv.FormatInt(time.Now().Unix(), 10))
					req.Header.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString([]byte(newID()+newID()[:8])))
					resp, err := flood.Do(req)
					if err != nil {
						other.Add(1)
						wrong.Store("error: "+classifyErr(err), true)
						continue
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 401 && bytes.Contains(b, []byte(`"error":"invalid_signature"`)) {
						ok401.Add(1)
					} else {
						other.Add(1)
						wrong.Store(fmt.Sprintf("%d %s", resp.StatusCode, b), true)
					}
				}
			})
		}
		floodLat, floodIDs := valid(200)
		wg.Wait()
		floodTook := time.Since(floodStart)
		if ok401.Load() != floodN {
			var kinds []string
			wrong.Range(func(k, _ any) bool { kinds = append(kinds, k.(string)); return true })
			t.Errorf("flood: %d of %d answered 401 invalid_signature; others: %v", ok401.Load(), floodN, kinds)
		}

		msgsAfter := streamCount(t, p.URL(), stream)
		kvMsgsAfter, kvSeqAfter := kvState(t, p.URL(), bucket)
		validN := uint64(len(baseIDs) + len(floodIDs))
		if msgsAfter-msgsBefore != validN {
			t.Errorf("stream grew by %d messages, want %d (the valid deliveries only)", msgsAfter-msgsBefore, validN)
		}
		// Each valid delivery writes its key twice (claim, complete); the
		// flood must add nothing.
		if kvSeqAfter-kvSeqBefore != 2*validN || kvMsgsAfter-kvMsgsBefore != validN {
			t.Errorf("dedup bucket: %d writes and %d keys added, want %d and %d", kvSeqAfter-kvSeqBefore, kvMsgsAfter-kvMsgsBefore, 2*validN, validN)
		}
		logLines := strings.Count(b.logs.String(), "\n") - logBefore
		if logLines > 500 {
			t.Errorf("the flood produced %d log lines: rejected requests must be sampled", logLines)
		}
		b50, b99, f50, f99 := pct(baseLat, .5), pct(baseLat, .99), pct(floodLat, .5), pct(floodLat, .99)
		t.Logf("valid deliveries: p50 %s p99 %s alone; p50 %s p99 %s during a flood of %d invalid signatures at concurrency %d (%.0f req/s over %s); %d log lines for the flood",
			b50.Round(10*time.Microsecond), b99.Round(10*time.Microsecond), f50.Round(10*time.Microsecond), f99.Round(10*time.Microsecond),
			floodN, floodC, float64(floodN)/floodTook.Seconds(), floodTook.Round(time.Millisecond), logLines)
		// Generous: the flood shares two cores with the bridge, nats-server,
		// the race detector and this test.
		if f99 > 2*time.Second {
			t.Errorf("valid p99 during the flood %s, want < 2s", f99)
		}
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
