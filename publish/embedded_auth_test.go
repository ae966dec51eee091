package publish

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:4222": true, "127.1.2.3:0": true, "[::1]:4222": true, "localhost:4222": true, "LOCALHOST:1": true,
		"0.0.0.0:4222": false, ":4222": false, "[::]:4222": false, "10.0.0.1:4222": false, "nats.internal:4222": false,
		"127.0.0.1": false, "": false,
	} {
		if got := LoopbackAddr(addr); got != want {
			t.Errorf("LoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}

// Beyond loopback the server never starts without authentication, and the
// error says what to set.
func TestEmbeddedRefusesUnauthenticatedNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0"} {
		e, err := StartEmbedded(EmbeddedConfig{Addr: addr, DataDir: t.TempDir()}, testLog(t))
		if err == nil {
			e.Shutdown()
			t.Fatalf("%s: started without authentication", addr)
		}
		if !errors.Is(err, ErrEmbeddedNoAuth) || !strings.Contains(err.Error(), "HOOKBRIDGE_EMBEDDED_NATS_TOKEN") {
			t.Errorf("%s: %v, want ErrEmbeddedNoAuth naming HOOKBRIDGE_EMBEDDED_NATS_TOKEN", addr, err)
		}
	}
	_, err := StartEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Token: "t", NKeySeedFile: "f"}, testLog(t))
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("token and nkey together: %v", err)
	}
}

// With a token or an nkey, clients without it are refused, clients with it
// and the bridge's in-process connection (JetStream included) get in.
func TestEmbeddedAuthentication(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "s3cr3t-embedded-token"
	for _, c := range []struct {
		name string
		cfg  EmbeddedConfig
		with nats.Option
	}{
		{"token", EmbeddedConfig{Token: token}, nats.Token(token)},
		{"nkey", EmbeddedConfig{NKeySeedFile: seedFile}, mustNkeyOption(t, seedFile)},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Addr, cfg.DataDir = "127.0.0.1:0", t.TempDir()
			e, err := StartEmbedded(cfg, testLog(t))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Shutdown()
			if strings.Contains(e.ClientURL(), token) {
				t.Errorf("ClientURL %q carries the token", e.ClientURL())
			}
			if nc, err := nats.Connect(e.ClientURL(), nats.Timeout(2*time.Second)); err == nil {
				nc.Close()
				t.Fatal("a client without credentials was let in")
			}
			if nc, err := nats.Connect(e.ClientURL(), nats.Token("wrong"), nats.Timeout(2*time.Second)); err == nil {
				nc.Close()
				t.Fatal("a client with a wrong token was let in")
			}
			worker, err := nats.Connect(e.ClientURL(), c.with, nats.Timeout(2*time.Second))
			if err != nil {
				t.Fatalf("a client with the credentials: %v", err)
			}
			worker.Close()
			nc, err := e.Connect(testLog(t))
			if err != nil {
				t.Fatalf("in-process connection: %v", err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.AccountInfo(testCtx(t)); err != nil {
				t.Fatalf("JetStream over the authenticated in-process connection: %v", err)
			}
		})
	}
}

func mustNkeyOption(t *testing.T, file string) nats.Option {
	t.Helper()
	o, err := nats.NkeyOptionFromSeed(file)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
