package integration

// The Kafka suite runs against kfake (github.com/twmb/franz-go/pkg/kfake), an
// in-process Kafka implementation listening on real TCP loopback ports,
// because no Kafka distribution can be installed in CI here. Set
// HOOKBRIDGE_IT_KAFKA_BROKERS=localhost:9092 (e.g. `docker compose up -d
// kafka`) to run the same tests against a real cluster as well; every test
// uses its own topic prefix, so a shared cluster is fine.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookbridge/hookbridge/publish"
	"github.com/hookbridge/hookbridge/schema"
)

// kafkaNewType is routable but not in the catalogue: its topic is created on first use.
const kafkaNewType schema.Type = "brand_new.thing.happened"

// delivery builds the n-th delivery of typ: the catalogue sample (or a small
// literal body for an unknown type) with its object id made unique, so that
// keys spread over partitions.
func kafkaDelivery(t testing.TB, typ schema.Type, n int) *schema.Delivery {
	t.Helper()
	body, ok := schema.Sample(typ)
	if !ok {
		body = fmt.Appendf(nil, `{"id":"evt_new_%d","object":"event","created_at":1780432000,"type":%q,"data":{"id":"thing_%d"}}`, n, typ, n)
	}
	ev, err := schema.Parse(body)
	if err != nil {
		t.Fatalf("sample %s: %v", typ, err)
	}
	if id := ev.ObjectID(); id != "" {
		body = bytes.ReplaceAll(body, []byte(`"`+id+`"`), fmt.Appendf(nil, `"%s_%d"`, id, n))
		if ev, err = schema.Parse(body); err != nil {
			t.Fatal(err)
		}
	}
	return &schema.Delivery{
		WebhookID: fmt.Sprintf("wh_%s_%d", typ, n),
		Timestamp: "1780432000",
		Signature: "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
		Body:      body,
		Event:     ev,
	}
}

// deadLetter is a verified body that is not an event.
func kafkaDeadLetter(n int) *schema.Delivery {
	return &schema.Delivery{
		WebhookID:        fmt.Sprintf("wh_dead_%d", n),
		Timestamp:        "1780432000",
		Signature:        "v1,c2lnbmF0dXJl",
		Body:             fmt.Appendf(nil, "not json %d\x00\xff", n),
		DeadLetterReason: schema.ReasonNotJSON,
	}
}

// expectedKey is the record key the README promises, computed here rather
// than by the publisher: the object id, else the webhook-id.
func kafkaExpectedKey(d *schema.Delivery) string {
	if d.Event != nil && d.Event.ObjectID() != "" {
		return d.Event.ObjectID()
	}
	return d.WebhookID
}

