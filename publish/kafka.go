package publish

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/hookbridge/hookbridge/schema"
)

// KafkaConfig configures the Kafka publisher. Zero values get the defaults
// below, except CreateTopics: a bool cannot tell "unset" from false, so the
// caller passes HOOKBRIDGE_KAFKA_CREATE_TOPICS (default true) explicitly.
type KafkaConfig struct {
	Brokers []string // seed brokers, host:port (HOOKBRIDGE_KAFKA_BROKERS)
	// Prefix names the per-type topics <prefix>.<type> and <prefix>.deadletter
	// (default "openai").
	Prefix string
	// Prefixes are the routes' prefixes, each written to with a delivery's
	// own Prefix: their start-up topics are provisioned as Prefix's are.
	Prefixes []string
	// Topic, when set, sends every delivery to this one topic; the type is
	// then only in the ce_type header (HOOKBRIDGE_KAFKA_TOPIC).
	Topic string
	// CreateTopics creates missing topics: the known ones at start-up,
	// others on first use (HOOKBRIDGE_KAFKA_CREATE_TOPICS).
	CreateTopics bool
	// Partitions and ReplicationFactor for created topics (defaults 3 and 1;
	// use 3 replicas in production). -1 means the broker's default.
	Partitions        int
	ReplicationFactor int
	// BatchTimeout is how long the writer waits to fill a batch (default
	// 1ms). Every publish waits for its batch, so this is a latency floor;
	// kafka-go's own 1s default would make each webhook take a second. With
	// fewer concurrent requests than kafka-go's BatchSize (100) batches never
	// fill, so a longer timeout only adds latency (docs/performance.md).
	BatchTimeout time.Duration
	ClientID     string // default "hookbridge"
	TLS          KafkaTLS
	SASL         KafkaSASL
	Headers      HeaderOptions
	// KnownTypes get their topics at start-up (the schema catalogue).
	KnownTypes []string
	// MaxTopics bounds the topics first used after start-up (types outside
	// KnownTypes) while CreateTopics is on, default DefaultKafkaMaxTopics:
	// beyond it a delivery goes to the dead-letter topic with reason
	// ReasonTooManyTopics instead of creating one more topic
	// (HOOKBRIDGE_KAFKA_MAX_TOPICS).
	MaxTopics int
	// MaxMessageBytes is the largest record (body, key and headers) the
	// writer sends, default DefaultKafkaMaxMessageBytes. kafka-go refuses a
	// larger record before sending it.
	MaxMessageBytes int64
}

// Kafka defaults.
const (
	DefaultKafkaPrefix       = "openai"
	DefaultKafkaPartitions   = 3
	DefaultKafkaReplication  = 1
	DefaultKafkaBatchTimeout = time.Millisecond
	DefaultKafkaClientID     = "hookbridge"
	DefaultKafkaMaxTopics    = 200
	// DefaultKafkaMaxMessageBytes is kafka-go's default batch limit, which
	// is also the largest record it writes.
	DefaultKafkaMaxMessageBytes = 1 << 20
)

// maxPrefixLen keeps <prefix>.<type> within Kafka's 249 characters for every
// routable type (at most schema.MaxTypeLen bytes).
const maxPrefixLen = maxTopicLen - 1 - schema.MaxTypeLen

func (cfg KafkaConfig) withDefaults() KafkaConfig {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultKafkaPrefix
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = DefaultKafkaPartitions
	}
	if cfg.ReplicationFactor == 0 {
		cfg.ReplicationFactor = DefaultKafkaReplication
	}
	if cfg.BatchTimeout == 0 {
		cfg.BatchTimeout = DefaultKafkaBatchTimeout
	}
	if cfg.ClientID == "" {
		cfg.ClientID = DefaultKafkaClientID
	}
	if cfg.MaxTopics <= 0 {
		cfg.MaxTopics = DefaultKafkaMaxTopics
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultKafkaMaxMessageBytes
	}
	return cfg
}

