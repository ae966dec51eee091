package integration

// Dedup on a 3-node JetStream cluster: three nats-server processes on
// loopback, hookbridge with R3 stream and bucket connected to all three. The
// stream's Nats-Msg-Id window is the claim for young deliveries and the KV
// bucket the memory beyond it; these tests check that this holds when the
// leaders die, when copies race, for old events, and across a restart of
// every server.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/schema"
)

// natsCluster is three nats-server processes forming one JetStream cluster.
type natsCluster struct {
	t     testing.TB
	nodes []*clusterNode
}

type clusterNode struct {
	name        string
	port, route int
	dir         string
	cmd         *exec.Cmd
}

func startCluster(t testing.TB) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	var routes []string
	for i := range 3 {
		n := &clusterNode{name: fmt.Sprintf("n%d", i+1), port: freePort(t), route: freePort(t), dir: t.TempDir()}
		c.nodes = append(c.nodes, n)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", n.route))
	}
	for i := range c.nodes {
		c.startNode(i, strings.Join(routes, ","))
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.kill9(i)
		}
	})
	c.waitReady(60 * time.Second)
	return c
}

func (c *natsCluster) startNode(i int, routes string) {
	c.t.Helper()
	n := c.nodes[i]
	n.cmd = exec.Command(natsServerBin, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-n", n.name,
		"-js", "-sd", n.dir, "--cluster_name", "hbit", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.route),
		"--routes", routes)
	logf, err := os.Create(filepath.Join(n.dir, "server.log"))
	if err != nil {
		c.t.Fatal(err)
	}
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func(cmd *exec.Cmd, f *os.File) { _ = cmd.Wait(); f.Close() }(n.cmd, logf)
	if !waitPort(fmt.Sprintf("127.0.0.1:%d", n.port), 10*time.Second) {
		c.t.Fatalf("nats-server %s did not listen on %d", n.name, n.port)
	}
}

func (c *natsCluster) routes() string {
	var r []string
	for _, n := range c.nodes {
		r = append(r, fmt.Sprintf("nats://127.0.0.1:%d", n.route))
	}
	return strings.Join(r, ",")
}

// restart starts node i again on its ports and store.
func (c *natsCluster) restart(i int) { c.startNode(i, c.routes()) }

// kill9 stops node i abruptly, as a crash would.
func (c *natsCluster) kill9(i int) {
	n := c.nodes[i]
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		for range 100 { // the Wait goroutine reaps it
			if syscall.Kill(n.cmd.Process.Pid, 0) != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		n.cmd = nil
	}
}

// URL lists every node, as an operator would configure a client.
func (c *natsCluster) URL() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return strings.Join(u, ",")
}

