package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// composeFile is the part of docker-compose.yml these checks read.
type composeFile struct {
	Services map[string]struct {
		Image       string            `json:"image"`
		Build       any               `json:"build"`
		Environment map[string]string `json:"environment"`
		Healthcheck *struct {
			Test []string `json:"test"`
		} `json:"healthcheck"`
		DependsOn map[string]struct {
			Condition string `json:"condition"`
		} `json:"depends_on"`
	} `json:"services"`
}

// No Docker engine runs in CI, so `docker compose config` cannot check the
// compose file there; this test checks what a typo would break: it parses,
// every service has a healthcheck, dependencies wait for health, the bridge
// is built from the Dockerfile and probes itself, and every HOOKBRIDGE_
// variable it sets is one the README documents.
func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	for _, name := range []string{"nats", "kafka", "redis", "hookbridge"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("service %q missing", name)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range c.Services {
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("service %s has no healthcheck", name)
		}
		for dep, d := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("service %s depends on unknown %s", name, dep)
			}
			if d.Condition != "service_healthy" {
				t.Errorf("service %s waits for %s with %q, want service_healthy", name, dep, d.Condition)
			}
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, "HOOKBRIDGE_") && !regexp.MustCompile("`"+k+"`").Match(readme) {
				t.Errorf("service %s sets %s, which the README does not document", name, k)
			}
		}
	}
	hb := c.Services["hookbridge"]
	if hb.Build == nil {
		t.Error("hookbridge is not built from the Dockerfile")
	}
	if hb.Healthcheck != nil && !strings.Contains(strings.Join(hb.Healthcheck.Test, " "), "probe") {
		t.Errorf("hookbridge healthcheck %v does not use `hookbridge probe` (distroless has no shell)", hb.Healthcheck.Test)
	}
}

// TestComposeWalkthrough checks what `make up` promises: the addresses it
// writes to data/dev.json for send and tail are the ones the compose file
// publishes on the host, and the bridge can be switched between the
// compose's Kafka and NATS with HOOKBRIDGE_BROKER (make up BROKER=nats).
func TestComposeWalkthrough(t *testing.T) {
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Ports       []string          `json:"ports"`
			Environment map[string]string `json:"environment"`
			DependsOn   map[string]any    `json:"depends_on"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	published := func(service string, port string) bool {
		for _, p := range c.Services[service].Ports {
			f := strings.Split(p, ":")
			if len(f) >= 2 && f[len(f)-2] == port && f[len(f)-1] == port {
				return true
			}
		}
		return false
	}
	for _, sp := range [][2]string{{"hookbridge", "8080"}, {"hookbridge", "9090"}, {"kafka", "9092"}, {"nats", "4222"}} {
		if !published(sp[0], sp[1]) {
			t.Errorf("%s does not publish %s on the same host port, which make up's dev.json names", sp[0], sp[1])
		}
	}
	kafka := c.Services["kafka"].Environment["KAFKA_ADVERTISED_LISTENERS"]
	hb := c.Services["hookbridge"].Environment
	if !strings.Contains(kafka, "PLAINTEXT_HOST://localhost:9092") || !strings.Contains(kafka, "://"+hb["HOOKBRIDGE_KAFKA_BROKERS"]) {
		t.Errorf("Kafka advertises %q: want localhost:9092 for the host and %s for the bridge", kafka, hb["HOOKBRIDGE_KAFKA_BROKERS"])
	}
	if hb["HOOKBRIDGE_BROKER"] != "${HOOKBRIDGE_BROKER:-kafka}" || hb["HOOKBRIDGE_NATS_URL"] != "nats://nats:4222" || hb["HOOKBRIDGE_KAFKA_BROKERS"] == "" {
		t.Errorf("the bridge's broker is not switchable: BROKER %q, NATS_URL %q, KAFKA_BROKERS %q",
			hb["HOOKBRIDGE_BROKER"], hb["HOOKBRIDGE_NATS_URL"], hb["HOOKBRIDGE_KAFKA_BROKERS"])
	}
	for _, dep := range []string{"nats", "kafka", "redis"} {
		if _, ok := c.Services["hookbridge"].DependsOn[dep]; !ok {
			t.Errorf("hookbridge does not wait for %s", dep)
		}
	}

	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"webhook_url": "http://127.0.0.1:8080/webhooks/openai"`,
		`"admin_url": "http://127.0.0.1:9090"`,
		`"nats_url": "nats://127.0.0.1:4222"`,
		`"kafka_brokers": "localhost:9092"`,
		`"secret_file": "data/compose-secret"`,
		`docker compose up -d --build --wait`,
	} {
		if !strings.Contains(string(mk), want) {
			t.Errorf("the Makefile's up target lacks %s", want)
		}
	}
}
