package integration

// No secret, signature or body in any log line, metric or
// response. A scripted run exercises every path that logs (valid, invalid,
// stale, duplicate, dead letter, broker outage, oversized, wrong path) at
// debug level, then searches everything the process wrote.

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestLogsAndMetricsCarryNoSecrets(t *testing.T) {
	p := startNATS(t)
	env, _, _ := natsEnv(t, p.URL())
	// Credentials in the URL (the server has no authentication, so it
	// ignores them): the password must appear in no line, start-up
	// configuration and reconnection logs included.
	const urlPassword = "UrlPassw0rd-7d41e9"
	env["HOOKBRIDGE_NATS_URL"] = strings.Replace(p.URL(), "nats://", "nats://hookbridge:"+urlPassword+"@", 1)
	env["HOOKBRIDGE_LOG_LEVEL"] = "debug"
	env["HOOKBRIDGE_PUBLISH_TIMEOUT"] = "1s"
	env["HOOKBRIDGE_DEDUP_LEASE"] = "2s"
	b := startBridge(t, env)

	forbidden := []string{urlPassword} // texts that must appear nowhere
	var responses []string
	marker := func() string {
		m := "MARKER" + strings.ToUpper(newID()[3:19])
		forbidden = append(forbidden, m)
		return m
	}
	body := func(typ string) []byte {
		return fmt.Appendf(nil, `{"id":"evt_%s","object":"event","created_at":1780000000,"type":%q,"data":{"id":"batch_%s","note":%q}}`,
			newID()[3:], typ, newID()[3:], marker())
	}
	// send posts d, remembering the signature it carried and the answer.
	send := func(d delivery, ts int64, mutate func(*http.Request)) result {
		var sig string
		r := postAt(b.URL, d, ts, func(req *http.Request) {
			if mutate != nil {
				mutate(req)
			}
			sig = req.Header.Get("webhook-signature")
		})
		if s := strings.TrimPrefix(sig, "v1,"); s != "" {
			forbidden = append(forbidden, s)
		}
		responses = append(responses, fmt.Sprintf("%d %s", r.Status, r.Code))
		return r
	}
	now := func() int64 { return time.Now().Unix() }

	// Valid deliveries and their duplicates.
	for range 5 {
		d := delivery{ID: newID(), Body: body("batch.completed")}
		if r := send(d, now(), nil); r.Code != "published" {
			t.Fatalf("valid: %d %q", r.Status, r.Code)
		}
		if r := send(d, now(), nil); r.Code != "duplicate" {
			t.Fatalf("duplicate: %d %q", r.Status, r.Code)
		}
	}
	// Invalid signatures: wrong secret material and a tampered body.
	for range 5 {
		d := delivery{ID: newID(), Body: body("batch.failed")}
		bogus := base64.StdEncoding.EncodeToString([]byte(marker() + "0123456789abcdef"))
		forbidden = append(forbidden, bogus)
		if r := send(d, now(), func(req *http.Request) { req.Header.Set("webhook-signature", "v1,"+bogus) }); r.Status != 401 {
			t.Fatalf("bad signature: %d %q", r.Status, r.Code)
		}
		tampered := body("batch.failed")
		if r := send(d, now(), func(req *http.Request) {
			req.Body, req.ContentLength = io.NopCloser(strings.NewReader(string(tampered))), int64(len(tampered))
		}); r.Status != 401 {
			t.Fatalf("tampered: %d %q", r.Status, r.Code)
		}
	}
	// Stale and future timestamps.
	if r := send(delivery{ID: newID(), Body: body("batch.completed")}, now()-3600, nil); r.Status != 401 {
		t.Fatalf("stale: %d %q", r.Status, r.Code)
	}
	if r := send(delivery{ID: newID(), Body: body("batch.completed")}, now()+3600, nil); r.Status != 401 {
		t.Fatalf("future: %d %q", r.Status, r.Code)
	}
	// Missing headers, malformed timestamp.
	if r := send(delivery{ID: newID(), Body: body("batch.completed")}, now(), func(req *http.Request) { req.Header.Set("webhook-timestamp", "12x"+marker()) }); r.Status != 400 {
		t.Fatalf("bad timestamp: %d %q", r.Status, r.Code)
	}
	// Dead letters: not JSON, unroutable type.
	for _, dl := range [][]byte{[]byte("plain text " + marker()), body("Not.Routable " + marker())} {
		if r := send(delivery{ID: newID(), Body: dl}, now(), nil); r.Code != "deadlettered" {
			t.Fatalf("dead letter: %d %q", r.Status, r.Code)
		}
	}
	// Oversized body and a wrong path.
	big := []byte(strings.Repeat(marker(), (1<<20)/20))
	if r := send(delivery{ID: newID(), Body: big}, now(), nil); r.Status != 413 {
		t.Fatalf("too large: %d %q", r.Status, r.Code)
	}
	if r := post(strings.TrimSuffix(b.URL, "/webhooks/openai")+"/nope", delivery{ID: newID(), Body: body("batch.completed")}, nil); r.Status != 404 {
		t.Fatalf("wrong path: %d %q", r.Status, r.Code)
	}
	// Broker outage: 503s, then recovery.
	p.kill9()
	pending := []delivery{{ID: newID(), Body: body("response.completed")}, {ID: newID(), Body: body("response.failed")}}
	for _, d := range pending {
		if r := send(d, now(), nil); r.Status != 503 {
			t.Fatalf("during outage: %d %q", r.Status, r.Code)
		}
	}
	p.start()
	deadline := time.Now().Add(20 * time.Second)
	for _, d := range pending {
		for {
			r := send(d, now(), nil)
			if r.Status == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not acknowledged after the outage: %d %q", r.Status, r.Code)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// The secret in every form it could leak in.
	b64 := strings.TrimPrefix(itSecret, "whsec_")
	forbidden = append(forbidden, itSecret, b64, hex.EncodeToString(signingKey()),
		base64.RawStdEncoding.EncodeToString(signingKey()), base64.URLEncoding.EncodeToString(signingKey()))

	get := func(path string) string {
		resp, err := http.Get(b.AdminURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		x, _ := io.ReadAll(resp.Body)
		return string(x)
	}
	metrics := get("/metrics")
	ready := get("/readyz?verbose")
	if !strings.Contains(metrics, "hookbridge_webhook_requests_total") {
		t.Fatalf("/metrics lacks hookbridge_webhook_requests_total:\n%.2000s", metrics)
	}
	b.stop() // the shutdown sequence logs too
	logs := b.logs.String()
	if !(strings.Contains(logs, "publish failed") || strings.Contains(logs, "dedup claim failed")) ||
		!strings.Contains(logs, "webhook rejected") || !strings.Contains(logs, "dead-lettered") {
		t.Errorf("the scripted run did not log the outage, the rejections and the dead letters; the test proves less than it claims:\n%s", logs)
	}
	for _, where := range []struct{ name, text string }{
		{"logs", logs}, {"/metrics", metrics}, {"/readyz?verbose", ready}, {"responses", strings.Join(responses, "\n")},
	} {
		for _, f := range forbidden {
			if strings.Contains(where.text, f) {
				i := strings.Index(where.text, f)
				t.Errorf("%s contain %q: …%s…", where.name, f, where.text[max(0, i-200):min(len(where.text), i+len(f)+50)])
			}
		}
	}
	t.Logf("searched %d log bytes (%d lines), %d metric bytes and %d responses for %d secret, signature and body texts",
		len(logs), strings.Count(logs, "\n"), len(metrics), len(responses), len(forbidden))
}
