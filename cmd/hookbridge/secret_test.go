package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hookbridge/hookbridge/ingest"
)

func runSecretTest(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, stdio{in: strings.NewReader(""), out: &out, err: &errOut, env: nil})
	return code, out.String(), errOut.String()
}

// TestSecretNew: every secret printed is one the bridge accepts and that
// signs, with the requested length, and no two are alike.
func TestSecretNew(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range []struct {
		args  []string
		bytes int
	}{
		{[]string{"secret", "new"}, 32},
		{[]string{"secret", "new"}, 32},
		{[]string{"secret", "new", "--bytes", "24"}, 24},
		{[]string{"secret", "new", "--bytes=64"}, 64},
	} {
		code, out, errOut := runSecretTest(tc.args...)
		if code != 0 || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", tc.args, code, errOut)
		}
		s := strings.TrimSuffix(out, "\n")
		if strings.Contains(s, "\n") || !strings.HasPrefix(s, "whsec_") {
			t.Fatalf("%v: output %q, want one whsec_ line", tc.args, out)
		}
		if seen[s] {
			t.Fatalf("%v: %s printed twice", tc.args, s)
		}
		seen[s] = true
		if _, err := ingest.ParseSecret(s); err != nil {
			t.Errorf("%v: the bridge would refuse %s: %v", tc.args, s, err)
		}
		parsed, err := ingest.ParseSecret(s)
		key, _ := parsed.HMACKey()
		if err != nil || len(key) != tc.bytes {
			t.Errorf("%v: key of %d bytes (%v), want %d", tc.args, len(key), err, tc.bytes)
		}
	}
}

func TestSecretUsage(t *testing.T) {
	for _, args := range [][]string{
		{"secret"},
		{"secret", "old"},
		{"secret", "new", "extra"},
		{"secret", "new", "--bytes", "23"},
		{"secret", "new", "--bytes", "65"},
	} {
		code, out, errOut := runSecretTest(args...)
		if code != 2 || out != "" || errOut == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2, nothing on stdout, a message", args, code, out, errOut)
		}
	}
	if code, out, _ := runSecretTest("secret", "--help"); code != 0 || !strings.Contains(out, "secret new") {
		t.Errorf("secret --help: exit %d, %q", code, out)
	}
}
