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
