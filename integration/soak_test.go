package integration

// Long runs and measurements, not part of `make test`:
//
//	HOOKBRIDGE_SOAK=10m [HOOKBRIDGE_SOAK_RESTART_EVERY=1m] [HOOKBRIDGE_SOAK_RATE=200]
//	    go test -run TestSoak -v -timeout 30m ./integration
//	HOOKBRIDGE_MEASURE_SYNC=1 go test -run TestEmbeddedSyncCost -v ./integration

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rssKiB reads VmRSS of pid from /proc.
func rssKiB(t testing.TB, pid int) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("RSS of %d: %v", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

// TestSoak delivers at a steady rate for HOOKBRIDGE_SOAK with a kill -9 and
// restart of nats-server every HOOKBRIDGE_SOAK_RESTART_EVERY, then checks
// that every acknowledged id is in the stream exactly once and reports the
// bridge's RSS at the start and the end.
func TestSoak(t *testing.T) {
	if os.Getenv("HOOKBRIDGE_SOAK") == "" {
		t.Skip("set HOOKBRIDGE_SOAK=10m to run the soak")
	}
	dur := envDuration(t, "HOOKBRIDGE_SOAK", 0)
	every := envDuration(t, "HOOKBRIDGE_SOAK_RESTART_EVERY", time.Minute)
	rate := 200.0
	if v := os.Getenv("HOOKBRIDGE_SOAK_RATE"); v != "" {
		var err error
		if rate, err = strconv.ParseFloat(v, 64); err != nil || rate <= 0 {
			t.Fatalf("HOOKBRIDGE_SOAK_RATE=%q", v)
		}
	}
	p := startNATS(t)
	env, stream := faultEnv(t, p.URL())
	b := startBridge(t, env)
	pid := b.cmd.Process.Pid
	s := startSender(t, senderOpts{URLs: []string{b.URL}, Count: int(rate*dur.Seconds()) + 1000, Concurrency: 16, Rate: rate, Horizon: dur + 2*time.Minute})

	time.Sleep(5 * time.Second) // warm-up: pools, JetStream, dedup bucket
	rssStart := rssKiB(t, pid)
	t.Logf("soak: %s at %.0f/s, nats-server kill -9 every %s; bridge RSS after warm-up %d KiB", dur, rate, every, rssStart)
	end := time.Now().Add(dur)
	restarts := 0
	next := time.Now().Add(every)
	for time.Now().Before(end) {
		time.Sleep(min(time.Until(next), time.Until(end), 10*time.Second))
		if time.Now().After(next) && time.Now().Before(end) {
			p.kill9()
			time.Sleep(time.Second)
			p.start()
			restarts++
			next = time.Now().Add(every)
			t.Logf("soak +%s: restart %d, %d acknowledged, bridge RSS %d KiB",
				time.Since(s.start).Round(time.Second), restarts, s.acked.Load(), rssKiB(t, pid))
		}
	}
	rep := s.finish()
	rssEnd := rssKiB(t, pid)
	checkNATSExactlyOnce(t, fmt.Sprintf("soak %s, %d nats-server restarts", dur, restarts), p.URL(), stream, rep)
	t.Logf("soak: bridge RSS %d KiB at start, %d KiB at end (%+d KiB)", rssStart, rssEnd, rssEnd-rssStart)
	// The dedup store lives in JetStream, not in the bridge: its memory
	// must stay flat. Generous bound for GC and pool noise.
	if rssEnd > 2*rssStart+64*1024 {
		t.Errorf("bridge RSS grew from %d KiB to %d KiB", rssStart, rssEnd)
	}
}

// TestEmbeddedSyncCost measures the embedded broker with
// HOOKBRIDGE_EMBEDDED_SYNC=interval and =always using `hookbridge send`
// (5000 deliveries, concurrency 32), for the README's durability trade-off.
func TestEmbeddedSyncCost(t *testing.T) {
	if os.Getenv("HOOKBRIDGE_MEASURE_SYNC") == "" {
		t.Skip("set HOOKBRIDGE_MEASURE_SYNC=1 to measure")
	}
	summary := regexp.MustCompile(`sent (\d+) in \S+: (\d+) req/s, (\d+) 2xx`)
	lat := regexp.MustCompile(`latency p50 (\S+)\s+p90 \S+\s+p99 (\S+)`)
	for _, mode := range []string{"interval", "always"} {
		t.Run(mode, func(t *testing.T) {
			b := startBridge(t, map[string]string{
				"HOOKBRIDGE_DATA_DIR":           t.TempDir(),
				"HOOKBRIDGE_EMBEDDED_NATS_ADDR": fmt.Sprintf("127.0.0.1:%d", freePort(t)),
				"HOOKBRIDGE_EMBEDDED_SYNC":      mode,
				"HOOKBRIDGE_LOG_LEVEL":          "warn",
			})
			out, code := runCLI(t, 5*time.Minute, []string{"HOOKBRIDGE_SECRETS=" + itSecret},
				"send", "--url", b.URL, "--count", "5000", "--concurrency", "32", "--quiet")
			m, l := summary.FindStringSubmatch(out), lat.FindStringSubmatch(out)
			if code != 0 || m == nil || l == nil || m[1] != m[3] {
				t.Fatalf("send exited %d:\n%s", code, out)
			}
			t.Logf("HOOKBRIDGE_EMBEDDED_SYNC=%s: %s req/s, p50 %s, p99 %s (5000 deliveries, concurrency 32)", mode, m[2], l[1], l[2])
		})
	}
}
