package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/ingest/tracing"
	"github.com/hookbridge/hookbridge/publish"
	"github.com/hookbridge/hookbridge/schema"
)

// envPrefix is prepended to every variable in config.
const envPrefix = "HOOKBRIDGE_"

// config is the whole environment contract of `hookbridge serve`.
// It is flat on purpose: one struct, one table in the README, one place where
// a variable's name, default and meaning are decided. The `help` tag feeds
// `hookbridge serve --help`.
type config struct {
	Secrets     string `env:"SECRETS,unset" help:"signing secrets (whsec_…), separated by spaces or commas; falls back to OPENAI_WEBHOOK_SECRET"`
	SecretsFile string `env:"SECRETS_FILE" help:"file holding the secrets (e.g. a Kubernetes Secret mount); re-read when it changes and on SIGHUP"`

	ListenAddr   string        `env:"LISTEN_ADDR" envDefault:":8080" help:"public listener (webhooks only)"`
	Path         string        `env:"PATH" envDefault:"/webhooks/openai" help:"webhook path"`
	AdminAddr    string        `env:"ADMIN_ADDR" envDefault:":9090" help:"admin listener: /healthz, /readyz, /metrics"`
	Tolerance    time.Duration `env:"TOLERANCE" envDefault:"5m" help:"webhook-timestamp tolerance, both directions"`
	MaxBodyBytes int64         `env:"MAX_BODY_BYTES" envDefault:"1048576" help:"request body limit (413 above it); lowered at start-up to fit the broker's largest message when left at its default"`
	// Global bounds on what unverified requests may hold at once.
	MaxInFlightBytes    int64         `env:"MAX_IN_FLIGHT_BYTES" envDefault:"67108864" help:"body bytes all requests may hold at once, from the first byte read to the answer (503 + Retry-After beyond it, body unread)"`
	MaxInFlightRequests int           `env:"MAX_IN_FLIGHT_REQUESTS" envDefault:"1024" help:"requests past the header checks at once (503 + Retry-After beyond it, body unread)"`
	PublishTimeout      time.Duration `env:"PUBLISH_TIMEOUT" envDefault:"5s" help:"budget per request for dedup claim + broker ack, retries included (503 after it)"`
	ReadTimeout         time.Duration `env:"READ_TIMEOUT" envDefault:"10s" help:"time to receive a whole request (slow clients get cut off)"`
	ShutdownDelay       time.Duration `env:"SHUTDOWN_DELAY" envDefault:"5s" help:"after SIGTERM, keep serving with /readyz failing for this long so load balancers stop routing"`
	ShutdownGrace       time.Duration `env:"SHUTDOWN_GRACE" envDefault:"20s" help:"upper bound for draining requests and closing publishers after the delay"`
	ReloadInterval      time.Duration `env:"RELOAD_INTERVAL" envDefault:"1s" help:"how often HOOKBRIDGE_SECRETS_FILE and the TLS files are checked for changes (0 = only on SIGHUP)"`

	TLSCertFile string  `env:"TLS_CERT_FILE" help:"PEM certificate (chain) for TLS on the public listener; with HOOKBRIDGE_TLS_KEY_FILE; reloaded on change"`
	TLSKeyFile  string  `env:"TLS_KEY_FILE" help:"PEM private key for HOOKBRIDGE_TLS_CERT_FILE"`
	RateLimit   float64 `env:"RATE_LIMIT" envDefault:"0" help:"requests per second allowed per source IP before verification (0 = off); excess gets 429"`
	RateBurst   int     `env:"RATE_BURST" envDefault:"0" help:"burst per source IP for HOOKBRIDGE_RATE_LIMIT (0 = twice the rate, at least 1)"`

	Broker       string `env:"BROKER" envDefault:"embedded" help:"embedded, nats or kafka"`
	TopicPrefix  string `env:"TOPIC_PREFIX" envDefault:"openai" help:"subject/topic prefix: <prefix>.<type>"`
	CESource     string `env:"CE_SOURCE" envDefault:"https://api.openai.com" help:"CloudEvents source attribute"`
	ForwardSig   bool   `env:"FORWARD_SIGNATURE" envDefault:"true" help:"forward webhook-signature so workers can re-verify"`
	NATSURL      string `env:"NATS_URL" help:"NATS servers (broker nats), comma-separated"`
	NATSCreds    string `env:"NATS_CREDS_FILE" help:"NATS credentials (.creds) file"`
	NATSNKey     string `env:"NATS_NKEY_FILE" help:"NATS nkey seed file"`
	NATSUser     string `env:"NATS_USER" help:"NATS user"`
	NATSPassword string `env:"NATS_PASSWORD,unset" help:"NATS password"`
	NATSToken    string `env:"NATS_TOKEN,unset" help:"NATS token"`
	NATSCAFile   string `env:"NATS_TLS_CA_FILE" help:"CA bundle for NATS TLS"`
	NATSCertFile string `env:"NATS_TLS_CERT_FILE" help:"client certificate for NATS TLS"`
	NATSKeyFile  string `env:"NATS_TLS_KEY_FILE" help:"client key for NATS TLS"`

	NATSStream     string        `env:"NATS_STREAM" envDefault:"OPENAI_WEBHOOKS" help:"JetStream stream (created if absent, never rewritten)"`
	NATSDuplicates time.Duration `env:"NATS_DUPLICATE_WINDOW" envDefault:"2h" help:"duplicate window of the stream when hookbridge creates it: JetStream drops a repeated Nats-Msg-Id within it, the claim for events younger than it (an existing stream's own window is used)"`
	NATSMaxAge     time.Duration `env:"NATS_MAX_AGE" envDefault:"168h" help:"stream retention"`
	NATSReplicas   int           `env:"NATS_REPLICAS" envDefault:"1" help:"stream and dedup bucket replicas (3 for production clusters)"`

	EmbeddedAddr     string `env:"EMBEDDED_NATS_ADDR" envDefault:"127.0.0.1:4222" help:"where the embedded NATS server listens for workers; beyond loopback it needs HOOKBRIDGE_EMBEDDED_NATS_TOKEN or _NKEY_FILE"`
	EmbeddedToken    string `env:"EMBEDDED_NATS_TOKEN,unset" help:"token every client of the embedded NATS server must present (workers: nats://<token>@host:4222); required on a non-loopback address unless an nkey is set"`
	EmbeddedNKeyFile string `env:"EMBEDDED_NATS_NKEY_FILE" help:"file holding an nkey user seed (SU…) that clients of the embedded NATS server authenticate with, instead of a token"`
	DataDir          string `env:"DATA_DIR" envDefault:"./data" help:"embedded JetStream storage"`
	EmbeddedSync     string `env:"EMBEDDED_SYNC" envDefault:"interval" help:"embedded JetStream fsync: interval (server default) or always"`

	KafkaBrokers      []string      `env:"KAFKA_BROKERS" envSeparator:"," help:"comma-separated seed brokers (broker kafka)"`
	KafkaTopic        string        `env:"KAFKA_TOPIC" help:"single-topic mode: publish every event to this topic"`
	KafkaCreateTopics bool          `env:"KAFKA_CREATE_TOPICS" envDefault:"true" help:"create topics at start-up and on first use"`
	KafkaMaxTopics    int           `env:"KAFKA_MAX_TOPICS" envDefault:"200" help:"topics created on first use (types outside the catalogue), at most; beyond it events go to <prefix>.deadletter with hookbridge-reason too_many_topics"`
	KafkaPartitions   int           `env:"KAFKA_PARTITIONS" envDefault:"3" help:"partitions of created topics"`
	KafkaReplication  int           `env:"KAFKA_REPLICATION_FACTOR" envDefault:"1" help:"replication factor of created topics"`
	KafkaBatchTimeout time.Duration `env:"KAFKA_BATCH_TIMEOUT" envDefault:"1ms" help:"how long the writer waits to fill a batch"`
	KafkaClientID     string        `env:"KAFKA_CLIENT_ID" envDefault:"hookbridge" help:"Kafka client id"`
	KafkaTLS          bool          `env:"KAFKA_TLS" help:"use TLS to the brokers"`
	KafkaCAFile       string        `env:"KAFKA_TLS_CA_FILE" help:"CA bundle for Kafka TLS"`
	KafkaCertFile     string        `env:"KAFKA_TLS_CERT_FILE" help:"client certificate for Kafka TLS"`
	KafkaKeyFile      string        `env:"KAFKA_TLS_KEY_FILE" help:"client key for Kafka TLS"`
	KafkaSASL         string        `env:"KAFKA_SASL_MECHANISM" help:"plain, scram-sha-256 or scram-sha-512"`
	KafkaUser         string        `env:"KAFKA_SASL_USERNAME" help:"SASL user"`
	KafkaPassword     string        `env:"KAFKA_SASL_PASSWORD,unset" help:"SASL password"`

	Dedup       string        `env:"DEDUP" help:"nats, redis, memory or off (default nats with NATS, memory with Kafka)"`
	DedupTTL    time.Duration `env:"DEDUP_TTL" envDefault:"72h" help:"how long a published webhook-id is remembered (with dedup nats and a stream window at least this long, no KV bucket is used)"`
	DedupLease  time.Duration `env:"DEDUP_LEASE" envDefault:"30s" help:"how long an in-flight claim in the dedup store blocks other deliveries of the id"`
	DedupBucket string        `env:"DEDUP_BUCKET" envDefault:"HOOKBRIDGE_DEDUP" help:"JetStream KV bucket of the nats dedup store: ids older than the stream window"`
	DedupMax    int           `env:"DEDUP_MEMORY_MAX" envDefault:"1000000" help:"ids remembered by the memory store (about 70 bytes each)"`
	RedisURL    string        `env:"REDIS_URL,unset" help:"Redis for HOOKBRIDGE_DEDUP=redis (redis:// or rediss://)"`

	PProf bool `env:"PPROF" help:"serve net/http/pprof under /debug/pprof/ on the admin listener (for profiling; keep the admin port private)"`

	LogLevel  string `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"json" help:"json or console"`

	// secrets is the parsed form of Secrets/SecretsFile/OPENAI_WEBHOOK_SECRET.
	secrets []ingest.Secret
	// maxBodySet is whether HOOKBRIDGE_MAX_BODY_BYTES was set: a value the
	// operator chose is never lowered silently (see fitBodyLimit).
	maxBodySet bool
	// credentials are the texts no log line may carry (redact.go).
	credentials []string
	// tracing is read from the standard OTEL_* variables (tracing.go).
	tracing tracing.Config
}

