package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTailDefaultsFromDevState: tail reads Kafka when dev.json names Kafka
// brokers (the compose stack, through `make up`), and --nats overrides that.
// Both addresses refuse connections, so which one tail tried shows in its
// error.
func TestTailDefaultsFromDevState(t *testing.T) {
	dir := t.TempDir()
	st := `{"webhook_url":"http://127.0.0.1:8080/webhooks/openai","kafka_brokers":"127.0.0.1:1","secret_file":""}`
	if err := os.WriteFile(filepath.Join(dir, "dev.json"), []byte(st), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HOOKBRIDGE_DATA_DIR": dir}
	tail := func(args ...string) string {
		var out, errOut bytes.Buffer
		code := runTail(args, stdio{in: strings.NewReader(""), out: &out, err: &errOut, env: env})
		if code != 1 {
			t.Errorf("tail %v: exit %d, want 1 (nothing listens)", args, code)
		}
		return errOut.String()
	}
	if msg := tail("--count", "1", "--wait", "2s"); !strings.Contains(msg, "list topics on 127.0.0.1:1") {
		t.Errorf("with kafka_brokers in dev.json, tail did not read Kafka: %s", msg)
	}
	if msg := tail("--nats", "nats://127.0.0.1:2", "--count", "1", "--wait", "2s"); !strings.Contains(msg, "nats://127.0.0.1:2") {
		t.Errorf("--nats did not override the Kafka default: %s", msg)
	}
	env["HOOKBRIDGE_KAFKA_BROKERS"] = "127.0.0.1:3"
	if msg := tail("--count", "1", "--wait", "2s"); !strings.Contains(msg, "127.0.0.1:3") {
		t.Errorf("HOOKBRIDGE_KAFKA_BROKERS did not take precedence over dev.json: %s", msg)
	}
}

// TestTailReadsTheEnvironmentAsServe: a boolean means the same to tail as to
// serve (HOOKBRIDGE_KAFKA_TLS=1 turns TLS on), and a malformed one is an
// error rather than false.
func TestTailReadsTheEnvironmentAsServe(t *testing.T) {
	for _, v := range []string{"1", "true", "TRUE", "t"} {
		env := map[string]string{"HOOKBRIDGE_KAFKA_BROKERS": "127.0.0.1:1", "HOOKBRIDGE_KAFKA_TLS": v, "HOOKBRIDGE_DATA_DIR": t.TempDir()}
		o, code := parseTail(nil, stdio{err: &bytes.Buffer{}, env: env})
		if o == nil || !o.kafka.TLS.Enabled {
			t.Errorf("HOOKBRIDGE_KAFKA_TLS=%s: tail without TLS (exit %d)", v, code)
		}
		cfg, err := loadConfig(map[string]string{"HOOKBRIDGE_SECRETS": testSecret0, "HOOKBRIDGE_BROKER": "kafka",
			"HOOKBRIDGE_KAFKA_BROKERS": "127.0.0.1:1", "HOOKBRIDGE_KAFKA_TLS": v})
		if err != nil || !cfg.KafkaTLS {
			t.Errorf("HOOKBRIDGE_KAFKA_TLS=%s: serve without TLS (%v)", v, err)
		}
	}
	var errOut bytes.Buffer
	if o, code := parseTail(nil, stdio{err: &errOut, env: map[string]string{"HOOKBRIDGE_KAFKA_TLS": "yes please"}}); o != nil || code != 2 {
		t.Errorf("a malformed HOOKBRIDGE_KAFKA_TLS: exit %d, want 2", code)
	}
}
