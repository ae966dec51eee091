package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestShutdownStepsOrderedAndBounded: steps run by stage whatever the order
// they were acquired in, a step that hangs is abandoned at the deadline, and
// the steps after it still run.
func TestShutdownStepsOrderedAndBounded(t *testing.T) {
	var (
		mu  sync.Mutex
		ran []string
	)
	rec := func(name string, fn func(ctx context.Context) error) step {
		return step{name: name, fn: func(ctx context.Context) error {
			mu.Lock()
			ran = append(ran, name)
			mu.Unlock()
			if fn != nil {
				return fn(ctx)
			}
			return nil
		}}
	}
	hang := make(chan struct{})
	defer close(hang)
	steps := []step{
		withStage(rec("embedded", nil), stageEmbedded),
		withStage(rec("conn", nil), stageConn),
		withStage(rec("publisher", func(context.Context) error { <-hang; return nil }), stagePublisher), // ignores ctx
		withStage(rec("dedup", func(context.Context) error { return errors.New("boom") }), stageDedup),
		withStage(rec("admin", nil), stageAdmin),
		withStage(rec("http", func(ctx context.Context) error { return nil }), stageHTTP),
	}
	var logs strings.Builder
	start := time.Now()
	err := runSteps(start.Add(300*time.Millisecond), steps, zerolog.New(&logs))
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("shutdown took %s, far beyond its 300ms budget", took)
	}
	want := "http publisher dedup conn embedded admin"
	mu.Lock()
	got := strings.Join(ran, " ")
	mu.Unlock()
	if got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	if err == nil || !strings.Contains(err.Error(), "publisher: did not finish") || !strings.Contains(err.Error(), "dedup: boom") {
		t.Errorf("error %v, want the publisher timeout and the dedup failure", err)
	}
	if n := strings.Count(logs.String(), "shutdown step done"); n != len(steps) {
		t.Errorf("%d steps logged, want %d:\n%s", n, len(steps), logs.String())
	}
}

func withStage(s step, stage int) step { s.stage = stage; return s }