// loadConfig reads the environment and validates it, returning every problem
// at once so an operator fixes them in one pass.
func loadConfig(environ map[string]string) (*config, error) {
	cfg, err := env.ParseAsWithOptions[config](env.Options{
		Prefix:                envPrefix,
		Environment:           environ,
		UseFieldNameByDefault: false,
	})
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if err := cfg.validate(environ); err != nil {
		return nil, err
	}
	cfg.maxBodySet = environ[envPrefix+"MAX_BODY_BYTES"] != ""
	cfg.credentials = credentials(environ)
	return &cfg, nil
}

func (c *config) validate(environ map[string]string) error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", envPrefix, name, fmt.Sprintf(format, args...)))
	}

	secrets, err := c.loadSecrets(environ)
	switch {
	case err != nil:
		errs = append(errs, err)
	case len(secrets) == 0:
		errs = append(errs, errors.New("no signing secret: set HOOKBRIDGE_SECRETS (or OPENAI_WEBHOOK_SECRET, or HOOKBRIDGE_SECRETS_FILE) to the whsec_… secret of your OpenAI webhook endpoint"))
	}
	c.secrets = secrets

	for _, a := range []struct{ name, addr string }{{"LISTEN_ADDR", c.ListenAddr}, {"ADMIN_ADDR", c.AdminAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			bad(a.name, "%q is not host:port (e.g. :8080)", a.addr)
		}
	}
	// Two listeners on port 0 each get their own free port.
	if c.ListenAddr == c.AdminAddr && !strings.HasSuffix(c.ListenAddr, ":0") {
		bad("ADMIN_ADDR", "must differ from HOOKBRIDGE_LISTEN_ADDR (%s)", c.ListenAddr)
	}
	if !strings.HasPrefix(c.Path, "/") {
		bad("PATH", "%q must start with /", c.Path)
	}
	if c.Tolerance < time.Second {
		bad("TOLERANCE", "%s is below one second; the timestamp has whole-second resolution", c.Tolerance)
	}
	if c.MaxBodyBytes < 1024 {
		bad("MAX_BODY_BYTES", "%d is too small for a webhook (at least 1024)", c.MaxBodyBytes)
	}
	if c.MaxInFlightBytes <= c.MaxBodyBytes {
		bad("MAX_IN_FLIGHT_BYTES", "%d must exceed HOOKBRIDGE_MAX_BODY_BYTES (%d), or the largest body could never be read", c.MaxInFlightBytes, c.MaxBodyBytes)
	}
	if c.MaxInFlightRequests < 1 {
		bad("MAX_IN_FLIGHT_REQUESTS", "%d must be at least 1", c.MaxInFlightRequests)
	}
	if c.PublishTimeout <= 0 {
		bad("PUBLISH_TIMEOUT", "must be positive")
	}
	if c.ReadTimeout <= 0 {
		bad("READ_TIMEOUT", "must be positive")
	}
	if c.ShutdownDelay < 0 || c.ShutdownGrace <= 0 {
		bad("SHUTDOWN_GRACE", "delay must be ≥ 0 and grace positive")
	}
	if c.ReloadInterval < 0 {
		bad("RELOAD_INTERVAL", "must be ≥ 0")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("TLS_CERT_FILE", "HOOKBRIDGE_TLS_CERT_FILE and HOOKBRIDGE_TLS_KEY_FILE must be set together")
	} else if c.TLSCertFile != "" {
		if _, err := loadKeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			bad("TLS_CERT_FILE", "%v", err)
		}
	}
	if c.RateLimit < 0 {
		bad("RATE_LIMIT", "%v must be ≥ 0 (0 = off)", c.RateLimit)
	}
	if c.RateBurst < 0 {
		bad("RATE_BURST", "%d must be ≥ 0", c.RateBurst)
	}
	if c.RateLimit > 0 && c.RateBurst == 0 {
		c.RateBurst = max(1, int(2*c.RateLimit))
	}
	if !schema.Type(c.TopicPrefix).Routable() {
		bad("TOPIC_PREFIX", "%q must be dot-separated tokens of a-z, 0-9 and _", c.TopicPrefix)
	}

	switch c.Broker {
	case "embedded":
		if _, _, err := net.SplitHostPort(c.EmbeddedAddr); err != nil {
			bad("EMBEDDED_NATS_ADDR", "%q is not host:port", c.EmbeddedAddr)
		}
		if c.DataDir == "" {
			bad("DATA_DIR", "must be set for the embedded broker")
		}
		if c.EmbeddedSync != "interval" && c.EmbeddedSync != "always" {
			bad("EMBEDDED_SYNC", "%q is not interval or always", c.EmbeddedSync)
		}
		switch {
		case c.EmbeddedToken != "" && c.EmbeddedNKeyFile != "":
			bad("EMBEDDED_NATS_TOKEN", "set it or HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE, not both")
		case c.EmbeddedToken == "" && c.EmbeddedNKeyFile == "" && !publish.LoopbackAddr(c.EmbeddedAddr):
			bad("EMBEDDED_NATS_ADDR", "%s is reachable from other hosts, and the embedded NATS server would let anyone publish forged events, "+
				"purge the stream or delete the dedup bucket: set HOOKBRIDGE_EMBEDDED_NATS_TOKEN (or HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE) "+
				"for it to require authentication, or listen on 127.0.0.1", c.EmbeddedAddr)
		}
	case "nats":
		if c.NATSURL == "" {
			bad("NATS_URL", "is required with HOOKBRIDGE_BROKER=nats (e.g. nats://127.0.0.1:4222)")
		}
	case "kafka":
		if len(c.KafkaBrokers) == 0 {
			bad("KAFKA_BROKERS", "is required with HOOKBRIDGE_BROKER=kafka (host:port[,host:port])")
		}
		if c.KafkaPartitions < 1 {
			bad("KAFKA_PARTITIONS", "must be at least 1")
		}
		if c.KafkaReplication < 1 {
			bad("KAFKA_REPLICATION_FACTOR", "must be at least 1")
		}
		if c.KafkaMaxTopics < 1 {
			bad("KAFKA_MAX_TOPICS", "%d must be at least 1", c.KafkaMaxTopics)
		}
	default:
		bad("BROKER", "%q is not embedded, nats or kafka", c.Broker)
	}
	if c.NATSReplicas < 1 || c.NATSReplicas > 5 {
		bad("NATS_REPLICAS", "%d is not between 1 and 5", c.NATSReplicas)
	}

	if c.Dedup == "" {
		c.Dedup = "nats"
		if c.Broker == "kafka" {
			c.Dedup = "memory"
		}
	}
	switch c.Dedup {
	case "nats":
		if c.Broker == "kafka" {
			bad("DEDUP", "nats needs a NATS broker; with Kafka use redis (several replicas) or memory")
		}
	case "redis":
		if c.RedisURL == "" {
			bad("REDIS_URL", "is required with HOOKBRIDGE_DEDUP=redis (e.g. redis://127.0.0.1:6379/0)")
		}
	case "memory":
		if c.DedupMax < 1 {
			bad("DEDUP_MEMORY_MAX", "must be at least 1")
		}
	case "off":
	default:
		bad("DEDUP", "%q is not nats, redis, memory or off", c.Dedup)
	}
	if c.DedupTTL < time.Minute {
		bad("DEDUP_TTL", "%s is shorter than a minute; OpenAI retries for 72h", c.DedupTTL)
	}
	if c.DedupLease <= c.PublishTimeout {
		bad("DEDUP_LEASE", "%s must exceed HOOKBRIDGE_PUBLISH_TIMEOUT (%s), or a slow publish could be repeated", c.DedupLease, c.PublishTimeout)
	}

	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		bad("LOG_FORMAT", "%q is not json or console", c.LogFormat)
	}
	if c.tracing, err = tracing.FromEnv(environ); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// loadSecrets gathers secrets from HOOKBRIDGE_SECRETS, else
