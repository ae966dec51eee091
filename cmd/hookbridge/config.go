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

// envPrefix is prepended to every variable of the environment contract.
const envPrefix = "HOOKBRIDGE_"

// The environment contract is split into parts, one struct each, named for
// what they configure. Every command parses the parts it needs with parseEnv,
// so that a variable has one name, one default (its envDefault tag) and one
// parsing rule wherever it is read. The help tag feeds `serve --help`. The
// parts are exported only because the env package sets the fields of an
// embedded struct through reflection, which it cannot do for an unexported
// one.

// Endpoint is one OpenAI webhook endpoint: the path its deliveries arrive on
// and the secrets they are signed with.
type Endpoint struct {
	Path        string `env:"PATH" envDefault:"/webhooks/openai" help:"webhook path"`
	Secrets     string `env:"SECRETS,unset" help:"signing secrets (whsec_…), separated by spaces or commas; falls back to OPENAI_WEBHOOK_SECRET"`
	SecretsFile string `env:"SECRETS_FILE" help:"file holding the secrets (e.g. a Kubernetes Secret mount); re-read when it changes and on SIGHUP"`
}

// ListenEnv configures the two listeners.
type ListenEnv struct {
	ListenAddr  string        `env:"LISTEN_ADDR" envDefault:":8080" help:"public listener (webhooks only)"`
	AdminAddr   string        `env:"ADMIN_ADDR" envDefault:":9090" help:"admin listener: /healthz, /readyz, /metrics"`
	ReadTimeout time.Duration `env:"READ_TIMEOUT" envDefault:"10s" help:"time to receive a whole request (slow clients get cut off)"`
	TLSCertFile string        `env:"TLS_CERT_FILE" help:"PEM certificate (chain) for TLS on the public listener; with HOOKBRIDGE_TLS_KEY_FILE; reloaded on change"`
	TLSKeyFile  string        `env:"TLS_KEY_FILE" help:"PEM private key for HOOKBRIDGE_TLS_CERT_FILE"`
	RateLimit   float64       `env:"RATE_LIMIT" envDefault:"0" help:"requests per second allowed per source IP before verification (0 = off); excess gets 429"`
	RateBurst   int           `env:"RATE_BURST" envDefault:"0" help:"burst per source IP for HOOKBRIDGE_RATE_LIMIT (0 = twice the rate, at least 1)"`
	PProf       bool          `env:"PPROF" help:"serve net/http/pprof under /debug/pprof/ on the admin listener (for profiling; keep the admin port private)"`
}

// RequestEnv bounds what one request, and all of them together, may take.
type RequestEnv struct {
	Tolerance           time.Duration `env:"TOLERANCE" envDefault:"5m" help:"webhook-timestamp tolerance, both directions"`
	MaxBodyBytes        int64         `env:"MAX_BODY_BYTES" envDefault:"1048576" help:"request body limit (413 above it); lowered at start-up to fit the broker's largest message when left at its default"`
	MaxInFlightBytes    int64         `env:"MAX_IN_FLIGHT_BYTES" envDefault:"67108864" help:"body bytes all requests may hold at once, from the first byte read to the answer (503 + Retry-After beyond it, body unread)"`
	MaxInFlightRequests int           `env:"MAX_IN_FLIGHT_REQUESTS" envDefault:"1024" help:"requests past the header checks at once (503 + Retry-After beyond it, body unread)"`
	PublishTimeout      time.Duration `env:"PUBLISH_TIMEOUT" envDefault:"5s" help:"budget per request for dedup claim + broker ack, retries included (503 after it)"`
}

// LifecycleEnv times the shutdown and the reloads.
type LifecycleEnv struct {
	ShutdownDelay  time.Duration `env:"SHUTDOWN_DELAY" envDefault:"5s" help:"after SIGTERM, keep serving with /readyz failing for this long so load balancers stop routing"`
	ShutdownGrace  time.Duration `env:"SHUTDOWN_GRACE" envDefault:"20s" help:"upper bound for draining requests and closing publishers after the delay"`
	ReloadInterval time.Duration `env:"RELOAD_INTERVAL" envDefault:"1s" help:"how often HOOKBRIDGE_SECRETS_FILE and the TLS files are checked for changes (0 = only on SIGHUP)"`
}

