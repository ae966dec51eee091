package main

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/ingest/dedup"
	"github.com/hookbridge/hookbridge/publish"
)

func TestConfigOpsVariables(t *testing.T) {
	dir := t.TempDir()
	writeSelfSigned(t, dir, 1, time.Now().Add(time.Hour))
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	base := func(kv ...string) map[string]string {
		m := map[string]string{"HOOKBRIDGE_SECRETS": testSecret0}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"defaults", base(), ""},
		{"tls pair", base("HOOKBRIDGE_TLS_CERT_FILE", crt, "HOOKBRIDGE_TLS_KEY_FILE", key), ""},
		{"cert without key", base("HOOKBRIDGE_TLS_CERT_FILE", crt), "must be set together"},
		{"key without cert", base("HOOKBRIDGE_TLS_KEY_FILE", key), "must be set together"},
		{"cert and key swapped", base("HOOKBRIDGE_TLS_CERT_FILE", key, "HOOKBRIDGE_TLS_KEY_FILE", crt), "HOOKBRIDGE_TLS_CERT_FILE"},
		{"missing cert file", base("HOOKBRIDGE_TLS_CERT_FILE", crt+".nope", "HOOKBRIDGE_TLS_KEY_FILE", key), "no such file"},
		{"negative rate", base("HOOKBRIDGE_RATE_LIMIT", "-1"), "HOOKBRIDGE_RATE_LIMIT"},
		{"negative burst", base("HOOKBRIDGE_RATE_LIMIT", "5", "HOOKBRIDGE_RATE_BURST", "-1"), "HOOKBRIDGE_RATE_BURST"},
		{"negative reload interval", base("HOOKBRIDGE_RELOAD_INTERVAL", "-1s"), "HOOKBRIDGE_RELOAD_INTERVAL"},
		{"same listener twice", base("HOOKBRIDGE_LISTEN_ADDR", "127.0.0.1:8081", "HOOKBRIDGE_ADMIN_ADDR", "127.0.0.1:8081"), "must differ"},
		// Port 0 is a free port picked per listener (dev mode with 8080 and 9090 taken).
		{"both listeners on port 0", base("HOOKBRIDGE_LISTEN_ADDR", "127.0.0.1:0", "HOOKBRIDGE_ADMIN_ADDR", "127.0.0.1:0"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(tt.env)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}

	cfg, err := loadConfig(base("HOOKBRIDGE_RATE_LIMIT", "2.5"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RateLimit != 2.5 || cfg.RateBurst != 5 {
		t.Errorf("rate %v burst %d, want 2.5 and the default burst 5", cfg.RateLimit, cfg.RateBurst)
	}
	if cfg.ReloadInterval != time.Second {
		t.Errorf("reload interval %s, want 1s", cfg.ReloadInterval)
	}
}

// TestServeHelpListsOpsVariables: `serve --help` is generated from the tags.
func TestServeHelpListsOpsVariables(t *testing.T) {
	help := configHelp()
	for _, v := range []string{"HOOKBRIDGE_TLS_CERT_FILE", "HOOKBRIDGE_TLS_KEY_FILE", "HOOKBRIDGE_RATE_LIMIT (default 0)",
		"HOOKBRIDGE_RATE_BURST", "HOOKBRIDGE_RELOAD_INTERVAL (default 1s)", "HOOKBRIDGE_SHUTDOWN_GRACE (default 20s)"} {
		if !strings.Contains(help, v) {
			t.Errorf("serve --help does not list %s", v)
		}
	}
}

// TestEnvDefaultsMirrorPackageDefaults: where a library package has a default
// for a setting, the variable's envDefault is that default, so that an unset
// variable and an unset field mean the same. Defaults that exist only in this
// command are listed as such; a new envDefault must be added to one of the
// two lists.
func TestEnvDefaultsMirrorPackageDefaults(t *testing.T) {
	cfg, err := parseEnv[config](nil)
	if err != nil {
		t.Fatal(err)
	}
	mirrors := map[string]struct{ got, want any }{
		"PATH":                     {cfg.Path, ingest.DefaultPath},
		"MAX_BODY_BYTES":           {cfg.MaxBodyBytes, int64(ingest.DefaultMaxBodyBytes)},
		"PUBLISH_TIMEOUT":          {cfg.PublishTimeout, ingest.DefaultPublishTimeout},
		"TOLERANCE":                {cfg.Tolerance, ingest.DefaultTolerance},
		"MAX_IN_FLIGHT_BYTES":      {cfg.MaxInFlightBytes, int64(ingest.DefaultMaxInFlightBytes)},
		"MAX_IN_FLIGHT_REQUESTS":   {cfg.MaxInFlightRequests, ingest.DefaultMaxInFlightRequests},
		"TOPIC_PREFIX":             {cfg.TopicPrefix, publish.DefaultNATSPrefix},
		"CE_SOURCE":                {cfg.CESource, publish.DefaultSource},
		"NATS_STREAM":              {cfg.NATSStream, publish.DefaultNATSStream},
		"NATS_DUPLICATE_WINDOW":    {cfg.NATSDuplicates, publish.DefaultNATSDuplicates},
		"NATS_MAX_AGE":             {cfg.NATSMaxAge, publish.DefaultNATSMaxAge},
		"EMBEDDED_NATS_ADDR":       {cfg.EmbeddedAddr, publish.DefaultEmbeddedAddr},
		"DATA_DIR":                 {cfg.DataDir, publish.DefaultEmbeddedDataDir},
		"KAFKA_MAX_TOPICS":         {cfg.KafkaMaxTopics, publish.DefaultKafkaMaxTopics},
		"KAFKA_PARTITIONS":         {cfg.KafkaPartitions, publish.DefaultKafkaPartitions},
		"KAFKA_REPLICATION_FACTOR": {cfg.KafkaReplication, publish.DefaultKafkaReplication},
		"KAFKA_BATCH_TIMEOUT":      {cfg.KafkaBatchTimeout, publish.DefaultKafkaBatchTimeout},
		"KAFKA_CLIENT_ID":          {cfg.KafkaClientID, publish.DefaultKafkaClientID},
		"DEDUP_TTL":                {cfg.DedupTTL, dedup.DefaultTTL},
		"DEDUP_LEASE":              {cfg.DedupLease, dedup.DefaultLease},
		"DEDUP_BUCKET":             {cfg.DedupBucket, dedup.DefaultBucket},
		"DEDUP_MEMORY_MAX":         {cfg.DedupMax, dedup.DefaultMemoryMaxEntries},
	}
	if publish.DefaultKafkaPrefix != publish.DefaultNATSPrefix {
		t.Errorf("one HOOKBRIDGE_TOPIC_PREFIX, two package defaults: %q and %q", publish.DefaultKafkaPrefix, publish.DefaultNATSPrefix)
	}
	ownDefaults := []string{
		"LISTEN_ADDR", "ADMIN_ADDR", "READ_TIMEOUT", "RATE_LIMIT", "RATE_BURST",
		"SHUTDOWN_DELAY", "SHUTDOWN_GRACE", "RELOAD_INTERVAL",
		"BROKER", "FORWARD_SIGNATURE", "NATS_REPLICAS", "EMBEDDED_SYNC", "KAFKA_CREATE_TOPICS",
		"LOG_LEVEL", "LOG_FORMAT",
	}
	for _, f := range envFields(reflect.ValueOf(config{})) {
		if f.field.Tag.Get("envDefault") == "" {
			continue
		}
		m, ok := mirrors[f.name]
		switch {
		case ok && m.got != m.want:
			t.Errorf("HOOKBRIDGE_%s defaults to %v, its package to %v", f.name, m.got, m.want)
		case !ok && !slices.Contains(ownDefaults, f.name):
			t.Errorf("HOOKBRIDGE_%s has a default in neither list of this test", f.name)
		}
	}
}
