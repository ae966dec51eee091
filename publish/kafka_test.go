package publish

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/hookbridge/hookbridge/schema"
)

// javaMurmur2 is a line-by-line port of Kafka's Utils.murmur2 with Java's
// signed 32-bit arithmetic, kept separate from kafka-go's unsigned port so
// the test checks one against the other.
func javaMurmur2(data []byte) int32 {
	length := int32(len(data))
	const seed = int32(-1756908916) // 0x9747b28c
	const m = int32(0x5bd1e995)
	const r = 24
	h := seed ^ length
	length4 := length / 4
	for i := int32(0); i < length4; i++ {
		i4 := i * 4
		k := int32(data[i4+0]) + int32(data[i4+1])<<8 + int32(data[i4+2])<<16 + int32(data[i4+3])<<24
		k *= m
		k ^= int32(uint32(k) >> r) // Java's >>>
		k *= m
		h *= m
		h ^= k
	}
	switch length % 4 {
	case 3:
		h ^= int32(data[(length & ^3)+2]) << 16
		fallthrough
	case 2:
		h ^= int32(data[(length & ^3)+1]) << 8
		fallthrough
	case 1:
		h ^= int32(data[length & ^3])
		h *= m
	}
	h ^= int32(uint32(h) >> 13)
	h *= m
	h ^= int32(uint32(h) >> 15)
	return h
}

// javaPartition is the Java client's DefaultPartitioner for a keyed record:
// Utils.toPositive(Utils.murmur2(key)) % numPartitions.
func javaPartition(key []byte, n int) int { return int(javaMurmur2(key)&0x7fffffff) % n }