// MessageEnv chooses the broker and what every message carries.
type MessageEnv struct {
	Broker      string `env:"BROKER" envDefault:"embedded" help:"embedded, nats or kafka"`
	TopicPrefix string `env:"TOPIC_PREFIX" envDefault:"openai" help:"subject/topic prefix: <prefix>.<type>"`
	CESource    string `env:"CE_SOURCE" envDefault:"https://api.openai.com" help:"CloudEvents source attribute"`
	ForwardSig  bool   `env:"FORWARD_SIGNATURE" envDefault:"true" help:"forward webhook-signature so workers can re-verify"`
}

// NATSEnv says how to reach an external NATS server.
type NATSEnv struct {
	NATSURL      string `env:"NATS_URL" help:"NATS servers (broker nats), comma-separated"`
	NATSCreds    string `env:"NATS_CREDS_FILE" help:"NATS credentials (.creds) file"`
	NATSNKey     string `env:"NATS_NKEY_FILE" help:"NATS nkey seed file"`
	NATSUser     string `env:"NATS_USER" help:"NATS user"`
	NATSPassword string `env:"NATS_PASSWORD,unset" help:"NATS password"`
	NATSToken    string `env:"NATS_TOKEN,unset" help:"NATS token"`
	NATSCAFile   string `env:"NATS_TLS_CA_FILE" help:"CA bundle for NATS TLS"`
	NATSCertFile string `env:"NATS_TLS_CERT_FILE" help:"client certificate for NATS TLS"`
	NATSKeyFile  string `env:"NATS_TLS_KEY_FILE" help:"client key for NATS TLS"`
}

// StreamEnv is the JetStream stream the events are stored in.
type StreamEnv struct {
	NATSStream     string        `env:"NATS_STREAM" envDefault:"OPENAI_WEBHOOKS" help:"JetStream stream (created if absent, never rewritten)"`
	NATSDuplicates time.Duration `env:"NATS_DUPLICATE_WINDOW" envDefault:"2h" help:"duplicate window of the stream when hookbridge creates it: JetStream drops a repeated Nats-Msg-Id within it, the claim for events younger than it (an existing stream's own window is used)"`
	NATSMaxAge     time.Duration `env:"NATS_MAX_AGE" envDefault:"168h" help:"stream retention"`
	NATSReplicas   int           `env:"NATS_REPLICAS" envDefault:"1" help:"stream and dedup bucket replicas (3 for production clusters)"`
}

// EmbeddedEnv configures the in-process NATS server of broker embedded.
type EmbeddedEnv struct {
	EmbeddedAddr     string `env:"EMBEDDED_NATS_ADDR" envDefault:"127.0.0.1:4222" help:"where the embedded NATS server listens for workers; beyond loopback it needs HOOKBRIDGE_EMBEDDED_NATS_TOKEN or _NKEY_FILE"`
	EmbeddedToken    string `env:"EMBEDDED_NATS_TOKEN,unset" help:"token every client of the embedded NATS server must present (workers: nats://<token>@host:4222); required on a non-loopback address unless an nkey is set"`
	EmbeddedNKeyFile string `env:"EMBEDDED_NATS_NKEY_FILE" help:"file holding an nkey user seed (SU…) that clients of the embedded NATS server authenticate with, instead of a token"`
	EmbeddedSync     string `env:"EMBEDDED_SYNC" envDefault:"interval" help:"embedded JetStream fsync: interval (server default) or always"`
}

// DataEnv is where local state lives: the embedded server's store, and in
// dev mode the generated secret and dev.json, which send and tail read.
type DataEnv struct {
	DataDir string `env:"DATA_DIR" envDefault:"./data" help:"embedded JetStream storage (and the dev secret and dev.json)"`
}

