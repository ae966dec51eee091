package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/ingest"
)

// TestRoutesConfig is the configuration matrix of routes: what loads, and
// what fails start-up, every problem at once and each naming its variables.
func TestRoutesConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "staging")
	if err := os.WriteFile(file, []byte(testSecret1+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	two := func(extra map[string]string) map[string]string {
		m := map[string]string{
			"HOOKBRIDGE_ROUTES_0_NAME": "prod", "HOOKBRIDGE_ROUTES_0_PATH": "/hooks/prod", "HOOKBRIDGE_ROUTES_0_SECRETS": testSecret0,
			"HOOKBRIDGE_ROUTES_1_NAME": "staging", "HOOKBRIDGE_ROUTES_1_PATH": "/hooks/staging", "HOOKBRIDGE_ROUTES_1_SECRETS_FILE": file,
			"HOOKBRIDGE_ROUTES_1_PREFIX": "staging.openai",
		}
		for k, v := range extra {
			if v == "" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	tests := []struct {
		name    string
		environ map[string]string
		want    []string // "name path prefix secrets" per route
		wantErr []string // every one in the error
	}{
		{"single endpoint: the default route", map[string]string{"HOOKBRIDGE_SECRETS": testSecret0},
			[]string{"default /webhooks/openai openai 1"}, nil},
		{"single endpoint with its own path and prefix", map[string]string{"HOOKBRIDGE_SECRETS": testSecret0 + " " + testSecret1, "HOOKBRIDGE_PATH": "/wh", "HOOKBRIDGE_TOPIC_PREFIX": "x"},
			[]string{"default /wh x 2"}, nil},
		{"two routes, the prefix defaulting to HOOKBRIDGE_TOPIC_PREFIX", two(nil),
			[]string{"prod /hooks/prod openai 1", "staging /hooks/staging staging.openai 1"}, nil},
		{"secrets from both sources", two(map[string]string{"HOOKBRIDGE_ROUTES_1_SECRETS": testSecret0}),
			[]string{"prod /hooks/prod openai 1", "staging /hooks/staging staging.openai 2"}, nil},
		{"same path", two(map[string]string{"HOOKBRIDGE_ROUTES_1_PATH": "/hooks/prod"}), nil,
			[]string{"HOOKBRIDGE_ROUTES_1_PATH", "also the path of HOOKBRIDGE_ROUTES_0_PATH"}},
		{"same name", two(map[string]string{"HOOKBRIDGE_ROUTES_1_NAME": "prod"}), nil,
			[]string{"HOOKBRIDGE_ROUTES_1_NAME", "also the name of HOOKBRIDGE_ROUTES_0_NAME"}},
		{"no path, no secret, bad name and prefix, all at once", two(map[string]string{
			"HOOKBRIDGE_ROUTES_0_PATH": "", "HOOKBRIDGE_ROUTES_1_SECRETS_FILE": "", "HOOKBRIDGE_ROUTES_1_NAME": "Staging!",
			"HOOKBRIDGE_ROUTES_1_PREFIX": "staging.>"}), nil,
			[]string{"HOOKBRIDGE_ROUTES_0_PATH", "HOOKBRIDGE_ROUTES_1_SECRETS: no signing secret", "HOOKBRIDGE_ROUTES_1_NAME", "HOOKBRIDGE_ROUTES_1_PREFIX"}},
		{"a bad secret names its variable", two(map[string]string{"HOOKBRIDGE_ROUTES_0_SECRETS": "whsec_short"}), nil,
			[]string{"HOOKBRIDGE_ROUTES_0_SECRETS"}},
		{"an unreadable secrets file", two(map[string]string{"HOOKBRIDGE_ROUTES_1_SECRETS_FILE": file + ".missing"}), nil,
			[]string{"HOOKBRIDGE_ROUTES_1_SECRETS_FILE"}},
		{"single-endpoint variables beside routes", two(map[string]string{"HOOKBRIDGE_SECRETS": testSecret0, "HOOKBRIDGE_PATH": "/wh"}), nil,
			[]string{"HOOKBRIDGE_ROUTES_0_NAME", "HOOKBRIDGE_PATH, HOOKBRIDGE_SECRETS"}},
		{"a gap in the numbering", two(map[string]string{"HOOKBRIDGE_ROUTES_3_NAME": "research"}), nil,
			[]string{"HOOKBRIDGE_ROUTES_3_NAME", "without gaps"}},
		{"routes from 1", map[string]string{"HOOKBRIDGE_ROUTES_1_NAME": "a", "HOOKBRIDGE_ROUTES_1_PATH": "/a", "HOOKBRIDGE_ROUTES_1_SECRETS": testSecret0}, nil,
			[]string{"HOOKBRIDGE_ROUTES_1_NAME", "HOOKBRIDGE_ROUTES_1_PATH", "no HOOKBRIDGE_ROUTES_0_"}},
		{"a misspelt field", two(map[string]string{"HOOKBRIDGE_ROUTES_0_SECRET": testSecret0}), nil,
			[]string{"HOOKBRIDGE_ROUTES_0_SECRET:"}},
		{"route problems beside others", two(map[string]string{"HOOKBRIDGE_ROUTES_1_PATH": "/hooks/prod", "HOOKBRIDGE_BROKER": "rabbit"}), nil,
			[]string{"HOOKBRIDGE_ROUTES_1_PATH", "HOOKBRIDGE_BROKER"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(tt.environ)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("loaded %+v, want an error", cfg.routes)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error lacks %q:\n%v", s, err)
					}
				}
				for _, s := range []string{testSecret0, testSecret1} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error shows a secret:\n%v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range cfg.routes {
				got = append(got, strings.Join([]string{r.name, r.path, r.prefix, strconv.Itoa(len(r.secrets))}, " "))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("routes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// routesEnv is two routes, each with its own secret, path and prefix.
func routesEnv(listen string) map[string]string {
	return map[string]string{
		"HOOKBRIDGE_LISTEN_ADDR":   listen,
		"HOOKBRIDGE_ROUTES_0_NAME": "prod", "HOOKBRIDGE_ROUTES_0_PATH": "/hooks/prod", "HOOKBRIDGE_ROUTES_0_SECRETS": testSecret0,
		"HOOKBRIDGE_ROUTES_1_NAME": "staging", "HOOKBRIDGE_ROUTES_1_PATH": "/hooks/staging", "HOOKBRIDGE_ROUTES_1_SECRETS": testSecret1,
		"HOOKBRIDGE_ROUTES_1_PREFIX": "staging.openai",
	}
}

// TestCommandsFollowRoutes: send signs with the route's secret and posts to
// its path, verify checks with the route's secrets, tail reads its prefix.
func TestCommandsFollowRoutes(t *testing.T) {
	type hit struct{ path, verifiedBy string }
	hits := make(chan hit, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h := hit{path: r.URL.Path}
		for name, s := range map[string]string{"prod": testSecret0, "staging": testSecret1} {
			sec, _ := ingest.ParseSecret(s)
			v, _ := ingest.NewVerifier([]ingest.Secret{sec})
			if v.Verify(body, r.Header) == nil {
				h.verifiedBy = name
			}
		}
		hits <- h
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"published"}`))
	}))
	defer srv.Close()
	env := routesEnv(strings.TrimPrefix(srv.URL, "http://"))
	for _, tt := range []struct{ args, want []string }{
		{[]string{"--route", "staging"}, []string{"/hooks/staging", "staging"}},
		{nil, []string{"/hooks/prod", "prod"}}, // the first route
	} {
		var out, errOut bytes.Buffer
		if code := runSend(append(tt.args, "--quiet"), stdio{out: &out, err: &errOut, env: env}); code != 0 {
			t.Fatalf("send %q: exit %d: %s", tt.args, code, errOut.String())
		}
		if h := <-hits; h.path != tt.want[0] || h.verifiedBy != tt.want[1] {
			t.Errorf("send %q: posted to %s, verified by %q's secret; want %q", tt.args, h.path, h.verifiedBy, tt.want)
		}
	}
	var errOut bytes.Buffer
	if code := runSend([]string{"--route", "research"}, stdio{out: io.Discard, err: &errOut, env: env}); code != 2 || !strings.Contains(errOut.String(), "prod, staging") {
		t.Errorf("send to an unknown route: exit %d, %q", code, errOut.String())
	}

	body := []byte(`{"id":"evt_1","object":"event","created_at":1,"type":"batch.completed","data":{"id":"b"}}`)
	req := signedRequest(t, "http://x/", testSecret1, "wh_1", time.Now().Unix(), body)
	args := []string{"--body-file", writeTemp(t, body)}
	for k := range req.Header {
		args = append(args, "-H", k+": "+req.Header.Get(k))
	}
	for route, want := range map[string]int{"staging": 0, "prod": 1} {
		var out bytes.Buffer
		code := runVerify(append([]string{"--route", route}, args...), stdio{in: strings.NewReader(""), out: &out, err: io.Discard, env: env})
		if code != want {
			t.Errorf("verify --route %s: exit %d (%s), want %d", route, code, out.String(), want)
		}
	}

	o, code := parseTail([]string{"--route", "staging"}, stdio{err: io.Discard, env: env})
	if o == nil || len(o.filters) != 1 || o.filters[0] != "staging.openai.>" || o.kafka.Prefix != "staging.openai" {
		t.Errorf("tail --route staging: exit %d, options %+v", code, o)
	}
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
