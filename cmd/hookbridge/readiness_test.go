package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowCheck answers after delay, honouring ctx like the publishers' checks,
// and counts its calls.
type slowCheck struct {
	delay time.Duration
	calls atomic.Int32
	err   error
}

func (c *slowCheck) Check(ctx context.Context) error {
	c.calls.Add(1)
	select {
	case <-time.After(c.delay):
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func probe(t *testing.T, r *readiness, ctx context.Context) int {
	t.Helper()
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil).WithContext(ctx))
	return w.Code
}

// A probe whose client hangs up mid-evaluation neither fails the
// evaluation nor leaves a failure for the probes after it.
func TestReadinessAbortedProbe(t *testing.T) {
	var shutting atomic.Bool
	c := &slowCheck{delay: 50 * time.Millisecond}
	r := newReadiness(map[string]checker{"broker": c}, &shutting)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(5 * time.Millisecond); cancel() }()
	if code := probe(t, r, ctx); code != http.StatusServiceUnavailable {
		t.Errorf("the aborted probe itself: %d (its client is gone; anything but 200 is fine)", code)
	}
	for i := range 10 {
		if code := probe(t, r, context.Background()); code != http.StatusOK {
			t.Fatalf("probe %d after an aborted one: %d, want 200", i+1, code)
		}
	}
	if n := c.calls.Load(); n != 1 {
		t.Errorf("%d evaluations, want 1: the aborted probe's evaluation finished and was reused", n)
	}
}

// Concurrent probes share one evaluation.
func TestReadinessSingleflight(t *testing.T) {
	var shutting atomic.Bool
	c := &slowCheck{delay: 100 * time.Millisecond}
	r := newReadiness(map[string]checker{"broker": c}, &shutting)
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 50 {
		wg.Go(func() {
			if probe(t, r, context.Background()) == http.StatusOK {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 50 || c.calls.Load() != 1 {
		t.Errorf("50 concurrent probes: %d answered 200, %d evaluations; want 50 and 1", ok.Load(), c.calls.Load())
	}
}

// A timed-out evaluation is answered (503) but not reused; a failure that is
// the broker's own answer is reused for the cache period.
func TestReadinessCachesOnlyRealAnswers(t *testing.T) {
	var shutting atomic.Bool
	slow := &slowCheck{delay: time.Hour}
	r := newReadiness(map[string]checker{"broker": slow}, &shutting)
	r.timeout = 20 * time.Millisecond
	for i := range 2 {
		if code := probe(t, r, context.Background()); code != http.StatusServiceUnavailable {
			t.Fatalf("probe %d of a hanging check: %d, want 503", i+1, code)
		}
	}
	if n := slow.calls.Load(); n != 2 {
		t.Errorf("a timed-out evaluation was reused: %d evaluations for 2 probes", n)
	}

	down := &slowCheck{err: errors.New("no servers available")}
	r = newReadiness(map[string]checker{"broker": down}, &shutting)
	for range 3 {
		if code := probe(t, r, context.Background()); code != http.StatusServiceUnavailable {
			t.Fatalf("broker down: %d, want 503", code)
		}
	}
	if n := down.calls.Load(); n != 1 {
		t.Errorf("a real failure was not reused: %d evaluations for 3 probes", n)
	}
}

// ignoringCheck never returns before release, whatever its ctx says.
type ignoringCheck struct{ release chan struct{} }

func (c ignoringCheck) Check(context.Context) error { <-c.release; return nil }

// A check that ignores its deadline cannot hold readiness forever.
func TestReadinessCheckIgnoringItsDeadline(t *testing.T) {
	var shutting atomic.Bool
	c := ignoringCheck{release: make(chan struct{})}
	defer close(c.release)
	r := newReadiness(map[string]checker{"broker": c}, &shutting)
	r.timeout = 20 * time.Millisecond
	start := time.Now()
	if code := probe(t, r, context.Background()); code != http.StatusServiceUnavailable {
		t.Errorf("hung check: %d, want 503", code)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the probe waited %s for a hung check", took)
	}
}
