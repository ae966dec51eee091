package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/schema"
)

// natsTarget is a NATS server the suite runs against: one started by the
// test, and the machine's when HOOKBRIDGE_IT_NATS_URL is set (CI sets it).
type natsTarget struct {
	name string
	url  string
	proc *natsProc // nil for an external server (cannot be killed)
}

func natsTargets(t *testing.T) []natsTarget {
	ts := []natsTarget{}
	p := startNATS(t)
	ts = append(ts, natsTarget{name: "own", url: p.URL(), proc: p})
	if u := os.Getenv("HOOKBRIDGE_IT_NATS_URL"); u != "" {
		ts = append(ts, natsTarget{name: "external", url: u})
	} else if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but HOOKBRIDGE_IT_NATS_URL is unset: the suite must also run against the machine's NATS")
	}
	return ts
}

// natsEnv gives each bridge its own stream, prefix and dedup bucket, so runs
// on a shared server never see each other's messages; cleanup deletes them.
func natsEnv(t *testing.T, url string) (map[string]string, string, string) {
	t.Helper()
	suffix := strings.ToLower(newID()[3:11])
	prefix := "it_" + suffix
	stream := "IT_" + strings.ToUpper(suffix)
	bucket := "IT_DEDUP_" + strings.ToUpper(suffix)
	t.Cleanup(func() {
		nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
		if err != nil {
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, stream)
		_ = js.DeleteKeyValue(ctx, bucket)
	})
	return map[string]string{
		"HOOKBRIDGE_BROKER":       "nats",
		"HOOKBRIDGE_NATS_URL":     url,
		"HOOKBRIDGE_NATS_STREAM":  stream,
		"HOOKBRIDGE_TOPIC_PREFIX": prefix,
		"HOOKBRIDGE_DEDUP_BUCKET": bucket,
	}, prefix, stream
}

// storedMsg is one message read back from the stream.
type storedMsg struct {
	Subject string
	Header  nats.Header
	Data    []byte
}

// openStream connects to url and looks up stream; the connection closes
// when the test ends.
func openStream(t testing.TB, ctx context.Context, url, stream string) (jetstream.Stream, *jetstream.StreamInfo) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s, info
}