// KafkaEnv says how to reach Kafka.
type KafkaEnv struct {
	KafkaBrokers  []string `env:"KAFKA_BROKERS" envSeparator:"," help:"comma-separated seed brokers (broker kafka)"`
	KafkaTopic    string   `env:"KAFKA_TOPIC" help:"single-topic mode: publish every event to this topic"`
	KafkaTLS      bool     `env:"KAFKA_TLS" help:"use TLS to the brokers (implied by the CA and client certificate files)"`
	KafkaCAFile   string   `env:"KAFKA_TLS_CA_FILE" help:"CA bundle for Kafka TLS"`
	KafkaCertFile string   `env:"KAFKA_TLS_CERT_FILE" help:"client certificate for Kafka TLS"`
	KafkaKeyFile  string   `env:"KAFKA_TLS_KEY_FILE" help:"client key for Kafka TLS"`
	KafkaSASL     string   `env:"KAFKA_SASL_MECHANISM" help:"plain, scram-sha-256 or scram-sha-512"`
	KafkaUser     string   `env:"KAFKA_SASL_USERNAME" help:"SASL user"`
	KafkaPassword string   `env:"KAFKA_SASL_PASSWORD,unset" help:"SASL password"`
}

// KafkaWriterEnv configures the Kafka publisher and the topics it creates.
type KafkaWriterEnv struct {
	KafkaCreateTopics bool          `env:"KAFKA_CREATE_TOPICS" envDefault:"true" help:"create topics at start-up and on first use"`
	KafkaMaxTopics    int           `env:"KAFKA_MAX_TOPICS" envDefault:"200" help:"topics created on first use (types outside the catalogue), at most; beyond it events go to <prefix>.deadletter with hookbridge-reason too_many_topics"`
	KafkaPartitions   int           `env:"KAFKA_PARTITIONS" envDefault:"3" help:"partitions of created topics"`
	KafkaReplication  int           `env:"KAFKA_REPLICATION_FACTOR" envDefault:"1" help:"replication factor of created topics"`
	KafkaBatchTimeout time.Duration `env:"KAFKA_BATCH_TIMEOUT" envDefault:"1ms" help:"how long the writer waits to fill a batch"`
	KafkaClientID     string        `env:"KAFKA_CLIENT_ID" envDefault:"hookbridge" help:"Kafka client id"`
}

// DedupEnv chooses and sizes the dedup store.
type DedupEnv struct {
	Dedup       string        `env:"DEDUP" help:"nats, redis, memory or off (default nats with NATS, memory with Kafka)"`
	DedupTTL    time.Duration `env:"DEDUP_TTL" envDefault:"72h" help:"how long a published webhook-id is remembered (with dedup nats and a stream window at least this long, no KV bucket is used)"`
	DedupLease  time.Duration `env:"DEDUP_LEASE" envDefault:"30s" help:"how long an in-flight claim in the dedup store blocks other deliveries of the id"`
	DedupBucket string        `env:"DEDUP_BUCKET" envDefault:"HOOKBRIDGE_DEDUP" help:"JetStream KV bucket of the nats dedup store: ids older than the stream window"`
	DedupMax    int           `env:"DEDUP_MEMORY_MAX" envDefault:"1000000" help:"ids remembered by the memory store (about 70 bytes each)"`
	RedisURL    string        `env:"REDIS_URL,unset" help:"Redis for HOOKBRIDGE_DEDUP=redis (redis:// or rediss://)"`
}

// LogEnv configures the log.
type LogEnv struct {
	LogLevel  string `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"json" help:"json or console"`
}

// config is the environment contract of `hookbridge serve`: every part.
type config struct {
	Endpoint
	RoutesEnv
	ListenEnv
	RequestEnv
	LifecycleEnv
	MessageEnv
	NATSEnv
	StreamEnv
	EmbeddedEnv
	DataEnv
	KafkaEnv
	KafkaWriterEnv
	DedupEnv
	LogEnv

	// What loadConfig derives from the environment beyond the variables.

	// secrets is the parsed form of the endpoint's secrets.
	secrets []ingest.Secret
	// routes are the endpoints served: HOOKBRIDGE_ROUTES_<n>_*, or the
	// single endpoint as the route named default.
	routes []routeConfig
	// maxBodySet is whether HOOKBRIDGE_MAX_BODY_BYTES was set: a value the
	// operator chose is never lowered silently (see fitBodyLimit).
	maxBodySet bool
	// credentials are the texts no log line may carry (redact.go).
	credentials []string
	// tracing is read from the standard OTEL_* variables (tracing.go).
	tracing tracing.Config
}

