package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rs/zerolog"
)

// step is one named, bounded stage of the shutdown. Steps run by ascending
// stage whatever the order they were acquired in: the publisher is flushed
// before the dedup store and the connection under both are closed, and the
// admin listener goes last so that /metrics stays scrapeable during the drain.
type step struct {
	stage int
	name  string
	fn    func(ctx context.Context) error
}

const (
	stageHTTP      = iota
	stageRepublish // settle or drop deliveries whose outcome is unknown
	stageRecords   // flush the KV store's records, through the publisher
	stagePublisher
	stageDedup
	stageConn
	stageEmbedded
	stageTracing
	stageAdmin
)

// stepFloor is the least time a step gets once the shutdown budget is spent,
// so that the quick closes after an overrunning step still happen.
const stepFloor = 100 * time.Millisecond

// runSteps runs steps in stage order within one deadline: each step gets what
// is left of it (at least stepFloor), and a step that does not return in time
// is abandoned (its goroutine ends with the process) so the next one runs.
func runSteps(deadline time.Time, steps []step, log zerolog.Logger) error {
	slices.SortStableFunc(steps, func(a, b step) int { return a.stage - b.stage })
	var errs []error
	for _, s := range steps {
		start := time.Now()
		err := runStep(s, later(deadline, start.Add(stepFloor)))
		ev := log.Info()
		if err != nil {
			ev = log.Warn().Err(err)
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
		ev.Str("step", s.name).Dur("duration_ms", time.Since(start)).Msg("shutdown step done")
	}
	return errors.Join(errs...)
}

// runStep runs s until it returns or the deadline passes.
func runStep(s step, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.fn(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done: // finished at the same moment
			return err
		default:
			return fmt.Errorf("did not finish within HOOKBRIDGE_SHUTDOWN_GRACE: %w", ctx.Err())
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
