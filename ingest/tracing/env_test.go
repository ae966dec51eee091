package tracing

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestFromEnv_OffUnlessAsked(t *testing.T) {
	for _, env := range []map[string]string{
		{},
		// Variables that describe tracing but ask for no export.
		{"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on", "OTEL_BSP_MAX_QUEUE_SIZE": "10"},
		// Invalid values are not checked while tracing is off: they may be
		// meant for other processes.
		{"OTEL_TRACES_SAMPLER": "jaeger_remote", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces", "OTEL_SDK_DISABLED": "true"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "  "},
	} {
		c, err := FromEnv(env)
		if err != nil || c.Enabled {
			t.Errorf("%v: enabled %v, err %v; want off", env, c.Enabled, err)
		}
		if p, err := Start(c, Options{}); p != nil || err != nil {
			t.Errorf("%v: Start = %v, %v; want nil, nil", env, p, err)
		}
	}
}

func TestFromEnv_Endpoint(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/"}, "https://collector:4318/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://gw/otlp"}, "http://gw/otlp/v1/traces"},
		// The signal-specific URL is used as it is, and wins.
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"}, "http://c:4318/custom"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318"}, "http://c:4318/"},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, DefaultEndpoint},
	}
	for _, tc := range tests {
		c, err := FromEnv(tc.env)
		if err != nil || !c.Enabled || c.Endpoint != tc.want {
			t.Errorf("%v: enabled %v endpoint %q err %v; want %q", tc.env, c.Enabled, c.Endpoint, err, tc.want)
		}
	}
}

func TestFromEnv_Settings(t *testing.T) {
	c, err := FromEnv(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://c:4318",
		"OTEL_EXPORTER_OTLP_HEADERS":         "api-key=s%3Dcr%2Cet, x-tenant = a b ",
		"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT":  "2500",
		"OTEL_EXPORTER_OTLP_COMPRESSION":     "gzip",
		"OTEL_RESOURCE_ATTRIBUTES":           "deployment.environment=prod,service.name=from-attrs",
		"OTEL_SERVICE_NAME":                  "bridge-eu",
		"OTEL_TRACES_SAMPLER":                "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":            "0.25",
		"OTEL_BSP_SCHEDULE_DELAY":            "100",
		"OTEL_BSP_EXPORT_TIMEOUT":            "3000",
		"OTEL_BSP_MAX_QUEUE_SIZE":            "64",
		"OTEL_BSP_MAX_EXPORT_BATCH_SIZE":     "512", // clamped to the queue
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Headers["api-key"] != "s=cr,et" || c.Headers["x-tenant"] != "a b" || len(c.Headers) != 2 {
		t.Errorf("headers %q", c.Headers)
	}
	if c.Timeout != 2500*time.Millisecond || !c.Gzip {
		t.Errorf("timeout %v gzip %v", c.Timeout, c.Gzip)
	}
	if c.ServiceName != "bridge-eu" || len(c.Resource) != 1 || c.Resource[0].Value.AsString() != "prod" {
		t.Errorf("service %q resource %v", c.ServiceName, c.Resource)
	}
	if c.Sampler != "parentbased_traceidratio" || c.SamplerArg != 0.25 {
		t.Errorf("sampler %q %v", c.Sampler, c.SamplerArg)
	}
	if c.ScheduleDelay != 100*time.Millisecond || c.ExportTimeout != 3*time.Second ||
		c.MaxQueueSize != 64 || c.MaxBatchSize != 64 {
		t.Errorf("queue %v %v %d %d", c.ScheduleDelay, c.ExportTimeout, c.MaxQueueSize, c.MaxBatchSize)
	}

	d, err := FromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
	if err != nil {
		t.Fatal(err)
	}
	if d.ServiceName != "hookbridge" || d.Sampler != "parentbased_always_on" || d.Timeout != DefaultTimeout ||
		d.MaxQueueSize != 2048 || d.MaxBatchSize != 512 || d.ScheduleDelay != 5*time.Second || d.Gzip {
		t.Errorf("defaults: %+v", d)
	}
}

// Every problem is reported at once, each naming its variable, and no
// message repeats a value that may be a credential.
func TestFromEnv_Errors(t *testing.T) {
	_, err := FromEnv(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":    "collector:4318?token=hunter2",
		"OTEL_EXPORTER_OTLP_PROTOCOL":    "grpc",
		"OTEL_EXPORTER_OTLP_HEADERS":     "authorization=Bearer%ZZhunter2",
		"OTEL_EXPORTER_OTLP_TIMEOUT":     "soon",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd",
		"OTEL_TRACES_SAMPLER":            "traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":        "1.5",
		"OTEL_BSP_MAX_QUEUE_SIZE":        "0",
		"OTEL_BSP_SCHEDULE_DELAY":        "-1",
		"OTEL_RESOURCE_ATTRIBUTES":       "novalue",
	})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT:", "OTEL_EXPORTER_OTLP_PROTOCOL: OTLP over gRPC",
		"OTEL_EXPORTER_OTLP_HEADERS:", "OTEL_EXPORTER_OTLP_TIMEOUT:", "OTEL_EXPORTER_OTLP_COMPRESSION:",
		"OTEL_TRACES_SAMPLER_ARG:", "OTEL_BSP_MAX_QUEUE_SIZE:", "OTEL_BSP_SCHEDULE_DELAY:", "OTEL_RESOURCE_ATTRIBUTES:"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("error repeats a credential:\n%s", msg)
	}

	for env, want := range map[string]string{
		"OTEL_TRACES_EXPORTER=zipkin":              "OTEL_TRACES_EXPORTER: \"zipkin\" is not supported",
		"OTEL_TRACES_SAMPLER=jaeger_remote":        "OTEL_TRACES_SAMPLER: \"jaeger_remote\" is not one of",
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/json":    "OTEL_EXPORTER_OTLP_PROTOCOL: \"http/json\" is not supported",
		"OTEL_EXPORTER_OTLP_CERTIFICATE=/nonexist": "OTEL_EXPORTER_OTLP_CERTIFICATE:",
		"OTEL_EXPORTER_OTLP_CLIENT_KEY=/k":         "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: ",
		"OTEL_EXPORTER_OTLP_HEADERS=bad name=x":    "not a valid header name",
	} {
		k, v, _ := strings.Cut(env, "=")
		_, err := FromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", k: v})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to contain %q", env, err, want)
		}
	}
}

func TestSummaryHidesCredentials(t *testing.T) {
	c, err := FromEnv(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "https://user:hunter2@collector:4318",
		"OTEL_EXPORTER_OTLP_HEADERS":  "authorization=Bearer hunter2",
	})
	if err != nil {
		t.Fatal(err)
	}
	s := fmt.Sprint(c.Summary())
	if strings.Contains(s, "hunter2") || !strings.Contains(s, "authorization") || !strings.Contains(s, "collector:4318/v1/traces") {
		t.Errorf("summary %s", s)
	}
}
