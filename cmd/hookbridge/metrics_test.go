package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/schema"
)

// Two test-only secrets: position 0 and position 1.
var (
	testSecret0 = "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("0"), 32))
	testSecret1 = "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("1"), 32))
)

// signedRequest builds a webhook request signed with secret at ts.
func signedRequest(t testing.TB, url, secret, id string, ts int64, body []byte) *http.Request {
	t.Helper()
	s, err := ingest.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	tss := strconv.FormatInt(ts, 10)
	sig, err := ingest.Sign(s, id, tss, body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", tss)
	req.Header.Set("webhook-signature", sig)
	return req
}

// fakePublisher acknowledges everything except the webhook-ids in fail, and
// answers duplicate for a webhook-id it already has, as JetStream does.
type fakePublisher struct {
	mu   sync.Mutex
	fail map[string]bool
	got  []*schema.Delivery
}

func (p *fakePublisher) Publish(_ context.Context, d *schema.Delivery) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail[d.WebhookID] {
		return false, errors.New("broker down")
	}
	for _, g := range p.got {
		if g.DedupKey() == d.DedupKey() {
			return true, nil
		}
	}
	p.got = append(p.got, d)
	return false, nil
}

// fakeDeduper is an in-memory claim table without leases.
type fakeDeduper struct {
	mu    sync.Mutex
	state map[string]ingest.ClaimStatus
}

func (d *fakeDeduper) Claim(_ context.Context, id string) (ingest.ClaimStatus, ingest.Owner, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st, ok := d.state[id]; ok {
		return st, 0, nil
	}
	d.state[id] = ingest.ClaimInFlight
	return ingest.ClaimNew, 1, nil
}

func (d *fakeDeduper) Complete(_ context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state[id] = ingest.ClaimDone
	return nil
}

func (d *fakeDeduper) Release(_ context.Context, id string, _ ingest.Owner) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.state, id)
	return nil
}