func TestKafkaMurmur2ReferenceVectors(t *testing.T) {
	// Kafka's UtilsTest.testMurmur2.
	tests := []struct {
		in   string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
		// The empty key, as listed by other Java-compatible ports.
		{"", 275646681},
	}
	for _, tt := range tests {
		if got := javaMurmur2([]byte(tt.in)); got != tt.want {
			t.Errorf("javaMurmur2(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestKafkaMurmur2BalancerMatchesJava(t *testing.T) {
	tests := []struct {
		key        string
		partitions int
		want       int
	}{
		// toPositive(-790332482) = 1357151166.
		{"foobar", 10, 6},
		{"foobar", 50, 16},
		// A 12-partition table published with another Java-compatible
		// client, checked there against the Java producer.
		{"1039-36302-36840-2-9f138052", 12, 4},
		{"1388-20023-36900-2-c9985f66", 12, 0},
		{"1175-03505-36600-2-126dd9ca", 12, 1},
		{"1011-98208-36480-2-9eef750a", 12, 8},
		{"233-75504-36900-2-609151bd", 12, 10},
		{"1182-07205-22440-2-0ad4507d", 12, 9},
		{"1010-98110-23700-2-295bfb4c", 12, 10},
		{"1137-01302-23820-2-d560d49a", 12, 4},
		{"599999", 12, 3},
		// hookbridge-shaped keys (object ids, a webhook-id), expected values
		// from javaPartition.
		{"batch_6a1f2060b68581909b92d26d2f22859b", 3, 1},
		{"resp_abc123", 3, 2},
		{"rtc_u1_9c3e", 3, 0},
		{"wh_685342e6c9d881908e1db6f4e1a1e8f1", 3, 0},
		{"", 3, 0}, // an empty key is hashed, not randomised
	}
	b := kafka.Murmur2Balancer{}
	for _, tt := range tests {
		if ref := javaPartition([]byte(tt.key), tt.partitions); ref != tt.want {
			t.Errorf("reference partition(%q, %d) = %d, table says %d", tt.key, tt.partitions, ref, tt.want)
		}
		parts := make([]int, tt.partitions)
		for i := range parts {
			parts[i] = i
		}
		if got := b.Balance(kafka.Message{Key: []byte(tt.key)}, parts...); got != tt.want {
			t.Errorf("Murmur2Balancer(%q, %d) = %d, want %d", tt.key, tt.partitions, got, tt.want)
		}
	}
	// And broadly: every key length mod 4 and several partition counts.
	for i := 0; i < 500; i++ {
		key := []byte(strings.Repeat("k", i%9) + string(rune('a'+i%26)) + big.NewInt(int64(i*7919)).String())
		for _, n := range []int{1, 3, 7, 12, 64} {
			parts := make([]int, n)
			for j := range parts {
				parts[j] = j
			}
			if got, want := b.Balance(kafka.Message{Key: key}, parts...), javaPartition(key, n); got != want {
				t.Fatalf("Murmur2Balancer(%q, %d) = %d, Java = %d", key, n, got, want)
			}
		}
	}
}

func TestKafkaTopicNames(t *testing.T) {
	ev, err := schema.Parse([]byte(`{"id":"evt_1","object":"event","created_at":1,"type":"fine_tuning.job.succeeded","data":{"id":"ftjob_1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	routed := &schema.Delivery{WebhookID: "wh_1", Event: ev}
	dead := &schema.Delivery{WebhookID: "wh_2", DeadLetterReason: schema.ReasonNotJSON}
	tests := []struct {
		name      string
		cfg       KafkaConfig
		d         *schema.Delivery
		wantTopic string
	}{
		{"per type", KafkaConfig{}, routed, "openai.fine_tuning.job.succeeded"},
		{"per type prefix", KafkaConfig{Prefix: "acme.openai"}, routed, "acme.openai.fine_tuning.job.succeeded"},
		{"dead letter", KafkaConfig{}, dead, "openai.deadletter"},
		{"single topic", KafkaConfig{Topic: "openai-webhooks"}, routed, "openai-webhooks"},
		{"single topic dead letter", KafkaConfig{Topic: "openai-webhooks"}, dead, "openai-webhooks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.withDefaults().topicFor(tt.d); got != tt.wantTopic {
				t.Errorf("topicFor = %q, want %q", got, tt.wantTopic)
			}
		})
	}

	got := KafkaConfig{KnownTypes: []string{"batch.completed", "batch.completed", "eval.run.failed"}}.withDefaults().startupTopics()
	want := []string{"openai.batch.completed", "openai.deadletter", "openai.eval.run.failed"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("startupTopics = %v, want %v", got, want)
	}
	got = KafkaConfig{Topic: "one", KnownTypes: []string{"batch.completed"}}.withDefaults().startupTopics()
	if len(got) != 1 || got[0] != "one" {
		t.Errorf("single-topic startupTopics = %v, want [one]", got)
	}
	// The longest routable type under the longest prefix still makes a legal topic.
	long := strings.Repeat("p", maxPrefixLen) + "." + strings.Repeat("t", schema.MaxTypeLen)
	if err := validTopicName(long); err != nil {
		t.Errorf("longest topic: %v", err)
	}
}

func TestKafkaKey(t *testing.T) {
	parse := func(body string) *schema.Event {
		ev, err := schema.Parse([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	tests := []struct {
		name string
		d    *schema.Delivery
		want string
	}{
		{"data.id", &schema.Delivery{WebhookID: "wh", Event: parse(`{"type":"batch.completed","data":{"id":"batch_1"}}`)}, "batch_1"},
		{"call_id", &schema.Delivery{WebhookID: "wh", Event: parse(`{"type":"realtime.call.incoming","data":{"call_id":"rtc_1"}}`)}, "rtc_1"},
		{"no object id", &schema.Delivery{WebhookID: "wh", Event: parse(`{"type":"brand.new","data":{}}`)}, "wh"},
		{"dead letter", &schema.Delivery{WebhookID: "wh", DeadLetterReason: schema.ReasonNotJSON}, "wh"},
	}
	for _, tt := range tests {
		if got := kafkaKey(tt.d); got != tt.want {
			t.Errorf("%s: kafkaKey = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestKafkaValidTopicName(t *testing.T) {
	tests := []struct {
		topic string
		ok    bool
	}{
		{"openai.batch.completed", true},
		{"openai-webhooks", true},
		{"Open_AI.x-1", true},
		{"", false},
		{".", false},
		{"..", false},
		{"has space", false},
		{"openai.>", false},
		{"ünïcode", false},
		{strings.Repeat("a", 249), true},
		{strings.Repeat("a", 250), false},
	}
	for _, tt := range tests {
		if err := validTopicName(tt.topic); (err == nil) != tt.ok {
			t.Errorf("validTopicName(%q) = %v, want ok=%v", tt.topic, err, tt.ok)
		}
	}
}

func TestKafkaTopicCollision(t *testing.T) {
	existing := []string{"openai.fine.tuning_job.failed", "openai.batch.completed", "other_topic"}
	tests := []struct {
		topic     string
		wantOther string
	}{
		{"openai.fine_tuning.job.failed", "openai.fine.tuning_job.failed"},
		{"openai.fine.tuning_job.failed", ""}, // itself: exists, no collision
		{"openai.batch.completed", ""},
		{"openai.batch_completed", "openai.batch.completed"},
		{"other.topic", "other_topic"},
		{"openai.eval.run.failed", ""},
	}
	for _, tt := range tests {
		other, ok := topicCollision(tt.topic, existing)
		if ok != (tt.wantOther != "") || other != tt.wantOther {
			t.Errorf("topicCollision(%q) = %q, %v; want %q", tt.topic, other, ok, tt.wantOther)
		}
	}
	err := collisionError("openai.fine_tuning.job.failed", "openai.fine.tuning_job.failed")
	if !errors.Is(err, ErrTopicCollision) {
		t.Errorf("collisionError does not wrap ErrTopicCollision: %v", err)
	}
	for _, s := range []string{`"openai.fine_tuning.job.failed"`, `"openai.fine.tuning_job.failed"`, "HOOKBRIDGE_KAFKA_TOPIC"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("collision error %q does not mention %s", err, s)
		}
	}
}

func TestKafkaConfigValidate(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	certFile, keyFile := writeSelfSigned(t, dir)
	if err := os.WriteFile(caFile, mustRead(t, certFile), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nope.pem")
	ok := KafkaConfig{Brokers: []string{"127.0.0.1:9092"}}

	tests := []struct {
		name    string
		mutate  func(*KafkaConfig)
		wantErr []string // substrings; nil means valid
	}{
		{"defaults", func(*KafkaConfig) {}, nil},
		{"no brokers", func(c *KafkaConfig) { c.Brokers = nil }, []string{"no brokers"}},
		{"broker without port", func(c *KafkaConfig) { c.Brokers = []string{"kafka"} }, []string{`"kafka" is not host:port`}},
		{"sasl plain", func(c *KafkaConfig) { c.SASL = KafkaSASL{Mechanism: "plain", Username: "u", Password: "p"} }, nil},
		{"sasl upper case", func(c *KafkaConfig) { c.SASL = KafkaSASL{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p"} }, nil},
		{"sasl scram-sha-256", func(c *KafkaConfig) { c.SASL = KafkaSASL{Mechanism: "scram-sha-256", Username: "u", Password: "p"} }, nil},
		{"sasl unknown", func(c *KafkaConfig) { c.SASL = KafkaSASL{Mechanism: "gssapi", Username: "u"} }, []string{`unknown SASL mechanism "gssapi"`}},
		{"sasl scram-sha-1", func(c *KafkaConfig) { c.SASL = KafkaSASL{Mechanism: "scram-sha-1", Username: "u"} }, []string{"unknown SASL mechanism"}},
		{"sasl no user", func(c *KafkaConfig) { c.SASL = KafkaSASL{Mechanism: "plain"} }, []string{"needs a username"}},
		{"tls files", func(c *KafkaConfig) {
			c.TLS = KafkaTLS{Enabled: true, CAFile: caFile, CertFile: certFile, KeyFile: keyFile}
		}, nil},
		{"tls missing files", func(c *KafkaConfig) { c.TLS = KafkaTLS{CAFile: missing, CertFile: missing, KeyFile: missing} },
			[]string{"TLS CA file", "TLS certificate file", "TLS key file", "no such file"}},
		{"tls cert without key", func(c *KafkaConfig) { c.TLS = KafkaTLS{Enabled: true, CertFile: certFile} }, []string{"set together"}},
		{"bad prefix", func(c *KafkaConfig) { c.Prefix = "open ai" }, []string{"topic prefix"}},
		{"long prefix", func(c *KafkaConfig) { c.Prefix = strings.Repeat("p", maxPrefixLen+1) }, []string{"longer than 48"}},
		{"bad single topic", func(c *KafkaConfig) { c.Topic = "a/b" }, []string{`kafka topic "a/b"`}},
		{"unroutable known type", func(c *KafkaConfig) { c.KnownTypes = []string{"Batch.Completed"} }, []string{"not routable"}},
		{"partitions", func(c *KafkaConfig) { c.Partitions = -2; c.ReplicationFactor = -3 }, []string{"partitions -2", "replication factor -3"}},
		{"broker defaults", func(c *KafkaConfig) { c.Partitions = -1; c.ReplicationFactor = -1 }, nil},
		{"every problem at once", func(c *KafkaConfig) {
			c.Brokers = nil
			c.SASL.Mechanism = "nope"
			c.TLS.CAFile = missing
		}, []string{"no brokers", "unknown SASL", "TLS CA file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				// A valid config also builds its transport and dialer.
				if _, err := cfg.Transport(); err != nil {
					t.Errorf("Transport: %v", err)
				}
				if _, err := cfg.Dialer(); err != nil {
					t.Errorf("Dialer: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted an invalid config")
			}
			if !strings.HasPrefix(err.Error(), "publish: ") {
				t.Errorf("error %q lacks the publish: prefix", err)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestKafkaTLSConfig(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tc, err := KafkaConfig{TLS: KafkaTLS{CAFile: certFile, CertFile: certFile, KeyFile: keyFile}}.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	if tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.InsecureSkipVerify {
		t.Errorf("tls config = %+v, want roots, one client cert, verification on", tc)
	}
	if tc, _ := (KafkaConfig{}).tlsConfig(); tc != nil {
		t.Error("TLS is on without being configured")
	}
	if _, err := (KafkaConfig{TLS: KafkaTLS{CAFile: notPEM}}).tlsConfig(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("CA file without PEM: err = %v", err)
	}
	if _, err := (KafkaConfig{TLS: KafkaTLS{CertFile: certFile, KeyFile: certFile}}).tlsConfig(); err == nil {
		t.Error("a certificate as its own key was accepted")
	}
}

func TestKafkaReaderConfig(t *testing.T) {
	cfg := KafkaConfig{Brokers: []string{"127.0.0.1:9092"}, SASL: KafkaSASL{Mechanism: "scram-sha-256", Username: "u", Password: "p"}}
	rc, err := cfg.ReaderConfig([]string{"a", "b"}, "workers")
	if err != nil {
		t.Fatal(err)
	}
	if rc.GroupID != "workers" || len(rc.GroupTopics) != 2 || rc.Dialer == nil || rc.Dialer.SASLMechanism == nil || rc.Dialer.ClientID != DefaultKafkaClientID {
		t.Errorf("reader config = %+v", rc)
	}
	if rc, err := cfg.ReaderConfig([]string{"a"}, ""); err != nil || rc.Topic != "a" {
		t.Errorf("single topic without group: %+v, %v", rc, err)
	}
	if _, err := cfg.ReaderConfig([]string{"a", "b"}, ""); err == nil {
		t.Error("several topics without a group were accepted")
	}
	if _, err := cfg.ReaderConfig(nil, "g"); err == nil {
		t.Error("no topics were accepted")
	}
}

func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hookbridge-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
