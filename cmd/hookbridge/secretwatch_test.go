package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/ingest"
)

// secretsWatchFixture is a verifier configured from a secrets file only.
func secretsWatchFixture(t *testing.T, initial string) (*secretReloader, *ingest.Verifier, *metrics, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secrets")
	writeAtomic(t, path, []byte(initial))
	cfg, err := loadConfig(map[string]string{"HOOKBRIDGE_SECRETS_FILE": path})
	if err != nil {
		t.Fatal(err)
	}
	v, err := ingest.NewVerifier(cfg.secrets)
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics("test", "nats")
	return newSecretReloader(cfg, map[string]string{}, v, m, zerolog.Nop()), v, m, path
}

func verifiesAt(t *testing.T, v *ingest.Verifier, secret string) int {
	t.Helper()
	req := signedRequest(t, "http://x/", secret, "wh_x", time.Now().Unix(), []byte(`{}`))
	i, err := v.VerifyIndex([]byte(`{}`), req.Header)
	if err != nil {
		return -1
	}
	return i
}

func TestSecretFileRotation(t *testing.T) {
	r, v, m, path := secretsWatchFixture(t, testSecret0+"\n")
	if r.watch.check(false) {
		t.Errorf("first poll reloaded an unchanged file")
	}
	if got := verifiesAt(t, v, testSecret0); got != 0 {
		t.Fatalf("old secret at %d", got)
	}

	writeAtomic(t, path, []byte(testSecret0+"\n"+testSecret1+"\n"))
	if !r.watch.check(false) {
		t.Fatal("change not noticed")
	}
	if a, b := verifiesAt(t, v, testSecret0), verifiesAt(t, v, testSecret1); a != 0 || b != 1 {
		t.Fatalf("during rotation: positions %d, %d, want 0, 1", a, b)
	}
	if g := gather(t, m)["hookbridge_secrets_loaded"]; g != 2 {
		t.Errorf("secrets_loaded = %v, want 2", g)
	}

	// An invalid file keeps the last good set; the error counts once, not
	// once per poll.
	writeAtomic(t, path, []byte("whsec_c2hvcnQ=\n"))
	r.watch.check(false)
	r.watch.check(false)
	if a, b := verifiesAt(t, v, testSecret0), verifiesAt(t, v, testSecret1); a != 0 || b != 1 {
		t.Fatalf("after an invalid file: positions %d, %d, want 0, 1", a, b)
	}
	// An empty file and a missing one are rejected too.
	writeAtomic(t, path, nil)
	r.watch.check(false)
	os.Remove(path)
	r.watch.check(false)
	if got := gather(t, m)["hookbridge_secret_reload_errors_total"]; got != 3 {
		t.Errorf("reload errors = %v, want 3", got)
	}
	if verifiesAt(t, v, testSecret1) != 1 {
		t.Fatal("lost the last good set")
	}

	writeAtomic(t, path, []byte(testSecret1))
	r.watch.check(false)
	if a, b := verifiesAt(t, v, testSecret0), verifiesAt(t, v, testSecret1); a != -1 || b != 0 {
		t.Fatalf("after rotation: positions %d, %d, want -1, 0", a, b)
	}
	if g := gather(t, m)["hookbridge_secrets_loaded"]; g != 1 {
		t.Errorf("secrets_loaded = %v, want 1", g)
	}
}

// TestSecretFileSymlinkSwap: Kubernetes updates a Secret volume by pointing
// the ..data symlink at a new directory; the file's path stays the same.
func TestSecretFileSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"v1", "v2"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeAtomic(t, filepath.Join(dir, "v1", "secrets"), []byte(testSecret0))
	writeAtomic(t, filepath.Join(dir, "v2", "secrets"), []byte(testSecret1))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("v1", filepath.Join(dir, "..data")))
	must(os.Symlink("..data/secrets", filepath.Join(dir, "secrets")))

	cfg, err := loadConfig(map[string]string{"HOOKBRIDGE_SECRETS_FILE": filepath.Join(dir, "secrets")})
	must(err)
	v, err := ingest.NewVerifier(cfg.secrets)
	must(err)
	r := newSecretReloader(cfg, map[string]string{}, v, newMetrics("test", "nats"), zerolog.Nop())

	must(os.Symlink("v2", filepath.Join(dir, "..data_tmp")))
	must(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	if !r.watch.check(false) {
		t.Fatal("symlink swap not noticed")
	}
	if got := verifiesAt(t, v, testSecret1); got != 0 {
		t.Fatalf("new secret at %d, want 0", got)
	}
}

// TestSecretReloadForced: SIGHUP reloads even when nothing changed, and
// environment secrets come before the file's.
func TestSecretReloadForced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets")
	writeAtomic(t, path, []byte(testSecret1))
	environ := map[string]string{"HOOKBRIDGE_SECRETS": testSecret0, "HOOKBRIDGE_SECRETS_FILE": path}
	cfg, err := loadConfig(environ)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := ingest.NewVerifier(cfg.secrets)
	r := newSecretReloader(cfg, environ, v, newMetrics("test", "nats"), zerolog.Nop())
	r.reload()
	if a, b := verifiesAt(t, v, testSecret0), verifiesAt(t, v, testSecret1); a != 0 || b != 1 {
		t.Fatalf("positions %d, %d, want 0, 1", a, b)
	}
}
