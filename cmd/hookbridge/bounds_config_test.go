package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestConfigEdgeVariables(t *testing.T) {
	base := func(kv ...string) map[string]string {
		m := map[string]string{"HOOKBRIDGE_SECRETS": testSecret0}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tt := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"defaults", base(), ""},
		{"in-flight bytes below the body limit", base("HOOKBRIDGE_MAX_IN_FLIGHT_BYTES", "1048576"), "HOOKBRIDGE_MAX_IN_FLIGHT_BYTES"},
		{"in-flight bytes above it", base("HOOKBRIDGE_MAX_IN_FLIGHT_BYTES", "1048577"), ""},
		{"no in-flight requests", base("HOOKBRIDGE_MAX_IN_FLIGHT_REQUESTS", "0"), "HOOKBRIDGE_MAX_IN_FLIGHT_REQUESTS"},
		{"embedded on all interfaces without auth", base("HOOKBRIDGE_EMBEDDED_NATS_ADDR", "0.0.0.0:4222"), "HOOKBRIDGE_EMBEDDED_NATS_TOKEN"},
		{"embedded on :4222 without auth", base("HOOKBRIDGE_EMBEDDED_NATS_ADDR", ":4222"), "HOOKBRIDGE_EMBEDDED_NATS_TOKEN"},
		{"embedded on a LAN address without auth", base("HOOKBRIDGE_EMBEDDED_NATS_ADDR", "10.1.2.3:4222"), "listen on 127.0.0.1"},
		{"embedded on all interfaces with a token", base("HOOKBRIDGE_EMBEDDED_NATS_ADDR", "0.0.0.0:4222", "HOOKBRIDGE_EMBEDDED_NATS_TOKEN", "tok"), ""},
		{"embedded on all interfaces with an nkey", base("HOOKBRIDGE_EMBEDDED_NATS_ADDR", "0.0.0.0:4222", "HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE", "/x"), ""},
		{"embedded token and nkey", base("HOOKBRIDGE_EMBEDDED_NATS_TOKEN", "tok", "HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE", "/x"), "not both"},
		{"embedded address ignored with another broker", base("HOOKBRIDGE_BROKER", "nats", "HOOKBRIDGE_NATS_URL", "nats://h:4222", "HOOKBRIDGE_EMBEDDED_NATS_ADDR", "0.0.0.0:4222"), ""},
		{"kafka max topics", base("HOOKBRIDGE_BROKER", "kafka", "HOOKBRIDGE_KAFKA_BROKERS", "h:9092", "HOOKBRIDGE_KAFKA_MAX_TOPICS", "0"), "HOOKBRIDGE_KAFKA_MAX_TOPICS"},
	} {
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
	cfg, err := loadConfig(base())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxInFlightBytes != 64<<20 || cfg.MaxInFlightRequests != 1024 || cfg.KafkaMaxTopics != 200 {
		t.Errorf("defaults: in-flight %d bytes, %d requests; kafka max topics %d", cfg.MaxInFlightBytes, cfg.MaxInFlightRequests, cfg.KafkaMaxTopics)
	}
	help := configHelp()
	for _, v := range []string{"HOOKBRIDGE_MAX_IN_FLIGHT_BYTES (default 67108864)", "HOOKBRIDGE_MAX_IN_FLIGHT_REQUESTS (default 1024)",
		"HOOKBRIDGE_EMBEDDED_NATS_TOKEN", "HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE", "HOOKBRIDGE_KAFKA_MAX_TOPICS (default 200)"} {
		if !strings.Contains(help, v) {
			t.Errorf("serve --help does not list %s", v)
		}
	}
}

func TestFitBodyLimit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name      string
		set       bool
		body      int64
		brokerMax int64
		want      int64
		wantErr   bool
		warns     bool
	}{
		{"unknown broker limit", false, mib, 0, mib, false, false},
		{"fits", true, mib, 8 * mib, mib, false, false},
		{"default lowered to fit a 1 MiB max_payload", false, mib, mib, mib - fitHeaderRoom, false, true},
		{"set by the operator: refused", true, mib, mib, 0, true, false},
		{"set just small enough", true, mib - fitHeaderRoom, mib, mib - fitHeaderRoom, false, false},
		{"broker far too small", false, mib, 2048, 0, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := &config{MaxBodyBytes: c.body, maxBodySet: c.set}
			var buf bytes.Buffer
			err := fitBodyLimit(cfg, c.brokerMax, "the NATS server", zerolog.New(&buf))
			if (err != nil) != c.wantErr {
				t.Fatalf("error %v, want error %v", err, c.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "HOOKBRIDGE_MAX_BODY_BYTES") || !strings.Contains(err.Error(), "max_payload") {
					t.Errorf("the error does not say what to change: %v", err)
				}
				return
			}
			if cfg.MaxBodyBytes != c.want {
				t.Errorf("body limit %d, want %d", cfg.MaxBodyBytes, c.want)
			}
			if warned := strings.Contains(buf.String(), `"level":"warn"`); warned != c.warns {
				t.Errorf("warned %v, want %v: %s", warned, c.warns, buf.String())
			}
		})
	}
}

func TestWarnShortSecrets(t *testing.T) {
	cfg, err := loadConfig(map[string]string{"HOOKBRIDGE_SECRETS": testSecret0 + " short-raw-secret"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	warnShortSecrets(cfg.secrets, zerolog.New(&buf))
	out := buf.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "#2") || !strings.Contains(out, `"level":"warn"`) {
		t.Errorf("want one warning about secret #2, got %q", out)
	}
	if strings.Contains(out, "short-raw-secret") {
		t.Errorf("the warning shows the secret: %q", out)
	}
}
