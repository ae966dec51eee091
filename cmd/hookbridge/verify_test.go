package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookbridge/hookbridge/ingest"
)

// The vector from openai-go's webhook tests.
const (
	tvSecret = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="
	tvID     = "wh_685c059ae39c8190af8c71ed1022a24d"
	tvTS     = "1750861210"
	tvSig    = "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY="
	tvBody   = `{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": 1750861210, "type": "response.completed", "data": {"id": "resp_123"}}`
	tvValid  = "valid: type=response.completed id=evt_685c059ae3a481909bdc86819b066fb6 webhook-id=wh_685c059ae39c8190af8c71ed1022a24d secret=#1\n"
	// A different, well-formed secret.
	otherSecret = "whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC1vdGhlcg=="
)

func runVerifyTest(t *testing.T, stdin string, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runVerify(args, stdio{
		in:  strings.NewReader(stdin),
		out: &out,
		err: &errOut,
		env: env,
	})
	// Whatever happened, no secret and no signature was printed.
	for _, s := range []string{tvSecret, tvSig[3:], strings.TrimPrefix(tvSecret, "whsec_"), strings.TrimPrefix(otherSecret, "whsec_"), "not-a-valid"} {
		if strings.Contains(out.String()+errOut.String(), s) {
			t.Errorf("output contains secret or signature %q:\n%s%s", s, &out, &errOut)
		}
	}
	return code, out.String(), errOut.String()
}

func vecArgs(extra ...string) []string {
	return append([]string{
		"-H", "webhook-id: " + tvID,
		"-H", "webhook-timestamp: " + tvTS,
		"-H", "webhook-signature: " + tvSig,
		"--now", tvTS,
	}, extra...)
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyCommandValid(t *testing.T) {
	bodyFile := writeFile(t, tvBody)
	notJSON := "hello"
	sec, err := ingest.ParseSecret(tvSecret)
	if err != nil {
		t.Fatal(err)
	}
	notJSONSig, err := ingest.Sign(sec, tvID, tvTS, []byte(notJSON))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"stdin", tvBody, vecArgs("--secret", tvSecret), tvValid},
		{"stdin as -", tvBody, vecArgs("--secret", tvSecret, "--body-file", "-"), tvValid},
		{"body file", "", vecArgs("--secret", tvSecret, "--body-file", bodyFile), tvValid},
		{"odd-case names and spacing", tvBody, []string{"--secret", tvSecret, "--now", tvTS,
			"-H", "WEBHOOK-ID:" + tvID, "-H", "Webhook-Timestamp:   " + tvTS + "\t", "-H", "webhook-SIGNATURE: " + tvSig}, tvValid},
		{"second --secret matches", tvBody, vecArgs("--secret", otherSecret, "--secret", tvSecret), strings.Replace(tvValid, "#1", "#2", 1)},
		{"list in one --secret", tvBody, vecArgs("--secret", otherSecret+", "+tvSecret), strings.Replace(tvValid, "#1", "#2", 1)},
		{"exactly the tolerance late", tvBody, vecArgs("--secret", tvSecret, "--now", "1750861510"), tvValid},
		{"wider tolerance", tvBody, vecArgs("--secret", tvSecret, "--now", "1750861810", "--tolerance", "10m"), tvValid},
		{"verified but dead-lettered", notJSON, []string{"--secret", tvSecret, "--now", tvTS,
			"-H", "webhook-id: " + tvID, "-H", "webhook-timestamp: " + tvTS, "-H", "webhook-signature: " + notJSONSig},
			"valid: webhook-id=" + tvID + " secret=#1, but the body is not a routable event and would be dead-lettered: not_json ("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runVerifyTest(t, tc.stdin, nil, tc.args...)
			if code != 0 || !strings.HasPrefix(out, tc.want) || !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0, one line starting %q", code, out, errOut, tc.want)
			}
		})
	}
	t.Run("dispatched by run", func(t *testing.T) {
		var out bytes.Buffer
		code := run(append([]string{"verify"}, vecArgs("--secret", tvSecret)...), stdio{strings.NewReader(tvBody), &out, &bytes.Buffer{}, nil})
		if code != 0 || out.String() != tvValid {
			t.Fatalf("exit %d, %q", code, &out)
		}
	})
}

func TestVerifyCommandInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		args []string
		want string
		hint string
	}{
		{"missing signature", tvBody, []string{"-H", "webhook-id: " + tvID, "-H", "webhook-timestamp: " + tvTS}, "invalid: missing_signature: missing required webhook-signature header\n", "-H 'name: value'"},
		{"empty signature", tvBody, []string{"-H", "webhook-signature:", "-H", "webhook-id: " + tvID, "-H", "webhook-timestamp: " + tvTS}, "invalid: missing_signature: missing required webhook-signature header\n", ""},
		{"missing timestamp", tvBody, []string{"-H", "webhook-id: " + tvID, "-H", "webhook-signature: " + tvSig}, "invalid: missing_timestamp: missing required webhook-timestamp header\n", ""},
		{"missing id", tvBody, []string{"-H", "webhook-timestamp: " + tvTS, "-H", "webhook-signature: " + tvSig}, "invalid: missing_id: missing required webhook-id header\n", ""},
		{"bad timestamp", tvBody, []string{"-H", "webhook-id: " + tvID, "-H", "webhook-timestamp: 1750861210.0", "-H", "webhook-signature: " + tvSig}, "invalid: bad_timestamp: invalid webhook timestamp format\n", "whole Unix seconds"},
		{"too old", tvBody, vecArgs("--now", "1750861511"), "invalid: too_old: webhook timestamp is too old\n", ""},
		{"too old without --now", tvBody, []string{"-H", "webhook-id: " + tvID, "-H", "webhook-timestamp: " + tvTS, "-H", "webhook-signature: " + tvSig}, "invalid: too_old: webhook timestamp is too old\n", "--now 1750861210"},
		{"too new", tvBody, vecArgs("--now", "1750860909"), "invalid: too_new: webhook timestamp is too new\n", ""},
		{"too new, zero tolerance", tvBody, vecArgs("--now", "1750861209", "--tolerance", "999ms"), "invalid: too_new: webhook timestamp is too new\n", ""},
		{"no match: trailing newline", tvBody + "\n", vecArgs(), "invalid: no_match: webhook signature verification failed\n", "byte-for-byte"},
		{"no match: other secret", tvBody, vecArgs("--secret", otherSecret), "invalid: no_match: webhook signature verification failed\n", ""},
		{"no match: prefix stripped by user", tvBody, vecArgs("--secret", strings.TrimPrefix(tvSecret, "whsec_")), "invalid: no_match: webhook signature verification failed\n", "secret #1 has no whsec_ prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if !strings.Contains(strings.Join(args, " "), "--secret") {
				args = append([]string{"--secret", tvSecret}, args...)
			}
			code, out, errOut := runVerifyTest(t, tc.body, nil, args...)
			if code != 1 || out != tc.want {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 1, %q", code, out, errOut, tc.want)
			}
			if !strings.Contains(errOut, tc.hint) {
				t.Errorf("stderr %q lacks the hint %q", errOut, tc.hint)
			}
		})
	}
}

func TestVerifyCommandUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string // in stderr
	}{
		{"no secret", nil, vecArgs(), "no secret: give --secret"},
		{"separators only in env", map[string]string{"HOOKBRIDGE_SECRETS": " , "}, vecArgs(), "HOOKBRIDGE_SECRETS:\ningest: no webhook secrets configured"},
		{"blank env is unset", map[string]string{"HOOKBRIDGE_SECRETS": " ", "OPENAI_WEBHOOK_SECRET": "\n"}, vecArgs(), "no secret: give --secret"},
		{"bad secret, value not echoed", nil, vecArgs("--secret", "whsec_not-a-valid-secret"), "--secret:\ningest: secret #1: invalid webhook secret format"},
		{"short secret in env", map[string]string{"HOOKBRIDGE_SECRETS": tvSecret + " whsec_c2hvcnQ="}, vecArgs(), "HOOKBRIDGE_SECRETS:\ningest: secret #2: invalid webhook secret: decoded secret must be at least 24 bytes"},
		{"-H without colon, value not echoed", nil, append(vecArgs("--secret", tvSecret), "-H", "webhook-signature "+tvSig), "-H #4: expected 'name: value'"},
		{"-H without name", nil, append(vecArgs("--secret", tvSecret), "-H", ": x"), "-H #4: expected 'name: value'"},
		{"-H name with space", nil, append(vecArgs("--secret", tvSecret), "-H", "webhook id: x"), "-H #4"},
		{"unknown flag", nil, vecArgs("--secret", tvSecret, "--bogus"), "flag provided but not defined: -bogus"},
		{"flag without value", nil, vecArgs("--secret"), "flag needs an argument: -secret"},
		{"bad --now", nil, vecArgs("--secret", tvSecret, "--now", "yesterday"), `--now "yesterday": expected Unix seconds`},
		{"bad --tolerance", nil, vecArgs("--secret", tvSecret, "--tolerance", "5"), "invalid value \"5\" for flag -tolerance"},
		{"negative --tolerance", nil, vecArgs("--secret", tvSecret, "--tolerance", "-1s"), "--tolerance must not be negative"},
		{"unreadable body file", nil, vecArgs("--secret", tvSecret, "--body-file", "/nonexistent/body.json"), "reading the body: open /nonexistent/body.json"},
		{"positional argument", nil, vecArgs("--secret", tvSecret, "body.json"), `unexpected argument "body.json"`},
		{"unreadable secrets file", map[string]string{"HOOKBRIDGE_SECRETS_FILE": "/nonexistent/secrets"}, vecArgs(), "HOOKBRIDGE_SECRETS_FILE: open /nonexistent/secrets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runVerifyTest(t, tvBody, tc.env, tc.args...)
			if code != 2 || out != "" || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and stderr containing %q", code, out, errOut, tc.want)
			}
		})
	}
	t.Run("help", func(t *testing.T) {
		code, out, errOut := runVerifyTest(t, "", nil, "--help")
		if code != 0 || out != "" || !strings.Contains(errOut, "Example:\n  hookbridge verify --secret") || !strings.Contains(errOut, "-body-file") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
}

func TestVerifyCommandSecretSources(t *testing.T) {
	good, bad := tvSecret, otherSecret
	goodFile, badFile := writeFile(t, good+"\n"), writeFile(t, bad+"\n")
	for _, tc := range []struct {
		name  string
		env   map[string]string
		flags []string
		want  int
	}{
		{"HOOKBRIDGE_SECRETS", map[string]string{"HOOKBRIDGE_SECRETS": good}, nil, 0},
		{"HOOKBRIDGE_SECRETS before OPENAI_WEBHOOK_SECRET", map[string]string{"HOOKBRIDGE_SECRETS": good, "OPENAI_WEBHOOK_SECRET": bad}, nil, 0},
		{"HOOKBRIDGE_SECRETS alone decides", map[string]string{"HOOKBRIDGE_SECRETS": bad, "OPENAI_WEBHOOK_SECRET": good}, nil, 1},
		{"OPENAI_WEBHOOK_SECRET", map[string]string{"OPENAI_WEBHOOK_SECRET": good}, nil, 0},
		{"the variable and the file combine, as in serve", map[string]string{"OPENAI_WEBHOOK_SECRET": bad, "HOOKBRIDGE_SECRETS_FILE": goodFile}, nil, 0},
		{"a bad variable and a bad file", map[string]string{"HOOKBRIDGE_SECRETS": bad, "HOOKBRIDGE_SECRETS_FILE": badFile}, nil, 1},
		{"file last", map[string]string{"HOOKBRIDGE_SECRETS_FILE": goodFile}, nil, 0},
		{"file with a rotation list", map[string]string{"HOOKBRIDGE_SECRETS_FILE": writeFile(t, bad+",\n"+good+"\n")}, nil, 0},
		{"--secret before everything", map[string]string{"HOOKBRIDGE_SECRETS": good, "OPENAI_WEBHOOK_SECRET": good, "HOOKBRIDGE_SECRETS_FILE": goodFile}, []string{"--secret", bad}, 1},
		{"--secret over a bad file", map[string]string{"HOOKBRIDGE_SECRETS_FILE": badFile}, []string{"--secret", good}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runVerifyTest(t, tvBody, tc.env, vecArgs(tc.flags...)...)
			if code != tc.want {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, tc.want, out, errOut)
			}
		})
	}
}
