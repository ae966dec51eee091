package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/integration/internal/netwait"
)

// Binaries built once by TestMain from this module and its nats-server
// dependency, so the tests exercise real processes (kill -9 included).
var (
	natsServerBin string
	hookbridgeBin string
)

// itSecret signs every delivery in these tests. It is a test value only.
const itSecret = "whsec_MfKQ9r8GKYqrTCtxzuKx6ySE4xD2FVy64EVjmpN6v2A="

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration: skipped with -short (these tests start broker processes)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "hookbridge-it-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	natsServerBin = filepath.Join(dir, "nats-server")
	hookbridgeBin = filepath.Join(dir, "hookbridge")
	for _, b := range []struct{ pkg, out string }{
		{"github.com/nats-io/nats-server/v2", natsServerBin},
		{"github.com/hookbridge/hookbridge/cmd/hookbridge", hookbridgeBin},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "integration: building %s: %v\n", b.pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	port, err := netwait.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func waitPort(addr string, within time.Duration) bool { return netwait.WaitPort(addr, within) }

// natsProc is a nats-server process with JetStream on a loopback port.
type natsProc struct {
	t    testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
}

func startNATS(t testing.TB) *natsProc {
	t.Helper()
	p := &natsProc{t: t, port: freePort(t), dir: t.TempDir()}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *natsProc) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", p.port) }

func (p *natsProc) start() {
	p.t.Helper()
	p.cmd = exec.Command(natsServerBin, "-a", "127.0.0.1", "-p", strconv.Itoa(p.port), "-js", "-sd", p.dir)
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	if !waitPort(fmt.Sprintf("127.0.0.1:%d", p.port), 10*time.Second) {
		p.t.Fatalf("nats-server did not listen on %d", p.port)
	}
}

// kill9 stops the server abruptly (SIGKILL), as a crash would.
func (p *natsProc) kill9() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_, _ = p.cmd.Process.Wait()
		p.cmd = nil
	}
}

func (p *natsProc) stop() { p.kill9() }

// bridge is a hookbridge serve process.
type bridge struct {
	t        testing.TB
	env      []string
	cmd      *exec.Cmd
	URL      string // webhook URL
	AdminURL string
	logs     *syncBuffer
	exited   chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startBridge runs `hookbridge serve` with env (HOOKBRIDGE_* without the
// listeners, which it picks) and waits until /readyz answers 200.
func startBridge(t testing.TB, env map[string]string) *bridge {
	t.Helper()
	b := &bridge{t: t, logs: &syncBuffer{}}
	pub, adm := freePort(t), freePort(t)
	base := map[string]string{
		"HOOKBRIDGE_SECRETS":        itSecret,
		"HOOKBRIDGE_LISTEN_ADDR":    fmt.Sprintf("127.0.0.1:%d", pub),
		"HOOKBRIDGE_ADMIN_ADDR":     fmt.Sprintf("127.0.0.1:%d", adm),
		"HOOKBRIDGE_SHUTDOWN_DELAY": "0s",
		"HOOKBRIDGE_LOG_LEVEL":      "info",
	}
	for k, v := range env {
		base[k] = v
	}
	b.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range base {
		b.env = append(b.env, k+"="+v)
	}
	b.URL = fmt.Sprintf("http://127.0.0.1:%d/webhooks/openai", pub)
	b.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", adm)
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *bridge) start() {
	b.t.Helper()
	b.cmd = exec.Command(hookbridgeBin, "serve")
	b.cmd.Env = b.env
	b.cmd.Stdout, b.cmd.Stderr = b.logs, b.logs
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(b.cmd, b.exited)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-b.exited:
			b.t.Fatalf("hookbridge exited during start-up:\n%s", b.logs)
		default:
		}
		if resp, err := http.Get(b.AdminURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("hookbridge not ready within 30s:\n%s", b.logs)
}

func (b *bridge) signal(sig syscall.Signal) {
	if b.cmd != nil && b.cmd.Process != nil {
		_ = b.cmd.Process.Signal(sig)
	}
}

// wait waits for the process to exit, bounded.
func (b *bridge) wait(within time.Duration) bool {
	select {
	case <-b.exited:
		return true
	case <-time.After(within):
		return false
	}
}

func (b *bridge) stop() {
	if b.cmd == nil {
		return
	}
	b.signal(syscall.SIGTERM)
	if !b.wait(15 * time.Second) {
		b.signal(syscall.SIGKILL)
		b.wait(5 * time.Second)
	}
	b.cmd = nil
}

func (b *bridge) kill9() {
	b.signal(syscall.SIGKILL)
	b.wait(5 * time.Second)
	b.cmd = nil
}

// runCLI runs a hookbridge subcommand to completion, bounded by within.
func runCLI(t testing.TB, within time.Duration, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, hookbridgeBin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return string(out), code
}

// delivery is one signed webhook as OpenAI would send it.
type delivery struct {
	ID   string
	Body []byte
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "wh_" + hex.EncodeToString(b)
}

func signingKey() []byte {
	k, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(itSecret, "whsec_"))
	return k
}

// sign returns the webhook-signature of a delivery under secret (whsec_…),
// as OpenAI computes it.
func sign(secret, id, ts string, body []byte) string {
	s, err := ingest.ParseSecret(secret)
	if err != nil {
		panic(err)
	}
	sig, err := ingest.Sign(s, id, ts, body)
	if err != nil {
		panic(err)
	}
	return sig
}

// result is the bridge's answer to one POST.
type result struct {
	Status int
	Code   string // "status" or "error" field
	Err    error
}

var httpClient = &http.Client{
	Timeout:   15 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64},
}

// post signs d with the current time (a fresh timestamp per attempt, as
// OpenAI does) and POSTs it. mutate may tamper with the request.
func post(url string, d delivery, mutate func(*http.Request)) result {
	return postAt(url, d, time.Now().Unix(), mutate)
}

func postAt(url string, d delivery, ts int64, mutate func(*http.Request)) result {
	return signedPost(httpClient, url, itSecret, d, ts, mutate)
}

// signedPost signs d with secret at ts, lets mutate tamper with the request,
// and POSTs it with client.
func signedPost(client *http.Client, url, secret string, d delivery, ts int64, mutate func(*http.Request)) result {
	tss := strconv.FormatInt(ts, 10)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(d.Body))
	if err != nil {
		return result{Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", d.ID)
	req.Header.Set("webhook-timestamp", tss)
	req.Header.Set("webhook-signature", sign(secret, d.ID, tss, d.Body))
	if mutate != nil {
		mutate(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{Err: err}
	}
	defer resp.Body.Close()
	var r struct{ Status, Error string }
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &r)
	return result{Status: resp.StatusCode, Code: r.Status + r.Error}
}

// sendUntilAcked retries d like OpenAI (any non-2xx or error is retried, with
// backoff) until it is acknowledged or the deadline passes. It returns the
// final result and how many attempts it took.
func sendUntilAcked(url string, d delivery, deadline time.Time) (result, int) {
	backoff := 50 * time.Millisecond
	for n := 1; ; n++ {
		r := post(url, d, nil)
		if r.Err == nil && r.Status >= 200 && r.Status < 300 {
			return r, n
		}
		if time.Now().Add(backoff).After(deadline) {
			return r, n
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, time.Second)
	}
}
