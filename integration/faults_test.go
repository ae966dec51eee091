package integration

// Fault tests (2xx means stored; one webhook-id, one message; SIGTERM drains):
// real nats-server and hookbridge processes are killed and restarted while
// the retrying sender (sender_test.go) keeps delivering, and afterwards every
// acknowledged webhook-id must be in the stream exactly once. The catalogue
// samples were created months ago, so these deliveries take the KV claim
// path; cluster_test.go covers the window path.

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// faultEnv is natsEnv with budgets short enough for a test: a publish gives
// up after 2s and a claim left behind by a crash or an outage blocks its id
// for 4s (the lease must exceed the publish budget).
func faultEnv(t *testing.T, url string) (map[string]string, string) {
	t.Helper()
	env, _, stream := natsEnv(t, url)
	env["HOOKBRIDGE_PUBLISH_TIMEOUT"] = "2s"
	env["HOOKBRIDGE_DEDUP_LEASE"] = "4s"
	env["HOOKBRIDGE_SHUTDOWN_GRACE"] = "10s"
	return env, stream
}

// checkNATSExactlyOnce asserts that every acknowledged id is in the stream
// exactly once and that no id at all is there twice, and logs the summary
// line of a fault test.
func checkNATSExactlyOnce(t *testing.T, name, url, stream string, rep senderReport) {
	t.Helper()
	msgs := readStream(t, url, stream)
	per := countByWebhookID(msgs)
	found, dups, lost := 0, 0, 0
	for _, rec := range rep.Records {
		n := per[rec.ID]
		if n > 1 {
			dups++
			t.Errorf("%s: webhook-id %s stored %d times", name, rec.ID, n)
		}
		if !rec.Acked {
			continue
		}
		if n >= 1 {
			found++
		} else {
			lost++
			t.Errorf("%s: acknowledged webhook-id %s (%s after %d attempts) is not in the stream", name, rec.ID, rec.AckCode, rec.Attempts)
		}
	}
	if rep.Acked != rep.Sent {
		t.Errorf("%s: %d of %d ids never acknowledged within the horizon", name, rep.Sent-rep.Acked, rep.Sent)
	}
	t.Logf("%s: sent %d, acknowledged %d, found %d, lost %d, duplicates %d, stream messages %d, longest unavailability %s (ended at +%s), attempts %d, elapsed %s; answers: %s",
		name, rep.Sent, rep.Acked, found, lost, dups, len(msgs), rep.Longest.Round(time.Millisecond),
		rep.LongestEndedAt.Round(time.Millisecond), rep.Attempts, rep.Elapsed.Round(time.Millisecond), rep.answersString())
}

// TestFault_NATSKill9 kills nats-server with SIGKILL three times under load
// and restarts it on the same port and store.
func TestFault_NATSKill9(t *testing.T) {
	p := startNATS(t)
	env, stream := faultEnv(t, p.URL())
	b := startBridge(t, env)
	s := startSender(t, senderOpts{URLs: []string{b.URL}, Count: 20000, Concurrency: 16, Rate: 300, Horizon: 45 * time.Second})
	for i := range 3 {
		if !s.waitAcked(int64(200*(i+1)), 15*time.Second) {
			t.Fatalf("round %d: load did not progress (%d acknowledged)\n%s", i, s.acked.Load(), b.logs)
		}
		p.kill9()
		time.Sleep(time.Duration(500+300*i) * time.Millisecond)
		p.start()
	}
	if !s.waitAcked(s.acked.Load()+200, 20*time.Second) {
		t.Errorf("no progress after the last restart")
	}
	rep := s.finish()
	checkNATSExactlyOnce(t, "nats-server kill -9 ×3", p.URL(), stream, rep)
	if !strings.Contains(b.logs.String(), "NATS reconnected") {
		t.Errorf("the bridge never logged a reconnect")
	}
	// Generous: the outage itself is under 1.2s, the client reconnects every
	// second and the sender backs off to at most 1s.
	if rep.Longest > 10*time.Second {
		t.Errorf("longest unavailability %s, want < 10s", rep.Longest)
	}
}

// TestFault_BridgeKill9 kills hookbridge with SIGKILL twice under load and
// restarts it with the same environment (same stream, same KV dedup bucket);
// the sender retries through the gap.
func TestFault_BridgeKill9(t *testing.T) {
	p := startNATS(t)
	env, stream := faultEnv(t, p.URL())
	b := startBridge(t, env)
	s := startSender(t, senderOpts{URLs: []string{b.URL}, Count: 20000, Concurrency: 16, Rate: 300, Horizon: 45 * time.Second})
	for i := range 2 {
		if !s.waitAcked(int64(300*(i+1)), 15*time.Second) {
			t.Fatalf("round %d: load did not progress\n%s", i, b.logs)
		}
		b.kill9()
		time.Sleep(300 * time.Millisecond)
		b.start()
	}
	// Ids whose claim died with the process are answered in_flight until
	// their lease (4s) lapses, then published by a retry.
	if !s.waitAcked(s.acked.Load()+300, 20*time.Second) {
		t.Errorf("no progress after the last restart")
	}
	rep := s.finish()
	checkNATSExactlyOnce(t, "hookbridge kill -9 ×2", p.URL(), stream, rep)
	if rep.Longest > 15*time.Second {
		t.Errorf("longest unavailability %s, want < 15s", rep.Longest)
	}
}

