package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevModeDefaultPortsTaken is `make run` where 8080 and 9090 are taken
// (9090 is Prometheus's default port): `serve --dev` moves both listeners to
// free ports, records them in dev.json, and `send` and `tail` find the
// bridge through it. The test holds the two ports itself when they are free;
// when something else holds one, it is taken all the same, so the test runs
// either way and asserts the move only for the ports it holds.
func TestDevModeDefaultPortsTaken(t *testing.T) {
	held := map[int]bool{}
	for _, port := range []int{8080, 9090} {
		// Binding 127.0.0.1:P also makes the all-interfaces :P that dev mode
		// tries fail with EADDRINUSE.
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Logf("port %d is already taken by another process: %v", port, err)
			continue
		}
		defer ln.Close()
		held[port] = true
	}

	dir := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "HOOKBRIDGE_DATA_DIR=" + dir,
		// Keep the embedded NATS off 4222, which this test does not hold.
		"HOOKBRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:0"}
	st, stop := startDevBridge(t, dir, env)

	for name, raw := range map[string]string{"webhook_url": st.WebhookURL, "admin_url": st.AdminURL} {
		u, err := url.Parse(raw)
		if err != nil || u.Port() == "" {
			t.Fatalf("dev.json %s = %q, want a URL with a port", name, raw)
		}
		var port int
		fmt.Sscan(u.Port(), &port)
		if held[port] {
			t.Errorf("dev.json %s = %s: the bridge reports a port this test holds", name, raw)
		}
	}
	if st.WebhookURL == "" || st.AdminURL == "" || st.NATSURL == "" || st.SecretFile == "" {
		t.Fatalf("dev.json lacks an address or the secret file: %+v", st)
	}
	resp, err := http.Get(st.AdminURL + "/readyz")
	if err != nil {
		t.Fatalf("admin listener from dev.json: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s/readyz: %d", st.AdminURL, resp.StatusCode)
	}

	// As in the quick start: no flags, everything from dev.json.
	if out, code := runCLI(t, 60*time.Second, env[1:], "send", "--all", "--quiet"); code != 0 {
		t.Fatalf("send --all: exit %d\n%s", code, out)
	}
	if out, code := runCLI(t, 30*time.Second, env[1:], "tail", "--all", "--count", "3", "--wait", "20s"); code != 0 || strings.Count(out, "webhook-id=") != 3 {
		t.Fatalf("tail --all --count 3: exit %d\n%s", code, out)
	}

	// A stopped dev bridge withdraws dev.json, so send and tail stop aiming at it.
	stop()
	if _, err := os.Stat(filepath.Join(dir, "dev.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dev.json still there after the dev bridge stopped (%v)", err)
	}
}

// devState is what serve --dev writes to <data dir>/dev.json.
type devState struct {
	WebhookURL string `json:"webhook_url"`
	AdminURL   string `json:"admin_url"`
	NATSURL    string `json:"nats_url"`
	SecretFile string `json:"secret_file"`
}

// startDevBridge runs `hookbridge serve --dev` and waits for its dev.json.
// A port found free can be taken by a parallel process before the bridge
// opens it; such a start is tried again, a few times.
func startDevBridge(t *testing.T, dir string, env []string) (*devState, func()) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		logs := &syncBuffer{}
		cmd := exec.Command(hookbridgeBin, "serve", "--dev")
		cmd.Env, cmd.Stdout, cmd.Stderr = env, logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Errorf("serve --dev did not stop within 15s of SIGTERM:\n%s", logs)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			select {
			case <-exited:
				if attempt < 3 && strings.Contains(logs.String(), "already in use") {
					t.Logf("attempt %d: a port was taken between the check and the bind; again", attempt)
					goto retry
				}
				t.Fatalf("serve --dev exited during start-up:\n%s", logs)
			default:
			}
			if b, err := os.ReadFile(filepath.Join(dir, "dev.json")); err == nil {
				var st devState
				if err := json.Unmarshal(b, &st); err != nil {
					stop()
					t.Fatalf("dev.json: %v\n%s", err, b)
				}
				t.Cleanup(func() {
					select {
					case <-exited:
					default:
						stop()
					}
				})
				return &st, stop
			}
			if time.Now().After(deadline) {
				stop()
				t.Fatalf("no dev.json within 30s:\n%s", logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	retry:
	}
}