// OPENAI_WEBHOOK_SECRET (the SDKs' variable), plus HOOKBRIDGE_SECRETS_FILE.
func (c *config) loadSecrets(environ map[string]string) ([]ingest.Secret, error) {
	var file []byte
	if c.SecretsFile != "" {
		b, err := os.ReadFile(c.SecretsFile)
		if err != nil {
			return nil, fmt.Errorf("HOOKBRIDGE_SECRETS_FILE: %w", err)
		}
		file = b
	}
	return c.secretsWith(environ, file)
}

// secretsWith parses the environment's secrets followed by those in file (the
// content of HOOKBRIDGE_SECRETS_FILE, already read). The order is the
// position reported by hookbridge_signature_secret_matches_total.
func (c *config) secretsWith(environ map[string]string, file []byte) ([]ingest.Secret, error) {
	list := c.Secrets
	if list == "" {
		list = environ["OPENAI_WEBHOOK_SECRET"]
	}
	if len(file) > 0 {
		list += " " + string(file)
	}
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	s, err := ingest.ParseSecrets(list)
	if err != nil {
		return nil, fmt.Errorf("HOOKBRIDGE_SECRETS: %w", err)
	}
	return s, nil
}

// redacted returns the effective configuration for the start-up log, with
// every secret-bearing field replaced and the userinfo of every URL redacted.
func (c *config) redacted() map[string]any {
	out := make(map[string]any)
	v := reflect.ValueOf(*c)
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("env")
		if tag == "" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		val := v.Field(i).Interface()
		if d, ok := val.(time.Duration); ok {
			val = d.String()
		}
		switch x := val.(type) {
		case string:
			if slices.Contains(urlListVars, name) {
				x = redactURLList(x)
			}
			val = redactText(x, nil)
		case []string:
			y := make([]string, len(x))
			for j, e := range x {
				y[j] = redactText(redactURLList(e), nil)
			}
			val = y
		}
		if strings.Contains(opts, "unset") && name != "REDIS_URL" {
			if !v.Field(i).IsZero() {
				val = "[REDACTED]"
			}
		}
		out[envPrefix+name] = val
	}
	out["secrets_configured"] = len(c.secrets)
	out["otel_tracing"] = c.tracing.Summary()
	return out
}

// configHelp renders the variable table for `hookbridge serve --help`.
func configHelp() string {
	var b strings.Builder
	t := reflect.TypeOf(config{})
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("env")
		if tag == "" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		def := f.Tag.Get("envDefault")
		if def != "" {
			def = " (default " + def + ")"
		}
		fmt.Fprintf(&b, "  %s%s%s\n      %s\n", envPrefix, name, def, f.Tag.Get("help"))
	}
	return b.String()
}

// environMap turns os.Environ-style pairs into a map, for env.Options.
func environMap(pairs []string) map[string]string {
	m := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