// parseEnv reads the parts of the environment contract that T holds from
// environ, and from nothing else: a nil environ is an empty one.
func parseEnv[T any](environ map[string]string) (T, error) {
	if environ == nil {
		environ = map[string]string{}
	}
	return env.ParseAsWithOptions[T](env.Options{Prefix: envPrefix, Environment: environ})
}

// loadConfig reads the environment, applies the defaults that depend on other
// settings, reads the secrets and validates the whole, returning every
// problem at once so an operator fixes them in one pass.
func loadConfig(environ map[string]string) (*config, error) {
	cfg, err := parseEnv[config](environ)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	cfg.applyDefaults()
	cfg.maxBodySet = environ[envPrefix+"MAX_BODY_BYTES"] != ""
	cfg.credentials = credentials(environ)
	var errs []error
	var rp problems
	cfg.checkRouteVars(environ, &rp)
	switch {
	case len(cfg.Routes) > 0:
		cfg.loadRoutes(environ, &rp)
	case len(rp) > 0:
		// A route numbered from 1, or misspelt: the operator meant routes.
	default:
		if cfg.secrets, err = cfg.loadSecrets(environ); err != nil {
			errs = append(errs, err)
		} else if len(cfg.secrets) == 0 {
			errs = append(errs, errors.New("no signing secret: set HOOKBRIDGE_SECRETS (or OPENAI_WEBHOOK_SECRET, or HOOKBRIDGE_SECRETS_FILE) to the whsec_… secret of your OpenAI webhook endpoint"))
		}
		cfg.routes = []routeConfig{cfg.defaultRoute(environ)}
	}
	errs = append(errs, rp...)
	if err := cfg.validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.tracing, err = tracing.FromEnv(environ); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &cfg, nil
}

// applyDefaults sets the defaults that depend on another setting, which an
// envDefault tag cannot express.
func (c *config) applyDefaults() {
	if c.RateLimit > 0 && c.RateBurst == 0 {
		c.RateBurst = max(1, int(2*c.RateLimit))
	}
	if c.Dedup == "" {
		c.Dedup = "nats"
		if c.Broker == "kafka" {
			c.Dedup = "memory"
		}
	}
}

// problems collects what is wrong with a configuration, each naming its
// variable.
type problems []error

func (p *problems) add(name, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s%s: %s", envPrefix, name, fmt.Sprintf(format, args...)))
}

// validate checks the configuration. It changes nothing.
func (c *config) validate() error {
	var p problems
	c.Endpoint.check(&p)
	c.ListenEnv.check(&p)
	c.RequestEnv.check(&p)
	c.LifecycleEnv.check(&p)
	c.checkBroker(&p)
	c.checkDedup(&p)
	c.LogEnv.check(&p)
	return errors.Join(p...)
}

func (e Endpoint) check(p *problems) {
	if !strings.HasPrefix(e.Path, "/") {
		p.add("PATH", "%q must start with /", e.Path)
	}
}

func (l ListenEnv) check(p *problems) {
	for _, a := range []struct{ name, addr string }{{"LISTEN_ADDR", l.ListenAddr}, {"ADMIN_ADDR", l.AdminAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			p.add(a.name, "%q is not host:port (e.g. :8080)", a.addr)
		}
	}
	// Two listeners on port 0 each get their own free port.
	if l.ListenAddr == l.AdminAddr && !strings.HasSuffix(l.ListenAddr, ":0") {
		p.add("ADMIN_ADDR", "must differ from HOOKBRIDGE_LISTEN_ADDR (%s)", l.ListenAddr)
	}
	if l.ReadTimeout <= 0 {
		p.add("READ_TIMEOUT", "must be positive")
	}
	if (l.TLSCertFile == "") != (l.TLSKeyFile == "") {
		p.add("TLS_CERT_FILE", "HOOKBRIDGE_TLS_CERT_FILE and HOOKBRIDGE_TLS_KEY_FILE must be set together")
	} else if l.TLSCertFile != "" {
		if _, err := loadKeyPair(l.TLSCertFile, l.TLSKeyFile); err != nil {
			p.add("TLS_CERT_FILE", "%v", err)
		}
	}
	if l.RateLimit < 0 {
		p.add("RATE_LIMIT", "%v must be ≥ 0 (0 = off)", l.RateLimit)
	}
	if l.RateBurst < 0 {
		p.add("RATE_BURST", "%d must be ≥ 0", l.RateBurst)
	}
}

