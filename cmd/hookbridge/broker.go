package main

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/publish"
	"github.com/hookbridge/hookbridge/schema"
)

// publisher is what the bridge needs from a broker beyond ingest.Publisher.
type publisher interface {
	ingest.Publisher
	Check(ctx context.Context) error
	Close(ctx context.Context) error
}

// broker is the publisher and what the parts built after it need to know.
type broker struct {
	pub publisher
	// nats is the publisher on NATS, whose connection the KV dedup store
	// shares; nil on Kafka.
	nats *publish.NATS
	// maxBody is the body limit, fitted to the largest message the broker
	// accepts (fitBodyLimit).
	maxBody int64
	// clientURL is where workers reach the embedded server; "" otherwise.
	clientURL string
}

// openBroker connects to the configured broker and provisions its stream or
// topics. The steps release what it acquired, in stage order.
func openBroker(ctx context.Context, cfg *config, log zerolog.Logger) (broker, []step, error) {
	switch cfg.Broker {
	case "embedded":
		return openEmbedded(ctx, cfg, log)
	case "nats":
		return openNATS(ctx, cfg, log)
	default:
		return openKafka(ctx, cfg, log)
	}
}

// openEmbedded starts the in-process NATS server and publishes through an
// in-process connection to it.
func openEmbedded(ctx context.Context, cfg *config, log zerolog.Logger) (broker, []step, error) {
	emb, err := publish.StartEmbedded(publish.EmbeddedConfig{
		Addr:       cfg.EmbeddedAddr,
		DataDir:    cfg.DataDir,
		SyncAlways: cfg.EmbeddedSync == "always",
		// The server is ours: it takes the largest body with any headers.
		MaxPayload:   int32(max(publish.DefaultEmbeddedMaxPayload, min(cfg.MaxBodyBytes+messageHeaderRoom, 1<<30))),
		Token:        cfg.EmbeddedToken,
		NKeySeedFile: cfg.EmbeddedNKeyFile,
	}, log)
	if err != nil {
		return broker{}, nil, err
	}
	steps := []step{{stageEmbedded, "embedded nats shutdown", func(context.Context) error { emb.Shutdown(); return nil }}}
	log.Info().Str("nats_url", emb.ClientURL()).Str("data_dir", cfg.DataDir).Msg("embedded NATS JetStream running; workers can connect here")
	nc, err := emb.Connect(log)
	if err != nil {
		return broker{}, steps, err
	}
	b, more, err := natsPublisher(ctx, cfg, nc, cfg.MaxBodyBytes, log)
	b.clientURL = emb.ClientURL()
	return b, append(steps, more...), err
}

// openNATS connects to an external NATS server.
func openNATS(ctx context.Context, cfg *config, log zerolog.Logger) (broker, []step, error) {
	nc, err := publish.Connect(ctx, cfg.NATSEnv.connConfig("hookbridge"), log)
	if err != nil {
		return broker{}, nil, err
	}
	limit, err := fitBodyLimit(cfg.MaxBodyBytes, cfg.maxBodySet, nc.MaxPayload(), "the NATS server", log)
	if err != nil {
		nc.Close()
		return broker{}, nil, err
	}
	return natsPublisher(ctx, cfg, nc, limit, log)
}

// natsPublisher provisions the stream on nc and publishes to it; the steps
// close the publisher, then nc.
func natsPublisher(ctx context.Context, cfg *config, nc *nats.Conn, maxBody int64, log zerolog.Logger) (broker, []step, error) {
	steps := []step{{stageConn, "nats connection close", func(context.Context) error { nc.Close(); return nil }}}
	n, err := publish.NewNATS(ctx, nc, publish.NATSConfig{
		Prefix:     cfg.basePrefix(),
		Prefixes:   cfg.routePrefixes(),
		Stream:     cfg.NATSStream,
		Duplicates: cfg.NATSDuplicates,
		MaxAge:     cfg.NATSMaxAge,
		Replicas:   cfg.NATSReplicas,
		MaxMsgSize: int32(min(maxBody, 1<<30)),
		Headers:    cfg.headerOptions(),
	}, log)
	if err != nil {
		return broker{}, steps, err
	}
	steps = append(steps, step{stagePublisher, "publisher flush and close", n.Close})
	return broker{pub: n, nats: n, maxBody: maxBody}, steps, nil
}

// openKafka connects to Kafka and provisions the topics of the known types.
func openKafka(ctx context.Context, cfg *config, log zerolog.Logger) (broker, []step, error) {
	kc := cfg.KafkaEnv.kafkaConfig(cfg.basePrefix(), cfg.KafkaClientID)
	kc.Prefixes = cfg.routePrefixes()
	kc.CreateTopics = cfg.KafkaCreateTopics
	kc.Partitions = cfg.KafkaPartitions
	kc.ReplicationFactor = cfg.KafkaReplication
	kc.BatchTimeout = cfg.KafkaBatchTimeout
	kc.Headers = cfg.headerOptions()
	kc.KnownTypes = typeNames()
	kc.MaxTopics = cfg.KafkaMaxTopics
	kc.MaxMessageBytes = max(publish.DefaultKafkaMaxMessageBytes, cfg.MaxBodyBytes+messageHeaderRoom)
	kp, err := publish.NewKafka(ctx, kc, log)
	if err != nil {
		return broker{}, nil, err
	}
	limit, err := kp.MaxMessageBytes(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("could not read the Kafka cluster's message size limit; HOOKBRIDGE_MAX_BODY_BYTES is not checked against it")
	}
	maxBody, err := fitBodyLimit(cfg.MaxBodyBytes, cfg.maxBodySet, limit, "the Kafka cluster", log)
	if err != nil {
		_ = kp.Close(ctx)
		return broker{}, nil, err
	}
	steps := []step{{stagePublisher, "publisher flush and close", kp.Close}}
	return broker{pub: kp, maxBody: maxBody}, steps, nil
}

// headerOptions is what every message carries besides the body.
func (m MessageEnv) headerOptions() publish.HeaderOptions {
	return publish.HeaderOptions{Source: m.CESource, OmitSignature: !m.ForwardSig}
}

// connConfig is how serve and tail reach an external NATS server.
func (n NATSEnv) connConfig(name string) publish.ConnConfig {
	return publish.ConnConfig{
		URL: n.NATSURL, Name: name, CredsFile: n.NATSCreds, NKeyFile: n.NATSNKey,
		User: n.NATSUser, Password: n.NATSPassword, Token: n.NATSToken,
		TLSCAFile: n.NATSCAFile, TLSCertFile: n.NATSCertFile, TLSKeyFile: n.NATSKeyFile,
	}
}

// kafkaConfig is how serve and tail reach Kafka: brokers, single topic, TLS
// and SASL, the same for both.
func (k KafkaEnv) kafkaConfig(prefix, clientID string) publish.KafkaConfig {
	return publish.KafkaConfig{
		Brokers:  k.KafkaBrokers,
		Prefix:   prefix,
		Topic:    k.KafkaTopic,
		ClientID: clientID,
		TLS: publish.KafkaTLS{
			Enabled: k.KafkaTLS, CAFile: k.KafkaCAFile, CertFile: k.KafkaCertFile, KeyFile: k.KafkaKeyFile,
		},
		SASL: publish.KafkaSASL{Mechanism: k.KafkaSASL, Username: k.KafkaUser, Password: k.KafkaPassword},
	}
}

func typeNames() []string {
	ts := schema.Types()
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

// brokerStartTimeout bounds connecting to the broker and provisioning it at
// start-up.
const brokerStartTimeout = 30 * time.Second