// Validate reports every problem with cfg (after defaults) at once.
func (cfg KafkaConfig) Validate() error {
	cfg = cfg.withDefaults()
	errs := cfg.validateConn()
	if cfg.Topic != "" {
		if err := validTopicName(cfg.Topic); err != nil {
			errs = append(errs, err)
		}
	} else {
		for _, p := range cfg.prefixes() {
			if err := validTopicName(p); err != nil {
				errs = append(errs, fmt.Errorf("topic prefix: %w", err))
			} else if len(p) > maxPrefixLen {
				errs = append(errs, fmt.Errorf("topic prefix %q is longer than %d characters", p, maxPrefixLen))
			}
		}
		for _, t := range cfg.KnownTypes {
			if !schema.Type(t).Routable() {
				errs = append(errs, fmt.Errorf("known type %q is not routable", t))
			}
		}
	}
	if cfg.Partitions < 1 && cfg.Partitions != -1 {
		errs = append(errs, fmt.Errorf("partitions %d: want at least 1, or -1 for the broker default", cfg.Partitions))
	}
	if cfg.ReplicationFactor < 1 && cfg.ReplicationFactor != -1 {
		errs = append(errs, fmt.Errorf("replication factor %d: want at least 1, or -1 for the broker default", cfg.ReplicationFactor))
	}
	if cfg.BatchTimeout < 0 {
		errs = append(errs, fmt.Errorf("batch timeout %v is negative", cfg.BatchTimeout))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("publish: kafka config: %w", errors.Join(errs...))
}

// Kafka publishes deliveries to Kafka with acks=all and reports success only
// after every in-sync replica has the record.
//
// kafka-go has no idempotent producer: a write retried after a lost ack, or
// a delivery that lands after its request's deadline (answered 503, so
// OpenAI retries it), can leave two records for one webhook-id. Consumers
// drop repeats by the ce_webhookid header; ingest's dedup store prevents the
// common case.
type Kafka struct {
	cfg       KafkaConfig
	log       zerolog.Logger
	capLog    zerolog.Logger // sampled: deliveries over MaxTopics
	addr      net.Addr
	transport *kafka.Transport
	client    *kafka.Client // admin requests; shares the writer's metadata cache
	writer    *kafka.Writer
	dialer    *kafka.Dialer // readiness probes, on fresh connections
	topics    topicCache
	warned    sync.Map // topics reported missing while CreateTopics is off
	closed    atomic.Bool
}

// NewKafka validates cfg, connects, and provisions the start-up topics when
// cfg.CreateTopics is set. ctx bounds the start-up work only.
func NewKafka(ctx context.Context, cfg KafkaConfig, log zerolog.Logger) (*Kafka, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	log = log.With().Str("component", "publish.kafka").Logger()
	tr, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	dialer, err := cfg.Dialer()
	if err != nil {
		return nil, err
	}
	addr := kafka.TCP(cfg.Brokers...)
	k := &Kafka{
		cfg:       cfg,
		log:       log,
		capLog:    log.Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Minute}),
		addr:      addr,
		transport: tr,
		client:    &kafka.Client{Addr: addr, Transport: tr},
		dialer:    dialer,
		topics:    topicCache{ready: map[string]bool{}, busy: map[string]chan struct{}{}, counted: map[string]bool{}},
	}
	k.writer = &kafka.Writer{
		Addr: addr,
		// Java-compatible key hashing, so consumers and producers in any
		// language agree on which partition holds an object's events.
		Balancer: kafka.Murmur2Balancer{},
		// The zero value is fire-and-forget; 2xx must mean replicated.
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: cfg.BatchTimeout,
		BatchBytes:   cfg.MaxMessageBytes,
		// A batch keeps retrying after its request gave up; every retry past
		// that point can only add a duplicate (the sender retries on 503) and
		// delay Close, so retry a little, quickly.
		MaxAttempts:            5,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        500 * time.Millisecond,
		Transport:              tr,
		AllowAutoTopicCreation: false,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn().Msgf(msg, args...)
		}),
	}
	if cfg.SASL.mechanism() == "plain" && !cfg.TLS.on() {
		log.Warn().Msg("kafka SASL PLAIN without TLS sends the password in clear text")
	}
	if err := k.provision(ctx); err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	log.Info().Strs("brokers", cfg.Brokers).Str("topic", cfg.Topic).Str("prefix", cfg.Prefix).
		Bool("create_topics", cfg.CreateTopics).Dur("batch_timeout", cfg.BatchTimeout).Msg("kafka publisher ready")
	return k, nil
}