func (r RequestEnv) check(p *problems) {
	if r.Tolerance < time.Second {
		p.add("TOLERANCE", "%s is below one second; the timestamp has whole-second resolution", r.Tolerance)
	}
	if r.MaxBodyBytes < 1024 {
		p.add("MAX_BODY_BYTES", "%d is too small for a webhook (at least 1024)", r.MaxBodyBytes)
	}
	if r.MaxInFlightBytes <= r.MaxBodyBytes {
		p.add("MAX_IN_FLIGHT_BYTES", "%d must exceed HOOKBRIDGE_MAX_BODY_BYTES (%d), or the largest body could never be read", r.MaxInFlightBytes, r.MaxBodyBytes)
	}
	if r.MaxInFlightRequests < 1 {
		p.add("MAX_IN_FLIGHT_REQUESTS", "%d must be at least 1", r.MaxInFlightRequests)
	}
	if r.PublishTimeout <= 0 {
		p.add("PUBLISH_TIMEOUT", "must be positive")
	}
}

func (l LifecycleEnv) check(p *problems) {
	if l.ShutdownDelay < 0 || l.ShutdownGrace <= 0 {
		p.add("SHUTDOWN_GRACE", "delay must be ≥ 0 and grace positive")
	}
	if l.ReloadInterval < 0 {
		p.add("RELOAD_INTERVAL", "must be ≥ 0")
	}
}

func (c *config) checkBroker(p *problems) {
	if !schema.Type(c.TopicPrefix).Routable() {
		p.add("TOPIC_PREFIX", "%q must be dot-separated tokens of a-z, 0-9 and _", c.TopicPrefix)
	}
	switch c.Broker {
	case "embedded":
		c.EmbeddedEnv.check(p)
		if c.DataDir == "" {
			p.add("DATA_DIR", "must be set for the embedded broker")
		}
	case "nats":
		if c.NATSURL == "" {
			p.add("NATS_URL", "is required with HOOKBRIDGE_BROKER=nats (e.g. nats://127.0.0.1:4222)")
		}
	case "kafka":
		c.KafkaWriterEnv.check(p)
		if len(c.KafkaBrokers) == 0 {
			p.add("KAFKA_BROKERS", "is required with HOOKBRIDGE_BROKER=kafka (host:port[,host:port])")
		}
	default:
		p.add("BROKER", "%q is not embedded, nats or kafka", c.Broker)
	}
	if c.NATSReplicas < 1 || c.NATSReplicas > 5 {
		p.add("NATS_REPLICAS", "%d is not between 1 and 5", c.NATSReplicas)
	}
}

func (e EmbeddedEnv) check(p *problems) {
	if _, _, err := net.SplitHostPort(e.EmbeddedAddr); err != nil {
		p.add("EMBEDDED_NATS_ADDR", "%q is not host:port", e.EmbeddedAddr)
	}
	if e.EmbeddedSync != "interval" && e.EmbeddedSync != "always" {
		p.add("EMBEDDED_SYNC", "%q is not interval or always", e.EmbeddedSync)
	}
	switch {
	case e.EmbeddedToken != "" && e.EmbeddedNKeyFile != "":
		p.add("EMBEDDED_NATS_TOKEN", "set it or HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE, not both")
	case e.EmbeddedToken == "" && e.EmbeddedNKeyFile == "" && !publish.LoopbackAddr(e.EmbeddedAddr):
		p.add("EMBEDDED_NATS_ADDR", "%s is reachable from other hosts, and the embedded NATS server would let anyone publish forged events, "+
			"purge the stream or delete the dedup bucket: set HOOKBRIDGE_EMBEDDED_NATS_TOKEN (or HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE) "+
			"for it to require authentication, or listen on 127.0.0.1", e.EmbeddedAddr)
	}
}