// TestFault_BridgeSIGTERM: SIGTERM under load with a 1s shutdown delay.
// Readiness turns 503 at once while requests are still served; requests in
// flight complete with 2xx; no request that reached the server is cut off
// (a refused connection is fine: it never left the sender); the exit code
// is 0. A new process then takes over, as another replica would.
func TestFault_BridgeSIGTERM(t *testing.T) {
	p := startNATS(t)
	env, stream := faultEnv(t, p.URL())
	env["HOOKBRIDGE_SHUTDOWN_DELAY"] = "1s"
	b := startBridge(t, env)
	s := startSender(t, senderOpts{URLs: []string{b.URL}, Count: 20000, Concurrency: 16, Rate: 300, Horizon: 45 * time.Second})
	if !s.waitAcked(300, 15*time.Second) {
		t.Fatalf("load did not progress\n%s", b.logs)
	}
	sigAt := time.Now()
	b.signal(syscall.SIGTERM)
	if !waitStatus(b.AdminURL+"/readyz", http.StatusServiceUnavailable, 900*time.Millisecond) {
		t.Errorf("/readyz did not turn 503 within 900ms of SIGTERM")
	}
	flip := time.Since(sigAt)
	ackedAtFlip := s.acked.Load()
	time.Sleep(500 * time.Millisecond) // still inside the 1s delay
	servedDuringDelay := s.acked.Load() - ackedAtFlip
	if servedDuringDelay == 0 {
		t.Errorf("no request was acknowledged during the shutdown delay")
	}
	if !b.wait(20 * time.Second) {
		t.Fatalf("hookbridge did not exit within 20s of SIGTERM\n%s", b.logs)
	}
	exitAfter := time.Since(sigAt)
	code := b.cmd.ProcessState.ExitCode()
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0\n%s", code, b.logs)
	}
	logs := b.logs.String()
	for _, step := range []string{"shutting down: readiness now fails", "in-flight requests finished", "publisher flush and close"} {
		if !strings.Contains(logs, step) {
			t.Errorf("shutdown log lacks %q", step)
		}
	}
	b.cmd = nil
	b.start()
	if !s.waitAcked(s.acked.Load()+300, 20*time.Second) {
		t.Errorf("no progress after the restart")
	}
	rep := s.finish()
	checkNATSExactlyOnce(t, "hookbridge SIGTERM", p.URL(), stream, rep)
	t.Logf("SIGTERM: readyz 503 after %s, %d acknowledged in the following 500ms, exit %d after %s, requests cut off after being sent: %d",
		flip.Round(time.Millisecond), servedDuringDelay, code, exitAfter.Round(time.Millisecond), len(rep.CutOff))
	// A request written on a kept-alive connection that the server then
	// closed as idle is the race the handler's Drain (Connection: close
	// during the shutdown delay) removes. A fresh connection still in the
	// listener's accept queue when the listener closes is reset by the
	// kernel: no server can avoid that, and the sender retries it.
	for _, c := range rep.CutOff {
		if strings.Contains(c, "reused=true") {
			t.Errorf("request on a kept-alive connection cut off during shutdown: %s", c)
		} else {
			t.Logf("fresh connection reset at listener close (kernel accept queue): %s", c)
		}
	}
}

// TestFault_ReplicasSharedKV: two bridges share one stream and one KV dedup
// bucket; every id is delivered to both at once, each with its own retry
// loop. The KV store alone must keep the stream at one message per id: the
// bridges never even reach JetStream's Nats-Msg-Id defence.
func TestFault_ReplicasSharedKV(t *testing.T) {
	p := startNATS(t)
	env, stream := faultEnv(t, p.URL())
	b1 := startBridge(t, env)
	b2 := startBridge(t, env)
	s := startSender(t, senderOpts{URLs: []string{b1.URL, b2.URL}, Fanout: true, Count: 600, Concurrency: 16, Horizon: 40 * time.Second})
	rep := s.wait()
	checkNATSExactlyOnce(t, "2 replicas, shared KV, fanout", p.URL(), stream, rep)
	for i, b := range []*bridge{b1, b2} {
		if n := opsMetric(t, b.AdminURL, `hookbridge_publish_acks_total{broker="nats",result="duplicate"}`); n != 0 {
			t.Errorf("replica %d: %v publishes reached JetStream's duplicate window: the KV store let them through", i+1, n)
		}
		if n := opsMetric(t, b.AdminURL, `hookbridge_dedup_path_total{path="store"}`); n <= 0 {
			t.Errorf("replica %d: no delivery took the KV claim (%v): the samples are old events, they must", i+1, n)
		}
	}
	if rep.Answers["409 in_flight"]+rep.Answers["200 duplicate"] == 0 {
		t.Errorf("no delivery was ever answered in_flight or duplicate: the replicas did not race (%s)", rep.answersString())
	}
}