// js connects to the cluster for inspection; closed when the test ends.
func (c *natsCluster) js(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// waitReady waits until JetStream answers through every node: the meta
// group has a leader and every server is in it.
func (c *natsCluster) waitReady(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for _, n := range c.nodes {
		for {
			if err := jsAnswers(fmt.Sprintf("nats://127.0.0.1:%d", n.port)); err == nil {
				break
			} else if time.Now().After(deadline) {
				c.t.Fatalf("JetStream cluster not ready through %s within %s: %v", n.name, within, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func jsAnswers(url string) error {
	nc, err := nats.Connect(url, nats.Timeout(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// leader returns the index of the node leading stream, waiting (bounded)
// for one to be elected.
func (c *natsCluster) leader(t testing.TB, js jetstream.JetStream, stream string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := js.Stream(ctx, stream)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(ctx)
		}
		cancel()
		if err == nil && info.Cluster != nil {
			for i, n := range c.nodes {
				if n.name == info.Cluster.Leader {
					return i
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s has no leader within 30s (%v)", stream, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// separate moves stream's leadership away from the node leading other, so
// that killing one leader does not kill both.
func (c *natsCluster) separate(t testing.TB, nc *nats.Conn, js jetstream.JetStream, stream, other string) {
	t.Helper()
	for range 10 {
		if c.leader(t, js, stream) != c.leader(t, js, other) {
			return
		}
		if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil, 5*time.Second); err != nil {
			t.Logf("step down %s: %v", stream, err)
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("could not move the leader of %s away from %s's", stream, other)
}

// clusterBridge starts hookbridge on the cluster with R3 stream and bucket
// and the default duplicate window (2h), so events created 3h ago are old.
func clusterBridge(t *testing.T, c *natsCluster) (*bridge, string, string) {
	t.Helper()
	env, _, stream := natsEnv(t, c.URL())
	env["HOOKBRIDGE_NATS_REPLICAS"] = "3"
	env["HOOKBRIDGE_PUBLISH_TIMEOUT"] = "4s"
	env["HOOKBRIDGE_DEDUP_LEASE"] = "10s"
	env["HOOKBRIDGE_SHUTDOWN_GRACE"] = "10s"
	return startBridge(t, env), stream, env["HOOKBRIDGE_DEDUP_BUCKET"]
}

// createdAt returns body with created_at set to ts (the samples carry a
// fixed date).
func createdAt(t testing.TB, body []byte, ts int64) []byte {
	t.Helper()
	ev, err := schema.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	old := []byte(`"created_at":` + strconv.FormatInt(ev.CreatedAt, 10))
	if !bytes.Contains(body, old) {
		t.Fatalf("no created_at in %s", body)
	}
	return bytes.Replace(body, old, []byte(`"created_at":`+strconv.FormatInt(ts, 10)), 1)
}

// eventBodies returns a sender body function: catalogue samples created when
// the id is first sent (young), every oldEvery-th created 3h before (old);
// oldEvery 0 for none.
func eventBodies(t testing.TB, oldEvery int) func(i int) []byte {
	types := schema.Types()
	return func(i int) []byte {
		ts := time.Now().Unix()
		if oldEvery > 0 && i%oldEvery == oldEvery-1 {
			ts -= 3 * 3600
		}
		return createdAt(t, mustSample(t, types[i%len(types)]), ts)
	}
}

// dedupMetrics are the bridge's counters of paths and broker answers.
type dedupMetrics struct {
	window, store, stored, duplicate, republished, retries float64
}

func scrapeDedup(t testing.TB, b *bridge) dedupMetrics {
	t.Helper()
	var m dedupMetrics
	m.window = opsMetric(t, b.AdminURL, `hookbridge_dedup_path_total{path="window"}`)
	m.store = opsMetric(t, b.AdminURL, `hookbridge_dedup_path_total{path="store"}`)
	m.stored = opsMetric(t, b.AdminURL, `hookbridge_publish_acks_total{broker="nats",result="stored"}`)
	m.duplicate = opsMetric(t, b.AdminURL, `hookbridge_publish_acks_total{broker="nats",result="duplicate"}`)
	for _, r := range []string{"stored", "duplicate", "gave_up", "dropped"} {
		m.republished += opsMetric(t, b.AdminURL, `hookbridge_republish_total{result="`+r+`"}`)
	}
	for _, r := range []string{"no_responders", "in_process", "timeout", "disconnected"} {
		m.retries += opsMetric(t, b.AdminURL, `hookbridge_nats_publish_retries_total{reason="`+r+`"}`)
	}
	return m
}

func (m dedupMetrics) minus(o dedupMetrics) dedupMetrics {
	return dedupMetrics{m.window - o.window, m.store - o.store, m.stored - o.stored,
		m.duplicate - o.duplicate, m.republished - o.republished, m.retries - o.retries}
}

func (m dedupMetrics) String() string {
	return fmt.Sprintf("paths window %.0f store %.0f; JetStream answered stored %.0f duplicate %.0f; attempts repeated %.0f; re-published %.0f",
		m.window, m.store, m.stored, m.duplicate, m.retries, m.republished)
}

// checkRecords waits for the bridge's dedup records to be acknowledged and
// checks that every acknowledged id is remembered as done in the bucket: the
// memory that must outlast the window.
func checkRecords(t *testing.T, b *bridge, js jetstream.JetStream, bucket string, rep senderReport) {
	t.Helper()
	if !opsWaitMetric(t, b.AdminURL, "hookbridge_dedup_records_pending", 60*time.Second, func(v float64) bool { return v == 0 }) {
		t.Errorf("dedup records still pending after 60s")
	}
	if lost := opsMetric(t, b.AdminURL, "hookbridge_dedup_records_lost_total"); lost != 0 {
		t.Errorf("%v dedup records lost", lost)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, rec := range rep.Records {
		if !rec.Acked {
			continue
		}
		e, err := kv.Get(ctx, base64.RawURLEncoding.EncodeToString([]byte(rec.ID)))
		if err != nil || string(e.Value()) != "done" {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged %s is not remembered as done in the bucket: %v", rec.ID, err)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d acknowledged ids are not remembered in the bucket", missing)
	}
}

func TestCluster(t *testing.T) {
	c := startCluster(t)
	b, stream, bucket := clusterBridge(t, c)
	nc, js := c.js(t)

	t.Run("30 concurrent copies of a fresh id", func(t *testing.T) {
		before := scrapeDedup(t, b)
		d := delivery{ID: newID(), Body: createdAt(t, mustSample(t, schema.ResponseCompleted), time.Now().Unix())}
		var mu sync.Mutex
		answers := map[string]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 30 {
			wg.Go(func() {
				<-start
				r := post(b.URL, d, nil)
				mu.Lock()
				answers[fmt.Sprintf("%d %s", r.Status, r.Code)]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		if answers["200 published"] != 1 || answers["200 duplicate"] != 29 {
			t.Errorf("answers %v, want 1 published and 29 duplicate (every copy 200)", answers)
		}
		if n := countByWebhookID(readStream(t, c.URL(), stream))[d.ID]; n != 1 {
			t.Errorf("stored %d times, want once", n)
		}
		t.Logf("30 concurrent copies: %v; %s", answers, scrapeDedup(t, b).minus(before))
	})

	t.Run("an event created 3h ago delivered twice", func(t *testing.T) {
		before := scrapeDedup(t, b)
		d := delivery{ID: newID(), Body: createdAt(t, mustSample(t, schema.BatchCompleted), time.Now().Add(-3*time.Hour).Unix())}
		for i, want := range []string{"published", "duplicate"} {
			if r := post(b.URL, d, nil); r.Status != 200 || r.Code != want {
				t.Fatalf("delivery %d: %d %q %v, want 200 %s", i+1, r.Status, r.Code, r.Err, want)
			}
		}
		if n := countByWebhookID(readStream(t, c.URL(), stream))[d.ID]; n != 1 {
			t.Errorf("stored %d times, want once", n)
		}
		if m := scrapeDedup(t, b).minus(before); m.store != 2 || m.window != 0 {
			t.Errorf("%s; want both on the store path", m)
		}
	})

	faultRun := func(t *testing.T, what string, victim func() int) {
		c.separate(t, nc, js, stream, "KV_"+bucket)
		before := scrapeDedup(t, b)
		s := startSender(t, senderOpts{URLs: []string{b.URL}, Count: 100_000, Concurrency: 16, Rate: 150,
			Body: eventBodies(t, 4), Timeout: 5 * time.Second, Horizon: 120 * time.Second})
		var kills []string
		for i := range 2 {
			if !s.waitAcked(s.acked.Load()+300, 40*time.Second) {
				t.Fatalf("round %d: load did not progress (%d acknowledged)\n%s", i, s.acked.Load(), b.logs)
			}
			v := victim()
			kills = append(kills, c.nodes[v].name)
			c.kill9(v)
			time.Sleep(time.Second)
			c.restart(v)
		}
		if !s.waitAcked(s.acked.Load()+300, 40*time.Second) {
			t.Errorf("no progress after the last restart")
		}
		rep := s.finish()
		checkNATSExactlyOnce(t, what, c.URL(), stream, rep)
		checkRecords(t, b, js, bucket, rep)
		m := scrapeDedup(t, b).minus(before)
		t.Logf("%s (killed %v): %s", what, kills, m)
		if m.window == 0 || m.store == 0 {
			t.Errorf("%s: want both paths taken", m)
		}
		// The election takes some 4-9s; the bound is generous for a loaded
		// machine, the figure is what the README reports.
		if rep.Longest > 20*time.Second {
			t.Errorf("longest unavailability %s, want < 20s", rep.Longest)
		}
	}
	t.Run("stream leader killed", func(t *testing.T) {
		faultRun(t, "stream leader kill -9 ×2", func() int { return c.leader(t, js, stream) })
	})
	t.Run("KV bucket leader killed", func(t *testing.T) {
		faultRun(t, "KV bucket leader kill -9 ×2", func() int { return c.leader(t, js, "KV_"+bucket) })
	})

	t.Run("every server restarted between two deliveries of a young id", func(t *testing.T) {
		d := delivery{ID: newID(), Body: createdAt(t, mustSample(t, schema.ResponseCompleted), time.Now().Unix())}
		if r := post(b.URL, d, nil); r.Status != 200 || r.Code != "published" {
			t.Fatalf("first delivery: %d %q %v", r.Status, r.Code, r.Err)
		}
		before := scrapeDedup(t, b)
		for i := range c.nodes {
			c.kill9(i)
		}
		for i := range c.nodes {
			c.restart(i)
		}
		c.waitReady(60 * time.Second)
		c.leader(t, js, stream)
		r, attempts := sendUntilAcked(b.URL, d, time.Now().Add(60*time.Second))
		if r.Status != 200 || r.Code != "duplicate" {
			t.Fatalf("delivery after the restart: %d %q %v after %d attempts, want 200 duplicate", r.Status, r.Code, r.Err, attempts)
		}
		if m := scrapeDedup(t, b).minus(before); m.window < 1 || m.duplicate != 1 || m.store != 0 {
			t.Errorf("%s; want one window-path delivery answered duplicate by JetStream", m)
		}
		if n := countByWebhookID(readStream(t, c.URL(), stream))[d.ID]; n != 1 {
			t.Errorf("stored %d times, want once", n)
		}
	})
}
