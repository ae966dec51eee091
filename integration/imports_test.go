package integration

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection enforces DESIGN §2: cmd → ingest, publish → schema.
// schema is standard library only (workers import it); ingest and publish
// never import each other or cmd.
func TestImportDirection(t *testing.T) {
	const mod = "github.com/hookbridge/hookbridge/"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, mod+"schema", mod+"ingest", mod+"publish").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := map[string][]string{
		mod + "schema":  {mod},
		mod + "ingest":  {mod + "publish", mod + "cmd", mod + "integration"},
		mod + "publish": {mod + "ingest", mod + "cmd", mod + "integration"},
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