// provision creates the start-up topics, or, with CreateTopics off, says
// which are missing (the cluster owner must create them).
func (k *Kafka) provision(ctx context.Context) error {
	want := k.cfg.startupTopics()
	if k.cfg.CreateTopics {
		if err := k.createTopics(ctx, want); err != nil {
			return err
		}
		k.markReady(want)
		return nil
	}
	existing, err := k.listTopics(ctx)
	if err != nil {
		return err
	}
	have := make(map[string]bool, len(existing))
	for _, t := range existing {
		have[t] = true
	}
	var missing []string
	for _, t := range want {
		if !have[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		k.log.Warn().Strs("topics", missing).
			Msg("kafka topics missing and HOOKBRIDGE_KAFKA_CREATE_TOPICS is false: deliveries for them will get 503 until they exist")
	}
	return nil
}

// kafkaKey is the record key: the object the event is about, so all events
// of one batch, response or session share a partition and stay in order;
// else, and for dead letters, the webhook-id.
func kafkaKey(d *schema.Delivery) string {
	if d.Event != nil {
		if id := d.Event.ObjectID(); id != "" {
			return id
		}
	}
	return d.WebhookID
}

// Publish writes d to its topic and returns once all in-sync replicas have
// it; ctx bounds the whole call. Kafka has no broker-side duplicate
// detection, so duplicate is always false. A write whose ctx ran out may
// have reached the broker: its error says MaybeStored.
func (k *Kafka) Publish(ctx context.Context, d *schema.Delivery) (duplicate bool, err error) {
	if k.closed.Load() {
		return false, errors.New("publish: kafka publisher is closed")
	}
	topic, d := k.destination(d)
	if err := k.ensureTopic(ctx, topic); err != nil {
		if errors.Is(err, ErrTopicCollision) {
			k.log.Error().Err(err).Str("topic", topic).Msg("kafka topic cannot be created; its deliveries get 503")
		}
		return false, err
	}
	err = k.writer.WriteMessages(ctx, kafka.Message{
		Topic:   topic,
		Key:     []byte(kafkaKey(d)),
		Value:   d.Body,
		Headers: kafkaHeaders(d, k.cfg.Headers),
	})
	if err == nil {
		return false, nil
	}
	// One message in, so at most one error in WriteErrors.
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) && len(werrs) == 1 && werrs[0] != nil {
		err = werrs[0]
	}
	if errors.Is(err, kafka.UnknownTopicOrPartition) {
		if k.cfg.CreateTopics {
			k.forgetTopic(topic) // deleted behind our back: re-create next time
		} else if _, seen := k.warned.LoadOrStore(topic, true); !seen {
			k.log.Error().Str("topic", topic).
				Msg("kafka topic does not exist and HOOKBRIDGE_KAFKA_CREATE_TOPICS is false: create it or enable HOOKBRIDGE_KAFKA_CREATE_TOPICS; its deliveries get 503")
		}
	}
	err = fmt.Errorf("publish: kafka write to %s: %w", topic, err)
	if ctx.Err() != nil {
		err = maybeStored{err}
	}
	return false, err
}

// Check reports whether a broker answers a metadata request on a fresh
// connection and the base topic (the single topic, or the dead-letter topic)
// exists. A fresh connection matters: kafka-go's transport keeps serving its
// last good metadata while the cluster is gone. Each call opens one: a
// caller that probes often bounds how often it asks.
func (k *Kafka) Check(ctx context.Context) error {
	if k.closed.Load() {
		return errors.New("publish: kafka publisher is closed")
	}
	return k.probe(ctx)
}

func (k *Kafka) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, kafkaDialTimeout)
	defer cancel()
	var errs []error
	reached := false
	for _, b := range k.cfg.Brokers { // bounded: the configured seeds
		conn, err := k.dialer.DialContext(ctx, "tcp", b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		// A topic-less metadata request: Conn.ReadPartitions would ask the
		// broker to auto-create the topic it names.
		_, err = conn.Brokers()
		_ = conn.Close()
		if err == nil {
			reached = true
			break
		}
		errs = append(errs, err)
	}
	if !reached {
		return fmt.Errorf("publish: kafka brokers unreachable: %w", errors.Join(errs...))
	}
	base := k.cfg.topicFor(&schema.Delivery{})
	md, err := k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{base}})
	if err != nil {
		return fmt.Errorf("publish: kafka metadata: %w", err)
	}
	for _, t := range md.Topics {
		if t.Name == base && t.Error != nil {
			return fmt.Errorf("publish: kafka topic %s: %w", base, t.Error)
		}
	}
	return nil
}

// Close flushes pending batches and closes the writer. ctx bounds the wait:
// kafka-go's Close takes no context and retries pending batches, so when ctx
// ends first, Close returns and the flush finishes (or fails) on its own.
func (k *Kafka) Close(ctx context.Context) error {
	if !k.closed.CompareAndSwap(false, true) {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- k.writer.Close() }()
	defer k.transport.CloseIdleConnections()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("publish: kafka close: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish: kafka close: pending records may be lost: %w", ctx.Err())
	}
}