func (k KafkaWriterEnv) check(p *problems) {
	if k.KafkaPartitions < 1 {
		p.add("KAFKA_PARTITIONS", "must be at least 1")
	}
	if k.KafkaReplication < 1 {
		p.add("KAFKA_REPLICATION_FACTOR", "must be at least 1")
	}
	if k.KafkaMaxTopics < 1 {
		p.add("KAFKA_MAX_TOPICS", "%d must be at least 1", k.KafkaMaxTopics)
	}
}

func (c *config) checkDedup(p *problems) {
	switch c.Dedup {
	case "nats":
		if c.Broker == "kafka" {
			p.add("DEDUP", "nats needs a NATS broker; with Kafka use redis (several replicas) or memory")
		}
	case "redis":
		if c.RedisURL == "" {
			p.add("REDIS_URL", "is required with HOOKBRIDGE_DEDUP=redis (e.g. redis://127.0.0.1:6379/0)")
		}
	case "memory":
		if c.DedupMax < 1 {
			p.add("DEDUP_MEMORY_MAX", "must be at least 1")
		}
	case "off":
	default:
		p.add("DEDUP", "%q is not nats, redis, memory or off", c.Dedup)
	}
	if c.DedupTTL < time.Minute {
		p.add("DEDUP_TTL", "%s is shorter than a minute; OpenAI retries for 72h", c.DedupTTL)
	}
	if c.DedupLease <= c.PublishTimeout {
		p.add("DEDUP_LEASE", "%s must exceed HOOKBRIDGE_PUBLISH_TIMEOUT (%s), or a slow publish could be repeated", c.DedupLease, c.PublishTimeout)
	}
}

func (l LogEnv) check(p *problems) {
	switch l.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p.add("LOG_LEVEL", "%q is not debug, info, warn or error", l.LogLevel)
	}
	if l.LogFormat != "json" && l.LogFormat != "console" {
		p.add("LOG_FORMAT", "%q is not json or console", l.LogFormat)
	}
}

// The secrets of an endpoint. Every command that needs them (serve, its
// reloads, send, verify, dev mode) reads them here, so the sources and their
// order are the same everywhere.

// openAISecretVar is the variable OpenAI's SDKs read the secret from; an
// endpoint falls back to it when HOOKBRIDGE_SECRETS is unset.
const openAISecretVar = "OPENAI_WEBHOOK_SECRET"

// secretList returns the endpoint's secrets as one list, in the order of
// their positions (the secret label of
// hookbridge_signature_secret_matches_total, verify's secret=#n):
// HOOKBRIDGE_SECRETS, else OPENAI_WEBHOOK_SECRET, then file, the content of
// HOOKBRIDGE_SECRETS_FILE. A blank variable counts as unset. from names the
// sources of the list, for messages; it is "" when there is none.
func (e Endpoint) secretList(environ map[string]string, file []byte) (list, from string) {
	var parts, sources []string
	for _, v := range []struct{ name, value string }{{envPrefix + "SECRETS", e.Secrets}, {openAISecretVar, environ[openAISecretVar]}} {
		if strings.TrimSpace(v.value) != "" {
			parts, sources = append(parts, v.value), append(sources, v.name)
			break
		}
	}
	if e.SecretsFile != "" {
		parts, sources = append(parts, string(file)), append(sources, envPrefix+"SECRETS_FILE")
	}
	return strings.Join(parts, " "), strings.Join(sources, "+")
}

// secretsConfigured reports whether any source of secrets is set.
func (e Endpoint) secretsConfigured(environ map[string]string) bool {
	_, from := e.secretList(environ, nil)
	return from != ""
}

