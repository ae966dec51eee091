package integration

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/schema"
)

// TestOps_SecretRotationUnderLoad rotates the signing secret through
// HOOKBRIDGE_SECRETS_FILE while senders keep delivering, as an operator
// following OpenAI's rotation would: A → A,B → (senders switch to B) → B,
// then an invalid file, which must leave B in use. No valid delivery may
// fail, and the secret-position metric shows which secret matched.
func TestOps_SecretRotationUnderLoad(t *testing.T) {
	p := startNATS(t)
	env, _, stream := natsEnv(t, p.URL())
	secretA, secretB := newOpsSecret(t), newOpsSecret(t)
	file := filepath.Join(t.TempDir(), "secrets")
	opsWriteFile(t, file, []byte(secretA.Text+"\n"))
	env["HOOKBRIDGE_SECRETS"] = "" // the file only
	env["HOOKBRIDGE_SECRETS_FILE"] = file
	env["HOOKBRIDGE_RELOAD_INTERVAL"] = "200ms"
	b := startBridge(t, env)

	const (
		matches0 = `hookbridge_signature_secret_matches_total{secret="0"}`
		matches1 = `hookbridge_signature_secret_matches_total{secret="1"}`
		loaded   = `hookbridge_secrets_loaded`
		errs     = `hookbridge_secret_reload_errors_total`
	)

	var (
		current  atomic.Pointer[opsSecret]
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		acked    []string
		failures []string
		sent     atomic.Int64
	)
	current.Store(&secretA)
	body := mustSample(t, schema.ResponseCompleted)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load() && n < 5000; n++ {
				d := delivery{ID: fmt.Sprintf("%s_%d_%d", newID(), w, n), Body: body}
				r := opsPost(client, b.URL, *current.Load(), d, nil)
				sent.Add(1)
				mu.Lock()
				if r.Err == nil && r.Status == 200 && r.Code == "published" {
					acked = append(acked, d.ID)
				} else {
					failures = append(failures, fmt.Sprintf("%s: %d %q %v", d.ID, r.Status, r.Code, r.Err))
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond) // a steady load, not a benchmark
			}
		}()
	}
	finish := func() {
		stop.Store(true)
		wg.Wait()
	}
	defer finish()
	step := func(what, series string, cond func(float64) bool) {
		t.Helper()
		if !opsWaitMetric(t, b.AdminURL, series, 15*time.Second, cond) {
			finish()
			t.Fatalf("%s: %s = %v\n%s", what, series, opsMetric(t, b.AdminURL, series), b.logs)
		}
	}

	step("A verifies at position 0", matches0, func(v float64) bool { return v >= 20 })

	opsWriteFile(t, file, []byte(secretA.Text+"\n"+secretB.Text+"\n"))
	step("A,B loaded", loaded, func(v float64) bool { return v == 2 })
	current.Store(&secretB)
	step("B verifies at position 1", matches1, func(v float64) bool { return v >= 20 })

	opsWriteFile(t, file, []byte(secretB.Text+"\n"))
	step("B alone loaded", loaded, func(v float64) bool { return v == 1 })
	base := opsMetric(t, b.AdminURL, matches0)
	step("B verifies at position 0", matches0, func(v float64) bool { return v >= base+20 })

	opsWriteFile(t, file, []byte("whsec_not-a-secret\n"))
	step("the invalid file is rejected", errs, func(v float64) bool { return v == 1 })
	base = opsMetric(t, b.AdminURL, matches0)
	step("B still verifies after the invalid file", matches0, func(v float64) bool { return v >= base+20 })
	if v := opsMetric(t, b.AdminURL, loaded); v != 1 {
		t.Errorf("%s = %v after the invalid file, want 1", loaded, v)
	}

	// The old secret is no longer accepted.
	if r := opsPost(client, b.URL, secretA, delivery{ID: newID(), Body: body}, nil); r.Status != 401 {
		t.Errorf("secret A after rotation: %d %q, want 401", r.Status, r.Code)
	}
	finish()

	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("%d of %d valid deliveries failed during rotation, first: %s\n%s", len(failures), sent.Load(), failures[0], b.logs)
	}
	per := countByWebhookID(readStream(t, p.URL(), stream))
	for _, id := range acked {
		if per[id] != 1 {
			t.Errorf("%s stored %d times, want 1", id, per[id])
		}
	}
	t.Logf("%d deliveries, all acknowledged, across 3 reloads and 1 rejected file", len(acked))
	if logs := b.logs.String(); strings.Contains(logs, secretA.Text[6:]) || strings.Contains(logs, secretB.Text[6:]) {
		t.Errorf("a secret value was logged")
	}
}