func kafkaPublishCtx(t testing.TB) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// publishAll publishes ds from 8 goroutines, so the writer batches.
func kafkaPublishAll(t *testing.T, k *publish.Kafka, ds []*schema.Delivery) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(ds))
	next := atomic.Int64{}
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(ds); i = int(next.Add(1) - 1) {
				ctx, cancel := kafkaPublishCtx(t)
				_, err := k.Publish(ctx, ds[i])
				cancel()
				if err != nil {
					errs <- fmt.Errorf("publish %s: %w", ds[i].WebhookID, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
}

func kafkaHeaderMap(t testing.TB, r *kgo.Record) map[string]string {
	t.Helper()
	h := make(map[string]string, len(r.Headers))
	for _, kv := range r.Headers {
		if kv.Key != strings.ToLower(kv.Key) {
			t.Errorf("header key %q is not lower-case", kv.Key)
		}
		if _, dup := h[kv.Key]; dup {
			t.Errorf("header %q appears twice", kv.Key)
		}
		h[kv.Key] = string(kv.Value)
	}
	return h
}

// checkKafkaRecord asserts that r is d as it must appear on Kafka: topic,
// key, body and headers (README, On the bus).
func checkKafkaRecord(t testing.TB, r *kgo.Record, d *schema.Delivery, wantTopic string, partitions int) {
	t.Helper()
	id := d.WebhookID
	if r.Topic != wantTopic {
		t.Errorf("%s: topic %q, want %q", id, r.Topic, wantTopic)
	}
	if !bytes.Equal(r.Value, d.Body) {
		t.Errorf("%s: value differs from the body:\n got %q\nwant %q", id, r.Value, d.Body)
	}
	key := kafkaExpectedKey(d)
	if string(r.Key) != key {
		t.Errorf("%s: key %q, want %q", id, r.Key, key)
	}
	if want := javaPartition([]byte(key), partitions); r.Partition != want {
		t.Errorf("%s: key %q on partition %d, Java's murmur2 says %d", id, key, r.Partition, want)
	}
	h := kafkaHeaderMap(t, r)
	want := map[string]string{
		"content-type":      "application/json",
		"webhook-id":        d.WebhookID,
		"webhook-timestamp": d.Timestamp,
		"webhook-signature": d.Signature,
		"ce_webhookid":      d.WebhookID,
	}
	if d.Event == nil {
		want["hookbridge-reason"] = d.DeadLetterReason
	} else {
		ev := d.Event
		want["ce_specversion"] = "1.0"
		want["ce_id"] = ev.ID
		want["ce_source"] = "https://api.openai.com"
		want["ce_type"] = string(ev.Type)
		want["ce_time"] = time.Unix(ev.CreatedAt, 0).UTC().Format(time.RFC3339)
		if ev.ObjectID() != "" {
			want["ce_subject"] = ev.ObjectID()
		}
	}
	for k, v := range want {
		if got, ok := h[k]; !ok || got != v {
			t.Errorf("%s: header %s = %q (present %v), want %q", id, k, got, ok, v)
		}
	}
	for k := range h {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected header %s=%q", id, k, h[k])
		}
	}
}

func kafkaByWebhookID(t testing.TB, recs []*kgo.Record) map[string][]*kgo.Record {
	t.Helper()
	m := map[string][]*kgo.Record{}
	for _, r := range recs {
		id := kafkaHeaderMap(t, r)["ce_webhookid"]
		m[id] = append(m[id], r)
	}
	return m
}

func TestKafkaPublishPerTypeTopics(t *testing.T) {
	forEachKafka(t, func(t *testing.T, kc *kafkaCluster) {
		prefix := uniqueKafkaPrefix(t)
		known := []string{"batch.completed", "response.completed", "fine_tuning.job.succeeded", "realtime.call.incoming", "eval.run.failed"}
		k := newKafka(t, kc.config(prefix, known...), zerolog.Nop())

		var ds []*schema.Delivery
		for i := range 12 {
			for _, typ := range known {
				ds = append(ds, kafkaDelivery(t, schema.Type(typ), i))
			}
			ds = append(ds, kafkaDelivery(t, kafkaNewType, i), kafkaDeadLetter(i))
		}
		kafkaPublishAll(t, k, ds)

		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		recs := kc.readAll(ctx, t, "^"+prefix+`\..*`, len(ds))
		if len(recs) != len(ds) {
			t.Fatalf("read %d records, published %d", len(recs), len(ds))
		}
		got := kafkaByWebhookID(t, recs)
		for _, d := range ds {
			rs := got[d.WebhookID]
			if len(rs) != 1 {
				t.Errorf("%s: %d records, want 1", d.WebhookID, len(rs))
				continue
			}
			checkKafkaRecord(t, rs[0], d, publish.Destination(prefix, d), 3)
		}
		if err := k.Check(ctx); err != nil {
			t.Errorf("Check: %v", err)
		}

		// The unknown type's topic was created on first use like the known ones.
		adm := kadm.NewClient(kc.kgoClient(t))
		td, err := adm.ListTopics(ctx, prefix+"."+string(kafkaNewType))
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := td[prefix+"."+string(kafkaNewType)]; !ok || len(d.Partitions) != 3 {
			t.Errorf("topic for %s: %+v", kafkaNewType, td)
		}
	})
}

func TestKafkaPublishSingleTopic(t *testing.T) {
	forEachKafka(t, func(t *testing.T, kc *kafkaCluster) {
		prefix := uniqueKafkaPrefix(t)
		cfg := kc.config(prefix, "batch.completed", "response.failed")
		cfg.Topic = prefix + "-webhooks"
		k := newKafka(t, cfg, zerolog.Nop())

		var ds []*schema.Delivery
		for i := range 10 {
			ds = append(ds, kafkaDelivery(t, "batch.completed", i), kafkaDelivery(t, "response.failed", i), kafkaDelivery(t, kafkaNewType, i), kafkaDeadLetter(i))
		}
		kafkaPublishAll(t, k, ds)

		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		recs := kc.readAll(ctx, t, "^"+prefix+".*", len(ds))
		got := kafkaByWebhookID(t, recs)
		for _, d := range ds {
			if rs := got[d.WebhookID]; len(rs) != 1 {
				t.Errorf("%s: %d records, want 1", d.WebhookID, len(rs))
			} else {
				checkKafkaRecord(t, rs[0], d, cfg.Topic, 3)
			}
		}
		// Nothing but the single topic was created.
		topics, err := publish.ListKafkaTopics(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		adm := kadm.NewClient(kc.kgoClient(t))
		all, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ours []string
		for _, name := range all.Names() {
			if strings.HasPrefix(name, prefix) {
				ours = append(ours, name)
			}
		}
		if len(ours) != 1 || ours[0] != cfg.Topic || len(topics) != 1 || topics[0] != cfg.Topic {
			t.Errorf("topics with our prefix: %v, ListKafkaTopics: %v; want only %s", ours, topics, cfg.Topic)
		}
	})
}

// TestKafkaPublishTwiceTwoRecords documents at-least-once: kafka-go has no
// idempotent producer and the publisher does not deduplicate, so the same
// delivery published twice is two records. ingest's dedup store keeps this
// from happening for OpenAI's retries; consumers drop what remains (a write
// that lands after its request timed out) by ce_webhookid.
func TestKafkaPublishTwiceTwoRecords(t *testing.T) {
	forEachKafka(t, func(t *testing.T, kc *kafkaCluster) {
		prefix := uniqueKafkaPrefix(t)
		k := newKafka(t, kc.config(prefix, "batch.completed"), zerolog.Nop())
		d := kafkaDelivery(t, "batch.completed", 1)
		for range 2 {
			ctx, cancel := kafkaPublishCtx(t)
			if _, err := k.Publish(ctx, d); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		recs := kc.readAll(ctx, t, "^"+prefix+`\..*`, 2)
		if len(recs) != 2 {
			t.Fatalf("%d records, want 2", len(recs))
		}
		for _, r := range recs {
			checkKafkaRecord(t, r, d, prefix+".batch.completed", 3)
		}
		if recs[0].Offset == recs[1].Offset && recs[0].Partition == recs[1].Partition {
			t.Error("both reads are the same record")
		}
	})
}

// TestKafkaConsumerGroup reads back the way a worker would: a kafka-go
// Reader in a consumer group, committing as it goes; a second reader in the
// same group then starts after everything the first committed.
func TestKafkaConsumerGroup(t *testing.T) {
	forEachKafka(t, func(t *testing.T, kc *kafkaCluster) {
		prefix := uniqueKafkaPrefix(t)
		cfg := kc.config(prefix, "batch.completed", "response.completed")
		k := newKafka(t, cfg, zerolog.Nop())
		topics := []string{prefix + ".batch.completed", prefix + ".response.completed"}
		group := prefix + "-workers"

		want := map[string]*schema.Delivery{}
		var ds []*schema.Delivery
		for i := range 10 {
			for _, typ := range []schema.Type{"batch.completed", "response.completed"} {
				d := kafkaDelivery(t, typ, i)
				ds = append(ds, d)
				want[d.WebhookID] = d
			}
		}
		kafkaPublishAll(t, k, ds)

		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		r1, err := publish.NewKafkaReader(cfg, topics, group)
		if err != nil {
			t.Fatal(err)
		}
		for range len(ds) {
			m, err := r1.FetchMessage(ctx)
			if err != nil {
				_ = r1.Close()
				t.Fatalf("fetch: %v", err)
			}
			var id string
			for _, h := range m.Headers {
				if h.Key == "ce_webhookid" {
					id = string(h.Value)
				}
			}
			d, ok := want[id]
			if !ok {
				t.Errorf("unexpected or repeated record %q", id)
			} else if !bytes.Equal(m.Value, d.Body) || string(m.Key) != kafkaExpectedKey(d) {
				t.Errorf("%s: value or key differs", id)
			}
			delete(want, id)
			if err := r1.CommitMessages(ctx, m); err != nil {
				t.Fatalf("commit: %v", err)
			}
		}
		if err := r1.Close(); err != nil {
			t.Errorf("close reader: %v", err)
		}
		if len(want) != 0 {
			t.Fatalf("%d records never read", len(want))
		}

		// The group's committed offsets are the end of every partition.
		adm := kadm.NewClient(kc.kgoClient(t))
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			t.Fatal(err)
		}
		ends.Each(func(lo kadm.ListedOffset) {
			if lo.Offset == 0 {
				return // nothing was written to this partition
			}
			c, ok := committed.Lookup(lo.Topic, lo.Partition)
			if !ok || c.At != lo.Offset {
				t.Errorf("%s/%d: committed %+v, end offset %d", lo.Topic, lo.Partition, c, lo.Offset)
			}
		})

		// A second worker of the group sees only what arrives afterwards.
		marker := kafkaDelivery(t, "response.completed", 999)
		pctx, pcancel := kafkaPublishCtx(t)
		defer pcancel()
		if _, err := k.Publish(pctx, marker); err != nil {
			t.Fatal(err)
		}
		r2, err := publish.NewKafkaReader(cfg, topics, group)
		if err != nil {
			t.Fatal(err)
		}
		defer r2.Close()
		m, err := r2.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("second reader: %v", err)
		}
		if string(m.Key) != kafkaExpectedKey(marker) {
			t.Errorf("second reader got key %q first, want the new record %q", m.Key, kafkaExpectedKey(marker))
		}
	})
}

func TestKafkaTopicCollision(t *testing.T) {
	forEachKafka(t, func(t *testing.T, kc *kafkaCluster) {
		prefix := uniqueKafkaPrefix(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		squatter := prefix + ".fine.tuning_job.succeeded"
		adm := kadm.NewClient(kc.kgoClient(t))
		if _, err := adm.CreateTopic(ctx, 1, int16(kc.rf), nil, squatter); err != nil {
			t.Fatal(err)
		}

		// At start-up: a known type's topic collides.
		_, err := publish.NewKafka(ctx, kc.config(prefix, "fine_tuning.job.succeeded"), zerolog.Nop())
		if !errors.Is(err, publish.ErrTopicCollision) {
			t.Fatalf("NewKafka: %v, want ErrTopicCollision", err)
		}
		for _, s := range []string{prefix + ".fine_tuning.job.succeeded", squatter} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not name %s", err, s)
			}
		}

		// At first use: the delivery is refused (503), nothing is written.
		k := newKafka(t, kc.config(prefix, "batch.completed"), zerolog.Nop())
		pctx, pcancel := kafkaPublishCtx(t)
		defer pcancel()
		_, err = k.Publish(pctx, kafkaDelivery(t, "fine_tuning.job.succeeded", 1))
		if !errors.Is(err, publish.ErrTopicCollision) {
			t.Fatalf("Publish: %v, want ErrTopicCollision", err)
		}
		// Other types are unaffected.
		if _, err := k.Publish(pctx, kafkaDelivery(t, "batch.completed", 1)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestKafkaTopicCreatedByAnotherReplica: replica A creates a new type's
// topic; replica B, whose cached metadata predates it, then publishes the
// same type. B's create attempt finds the topic exists, and its write must
// still succeed at once rather than call the topic unknown until kafka-go's
// metadata cache expires.
func TestKafkaTopicCreatedByAnotherReplica(t *testing.T) {
	forEachKafka(t, func(t *testing.T, kc *kafkaCluster) {
		prefix := uniqueKafkaPrefix(t)
		a := newKafka(t, kc.config(prefix, "batch.completed"), zerolog.Nop())
		b := newKafka(t, kc.config(prefix, "batch.completed"), zerolog.Nop())
		ctx, cancel := kafkaPublishCtx(t)
		defer cancel()
		if _, err := a.Publish(ctx, kafkaDelivery(t, kafkaNewType, 1)); err != nil {
			t.Fatalf("replica A: %v", err)
		}
		if _, err := b.Publish(ctx, kafkaDelivery(t, kafkaNewType, 2)); err != nil {
			t.Fatalf("replica B: %v", err)
		}
		rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer rcancel()
		if recs := kc.readAll(rctx, t, "^"+prefix+`\.brand_new\..*`, 2); len(recs) != 2 {
			t.Fatalf("%d records, want 2", len(recs))
		}
	})
}

// kafkaLogBuffer collects log output written from several goroutines.
type kafkaLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *kafkaLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *kafkaLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestKafkaCreateTopicsOff(t *testing.T) {
	forEachKafka(t, func(t *testing.T, kc *kafkaCluster) {
		prefix := uniqueKafkaPrefix(t)
		cfg := kc.config(prefix, "batch.completed")
		cfg.CreateTopics = false
		var logs kafkaLogBuffer
		k := newKafka(t, cfg, zerolog.New(&logs))

		ctx, cancel := kafkaPublishCtx(t)
		defer cancel()
		_, err := k.Publish(ctx, kafkaDelivery(t, "batch.completed", 1))
		if err == nil {
			t.Fatalf("Publish to a missing topic succeeded")
		}
		if !strings.Contains(logs.String(), "HOOKBRIDGE_KAFKA_CREATE_TOPICS") || !strings.Contains(logs.String(), `"component":"publish.kafka"`) {
			t.Errorf("no log line names HOOKBRIDGE_KAFKA_CREATE_TOPICS:\n%s", logs.String())
		}
		if err := k.Check(ctx); err == nil {
			t.Errorf("Check without the dead-letter topic succeeded")
		}
		// Nothing was created behind the operator's back.
		adm := kadm.NewClient(kc.kgoClient(t))
		all, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range all.Names() {
			if strings.HasPrefix(name, prefix) {
				t.Errorf("topic %s created with CreateTopics off", name)
			}
		}
	})
}

// TestKafkaBrokerDown: with the cluster gone, Publish gives up when its ctx
// ends (kafka-go would otherwise keep retrying) with an error, and
// Check fails. kfake only: a real cluster cannot be stopped from here.
func TestKafkaBrokerDown(t *testing.T) {
	kc := startKfake(t)
	prefix := uniqueKafkaPrefix(t)
	k := newKafka(t, kc.config(prefix, "batch.completed"), zerolog.Nop())
	ctx, cancel := kafkaPublishCtx(t)
	defer cancel()
	if _, err := k.Publish(ctx, kafkaDelivery(t, "batch.completed", 0)); err != nil {
		t.Fatal(err)
	}
	kc.fake.Close()

	tests := []struct {
		name string
		d    *schema.Delivery
	}{
		{"existing topic", kafkaDelivery(t, "batch.completed", 1)},
		{"topic to create", kafkaDelivery(t, kafkaNewType, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := k.Publish(ctx, tt.d)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("Publish with the cluster down succeeded")
				}
				t.Logf("Publish: %v", err)
			case <-time.After(time.Minute): // a hang, not a slow answer
				t.Fatal("Publish ignored its 2s deadline")
			}
		})
	}
	if err := k.Check(ctx); err == nil {
		t.Errorf("Check with the cluster down succeeded")
	}
	// Close is bounded by its ctx even with batches stuck retrying.
	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer ccancel()
	done := make(chan error, 1)
	go func() { done <- k.Close(cctx) }()
	select {
	case err := <-done:
		t.Logf("Close: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("Close ignored its 2s deadline")
	}
}

// BenchmarkKafkaPublish measures synchronous acks=all publishes from 64
// goroutines (the bridge's concurrency under load) into a 3-broker kfake
// cluster on loopback; each op is one catalogue-sample delivery. The batch
// timeout is the latency floor of every publish, so both the default and a
// shorter one are measured.
func BenchmarkKafkaPublish(b *testing.B) {
	for _, bt := range []time.Duration{publish.DefaultKafkaBatchTimeout, time.Millisecond} {
		b.Run("batch="+bt.String(), func(b *testing.B) {
			kc := startKfake(b)
			cfg := kc.config(uniqueKafkaPrefix(b), "batch.completed", "response.completed")
			cfg.BatchTimeout = bt
			k := newKafka(b, cfg, zerolog.Nop())
			pool := make([]*schema.Delivery, 1024)
			for i := range pool {
				typ := schema.Type("batch.completed")
				if i%2 == 1 {
					typ = "response.completed"
				}
				pool[i] = kafkaDelivery(b, typ, i)
			}
			b.SetParallelism(int(math.Ceil(64 / float64(runtime.GOMAXPROCS(0)))))
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					d := pool[next.Add(1)%int64(len(pool))]
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err := k.Publish(ctx, d)
					cancel()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
		})
	}
}