// readSecretsFile returns the content of HOOKBRIDGE_SECRETS_FILE, nil when
// it is unset.
func (e Endpoint) readSecretsFile() ([]byte, error) {
	if e.SecretsFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(e.SecretsFile)
	if err != nil {
		return nil, fmt.Errorf("%sSECRETS_FILE: %w", envPrefix, err)
	}
	return b, nil
}

// loadSecrets reads and parses the endpoint's secrets; it returns none and no
// error when no source is set.
func (e Endpoint) loadSecrets(environ map[string]string) ([]ingest.Secret, error) {
	file, err := e.readSecretsFile()
	if err != nil {
		return nil, err
	}
	return e.parseSecrets(environ, file)
}

// parseSecrets parses the secrets of the environment and file (the content of
// HOOKBRIDGE_SECRETS_FILE, already read).
func (e Endpoint) parseSecrets(environ map[string]string, file []byte) ([]ingest.Secret, error) {
	list, from := e.secretList(environ, file)
	if from == "" {
		return nil, nil
	}
	s, err := ingest.ParseSecrets(list)
	if err != nil {
		return nil, fmt.Errorf("%s:\n%w", from, err)
	}
	return s, nil
}

// Reflection over the parts, for `serve --help` and the start-up log.

// envField is one variable of a configuration struct.
type envField struct {
	name  string // without the prefix
	opts  string // what follows the name in the env tag ("unset")
	field reflect.StructField
	value reflect.Value
}

// envFields lists the variables of v, a struct of parts, in declaration
// order, the parts' fields in place of the parts.
func envFields(v reflect.Value) []envField {
	var out []envField
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, envFields(v.Field(i))...)
			continue
		}
		tag := f.Tag.Get("env")
		if tag == "" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		out = append(out, envField{name: name, opts: opts, field: f, value: v.Field(i)})
	}
	return out
}

// redacted returns the effective configuration for the start-up log, with
// every secret-bearing field replaced and the userinfo of every URL redacted.
func (c *config) redacted() map[string]any {
	out := make(map[string]any)
	for _, f := range envFields(reflect.ValueOf(*c)) {
		val := f.value.Interface()
		if d, ok := val.(time.Duration); ok {
			val = d.String()
		}
		switch x := val.(type) {
		case string:
			if slices.Contains(urlListVars, f.name) {
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
		if strings.Contains(f.opts, "unset") && f.name != "REDIS_URL" && !f.value.IsZero() {
			val = "[REDACTED]"
		}
		out[envPrefix+f.name] = val
	}
	out["secrets_configured"] = len(c.secrets)
	if len(c.Routes) > 0 {
		// Routes replace these: showing their defaults would mislead.
		delete(out, envPrefix+"PATH")
		delete(out, envPrefix+"SECRETS")
		delete(out, envPrefix+"SECRETS_FILE")
		delete(out, "secrets_configured")
		routes := make([]map[string]any, len(c.routes))
		for i, r := range c.routes {
			routes[i] = map[string]any{"name": r.name, "path": r.path, "prefix": r.prefix,
				"secrets_configured": len(r.secrets), "secrets_file": r.secretsFile}
		}
		out["routes"] = routes
	}
	out["otel_tracing"] = c.tracing.Summary()
	return out
}

// configHelp renders the variable table for `hookbridge serve --help`.
func configHelp() string {
	var b strings.Builder
	for _, f := range envFields(reflect.ValueOf(config{})) {
		def := f.field.Tag.Get("envDefault")
		if def != "" {
			def = " (default " + def + ")"
		}
		fmt.Fprintf(&b, "  %s%s%s\n      %s\n", envPrefix, f.name, def, f.field.Tag.Get("help"))
	}
	b.WriteString("\n  Routes: several OpenAI endpoints, each with its own path, secrets and prefix, n = 0, 1, …\n" +
		"  (instead of HOOKBRIDGE_PATH and HOOKBRIDGE_SECRETS/_SECRETS_FILE; a route named default keeps bare webhook-ids as dedup keys)\n")
	for _, f := range envFields(reflect.ValueOf(RouteEnv{})) {
		fmt.Fprintf(&b, "  %sROUTES_<n>_%s\n      %s\n", envPrefix, f.name, f.field.Tag.Get("help"))
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
