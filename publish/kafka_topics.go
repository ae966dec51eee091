package publish

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/segmentio/kafka-go"

	"github.com/hookbridge/hookbridge/schema"
)

// ErrTopicCollision reports a topic whose name differs from an existing one
// only by '.' versus '_'. Kafka refuses to create it because both map to the
// same metric name (Topic.hasCollisionChars); OpenAI types mix both
// characters (fine_tuning.job.failed), so the check is real, not theoretical.
var ErrTopicCollision = errors.New("publish: kafka topic name collision")

// maxTopicLen is Kafka's limit on topic names (Topic.MAX_NAME_LENGTH).
const maxTopicLen = 249

// validTopicName applies Kafka's rules for topic names: 1–249 characters of
// [a-zA-Z0-9._-], and not "." or "..".
func validTopicName(t string) error {
	if t == "" || len(t) > maxTopicLen {
		return fmt.Errorf("kafka topic %q must be 1 to %d characters", t, maxTopicLen)
	}
	if t == "." || t == ".." {
		return fmt.Errorf("kafka topic %q is reserved", t)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("kafka topic %q has %q; allowed are [a-zA-Z0-9._-]", t, c)
		}
	}
	return nil
}

// metricName is what Kafka's metrics make of a topic name.
func metricName(topic string) string { return strings.ReplaceAll(topic, ".", "_") }

// topicCollision returns the topic among existing that collides with topic:
// same metric name, different actual name. An identical name is no collision
// (the topic simply exists).
func topicCollision(topic string, existing []string) (string, bool) {
	m := metricName(topic)
	for _, e := range existing {
		if e != topic && metricName(e) == m {
			return e, true
		}
	}
	return "", false
}

func collisionError(topic, other string) error {
	return fmt.Errorf("%w: %q and existing topic %q both become %q in Kafka's metric names, "+
		"so Kafka refuses to create %q; delete or rename %q, or set HOOKBRIDGE_KAFKA_TOPIC to publish every type to one topic",
		ErrTopicCollision, topic, other, metricName(topic), topic, other)
}

// topicFor is the topic a delivery is written to.
func (cfg KafkaConfig) topicFor(d *schema.Delivery) string {
	if cfg.Topic != "" {
		return cfg.Topic
	}
	return Destination(cfg.Prefix, d)
}

