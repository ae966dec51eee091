package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// readiness answers /readyz: not shutting down and every check passing.
//
// The checks run with their own deadline, detached from the probe that asked:
// a client that hangs up must not turn the answer into "context canceled" for
// everyone. Concurrent probes share one evaluation, and a result is reused
// for readinessCacheFor, so probes from many kubelets or load balancers, or
// from anyone who reaches the admin port, cannot load the broker. A result
// that is a cancellation or a timeout is answered but never reused: the next
// probe asks again.
type readiness struct {
	checks   map[string]checker
	names    []string
	shutting *atomic.Bool
	timeout  time.Duration // for one evaluation of all checks
	// routes are listed by /readyz?verbose.
	routes []string

	mu      sync.Mutex
	at      time.Time
	results map[string]error // the last reusable result, nil if none
	running *evaluation      // the evaluation in progress, shared
}

// evaluation is one run of every check; done is closed once results is set.
type evaluation struct {
	done    chan struct{}
	results map[string]error
}

const (
	readinessCacheFor = time.Second
	readinessTimeout  = 2 * time.Second
)

// errProbeGone is what a probe whose client hung up gets; it never reaches
// another probe.
var errProbeGone = errors.New("the probe ended before the checks did")

func newReadiness(checks map[string]checker, shutting *atomic.Bool) *readiness {
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	return &readiness{checks: checks, names: names, shutting: shutting, timeout: readinessTimeout}
}

// evaluate returns the current result of every check, waiting at most until
// ctx (the probe's) is done.
func (r *readiness) evaluate(ctx context.Context) map[string]error {
	r.mu.Lock()
	if r.results != nil && time.Since(r.at) < readinessCacheFor {
		res := r.results
		r.mu.Unlock()
		return res
	}
	ev := r.running
	if ev == nil {
		ev = &evaluation{done: make(chan struct{})}
		r.running = ev
		go r.run(ev)
	}
	r.mu.Unlock()
	select {
	case <-ev.done:
		return ev.results
	case <-ctx.Done():
		res := make(map[string]error, len(r.names))
		for _, n := range r.names {
			res[n] = errProbeGone
		}
		return res
	}
}

// run evaluates every check concurrently under one deadline of its own. A
// check that ignores the deadline is reported as timed out shortly after it
// and left to finish on its own, so that an evaluation always ends.
func (r *readiness) run(ev *evaluation) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	type result struct {
		name string
		err  error
	}
	ch := make(chan result, len(r.names))
	for _, n := range r.names {
		go func() { ch <- result{n, r.checks[n].Check(ctx)} }()
	}
	res := make(map[string]error, len(r.names))
	late := time.NewTimer(r.timeout + 100*time.Millisecond)
	defer late.Stop()
collect:
	for range r.names {
		select {
		case x := <-ch:
			res[x.name] = x.err
		case <-late.C:
			for _, n := range r.names {
				if _, ok := res[n]; !ok {
					res[n] = fmt.Errorf("no answer within %s: %w", r.timeout, context.DeadlineExceeded)
				}
			}
			break collect
		}
	}
	reusable := true
	for _, err := range res {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			reusable = false
		}
	}
	r.mu.Lock()
	r.running = nil
	if reusable {
		r.results, r.at = res, time.Now()
	} else {
		r.results = nil
	}
	r.mu.Unlock()
	ev.results = res
	close(ev.done)
}
