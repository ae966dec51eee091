package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/schema"
)

// fileWatch reloads something built from a few small files (the secrets file,
// a TLS certificate and key) when their content changes, and on demand
// (SIGHUP). It polls: every interval it reads the files again and compares a
// hash of their content. Polling by path, rather than watching inodes, follows
// Kubernetes Secret mounts, which swap a symlink (..data) to a new directory
// instead of writing the file in place; and the files are small enough that
// reading them each second costs nothing.
//
// apply is called with the files' contents, in the order of paths. If it
// fails, the previous state stays in use and the failure is reported once per
// distinct content (an invalid file does not log every second).
type fileWatch struct {
	name   string
	paths  []string
	apply  func(contents [][]byte) error
	failed func(err error) // called after a rejected reload (metrics)
	log    zerolog.Logger

	mu   sync.Mutex
	seen [sha256.Size]byte // content hash last applied or rejected
}

// settleDelay is how long a changed file must stay unchanged before it is
// applied: a writer that truncates then writes (not Kubernetes, but an editor
// or `echo >`) could otherwise be caught half-way.
const settleDelay = 50 * time.Millisecond

func newFileWatch(name string, paths []string, apply func([][]byte) error, failed func(error), log zerolog.Logger) *fileWatch {
	w := &fileWatch{name: name, paths: paths, apply: apply, failed: failed, log: log}
	// The state at start-up was applied by the caller; remember its content so
	// that the first poll is not a spurious reload.
	if contents, err := w.read(); err == nil {
		w.seen = hashContents(contents)
	}
	return w
}

func (w *fileWatch) read() ([][]byte, error) {
	out := make([][]byte, len(w.paths))
	for i, p := range w.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func hashContents(contents [][]byte) [sha256.Size]byte {
	h := sha256.New()
	for _, c := range contents {
		fmt.Fprintf(h, "%d\n", len(c))
		h.Write(c)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// check reloads if the content changed since the last reload, or always when
// force is set (SIGHUP). It reports whether a reload was attempted.
func (w *fileWatch) check(force bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	contents, err := w.read()
	if err != nil {
		// A missing or unreadable file is reported once per distinct error;
		// the zero hash never equals a real content hash.
		sum := sha256.Sum256([]byte("error: " + err.Error()))
		if !force && sum == w.seen {
			return false
		}
		w.seen = sum
		w.reject(err)
		return true
	}
	sum := hashContents(contents)
	if !force && sum == w.seen {
		return false
	}
	if !force {
		time.Sleep(settleDelay)
		again, err := w.read()
		if err != nil || hashContents(again) != sum {
			return false // still being written: look again at the next tick
		}
	}
	w.seen = sum
	if err := w.apply(contents); err != nil {
		w.reject(err)
		return true
	}
	return true
}

func (w *fileWatch) reject(err error) {
	w.log.Error().Err(err).Str("reload", w.name).Msg(w.name + " reload failed; keeping the previous " + w.name)
	if w.failed != nil {
		w.failed(err)
	}
}

// run polls every interval until ctx is done; interval 0 disables polling.
func (w *fileWatch) run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.check(false)
		}
	}
}

// secretReloader applies one route's secrets (HOOKBRIDGE_SECRETS(_FILE),
// or HOOKBRIDGE_ROUTES_<n>_SECRETS(_FILE)) to the route's verifier. Each
// route has its own: a bad file for one route leaves the others alone.
type secretReloader struct {
	route    routeConfig
	verifier *ingest.Verifier
	metrics  *metrics
	// loaded is told how many secrets are in use after every reload.
	loaded func(n int)
	log    zerolog.Logger
	watch  *fileWatch // nil without a secrets file
}

// newSecretReloader is the reloader of the single endpoint.
func newSecretReloader(cfg *config, environ map[string]string, v *ingest.Verifier, m *metrics, log zerolog.Logger) *secretReloader {
	return newRouteSecretReloader(cfg.defaultRoute(environ), v, m, func(n int) { m.secretsLoaded.Set(float64(n)) }, log)
}

func newRouteSecretReloader(rc routeConfig, v *ingest.Verifier, m *metrics, loaded func(int), log zerolog.Logger) *secretReloader {
	if rc.name != "" && rc.name != schema.DefaultRoute {
		log = log.With().Str("route", rc.name).Logger()
	}
	r := &secretReloader{route: rc, verifier: v, metrics: m, loaded: loaded, log: log}
	loaded(len(rc.secrets))
	warnShortSecrets(rc.secrets, log)
	if rc.secretsFile != "" {
		r.watch = newFileWatch("secrets", []string{rc.secretsFile}, func(c [][]byte) error {
			return r.apply(c[0])
		}, func(error) { m.secretReloadErrors.Inc() }, log)
	}
	return r
}

// apply parses the route's environment secrets plus file and installs them.
// Values are never logged, only how many there are.
func (r *secretReloader) apply(file []byte) error {
	secrets, err := r.route.parse(file)
	if err == nil && len(secrets) == 0 {
		err = errors.New("no secrets found")
	}
	if err == nil {
		err = r.verifier.SetSecrets(secrets)
	}
	if err != nil {
		return err
	}
	r.loaded(len(secrets))
	r.log.Info().Int("secrets", len(secrets)).Msg("secrets reloaded")
	warnShortSecrets(secrets, r.log)
	return nil
}

// reload re-reads the secrets now (SIGHUP).
func (r *secretReloader) reload() {
	if r.watch != nil {
		r.watch.check(true)
		return
	}
	// Only environment secrets: they cannot change in a running process, but
	// a SIGHUP still re-validates and logs what is in use.
	if err := r.apply(nil); err != nil {
		r.log.Error().Err(err).Msg("secrets reload failed; keeping the previous secrets")
		r.metrics.secretReloadErrors.Inc()
	}
}

// run polls the secrets file until ctx is done.
func (r *secretReloader) run(ctx context.Context, interval time.Duration) {
	if r.watch != nil {
		r.watch.run(ctx, interval)
	}
}