// startupTopics are the topics provisioned by NewKafka: the single topic, or
// one per known type plus the dead-letter topic, sorted and deduplicated.
func (cfg KafkaConfig) startupTopics() []string {
	if cfg.Topic != "" {
		return []string{cfg.Topic}
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range cfg.prefixes() {
		for _, t := range append([]string{DeadLetterToken}, cfg.KnownTypes...) {
			name := p + "." + t
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// prefixes is every prefix topics are named with, Prefix first.
func (cfg KafkaConfig) prefixes() []string { return allPrefixes(cfg.Prefix, cfg.Prefixes) }

// topicCache remembers which topics are known to exist, and makes concurrent
// first publishes of a new type create its topic once.
type topicCache struct {
	mu    sync.Mutex
	ready map[string]bool
	busy  map[string]chan struct{} // closed when the creation in progress ends
	// counted holds the topics first used after start-up, at most
	// MaxTopics: whatever types verified deliveries carry, the topics
	// created (and this cache) stay bounded.
	counted map[string]bool
}

// ReasonTooManyTopics is the hookbridge-reason of a delivery dead-lettered
// because its topic would exceed KafkaConfig.MaxTopics.
const ReasonTooManyTopics = "too_many_topics"

// destination is the topic d is written to, and the delivery to write: d
// itself, or, when d's topic would be one more than MaxTopics allows, a
// dead letter of it with reason ReasonTooManyTopics.
func (k *Kafka) destination(d *schema.Delivery) (string, *schema.Delivery) {
	topic := k.cfg.topicFor(d)
	if k.cfg.Topic != "" || !k.cfg.CreateTopics || d.Event == nil {
		return topic, d
	}
	c := &k.topics
	c.mu.Lock()
	ok := c.ready[topic] || c.counted[topic]
	if !ok && len(c.counted) < k.cfg.MaxTopics {
		c.counted[topic], ok = true, true
	}
	c.mu.Unlock()
	if ok {
		return topic, d
	}
	dl := *d
	dl.Event, dl.DeadLetterReason = nil, ReasonTooManyTopics
	k.capLog.Warn().Str("topic", topic).Int("max_topics", k.cfg.MaxTopics).
		Msg("kafka topic limit reached (HOOKBRIDGE_KAFKA_MAX_TOPICS): delivery kept on the dead-letter topic")
	return k.cfg.topicFor(&dl), &dl
}

// ensureTopic makes sure topic exists before the first write to it. Topics
// that exist are remembered; a failed creation is not, so the next delivery
// (OpenAI's retry) tries again.
func (k *Kafka) ensureTopic(ctx context.Context, topic string) error {
	if !k.cfg.CreateTopics {
		return nil // the cluster's business; a missing topic fails the write
	}
	c := &k.topics
	for {
		c.mu.Lock()
		if c.ready[topic] {
			c.mu.Unlock()
			return nil
		}
		wait, inProgress := c.busy[topic]
		if !inProgress {
			wait = make(chan struct{})
			c.busy[topic] = wait
			c.mu.Unlock()
			err := k.createTopics(ctx, []string{topic})
			c.mu.Lock()
			delete(c.busy, topic)
			if err == nil {
				c.ready[topic] = true
			}
			c.mu.Unlock()
			close(wait)
			return err
		}
		c.mu.Unlock()
		// Another publish is creating it: wait for its outcome, then look
		// again. This loops at most once more per failed attempt by others,
		// and each wait is bounded by ctx.
		select {
		case <-wait:
		case <-ctx.Done():
			return fmt.Errorf("publish: kafka topic %s: %w", topic, ctx.Err())
		}
	}
}

// forgetTopic drops a topic from the cache after the cluster said it does not
// exist (deleted behind our back), so the next publish re-creates it.
func (k *Kafka) forgetTopic(topic string) {
	k.topics.mu.Lock()
	delete(k.topics.ready, topic)
	k.topics.mu.Unlock()
}

func (k *Kafka) markReady(topics []string) {
	k.topics.mu.Lock()
	for _, t := range topics {
		k.topics.ready[t] = true
	}
	k.topics.mu.Unlock()
}

// listTopics returns every topic name in the cluster metadata the transport
// has cached (refreshed every few seconds and after each creation).
func (k *Kafka) listTopics(ctx context.Context) ([]string, error) {
	md, err := k.client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("publish: kafka metadata: %w", err)
	}
	names := make([]string, 0, len(md.Topics))
	for _, t := range md.Topics {
		names = append(names, t.Name)
	}
	return names, nil
}

// createTopics creates the topics in want that do not exist yet, after
// checking that none collides with an existing topic or with another in want.
// A topic that already exists, or that someone else creates concurrently, is
// success.
func (k *Kafka) createTopics(ctx context.Context, want []string) error {
	existing, err := k.listTopics(ctx)
	if err != nil {
		return err
	}
	have := make(map[string]bool, len(existing))
	for _, t := range existing {
		have[t] = true
	}
	var missing []string
	known := slices.Clone(existing)
	for _, t := range want {
		if other, ok := topicCollision(t, known); ok {
			return collisionError(t, other)
		}
		known = append(known, t)
		if !have[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	req := &kafka.CreateTopicsRequest{Topics: make([]kafka.TopicConfig, len(missing))}
	for i, t := range missing {
		req.Topics[i] = kafka.TopicConfig{Topic: t, NumPartitions: k.cfg.Partitions, ReplicationFactor: k.cfg.ReplicationFactor}
	}
	res, err := k.client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("publish: kafka create topics: %w", err)
	}
	var errs []error
	for _, t := range missing {
		switch e := res.Errors[t]; {
		case e == nil:
			k.log.Info().Str("topic", t).Int("partitions", k.cfg.Partitions).
				Int("replication_factor", k.cfg.ReplicationFactor).Msg("created kafka topic")
		case errors.Is(e, kafka.TopicAlreadyExists):
			// Another replica created it since our metadata snapshot. Fine:
			// kafka-go refreshes its cached metadata after every CreateTopics
			// response, so the writer sees the topic at once
			// (TestKafkaTopicCreatedByAnotherReplica).
		case errors.Is(e, kafka.InvalidTopic):
			// Most likely a collision with a topic created since our
			// metadata snapshot; Kafka's message names the other topic.
			errs = append(errs, fmt.Errorf("%w: %s: %w", ErrTopicCollision, t, e))
		default:
			errs = append(errs, fmt.Errorf("%s: %w", t, e))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("publish: kafka create topics: %w", errors.Join(errs...))
	}
	return nil
}

// ListKafkaTopics returns the topics in the cluster that hookbridge publishes
// to with cfg: the single topic if it exists, else every <prefix>.* topic.
// hookbridge tail uses it to subscribe to all event types.
func ListKafkaTopics(ctx context.Context, cfg KafkaConfig) ([]string, error) {
	cfg = cfg.withDefaults()
	tr, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("publish: kafka metadata: %w", err)
	}
	var out []string
	for _, t := range md.Topics {
		if t.Name == cfg.Topic || cfg.Topic == "" && strings.HasPrefix(t.Name, cfg.Prefix+".") {
			out = append(out, t.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}
