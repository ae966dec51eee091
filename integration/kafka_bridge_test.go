package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/schema"
)

// dedupStores are the stores the Kafka bridge is run with: memory always,
// and Redis when HOOKBRIDGE_IT_REDIS_URL names one (CI sets it).
func kafkaDedupStores(t *testing.T) map[string]map[string]string {
	stores := map[string]map[string]string{"memory": {"HOOKBRIDGE_DEDUP": "memory"}}
	if u := os.Getenv("HOOKBRIDGE_IT_REDIS_URL"); u != "" {
		stores["redis"] = map[string]string{"HOOKBRIDGE_DEDUP": "redis", "HOOKBRIDGE_REDIS_URL": u}
	} else if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but HOOKBRIDGE_IT_REDIS_URL is unset: the Redis dedup store must be tested")
	}
	return stores
}

// TestKafka_BridgeEndToEnd runs `hookbridge serve` against a Kafka cluster:
// every catalogue type lands on its topic byte for byte, repeated and
// concurrent copies of one webhook-id produce one record, and `tail --kafka`
// reads them back.
func TestKafka_BridgeEndToEnd(t *testing.T) {
	forEachKafka(t, func(t *testing.T, kc *kafkaCluster) {
		for name, dedupEnv := range kafkaDedupStores(t) {
			t.Run(name, func(t *testing.T) {
				prefix := uniqueKafkaPrefix(t)
				env := map[string]string{
					"HOOKBRIDGE_BROKER":                   "kafka",
					"HOOKBRIDGE_KAFKA_BROKERS":            strings.Join(kc.brokers, ","),
					"HOOKBRIDGE_TOPIC_PREFIX":             prefix,
					"HOOKBRIDGE_KAFKA_REPLICATION_FACTOR": fmt.Sprint(kc.rf),
				}
				for k, v := range dedupEnv {
					env[k] = v
				}
				b := startBridge(t, env)

				sent := map[string]delivery{}
				for _, typ := range schema.Types() {
					d := delivery{ID: newID(), Body: mustSample(t, typ)}
					if r := post(b.URL, d, nil); r.Status != 200 || r.Code != "published" {
						t.Fatalf("%s: %d %q %v\n%s", typ, r.Status, r.Code, r.Err, b.logs)
					}
					sent[d.ID] = d
				}
				dup := delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
				for i := 0; i < 3; i++ {
					post(b.URL, dup, nil)
				}
				var wg sync.WaitGroup
				conc := delivery{ID: newID(), Body: mustSample(t, schema.ResponseCompleted)}
				for i := 0; i < 20; i++ {
					wg.Add(1)
					go func() { defer wg.Done(); post(b.URL, conc, nil) }()
				}
				wg.Wait()

				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				want := len(sent) + 2
				kc.readAll(ctx, t, "^"+prefix+`\..*`, want)
				// Anything beyond want would be a duplicate: give stragglers a
				// moment, bounded, then read everything again.
				time.Sleep(500 * time.Millisecond)
				recs := kc.readAll(ctx, t, "^"+prefix+`\..*`, want)
				per := kafkaByWebhookID(t, recs)
				if len(recs) != want {
					t.Errorf("%d records, want %d", len(recs), want)
				}
				for id, rs := range per {
					if len(rs) != 1 {
						t.Errorf("webhook-id %s has %d records", id, len(rs))
					}
				}
				for id, d := range sent {
					rs := per[id]
					if len(rs) == 0 {
						t.Errorf("%s missing", id)
						continue
					}
					ev, _ := schema.Parse(d.Body)
					if rs[0].Topic != prefix+"."+string(ev.Type) || !bytes.Equal(rs[0].Value, d.Body) {
						t.Errorf("%s: topic %q, body equal %v", id, rs[0].Topic, bytes.Equal(rs[0].Value, d.Body))
					}
					if string(rs[0].Key) != ev.ObjectID() {
						t.Errorf("%s: key %q, want %q", id, rs[0].Key, ev.ObjectID())
					}
				}

				out, code := runCLI(t, 60*time.Second, nil, "tail", "--kafka", strings.Join(kc.brokers, ","),
					"--prefix", prefix, "--type", "batch.>", "--all", "--count", "5", "--wait", "45s")
				if code != 0 || !strings.Contains(out, dup.ID) {
					t.Errorf("tail --kafka exited %d without %s:\n%s", code, dup.ID, out)
				}
			})
		}
	})
}
