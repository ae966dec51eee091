package tracing

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// Defaults of the OpenTelemetry environment specification.
const (
	DefaultEndpoint      = "http://localhost:4318/v1/traces"
	DefaultServiceName   = "hookbridge"
	DefaultTimeout       = 10 * time.Second
	DefaultScheduleDelay = 5 * time.Second
	DefaultExportTimeout = 30 * time.Second
	DefaultMaxQueueSize  = 2048
	DefaultMaxBatchSize  = 512

	// maxQueueSize bounds OTEL_BSP_MAX_QUEUE_SIZE: each queued span holds a
	// few hundred bytes to a few KiB.
	maxQueueSize = 1 << 20
)

// Config is the tracing part of the environment: the standard OTEL_*
// variables, read by FromEnv.
type Config struct {
	// Enabled is true when an OTLP endpoint is configured
	// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT) or
	// OTEL_TRACES_EXPORTER=otlp, unless OTEL_TRACES_EXPORTER=none or
	// OTEL_SDK_DISABLED=true. The other fields are set only when it is.
	Enabled bool

	// Endpoint is the URL spans are POSTed to (…/v1/traces).
	Endpoint string
	// Headers are sent with every export. They often carry credentials:
	// Summary names them without their values.
	Headers map[string]string
	// Timeout bounds one export request (OTEL_EXPORTER_OTLP_TIMEOUT).
	Timeout time.Duration
	// Gzip compresses export requests (OTEL_EXPORTER_OTLP_COMPRESSION=gzip).
	Gzip bool

	ServiceName string
	// Resource holds OTEL_RESOURCE_ATTRIBUTES except service.name.
	Resource []attribute.KeyValue

	// Sampler is an OTEL_TRACES_SAMPLER value; SamplerArg the ratio of the
	// traceidratio samplers.
	Sampler    string
	SamplerArg float64

	// The span queue (OTEL_BSP_*): how long a span may wait for a batch, how
	// long one batch may take to export (retries included), how many spans
	// are held at most, waiting or being exported (beyond, spans are dropped
	// and counted), and how many go in one request.
	ScheduleDelay time.Duration
	ExportTimeout time.Duration
	MaxQueueSize  int
	MaxBatchSize  int

	tls *tls.Config // OTEL_EXPORTER_OTLP_CERTIFICATE and CLIENT_*; nil for the defaults
}

