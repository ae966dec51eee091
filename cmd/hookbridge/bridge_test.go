package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/schema"
)

// lockedBuffer is a log sink shared by the bridge's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBridgeInProcess runs the bridge as serve does, on the embedded broker:
// it starts, publishes one delivery into the stream, answers its repeat as a
// duplicate, and on the SIGTERM-equivalent (its context ends) fails
// readiness at once and shuts down in stage order.
func TestBridgeInProcess(t *testing.T) {
	environ := map[string]string{
		"HOOKBRIDGE_SECRETS":            testSecret0,
		"HOOKBRIDGE_LISTEN_ADDR":        "127.0.0.1:0",
		"HOOKBRIDGE_ADMIN_ADDR":         "127.0.0.1:0",
		"HOOKBRIDGE_EMBEDDED_NATS_ADDR": "127.0.0.1:0",
		"HOOKBRIDGE_DATA_DIR":           t.TempDir(),
		"HOOKBRIDGE_SHUTDOWN_DELAY":     "300ms",
		"HOOKBRIDGE_SHUTDOWN_GRACE":     "5s",
	}
	cfg, err := loadConfig(environ)
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	b, err := newBridge(ctx, cfg, environ, zerolog.New(&logs))
	if err != nil {
		t.Fatalf("newBridge: %v\n%s", err, logs.String())
	}
	done := make(chan error, 1)
	go func() { done <- b.run(ctx) }()

	body, _ := schema.Sample(schema.BatchCompleted)
	for _, want := range []string{"published", "duplicate"} {
		req := signedRequest(t, b.webhookURL, testSecret0, "wh_inprocess", time.Now().Unix(), body)
		if got := postStatus(t, req); got != want {
			t.Fatalf("delivery answered %q, want %q", got, want)
		}
	}
	if got := getStatus(t, b.adminURL+"/readyz"); got != http.StatusOK {
		t.Fatalf("/readyz %d before the shutdown", got)
	}
	if m := getBody(t, b.adminURL+"/metrics"); !strings.Contains(m, `hookbridge_broker_up{broker="embedded"} 1`) {
		t.Errorf("/metrics does not report the broker up:\n%s", m)
	}
	if msg := lastMessage(t, b.natsURL, "openai.batch.completed"); !bytes.Equal(msg, body) {
		t.Errorf("stream holds %q, want the delivery's body", msg)
	}

	stop()
	deadline := time.Now().Add(250 * time.Millisecond) // within the shutdown delay
	for getStatus(t, b.adminURL+"/readyz") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not fail during the shutdown delay")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	wantOrder := []string{
		"shutting down: readiness now fails",
		"http server shutdown (in-flight requests finished)",
		"re-publisher stop",
		"dedup records flush",
		"publisher flush and close",
		"nats connection close",
		"embedded nats shutdown",
		"admin server close",
		"shutdown complete",
	}
	if got := shutdownLog(t, logs.String()); strings.Join(got, " | ") != strings.Join(wantOrder, " | ") {
		t.Errorf("shutdown order:\n got %q\nwant %q", got, wantOrder)
	}
}

// postStatus sends req and returns the status or error code of the answer.
func postStatus(t *testing.T, req *http.Request) string {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ Status, Error string }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r.Status + r.Error
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// lastMessage returns the body of the last message on subject in the
// bridge's stream.
func lastMessage(t *testing.T, url, subject string) []byte {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "OPENAI_WEBHOOKS")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	return msg.Data
}

// shutdownLog returns the shutdown's log lines in order: the start, each
// step, the end.
func shutdownLog(t *testing.T, logs string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var l struct{ Message, Step string }
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch {
		case l.Step != "":
			out = append(out, l.Step)
		case strings.HasPrefix(l.Message, "shutting down"), l.Message == "shutdown complete":
			out = append(out, l.Message)
		}
	}
	return out
}