// TestMetricsScriptedSequence drives a real ingest.Handler through a fixed
// sequence of requests and checks every counter exactly.
func TestMetricsScriptedSequence(t *testing.T) {
	secrets, err := ingest.ParseSecrets(testSecret0 + " " + testSecret1)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ingest.NewVerifier(secrets)
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics("test", "nats")
	pub := &fakePublisher{fail: map[string]bool{"wh_unavailable": true}}
	h, err := ingest.NewHandler(ingest.HandlerConfig{
		Verifier:  v,
		Publisher: pub,
		Deduper:   &fakeDeduper{state: map[string]ingest.ClaimStatus{}},
		Log:       zerolog.Nop(),
		Observer:  m,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	url := srv.URL + "/webhooks/openai"

	known := func(t testing.TB) []byte {
		b, ok := schema.Sample(schema.ResponseCompleted)
		if !ok {
			t.Fatal("no sample")
		}
		return b
	}(t)
	unknown := []byte(`{"id":"evt_unknown1","object":"event","created_at":1750861210,"type":"brand_new.thing","data":{"id":"x_1"}}`)
	notJSON := []byte("this is not json")
	now := time.Now().Unix()

	steps := []struct {
		name   string
		req    *http.Request
		status int
		code   string
	}{
		{"known, secret 0", signedRequest(t, url, testSecret0, "wh_1", now, known), 200, "published"},
		{"known, secret 1", signedRequest(t, url, testSecret1, "wh_2", now, known), 200, "published"},
		{"unknown type, secret 1", signedRequest(t, url, testSecret1, "wh_3", now, unknown), 200, "published"},
		{"retry of wh_1", signedRequest(t, url, testSecret0, "wh_1", now, known), 200, "duplicate"},
		{"retry of wh_3", signedRequest(t, url, testSecret1, "wh_3", now, unknown), 200, "duplicate"},
		{"not JSON", signedRequest(t, url, testSecret0, "wh_dead", now, notJSON), 200, "deadlettered"},
		{"too old", signedRequest(t, url, testSecret0, "wh_old", now-3600, known), 401, "invalid_signature"},
		{"wrong secret", signedRequest(t, url, otherSecret, "wh_nomatch", now, known), 401, "invalid_signature"},
		{"missing webhook-id", func() *http.Request {
			r := signedRequest(t, url, testSecret0, "wh_noid", now, known)
			r.Header.Del("webhook-id")
			return r
		}(), 400, "bad_request"},
		{"broker down", signedRequest(t, url, testSecret0, "wh_unavailable", now, known), 503, "unavailable"},
	}
	for _, s := range steps {
		resp, err := srv.Client().Do(s.req)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != s.status || !strings.Contains(buf.String(), `"`+s.code+`"`) {
			t.Fatalf("%s: got %d %s, want %d %s", s.name, resp.StatusCode, buf.String(), s.status, s.code)
		}
	}

	got := gather(t, m)
	for k, n := range map[string]float64{
		`hookbridge_webhook_requests_total{outcome="published"}`:         3,
		`hookbridge_webhook_requests_total{outcome="duplicate"}`:         2,
		`hookbridge_webhook_requests_total{outcome="deadlettered"}`:      1,
		`hookbridge_webhook_requests_total{outcome="invalid_signature"}`: 2,
		`hookbridge_webhook_requests_total{outcome="bad_request"}`:       1,
		`hookbridge_webhook_requests_total{outcome="unavailable"}`:       1,
		`hookbridge_webhook_requests_total{outcome="in_flight"}`:         0,
		`hookbridge_webhook_requests_total{outcome="too_large"}`:         0,
		`hookbridge_webhook_requests_total{outcome="rate_limited"}`:      0,

		`hookbridge_webhook_request_duration_seconds{outcome="published"}`:         3,
		`hookbridge_webhook_request_duration_seconds{outcome="duplicate"}`:         2,
		`hookbridge_webhook_request_duration_seconds{outcome="invalid_signature"}`: 2,

		`hookbridge_signature_failures_total{reason="too_old"}`:       1,
		`hookbridge_signature_failures_total{reason="no_match"}`:      1,
		`hookbridge_signature_failures_total{reason="missing_id"}`:    1,
		`hookbridge_signature_failures_total{reason="too_new"}`:       0,
		`hookbridge_signature_failures_total{reason="bad_timestamp"}`: 0,

		// Verified: wh_1 twice, wh_dead, wh_unavailable with secret 0; wh_2
		// and wh_3 twice with secret 1.
		`hookbridge_signature_secret_matches_total{secret="0"}`: 4,
		`hookbridge_signature_secret_matches_total{secret="1"}`: 3,

		`hookbridge_events_published_total{type="response.completed"}`: 2,
		`hookbridge_events_published_total{type="other"}`:              1,
		`hookbridge_events_published_total{type="deadletter"}`:         1,
		`hookbridge_events_published_total{type="batch.completed"}`:    0,

		`hookbridge_dedup_claims_total{result="new"}`:                     5,
		`hookbridge_dedup_claims_total{result="done"}`:                    2,
		`hookbridge_dedup_claims_total{result="in_flight"}`:               0,
		`hookbridge_dedup_claims_total{result="error"}`:                   0,
		`hookbridge_dedup_path_total{path="store"}`:                       7,
		`hookbridge_dedup_path_total{path="window"}`:                      0,
		`hookbridge_publish_acks_total{broker="nats",result="stored"}`:    4,
		`hookbridge_publish_acks_total{broker="nats",result="duplicate"}`: 0,

		`hookbridge_publish_errors_total{broker="nats"}`:                              1,
		`hookbridge_publish_duration_seconds{broker="nats",result="ok"}`:              4,
		`hookbridge_publish_duration_seconds{broker="nats",result="error"}`:           1,
		`hookbridge_build_info{goversion="` + runtime.Version() + `",version="test"}`: 1,
		`hookbridge_secret_reload_errors_total`:                                       0,
	} {
		v, ok := got[k]
		if !ok {
			t.Errorf("%s: series missing", k)
		} else if v != n {
			t.Errorf("%s = %v, want %v", k, v, n)
		}
	}
	// Only positions that matched are exported; no id ever becomes a label.
	for k := range got {
		if strings.HasPrefix(k, "hookbridge_signature_secret_matches_total{") && !strings.Contains(k, `"0"`) && !strings.Contains(k, `"1"`) {
			t.Errorf("unexpected series %s", k)
		}
		if strings.Contains(k, "wh_") || strings.Contains(k, "evt_") {
			t.Errorf("series with an id: %s", k)
		}
	}
}

// TestMetricsWindowPath: young deliveries take the window path; a repeat is
// the broker's duplicate, counted as such and not as a published event; an
// unknown outcome is re-published and counted when it settles.
func TestMetricsWindowPath(t *testing.T) {
	secrets, err := ingest.ParseSecrets(testSecret0)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ingest.NewVerifier(secrets)
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics("test", "nats")
	pub := &lostAckPublisher{fakePublisher: fakePublisher{fail: map[string]bool{}}, lose: "wh_lost"}
	h, err := ingest.NewHandler(ingest.HandlerConfig{Verifier: v, Publisher: pub, Deduper: &fakeDeduper{state: map[string]ingest.ClaimStatus{}},
		BrokerWindow: 2 * time.Hour, Log: zerolog.Nop(), Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	m.republishPending(h)
	srv := httptest.NewServer(h)
	defer srv.Close()
	url := srv.URL + "/webhooks/openai"
	now := time.Now().Unix()
	body := []byte(`{"id":"evt_w1","object":"event","created_at":` + strconv.FormatInt(now, 10) + `,"type":"batch.completed","data":{"id":"batch_1"}}`)
	for _, s := range []struct {
		id     string
		status int
	}{{"wh_w1", 200}, {"wh_w1", 200}, {"wh_lost", 503}} {
		resp, err := srv.Client().Do(signedRequest(t, url, testSecret0, s.id, now, body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != s.status {
			t.Fatalf("%s: status %d, want %d", s.id, resp.StatusCode, s.status)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); gather(t, m)[`hookbridge_republish_total{result="duplicate"}`] != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the re-publish was never counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := gather(t, m)
	for k, n := range map[string]float64{
		`hookbridge_dedup_path_total{path="window"}`:                      3,
		`hookbridge_dedup_path_total{path="store"}`:                       0,
		`hookbridge_dedup_claims_total{result="new"}`:                     0,
		`hookbridge_publish_acks_total{broker="nats",result="stored"}`:    1,
		`hookbridge_publish_acks_total{broker="nats",result="duplicate"}`: 1,
		`hookbridge_events_published_total{type="batch.completed"}`:       1,
		`hookbridge_webhook_requests_total{outcome="duplicate"}`:          1,
		`hookbridge_republish_total{result="duplicate"}`:                  1,
		`hookbridge_republish_total{result="gave_up"}`:                    0,
		`hookbridge_republish_pending`:                                    0,
	} {
		if got[k] != n {
			t.Errorf("%s = %v, want %v", k, got[k], n)
		}
	}
}

// lostAckPublisher stores everything but loses the first answer for lose.
type lostAckPublisher struct {
	fakePublisher
	lose string
}

func (p *lostAckPublisher) Publish(ctx context.Context, d *schema.Delivery) (bool, error) {
	dup, err := p.fakePublisher.Publish(ctx, d)
	if d.WebhookID == p.lose && !dup && err == nil {
		return false, lostAck{}
	}
	return dup, err
}

type lostAck struct{}

func (lostAck) Error() string     { return "connection lost before the ack" }
func (lostAck) MaybeStored() bool { return true }

// gather scrapes m's registry into "name{label="value",…}" → value, where a
// histogram's value is its sample count.
func gather(t testing.TB, m *metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			key := mf.GetName()
			if lps := mt.GetLabel(); len(lps) > 0 {
				var labels []string
				for _, lp := range lps {
					labels = append(labels, lp.GetName()+"="+strconv.Quote(lp.GetValue()))
				}
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case mt.GetCounter() != nil:
				out[key] = mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				out[key] = mt.GetGauge().GetValue()
			case mt.GetHistogram() != nil:
				out[key] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// TestMetricsUnknownLabels: values outside the pre-resolved sets still count
// (the handler may grow outcomes), and out-of-range secret positions fold
// into "other".
func TestMetricsUnknownLabels(t *testing.T) {
	m := newMetrics("test", "kafka")
	m.Request("future_outcome", time.Millisecond)
	m.SignatureFailure("future_reason")
	m.Dedup("future_result")
	m.SecretMatched(40)
	m.SecretMatched(-1)
	m.Published(&schema.Event{Type: "some.unknown"}, time.Millisecond, false)
	m.DedupPath("future_path")
	m.Republished("future_result")
	got := gather(t, m)
	for _, k := range []string{
		`hookbridge_webhook_requests_total{outcome="future_outcome"}`,
		`hookbridge_signature_failures_total{reason="future_reason"}`,
		`hookbridge_dedup_claims_total{result="future_result"}`,
		`hookbridge_events_published_total{type="other"}`,
		`hookbridge_publish_duration_seconds{broker="kafka",result="ok"}`,
		`hookbridge_dedup_path_total{path="future_path"}`,
		`hookbridge_republish_total{result="future_result"}`,
	} {
		if got[k] != 1 {
			t.Errorf("%s = %v, want 1", k, got[k])
		}
	}
	if k := `hookbridge_signature_secret_matches_total{secret="other"}`; got[k] != 2 {
		t.Errorf("%s = %v, want 2", k, got[k])
	}
}

// BenchmarkMetricsObserver measures the per-request observer cost.
func BenchmarkMetricsObserver(b *testing.B) {
	m := newMetrics("test", "nats")
	ev := &schema.Event{Type: schema.ResponseCompleted}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.SecretMatched(0)
			m.Dedup("new")
			m.DedupPath(ingest.PathWindow)
			m.Published(ev, time.Millisecond, false)
			m.Request(ingest.OutcomePublished, time.Millisecond)
		}
	})
}