// samplers are the OTEL_TRACES_SAMPLER values supported.
var samplers = []string{"always_on", "always_off", "traceidratio",
	"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

// FromEnv reads the OTEL_* variables of environ. When tracing is off it
// returns a Config with Enabled false and checks nothing else, so variables
// meant for other processes cannot stop the bridge; when it is on, every
// problem is reported at once.
func FromEnv(environ map[string]string) (Config, error) {
	e := &otelEnv{environ: environ}
	if !e.enabled() {
		return Config{}, nil
	}
	c := Config{
		Enabled:       true,
		Endpoint:      DefaultEndpoint,
		Timeout:       DefaultTimeout,
		ServiceName:   DefaultServiceName,
		Sampler:       "parentbased_always_on",
		SamplerArg:    1,
		ScheduleDelay: DefaultScheduleDelay,
		ExportTimeout: DefaultExportTimeout,
		MaxQueueSize:  DefaultMaxQueueSize,
		MaxBatchSize:  DefaultMaxBatchSize,
	}
	e.endpoint(&c)
	e.exporter(&c)
	e.resource(&c)
	e.sampler(&c)
	e.queue(&c)
	if len(e.errs) > 0 {
		return Config{}, errors.Join(e.errs...)
	}
	return c, nil
}

// otelEnv reads OTEL_* variables, collecting every problem.
type otelEnv struct {
	environ map[string]string
	errs    []error
}

func (e *otelEnv) get(name string) string { return strings.TrimSpace(e.environ[name]) }

// signal returns the traces-specific variable, else the general one, with
// the name that was used (for messages).
func (e *otelEnv) signal(suffix string) (string, string) {
	if v := e.get("OTEL_EXPORTER_OTLP_TRACES_" + suffix); v != "" {
		return v, "OTEL_EXPORTER_OTLP_TRACES_" + suffix
	}
	return e.get("OTEL_EXPORTER_OTLP_" + suffix), "OTEL_EXPORTER_OTLP_" + suffix
}

func (e *otelEnv) bad(name, format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// enabled reports whether the variables ask for tracing: an OTLP exporter
// or an endpoint, and not disabled. An unsupported exporter counts as asking,
// so that the mistake is reported.
func (e *otelEnv) enabled() bool {
	if strings.EqualFold(e.get("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	otlp := false
	for _, x := range strings.Split(e.get("OTEL_TRACES_EXPORTER"), ",") {
		switch x = strings.TrimSpace(x); x {
		case "":
		case "none":
			return false
		case "otlp":
			otlp = true
		default:
			e.bad("OTEL_TRACES_EXPORTER", "%q is not supported: hookbridge exports traces with OTLP over HTTP (otlp) or not at all (none)", x)
		}
	}
	return otlp || e.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || e.get("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || len(e.errs) > 0
}

// endpoint sets where spans go.
func (e *otelEnv) endpoint(c *Config) {
	tracesEndpoint, baseEndpoint := e.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), e.get("OTEL_EXPORTER_OTLP_ENDPOINT")
	switch {
	case tracesEndpoint != "":
		// Used as it is; a URL without a path means the root.
		if u, err := parseEndpoint(tracesEndpoint); err != nil {
			e.bad("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "%v", err)
		} else {
			if u.Path == "" {
				u.Path = "/"
			}
			c.Endpoint = u.String()
		}
	case baseEndpoint != "":
		// A base URL: the traces path goes under its path.
		if u, err := parseEndpoint(baseEndpoint); err != nil {
			e.bad("OTEL_EXPORTER_OTLP_ENDPOINT", "%v", err)
		} else {
			u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
			u.RawPath = ""
			c.Endpoint = u.String()
		}
	}
}

// exporter sets how spans are sent: protocol, headers, timeout, compression
// and TLS.
func (e *otelEnv) exporter(c *Config) {
	if p, name := e.signal("PROTOCOL"); p != "" && p != "http/protobuf" {
		switch p {
		case "grpc":
			e.bad(name, "OTLP over gRPC is not built into hookbridge: point it at the collector's OTLP/HTTP endpoint (port 4318) with http/protobuf")
		default:
			e.bad(name, "%q is not supported: use http/protobuf", p)
		}
	}
	if h, name := e.signal("HEADERS"); h != "" {
		hs, err := parseHeaders(h)
		if err != nil {
			e.bad(name, "%v", err)
		}
		c.Headers = hs
	}
	if v, name := e.signal("TIMEOUT"); v != "" {
		if d, err := millis(v); err != nil || d <= 0 {
			e.bad(name, "%q is not a positive number of milliseconds", v)
		} else {
			c.Timeout = d
		}
	}
	switch v, name := e.signal("COMPRESSION"); v {
	case "", "none":
	case "gzip":
		c.Gzip = true
	default:
		e.bad(name, "%q is not gzip or none", v)
	}
	ca, caName := e.signal("CERTIFICATE")
	cert, certName := e.signal("CLIENT_CERTIFICATE")
	key, _ := e.signal("CLIENT_KEY")
	if tc, err := tlsConfig(ca, cert, key); err != nil {
		name := caName
		if cert != "" || key != "" {
			name = certName
		}
		e.bad(name, "%v", err)
	} else {
		c.tls = tc
	}
}

// resource sets the service name and the resource attributes.
func (e *otelEnv) resource(c *Config) {
	if v := e.get("OTEL_RESOURCE_ATTRIBUTES"); v != "" {
		kvs, err := parseList(v)
		if err != nil {
			e.bad("OTEL_RESOURCE_ATTRIBUTES", "%v", err)
		}
		for _, kv := range kvs {
			if kv[0] == "service.name" {
				c.ServiceName = kv[1]
				continue
			}
			c.Resource = append(c.Resource, attribute.String(kv[0], kv[1]))
		}
	}
	if v := e.get("OTEL_SERVICE_NAME"); v != "" {
		c.ServiceName = v
	}
}

// sampler sets which traces are recorded.
func (e *otelEnv) sampler(c *Config) {
	if v := e.get("OTEL_TRACES_SAMPLER"); v != "" {
		if slices.Contains(samplers, v) {
			c.Sampler = v
		} else {
			e.bad("OTEL_TRACES_SAMPLER", "%q is not one of %s", v, strings.Join(samplers, ", "))
		}
	}
	if v := e.get("OTEL_TRACES_SAMPLER_ARG"); v != "" && strings.HasSuffix(c.Sampler, "traceidratio") {
		if r, err := strconv.ParseFloat(v, 64); err != nil || r < 0 || r > 1 {
			e.bad("OTEL_TRACES_SAMPLER_ARG", "%q is not a ratio between 0 and 1", v)
		} else {
			c.SamplerArg = r
		}
	}
}

// queue sets the span queue's timing and sizes.
func (e *otelEnv) queue(c *Config) {
	durations := []struct {
		name string
		dst  *time.Duration
	}{{"OTEL_BSP_SCHEDULE_DELAY", &c.ScheduleDelay}, {"OTEL_BSP_EXPORT_TIMEOUT", &c.ExportTimeout}}
	for _, d := range durations {
		if v := e.get(d.name); v != "" {
			if ms, err := millis(v); err != nil || ms <= 0 {
				e.bad(d.name, "%q is not a positive number of milliseconds", v)
			} else {
				*d.dst = ms
			}
		}
	}
	sizes := []struct {
		name string
		dst  *int
	}{{"OTEL_BSP_MAX_QUEUE_SIZE", &c.MaxQueueSize}, {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &c.MaxBatchSize}}
	for _, s := range sizes {
		if v := e.get(s.name); v != "" {
			if n, err := strconv.Atoi(v); err != nil || n < 1 || n > maxQueueSize {
				e.bad(s.name, "%q is not a number between 1 and %d", v, maxQueueSize)
			} else {
				*s.dst = n
			}
		}
	}
	// As the specification says: a batch is never larger than the queue.
	c.MaxBatchSize = min(c.MaxBatchSize, c.MaxQueueSize)
}

// Summary describes c for the start-up log: the endpoint without
// credentials, header names without values.
func (c Config) Summary() map[string]any {
	if !c.Enabled {
		return map[string]any{"enabled": false}
	}
	names := make([]string, 0, len(c.Headers))
	for k := range c.Headers {
		names = append(names, k)
	}
	s := map[string]any{
		"enabled":         true,
		"endpoint":        redactURL(c.Endpoint),
		"headers":         names,
		"timeout":         c.Timeout.String(),
		"gzip":            c.Gzip,
		"service_name":    c.ServiceName,
		"sampler":         c.Sampler,
		"schedule_delay":  c.ScheduleDelay.String(),
		"export_timeout":  c.ExportTimeout.String(),
		"max_queue_size":  c.MaxQueueSize,
		"max_batch_size":  c.MaxBatchSize,
		"tls_configured":  c.tls != nil,
		"resource_fields": len(c.Resource),
	}
	if strings.HasSuffix(c.Sampler, "traceidratio") {
		s["sampler_arg"] = c.SamplerArg
	}
	return s
}

func parseEndpoint(v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Not the value: it may carry credentials.
		return nil, errors.New("not an http:// or https:// URL with a host (e.g. http://otel-collector:4318)")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("must not have a query or fragment")
	}
	return u, nil
}

// redactURL drops the userinfo of u, for logs and errors.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	return u.String()
}

// parseList parses the W3C-baggage-like lists of OTEL_EXPORTER_OTLP_HEADERS
// and OTEL_RESOURCE_ATTRIBUTES: key=value pairs separated by commas, values
// percent-encoded. Errors never quote a value.
func parseList(s string) ([][2]string, error) {
	var out [][2]string
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("item %d is not key=value", i+1)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("the value of %q is not percent-encoded correctly", k)
		}
		out = append(out, [2]string{k, dv})
	}
	return out, nil
}

func parseHeaders(s string) (map[string]string, error) {
	kvs, err := parseList(s)
	if err != nil {
		return nil, err
	}
	hs := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		if !validHeaderName(kv[0]) {
			return nil, fmt.Errorf("%q is not a valid header name", kv[0])
		}
		if strings.ContainsAny(kv[1], "\r\n\x00") {
			return nil, fmt.Errorf("the value of %q contains a line break", kv[0])
		}
		hs[kv[0]] = kv[1]
	}
	return hs, nil
}

// validHeaderName reports whether s is an HTTP token (RFC 9110).
func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

func millis(v string) (time.Duration, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > int64(time.Hour/time.Millisecond)*24 {
		return 0, errors.New("bad duration")
	}
	return time.Duration(n) * time.Millisecond, nil
}

// tlsConfig builds the exporter's TLS settings from PEM files: a CA bundle
// to trust instead of the system's, and a client certificate and key.
func tlsConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY must be set together")
	}
	if certFile != "" {
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c, nil
}