// readStream returns every message in stream, bounded in time. A read that
// fails (on a cluster, a consumer whose leader is still being placed answers
// "no responders") resumes after the last message read.
func readStream(t testing.TB, url, stream string) []storedMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, info := openStream(t, ctx, url, stream)
	want := int(info.State.Msgs)
	var out []storedMsg
	next := uint64(1)
	for len(out) < want {
		c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: next})
		for err == nil && len(out) < want {
			var m jetstream.Msg
			if m, err = c.Next(jetstream.FetchMaxWait(5 * time.Second)); err == nil {
				md, merr := m.Metadata()
				if merr != nil {
					t.Fatal(merr)
				}
				next = md.Sequence.Stream + 1
				out = append(out, storedMsg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
			}
		}
		if len(out) < want {
			if ctx.Err() != nil {
				t.Fatalf("read %d of %d messages: %v", len(out), want, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return out
}

func countByWebhookID(msgs []storedMsg) map[string]int {
	m := map[string]int{}
	for _, s := range msgs {
		m[s.Header.Get("Nats-Msg-Id")]++
	}
	return m
}

// TestNATS_EndToEnd is the main acceptance suite of the NATS path.
func TestNATS_EndToEnd(t *testing.T) {
	for _, target := range natsTargets(t) {
		t.Run(target.name, func(t *testing.T) {
			env, prefix, stream := natsEnv(t, target.url)
			b := startBridge(t, env)

			// N unique deliveries of every catalogue type.
			const perType = 3
			sent := map[string]delivery{}
			types := schema.Types()
			var mu sync.Mutex
			var wg sync.WaitGroup
			sem := make(chan struct{}, 16)
			for _, typ := range types {
				sample, ok := schema.Sample(typ)
				if !ok {
					t.Fatalf("no sample for %s", typ)
				}
				for i := 0; i < perType; i++ {
					d := delivery{ID: newID(), Body: sample}
					wg.Add(1)
					sem <- struct{}{}
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						r := post(b.URL, d, nil)
						if r.Status != 200 || r.Code != "published" {
							t.Errorf("%s: got %d %q %v", d.ID, r.Status, r.Code, r.Err)
						}
						mu.Lock()
						sent[d.ID] = d
						mu.Unlock()
					}()
				}
			}
			wg.Wait()

			// Duplicates: sequential repeats and 50 concurrent copies of one id.
			seq := delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
			for i := 0; i < 5; i++ {
				r := post(b.URL, seq, nil)
				want := "duplicate"
				if i == 0 {
					want = "published"
				}
				if r.Status != 200 || r.Code != want {
					t.Fatalf("sequential copy %d: %d %q, want 200 %q", i, r.Status, r.Code, want)
				}
			}
			conc := delivery{ID: newID(), Body: mustSample(t, schema.ResponseCompleted)}
			codes := map[string]int{}
			var cmu sync.Mutex
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := post(b.URL, conc, nil)
					cmu.Lock()
					codes[fmt.Sprintf("%d %s", r.Status, r.Code)]++
					cmu.Unlock()
				}()
			}
			wg.Wait()
			if codes["200 published"] != 1 {
				t.Errorf("50 concurrent copies: %v, want exactly one 200 published", codes)
			}
			for k := range codes {
				if k != "200 published" && k != "200 duplicate" && k != "409 in_flight" {
					t.Errorf("unexpected answer to a concurrent copy: %q", k)
				}
			}

			// Tampered and stale deliveries are refused and publish nothing.
			bad := delivery{ID: newID(), Body: mustSample(t, schema.BatchFailed)}
			tampered := post(b.URL, bad, func(r *http.Request) {
				body := bytes.Replace(bad.Body, []byte(`"batch_`), []byte(`"batcX_`), 1)
				r.Body = nopCloser{bytes.NewReader(body)}
				r.ContentLength = int64(len(body))
			})
			stale := postAt(b.URL, bad, time.Now().Add(-10*time.Minute).Unix(), nil)
			if tampered.Status != 401 || stale.Status != 401 {
				t.Errorf("tampered %d, stale %d; want 401 both", tampered.Status, stale.Status)
			}

			// An unknown but routable type gets its own subject; a non-JSON
			// verified body goes to the dead-letter subject.
			unknown := delivery{ID: newID(), Body: []byte(`{"id":"evt_new","object":"event","created_at":1790000000,"type":"video.remixed","data":{"id":"video_1"}}`)}
			notJSON := delivery{ID: newID(), Body: []byte(`this is not json`)}
			if r := post(b.URL, unknown, nil); r.Code != "published" {
				t.Errorf("unknown type: %d %q", r.Status, r.Code)
			}
			if r := post(b.URL, notJSON, nil); r.Status != 200 || r.Code != "deadlettered" {
				t.Errorf("non-JSON: %d %q", r.Status, r.Code)
			}

			msgs := readStream(t, target.url, stream)
			wantTotal := len(sent) + 1 + 1 + 2
			if len(msgs) != wantTotal {
				t.Fatalf("stream has %d messages, want %d", len(msgs), wantTotal)
			}
			per := countByWebhookID(msgs)
			for id, n := range per {
				if n != 1 {
					t.Errorf("webhook-id %s stored %d times", id, n)
				}
			}
			if per[bad.ID] != 0 {
				t.Errorf("a refused delivery reached the stream")
			}
			for _, m := range msgs {
				id := m.Header.Get("webhook-id")
				switch id {
				case unknown.ID:
					if m.Subject != prefix+".video.remixed" {
						t.Errorf("unknown type on %q", m.Subject)
					}
				case notJSON.ID:
					if m.Subject != prefix+".deadletter" || m.Header.Get("hookbridge-reason") != schema.ReasonNotJSON {
						t.Errorf("dead letter on %q reason %q", m.Subject, m.Header.Get("hookbridge-reason"))
					}
					if !bytes.Equal(m.Data, notJSON.Body) {
						t.Errorf("dead letter body changed")
					}
				}
				d, ok := sent[id]
				if !ok {
					continue
				}
				ev, err := schema.Parse(d.Body)
				if err != nil {
					t.Fatal(err)
				}
				if m.Subject != prefix+"."+string(ev.Type) {
					t.Errorf("%s on subject %q, want %q", ev.Type, m.Subject, prefix+"."+string(ev.Type))
				}
				if !bytes.Equal(m.Data, d.Body) {
					t.Errorf("%s: body not byte-identical", id)
				}
				checkHeaders(t, m.Header, id, ev)
			}
		})
	}
}

func checkHeaders(t *testing.T, h nats.Header, webhookID string, ev *schema.Event) {
	t.Helper()
	want := map[string]string{
		"Nats-Msg-Id":        webhookID,
		"webhook-id":         webhookID,
		"content-type":       "application/json",
		"ce-specversion":     "1.0",
		"ce-id":              ev.ID,
		"ce-source":          "https://api.openai.com",
		"ce-type":            string(ev.Type),
		"ce-time":            time.Unix(ev.CreatedAt, 0).UTC().Format(time.RFC3339),
		"ce-subject":         ev.ObjectID(),
		"ce-datacontenttype": "application/json",
		"ce-webhookid":       webhookID,
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: header %s = %q, want %q", webhookID, k, got, v)
		}
	}
	if h.Get("webhook-timestamp") == "" || !strings.HasPrefix(h.Get("webhook-signature"), "v1,") {
		t.Errorf("%s: webhook-timestamp/signature not forwarded", webhookID)
	}
}

