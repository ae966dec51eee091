package integration

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/schema"
)

// TestOps_ShutdownOrdering checks the SIGTERM sequence from outside
// (docs/architecture.md): /readyz fails at once while new requests are still served
// for HOOKBRIDGE_SHUTDOWN_DELAY; then the listener closes but a request that
// was in flight finishes with 200; the process exits 0 and logs the steps in
// order: HTTP drain, publisher, connection, admin last.
func TestOps_ShutdownOrdering(t *testing.T) {
	p := startNATS(t)
	env, _, stream := natsEnv(t, p.URL())
	env["HOOKBRIDGE_SHUTDOWN_DELAY"] = "2s"
	env["HOOKBRIDGE_SHUTDOWN_GRACE"] = "10s"
	b := startBridge(t, env)
	s := opsSecret{Text: itSecret}
	u, _ := url.Parse(b.URL)

	// A request in flight across the whole delay: headers and half the body
	// now, the rest once the listener has closed.
	slow := delivery{ID: newID(), Body: mustSample(t, schema.ResponseCompleted)}
	pr, pw := io.Pipe()
	slowDone := make(chan result, 1)
	go func() {
		req := signedStreamRequest(t, b.URL, s, slow, pr)
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
		resp, err := client.Do(req)
		if err != nil {
			slowDone <- result{Err: err}
			return
		}
		defer resp.Body.Close()
		var r struct{ Status, Error string }
		_ = json.NewDecoder(resp.Body).Decode(&r)
		slowDone <- result{Status: resp.StatusCode, Code: r.Status + r.Error}
	}()
	half := len(slow.Body) / 2
	if _, err := pw.Write(slow.Body[:half]); err != nil {
		t.Fatal(err)
	}

	b.signal(syscall.SIGTERM)
	if !waitStatus(b.AdminURL+"/readyz", http.StatusServiceUnavailable, 5*time.Second) {
		t.Fatalf("/readyz did not fail after SIGTERM:\n%s", b.logs)
	}
	// Still inside the delay: new requests on new connections are published.
	during := delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if r := opsPost(fresh, b.URL, s, during, nil); r.Status != 200 || r.Code != "published" {
		t.Fatalf("POST during the shutdown delay: %d %q %v (the delay is 2s; this machine may be very slow)\n%s", r.Status, r.Code, r.Err, b.logs)
	}
	select {
	case r := <-slowDone:
		t.Fatalf("in-flight request answered before its body was complete: %+v", r)
	default:
	}

	// After the delay the listener closes; the in-flight request is waited for.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", u.Host, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("public listener still accepting 10s after SIGTERM:\n%s", b.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := pw.Write(slow.Body[half:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	select {
	case r := <-slowDone:
		if r.Status != 200 || r.Code != "published" {
			t.Fatalf("in-flight request: %d %q %v\n%s", r.Status, r.Code, r.Err, b.logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("in-flight request never answered:\n%s", b.logs)
	}

	if !b.wait(15 * time.Second) {
		t.Fatalf("bridge did not exit after SIGTERM:\n%s", b.logs)
	}
	if code := b.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, b.logs)
	}
	b.cmd = nil

	logs := b.logs.String()
	order := []string{
		`"shutting down: readiness now fails"`,
		`"step":"http server shutdown`,
		`"step":"publisher flush and close"`,
		`"step":"nats connection close"`,
		`"step":"admin server close"`,
		`"shutdown complete"`,
	}
	last := -1
	for _, want := range order {
		i := strings.Index(logs, want)
		if i < 0 {
			t.Fatalf("log lacks %s:\n%s", want, logs)
		}
		if i < last {
			t.Errorf("%s logged out of order:\n%s", want, logs)
		}
		last = i
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "shutdown step done") && strings.Contains(line, `"level":"warn"`) {
			t.Errorf("a shutdown step failed: %s", line)
		}
	}

	per := countByWebhookID(readStream(t, p.URL(), stream))
	for _, d := range []delivery{slow, during} {
		if per[d.ID] != 1 {
			t.Errorf("%s stored %d times, want 1", d.ID, per[d.ID])
		}
	}
}

// signedStreamRequest is a signed POST of d whose body is read from body
// (so the caller controls when it arrives).
func signedStreamRequest(t testing.TB, url string, s opsSecret, d delivery, body io.Reader) *http.Request {
	// Sign exactly as opsPost does, then swap the body for the stream.
	var signed *http.Request
	rec := &recordingTransport{}
	_ = opsPost(&http.Client{Transport: rec}, url, s, d, nil)
	signed = rec.req
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Error(err)
		return nil
	}
	req.Header = signed.Header.Clone()
	req.ContentLength = int64(len(d.Body))
	return req
}

var errRecorded = errors.New("recorded, not sent")

// recordingTransport captures a request instead of sending it.
type recordingTransport struct{ req *http.Request }

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.req = req
	return nil, errRecorded
}
