package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookbridge/hookbridge/publish"
)

// kafkaCluster is one cluster the Kafka suite runs against: an in-process
// kfake cluster (always), and a real one when HOOKBRIDGE_IT_KAFKA_BROKERS
// names its brokers (plaintext, e.g. the compose file's localhost:9092).
type kafkaCluster struct {
	name    string
	brokers []string
	fake    *kfake.Cluster // nil for a real cluster
	rf      int            // replication factor for the topics tests create
}

// startKfake starts a 3-broker kfake cluster on random 127.0.0.1 ports and
// closes it when the test ends.
func startKfake(t testing.TB) *kafkaCluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.ClusterID("hookbridge-it"))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &kafkaCluster{name: "kfake", brokers: c.ListenAddrs(), fake: c, rf: 3}
}

// kafkaClusters lists the clusters the suite runs against.
func kafkaClusters(t *testing.T) []*kafkaCluster {
	cs := []*kafkaCluster{startKfake(t)}
	if env := os.Getenv("HOOKBRIDGE_IT_KAFKA_BROKERS"); env != "" {
		rf := 1
		if s := os.Getenv("HOOKBRIDGE_IT_KAFKA_REPLICATION_FACTOR"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("HOOKBRIDGE_IT_KAFKA_REPLICATION_FACTOR: %v", err)
			}
			rf = n
		}
		cs = append(cs, &kafkaCluster{name: "real", brokers: strings.Split(env, ","), rf: rf})
	}
	return cs
}

// forEachKafka runs fn as a subtest per cluster.
func forEachKafka(t *testing.T, fn func(t *testing.T, kc *kafkaCluster)) {
	for _, kc := range kafkaClusters(t) {
		t.Run(kc.name, func(t *testing.T) { fn(t, kc) })
	}
}

// uniquePrefix isolates each test's topics, so runs against a shared real
// cluster neither collide nor read each other's records.
func uniqueKafkaPrefix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "hbit" + hex.EncodeToString(b)
}

// config is a publisher config for kc with the test's prefix.
func (kc *kafkaCluster) config(prefix string, knownTypes ...string) publish.KafkaConfig {
	return publish.KafkaConfig{
		Brokers:           kc.brokers,
		Prefix:            prefix,
		CreateTopics:      true,
		Partitions:        3,
		ReplicationFactor: kc.rf,
		KnownTypes:        knownTypes,
	}
}

// newKafka starts a publisher and closes it when the test ends.
func newKafka(t testing.TB, cfg publish.KafkaConfig, log zerolog.Logger) *publish.Kafka {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, err := publish.NewKafka(ctx, cfg, log)
	if err != nil {
		t.Fatalf("NewKafka: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = k.Close(ctx)
	})
	return k
}

// kgoClient is a franz-go client for reading back and administration.
func (kc *kafkaCluster) kgoClient(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kc.brokers...)}, opts...)...)
	if err != nil {
		t.Fatalf("kgo: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// readAll consumes every topic matching the regular expression from the
// start until it has want records. It stops early, failing the test, when
// ctx ends: the loop is bounded by ctx and by want.
func (kc *kafkaCluster) readAll(ctx context.Context, t testing.TB, topicRegex string, want int) []*kgo.Record {
	t.Helper()
	cl := kc.kgoClient(t,
		kgo.ConsumeRegex(), kgo.ConsumeTopics(topicRegex),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(100*time.Millisecond),
	)
	var recs []*kgo.Record
	for len(recs) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from %s before %v", len(recs), want, topicRegex, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// javaPartition is the Java producer's partition for a keyed record,
// toPositive(murmur2(key)) % n, written out independently of kafka-go.
func javaPartition(key []byte, n int) int32 {
	const m = uint32(0x5bd1e995)
	h := uint32(0x9747b28c) ^ uint32(len(key))
	i := 0
	for ; i+4 <= len(key); i += 4 {
		k := uint32(key[i]) | uint32(key[i+1])<<8 | uint32(key[i+2])<<16 | uint32(key[i+3])<<24
		k *= m
		k ^= k >> 24
		k *= m
		h = h*m ^ k
	}
	switch len(key) - i {
	case 3:
		h ^= uint32(key[i+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(key[i+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(key[i])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h&0x7fffffff) % int32(n)
}

func TestKafkaJavaPartitionHelper(t *testing.T) {
	// Kafka's UtilsTest: murmur2("foobar") = -790332482, toPositive = 1357151166.
	if got := javaPartition([]byte("foobar"), 10); got != 6 {
		t.Fatalf("javaPartition(foobar, 10) = %d, want 6", got)
	}
	if got := javaPartition([]byte("21"), 1000); got != int32((-973932308&0x7fffffff)%1000) {
		t.Fatalf("javaPartition(21, 1000) = %d", got)
	}
}