// TestNATS_BrokerOutage: with the broker down the bridge answers 503 (with
// Retry-After) within its budget; once the broker is back, deliveries
// retried like OpenAI land exactly once.
func TestNATS_BrokerOutage(t *testing.T) {
	p := startNATS(t)
	env, _, stream := natsEnv(t, p.URL())
	env["HOOKBRIDGE_PUBLISH_TIMEOUT"] = "1s"
	env["HOOKBRIDGE_DEDUP_LEASE"] = "3s"
	b := startBridge(t, env)

	before := delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
	if r := post(b.URL, before, nil); r.Code != "published" {
		t.Fatalf("before outage: %d %q", r.Status, r.Code)
	}

	p.kill9()
	during := make([]delivery, 5)
	for i := range during {
		during[i] = delivery{ID: newID(), Body: mustSample(t, schema.ResponseFailed)}
		start := time.Now()
		r := post(b.URL, during[i], nil)
		if r.Status != 503 || r.Code != "unavailable" {
			t.Fatalf("during outage: %d %q %v, want 503 unavailable", r.Status, r.Code, r.Err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("503 took %s, beyond the publish budget", took)
		}
	}
	if !waitStatus(b.AdminURL+"/readyz", 503, 10*time.Second) {
		t.Errorf("readyz did not turn 503 during the outage")
	}

	p.start()
	if !waitStatus(b.AdminURL+"/readyz", 200, 20*time.Second) {
		t.Errorf("readyz did not recover after the broker came back")
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, d := range append(during, before) {
		if r, _ := sendUntilAcked(b.URL, d, deadline); r.Status != 200 {
			t.Fatalf("%s never acknowledged after recovery: %d %q %v\n%s", d.ID, r.Status, r.Code, r.Err, b.logs)
		}
	}
	msgs := readStream(t, p.URL(), stream)
	per := countByWebhookID(msgs)
	for _, d := range append(during, before) {
		if per[d.ID] != 1 {
			t.Errorf("%s stored %d times, want 1", d.ID, per[d.ID])
		}
	}
	if len(msgs) != len(during)+1 {
		t.Errorf("stream has %d messages, want %d", len(msgs), len(during)+1)
	}
}

// TestEmbedded_ServeTailRestart: `serve` with no broker settings runs an
// embedded JetStream that accepts events, serves them to `tail`, and keeps
// them across a restart on the same data dir.
func TestEmbedded_ServeTailRestart(t *testing.T) {
	dataDir := t.TempDir()
	natsPort := freePort(t)
	env := map[string]string{
		"HOOKBRIDGE_DATA_DIR":           dataDir,
		"HOOKBRIDGE_EMBEDDED_NATS_ADDR": fmt.Sprintf("127.0.0.1:%d", natsPort),
	}
	b := startBridge(t, env)
	ids := []string{}
	for _, typ := range []schema.Type{schema.BatchCompleted, schema.FineTuningJobSucceeded, schema.RealtimeCallIncoming} {
		d := delivery{ID: newID(), Body: mustSample(t, typ)}
		if r := post(b.URL, d, nil); r.Code != "published" {
			t.Fatalf("%s: %d %q\n%s", typ, r.Status, r.Code, b.logs)
		}
		ids = append(ids, d.ID)
	}
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	tail := func() string {
		out, code := runCLI(t, 20*time.Second, nil, "tail", "--nats", natsURL, "--all", "--count", "3", "--wait", "10s")
		if code != 0 {
			t.Fatalf("tail exited %d:\n%s", code, out)
		}
		return out
	}
	out := tail()
	for _, id := range ids {
		if !strings.Contains(out, id) {
			t.Errorf("tail output lacks %s:\n%s", id, out)
		}
	}
	if !strings.Contains(out, "fine_tuning.job.succeeded") {
		t.Errorf("tail output lacks the type:\n%s", out)
	}

	b.stop()
	b.start()
	out = tail()
	for _, id := range ids {
		if !strings.Contains(out, id) {
			t.Errorf("after restart, tail output lacks %s:\n%s", id, out)
		}
	}
	// The dedup store survived too: a retry of a stored id is a duplicate.
	if r := post(b.URL, delivery{ID: ids[0], Body: mustSample(t, schema.BatchCompleted)}, nil); r.Code != "duplicate" {
		t.Errorf("retry after restart: %d %q, want duplicate", r.Status, r.Code)
	}
}

// waitStatus polls url until it answers status, bounded by within. Readiness
// is cached for about a second, so a flip is never instant.
func waitStatus(url string, status int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

func mustSample(t testing.TB, typ schema.Type) []byte {
	t.Helper()
	b, ok := schema.Sample(typ)
	if !ok {
		t.Fatalf("no sample for %s", typ)
	}
	return b
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
