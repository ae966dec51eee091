package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
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
