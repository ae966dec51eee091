package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// restartableKfake is a 3-broker kfake cluster on fixed ports with its state
// on disk, so that it can be stopped and started again on the same
// addresses with the records it had: kfake has no process to kill, but a
// cluster closed and recreated this way looks to the bridge exactly like a
// cluster restart (every connection drops, every broker refuses until it is
// back). Single brokers are stopped with RemoveNode and brought back on the
// same port with AddNode.
type restartableKfake struct {
	t     testing.TB
	ports []int
	dir   string
	c     *kfake.Cluster
}

func startRestartableKfake(t testing.TB) *restartableKfake {
	t.Helper()
	k := &restartableKfake{t: t, ports: []int{freePort(t), freePort(t), freePort(t)}, dir: t.TempDir()}
	k.start()
	t.Cleanup(k.stop)
	return k
}

func (k *restartableKfake) start() {
	k.t.Helper()
	var err error
	for range 50 { // a port may linger briefly after the previous Close
		k.c, err = kfake.NewCluster(kfake.NumBrokers(3), kfake.Ports(k.ports...),
			kfake.ClusterID("hookbridge-faults"), kfake.DataDir(k.dir), kfake.ListenFn(listenDying))
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	k.t.Fatalf("kfake restart: %v", err)
}

// listenDying is kfake's listener, except that closing it also closes every
// connection it accepted, as a broker process that stops does. RemoveNode
// only closes the listener: clients would keep their connection to a broker
// that no longer leads anything and get "not leader" answers forever, which
// no real cluster does.
func listenDying(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return &dyingListener{Listener: ln}, nil
}

type dyingListener struct {
	net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func (l *dyingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns = append(l.conns, c)
	return c, nil
}

func (l *dyingListener) Close() error {
	l.mu.Lock()
	conns := l.conns
	l.conns, l.closed = nil, true
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return l.Listener.Close()
}

func (k *restartableKfake) stop() {
	if k.c != nil {
		k.c.Close()
		k.c = nil
	}
}

func (k *restartableKfake) cluster() *kafkaCluster {
	addrs := make([]string, len(k.ports))
	for i, p := range k.ports {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	return &kafkaCluster{name: "kfake-restartable", brokers: addrs, rf: 3}
}

// kafkaDrain reads every record of the topics matching topicRegex until at
// least min are read and nothing new arrived for a second, bounded by ctx.
func kafkaDrain(ctx context.Context, t testing.TB, kc *kafkaCluster, topicRegex string, min int) []*kgo.Record {
	t.Helper()
	cl := kc.kgoClient(t,
		kgo.ConsumeRegex(), kgo.ConsumeTopics(topicRegex),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(100*time.Millisecond),
	)
	var recs []*kgo.Record
	lastNew := time.Now()
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		if n := len(fs.Records()); n > 0 {
			recs = append(recs, fs.Records()...)
			lastNew = time.Now()
		}
		if len(recs) >= min && time.Since(lastNew) > time.Second {
			return recs
		}
	}
	t.Fatalf("read %d records of at least %d from %s before %v", len(recs), min, topicRegex, ctx.Err())
	return nil
}

// checkKafka asserts that every acknowledged id has a record; duplicates
// (kafka-go has no idempotent producer) are counted and reported, not failed.
func checkKafka(t *testing.T, name string, kc *kafkaCluster, prefix string, rep senderReport) (dups int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs := kafkaDrain(ctx, t, kc, "^"+prefix+`\..*`, rep.Acked)
	per := kafkaByWebhookID(t, recs)
	found, lost, extra := 0, 0, 0
	for _, rec := range rep.Records {
		n := len(per[rec.ID])
		if n > 1 {
			dups++
			extra += n - 1
		}
		if !rec.Acked {
			continue
		}
		if n >= 1 {
			found++
		} else {
			lost++
			t.Errorf("%s: acknowledged webhook-id %s (%s after %d attempts) has no record", name, rec.ID, rec.AckCode, rec.Attempts)
		}
	}
	if rep.Acked != rep.Sent {
		t.Errorf("%s: %d of %d ids never acknowledged within the horizon", name, rep.Sent-rep.Acked, rep.Sent)
	}
	t.Logf("%s: sent %d, acknowledged %d, found %d, lost %d, duplicates %d ids (%d extra records), records %d, longest unavailability %s (ended at +%s), attempts %d, elapsed %s; answers: %s",
		name, rep.Sent, rep.Acked, found, lost, dups, extra, len(recs), rep.Longest.Round(time.Millisecond),
		rep.LongestEndedAt.Round(time.Millisecond), rep.Attempts, rep.Elapsed.Round(time.Millisecond), rep.answersString())
	return dups
}

func kafkaFaultEnv(kc *kafkaCluster, prefix string) map[string]string {
	return map[string]string{
		"HOOKBRIDGE_BROKER":                   "kafka",
		"HOOKBRIDGE_KAFKA_BROKERS":            strings.Join(kc.brokers, ","),
		"HOOKBRIDGE_TOPIC_PREFIX":             prefix,
		"HOOKBRIDGE_KAFKA_REPLICATION_FACTOR": fmt.Sprint(kc.rf),
		"HOOKBRIDGE_PUBLISH_TIMEOUT":          "2s",
		"HOOKBRIDGE_DEDUP_LEASE":              "4s",
		"HOOKBRIDGE_SHUTDOWN_GRACE":           "10s",
	}
}

// TestFault_KafkaRestart: under load, one broker is removed and re-added on
// its port, then the whole cluster is stopped and started again twice.
func TestFault_KafkaRestart(t *testing.T) {
	k := startRestartableKfake(t)
	kc := k.cluster()
	prefix := uniqueKafkaPrefix(t)
	b := startBridge(t, kafkaFaultEnv(kc, prefix))
	s := startSender(t, senderOpts{URLs: []string{b.URL}, Count: 20000, Concurrency: 16, Rate: 200, Horizon: 50 * time.Second})

	if !s.waitAcked(200, 15*time.Second) {
		t.Fatalf("load did not progress\n%s", b.logs)
	}
	// One broker away and back (its partitions move to the others and back).
	if err := k.c.RemoveNode(2); err != nil {
		t.Fatalf("RemoveNode: %v", err)
	}
	time.Sleep(time.Second)
	if _, _, err := k.c.AddNode(2, k.ports[2]); err != nil {
		t.Fatalf("AddNode: %v", err)
	}
	// The whole cluster down and up, twice.
	for i := range 2 {
		if !s.waitAcked(s.acked.Load()+200, 20*time.Second) {
			t.Fatalf("round %d: load did not progress\n%s", i, b.logs)
		}
		k.stop()
		time.Sleep(time.Second)
		k.start()
	}
	if !s.waitAcked(s.acked.Load()+200, 30*time.Second) {
		t.Errorf("no progress after the last restart\n%s", b.logs)
	}
	rep := s.finish()
	checkKafka(t, "kafka broker remove/add + cluster restart ×2", kc, prefix, rep)
	// Generous: kafka-go learns new leaders only from its periodic metadata
	// refresh (up to 6 s apart), and the machine may be loaded.
	if rep.Longest > 25*time.Second {
		t.Errorf("longest unavailability %s, want < 25s", rep.Longest)
	}
}

// TestFault_KafkaReplicasRedis: two Kafka bridges share the Redis dedup
// store; every id goes to both at once. Nothing may be lost; duplicates are
// counted (the store should leave none).
func TestFault_KafkaReplicasRedis(t *testing.T) {
	redisURL := os.Getenv("HOOKBRIDGE_IT_REDIS_URL")
	if redisURL == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but HOOKBRIDGE_IT_REDIS_URL is unset")
		}
		t.Skip("HOOKBRIDGE_IT_REDIS_URL unset: no Redis to share")
	}
	kc := startKfake(t)
	prefix := uniqueKafkaPrefix(t)
	env := kafkaFaultEnv(kc, prefix)
	env["HOOKBRIDGE_DEDUP"] = "redis"
	env["HOOKBRIDGE_REDIS_URL"] = redisURL
	b1 := startBridge(t, env)
	b2 := startBridge(t, env)
	s := startSender(t, senderOpts{URLs: []string{b1.URL, b2.URL}, Fanout: true, Count: 400, Concurrency: 16, Horizon: 40 * time.Second})
	rep := s.wait()
	if dups := checkKafka(t, "2 Kafka replicas, shared Redis, fanout", kc, prefix, rep); dups > 0 {
		t.Errorf("%d ids written twice although both replicas share the Redis store", dups)
	}
	if rep.Answers["409 in_flight"]+rep.Answers["200 duplicate"] == 0 {
		t.Errorf("the replicas did not race (%s)", rep.answersString())
	}
}
