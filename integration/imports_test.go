package integration

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection enforces the package rule: cmd → ingest (and its
// dedup stores), publish → schema. schema is standard library only (workers
// import it); ingest and publish never import each other or cmd.
func TestImportDirection(t *testing.T) {
	const mod = "github.com/hookbridge/hookbridge/"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`,
		mod+"schema", mod+"ingest", mod+"ingest/dedup", mod+"publish").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := map[string][]string{
		mod + "schema":       {mod},
		mod + "ingest":       {mod + "ingest/", mod + "publish", mod + "cmd", mod + "integration"},
		mod + "ingest/dedup": {mod + "publish", mod + "cmd", mod + "integration"},
		mod + "publish":      {mod + "ingest", mod + "cmd", mod + "integration"},
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		for _, imp := range imports {
			for _, bad := range forbidden[pkg] {
				if strings.HasPrefix(imp, bad) {
					t.Errorf("%s imports %s", pkg, imp)
				}
			}
			if pkg == mod+"schema" && strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
				t.Errorf("schema must stay standard-library only, imports %s", imp)
			}
		}
	}
}

// TestDependencies: ingest, which users import into their own handlers, uses
// the OpenTelemetry API only (the SDK and exporter are the binary's), and
// gRPC is nowhere in the binary: tracing speaks OTLP over HTTP.
func TestDependencies(t *testing.T) {
	const mod = "github.com/hookbridge/hookbridge/"
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	for _, d := range deps(mod + "ingest") {
		if strings.HasPrefix(d, "go.opentelemetry.io/otel/sdk") || strings.HasPrefix(d, mod+"ingest/") ||
			strings.HasPrefix(d, "go.opentelemetry.io/proto") {
			t.Errorf("ingest depends on %s", d)
		}
	}
	grpc := func(name string) bool {
		return strings.HasPrefix(name, "google.golang.org/grpc") || strings.Contains(name, "grpc-gateway") ||
			strings.HasPrefix(name, "google.golang.org/genproto")
	}
	sawOTel := false
	for _, d := range deps(mod + "cmd/hookbridge") {
		sawOTel = sawOTel || strings.HasPrefix(d, "go.opentelemetry.io/otel/sdk/trace")
		if grpc(d) {
			t.Errorf("the binary depends on %s", d)
		}
	}
	if !sawOTel {
		t.Error("the binary does not link the OpenTelemetry SDK: this test no longer checks what it should")
	}
	// The binary TestMain built: its module list as `go version -m` shows it.
	out, err := exec.Command("go", "version", "-m", hookbridgeBin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "dep" && grpc(f[1]) {
			t.Errorf("the binary links module %s", f[1])
		}
	}
}

// TestIngestPullsInNoBrokerClient: users import ingest to verify webhooks in
// their own handlers; it must not drag in a broker or database client. The
// stores that need them live in ingest/dedup.
func TestIngestPullsInNoBrokerClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/hookbridge/hookbridge/ingest").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %q", deps)
	}
	for _, d := range deps {
		for _, bad := range []string{"github.com/nats-io/", "github.com/redis/", "github.com/segmentio/kafka-go", "github.com/hookbridge/hookbridge/publish"} {
			if strings.HasPrefix(d, bad) {
				t.Errorf("ingest depends on %s", d)
			}
		}
	}
}
