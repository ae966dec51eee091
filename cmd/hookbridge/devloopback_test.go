package main

import (
	"bytes"
	"net"
	"testing"
)

// Dev mode binds both listeners to loopback unless told otherwise.
func TestDevListensOnLoopback(t *testing.T) {
	var out bytes.Buffer
	io := stdio{out: &out, err: &out}
	environ := map[string]string{envPrefix + "DATA_DIR": t.TempDir()}
	if _, err := prepareDev(environ, io); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(environ)
	if err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]string{"LISTEN_ADDR": cfg.ListenAddr, "ADMIN_ADDR": cfg.AdminAddr, "EMBEDDED_NATS_ADDR": cfg.EmbeddedAddr} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			t.Errorf("dev mode: HOOKBRIDGE_%s = %q, want 127.0.0.1:<port>", name, addr)
		}
	}

	environ = map[string]string{envPrefix + "DATA_DIR": t.TempDir(), envPrefix + "LISTEN_ADDR": "0.0.0.0:0"}
	if _, err := prepareDev(environ, io); err != nil {
		t.Fatal(err)
	}
	if got := environ[envPrefix+"LISTEN_ADDR"]; got != "0.0.0.0:0" {
		t.Errorf("dev mode changed an address the user set: %q", got)
	}
}
