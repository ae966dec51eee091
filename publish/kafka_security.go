package publish

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// KafkaTLS configures TLS to the brokers. Setting any file enables TLS even
// when Enabled is false: someone who names a CA or a client certificate
// expects an encrypted connection, never a silent fallback to plaintext.
type KafkaTLS struct {
	Enabled  bool
	CAFile   string // PEM bundle; empty means the system roots
	CertFile string // client certificate (mTLS), with KeyFile
	KeyFile  string
}

func (t KafkaTLS) on() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != ""
}

// KafkaSASL configures SASL authentication.
type KafkaSASL struct {
	Mechanism string // "", "plain", "scram-sha-256" or "scram-sha-512" (case-insensitive)
	Username  string
	Password  string
}

// mechanism normalises the configured name, so "SCRAM-SHA-512" (the spelling
// of Kafka's own docs) and "scram-sha-512" both work.
func (s KafkaSASL) mechanism() string { return strings.ToLower(strings.TrimSpace(s.Mechanism)) }

// dialTimeout bounds connecting to one broker, TLS handshake and SASL included.
const kafkaDialTimeout = 5 * time.Second

// validate lists every problem with the security and connection settings.
func (cfg KafkaConfig) validateConn() []error {
	var errs []error
	if len(cfg.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers configured (HOOKBRIDGE_KAFKA_BROKERS)"))
	}
	for _, b := range cfg.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("broker %q is not host:port", b))
		}
	}
	switch cfg.SASL.mechanism() {
	case "":
	case "plain", "scram-sha-256", "scram-sha-512":
		if cfg.SASL.Username == "" {
			errs = append(errs, fmt.Errorf("SASL mechanism %q needs a username", cfg.SASL.Mechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown SASL mechanism %q (want plain, scram-sha-256 or scram-sha-512)", cfg.SASL.Mechanism))
	}
	if (cfg.TLS.CertFile == "") != (cfg.TLS.KeyFile == "") {
		errs = append(errs, errors.New("TLS client certificate and key must be set together"))
	}
	for _, f := range []struct{ what, path string }{
		{"TLS CA file", cfg.TLS.CAFile}, {"TLS certificate file", cfg.TLS.CertFile}, {"TLS key file", cfg.TLS.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.what, err))
		}
	}
	return errs
}

// tlsConfig builds the client TLS configuration, or nil for plaintext.
func (cfg KafkaConfig) tlsConfig() (*tls.Config, error) {
	t := cfg.TLS
	if !t.on() {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("publish: kafka TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("publish: kafka TLS CA file %s holds no PEM certificate", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("publish: kafka TLS client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// saslMechanism builds the SASL mechanism, or nil without SASL.
func (cfg KafkaConfig) saslMechanism() (sasl.Mechanism, error) {
	s := cfg.SASL
	switch s.mechanism() {
	case "":
		return nil, nil
	case "plain":
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case "scram-sha-256", "scram-sha-512":
		algo := scram.SHA256
		if s.mechanism() == "scram-sha-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, s.Username, s.Password)
		if err != nil {
			return nil, fmt.Errorf("publish: kafka SASL %s: %w", s.Mechanism, err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("publish: unknown kafka SASL mechanism %q", s.Mechanism)
}

// Transport returns a kafka-go transport with the configured client id, TLS
// and SASL: what kafka.Writer and kafka.Client use.
func (cfg KafkaConfig) Transport() (*kafka.Transport, error) {
	cfg = cfg.withDefaults()
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := cfg.saslMechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{
		Dial:        (&net.Dialer{Timeout: kafkaDialTimeout}).DialContext,
		DialTimeout: kafkaDialTimeout,
		ClientID:    cfg.ClientID,
		TLS:         tc,
		SASL:        mech,
	}, nil
}

// Dialer returns a kafka-go dialer with the same identity, TLS and SASL as
// Transport: what kafka.Reader and kafka.Conn use (hookbridge tail, Check).
func (cfg KafkaConfig) Dialer() (*kafka.Dialer, error) {
	cfg = cfg.withDefaults()
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := cfg.saslMechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{
		ClientID:      cfg.ClientID,
		Timeout:       kafkaDialTimeout,
		DualStack:     true,
		TLS:           tc,
		SASLMechanism: mech,
	}, nil
}

// ReaderConfig returns a kafka.ReaderConfig for topics with the brokers,
// TLS and SASL of cfg. With a group the reader joins that consumer group and
// may read several topics; without one it reads a single topic's partition 0
// (kafka-go's rule), so pass exactly one topic. The caller adjusts fields
// such as StartOffset before kafka.NewReader.
func (cfg KafkaConfig) ReaderConfig(topics []string, group string) (kafka.ReaderConfig, error) {
	d, err := cfg.Dialer()
	if err != nil {
		return kafka.ReaderConfig{}, err
	}
	// MaxWait bounds each idle fetch, and Reader.Close waits for in-flight
	// fetches: kafka-go's 10s default makes every close take 10s.
	rc := kafka.ReaderConfig{Brokers: cfg.Brokers, Dialer: d, GroupID: group, MaxWait: time.Second}
	switch {
	case len(topics) == 0:
		return rc, errors.New("publish: kafka reader needs at least one topic")
	case group != "":
		rc.GroupTopics = topics
	case len(topics) == 1:
		rc.Topic = topics[0]
	default:
		return rc, errors.New("publish: a kafka reader without a consumer group reads one topic only")
	}
	return rc, nil
}

// NewKafkaReader is kafka.NewReader(cfg.ReaderConfig(topics, group)).
func NewKafkaReader(cfg KafkaConfig, topics []string, group string) (*kafka.Reader, error) {
	rc, err := cfg.ReaderConfig(topics, group)
	if err != nil {
		return nil, err
	}
	return kafka.NewReader(rc), nil
}
