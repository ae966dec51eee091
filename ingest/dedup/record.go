package dedup

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

const (
	recordBackoffMin = 100 * time.Millisecond
	recordBackoffMax = 5 * time.Second
)

// recorder writes the KV store's "done" records off the request path. Each
// is sent with a reply subject but not waited for; the writer reports the
// answer later, and a record that was not stored (no answer in time, no
// stream leader, connection lost) is queued and sent again with backoff
// until it is. The records are the memory that outlasts the broker's
// duplicate window, so losing one silently would let a redelivery after the
// window be stored twice.
//
// Resending "done" is always safe: it is the key's final state.
type recorder struct {
	w   KVWriter
	pre string // subject prefix of a Put
	max int
	log zerolog.Logger

	inflight atomic.Int64 // sent, answer not yet in
	lost     atomic.Uint64

	mu     sync.Mutex
	retry  []retryRecord // oldest first
	closed bool
	wake   chan struct{} // capacity 1
	stop   chan struct{}
	done   chan struct{}
	idle   chan struct{} // signalled when inflight drops to 0 during close
}

type retryRecord struct {
	key      string // KV key
	attempts int
	due      time.Time
}

func newRecorder(w KVWriter, pre string, maxPending int, log zerolog.Logger) *recorder {
	r := &recorder{w: w, pre: pre, max: maxPending, log: log,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		idle: make(chan struct{}, 1)}
	go r.run()
	return r
}

// send sends the record of key; attempts counts earlier sends.
func (r *recorder) send(key string, attempts int) {
	r.inflight.Add(1)
	err := r.w.PublishAsync(r.pre+key, kvDoneValue, func(err error) {
		if err != nil {
			r.requeue(key, attempts+1)
		}
		r.answered()
	})
	if err != nil {
		r.requeue(key, attempts+1)
		r.answered()
	}
}

func (r *recorder) answered() {
	if r.inflight.Add(-1) == 0 {
		select {
		case r.idle <- struct{}{}:
		default:
		}
	}
}

// requeue keeps key for a resend after a backoff that grows with attempts.
func (r *recorder) requeue(key string, attempts int) {
	backoff := recordBackoffMax
	if attempts < 16 {
		backoff = min(recordBackoffMin<<attempts, recordBackoffMax)
	}
	r.mu.Lock()
	if r.closed || len(r.retry) >= r.max {
		closed := r.closed
		r.mu.Unlock()
		if n := r.lost.Add(1); !closed && (n == 1 || n%1000 == 0) {
			r.log.Error().Uint64("lost", n).Int("pending", r.max).
				Msg("dedup record dropped: the resend queue is full; a redelivery of its webhook-id after the broker's duplicate window could be stored twice")
		}
		return
	}
	r.retry = append(r.retry, retryRecord{key: key, attempts: attempts, due: time.Now().Add(backoff)})
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// pending counts records sent and unanswered plus those waiting for a resend.
func (r *recorder) pending() int {
	r.mu.Lock()
	n := len(r.retry)
	r.mu.Unlock()
	return n + int(r.inflight.Load())
}

// run resends the queued records when they are due.
func (r *recorder) run() {
	defer close(r.done)
	var timer *time.Timer
	var tick <-chan time.Time
	for {
		select {
		case <-r.stop:
			return
		case <-r.wake:
		case <-tick:
		}
		next, due := r.takeDue(time.Now())
		for _, rr := range due {
			r.send(rr.key, rr.attempts)
		}
		tick = nil
		if !next.IsZero() {
			if timer == nil {
				timer = time.NewTimer(time.Until(next))
			} else {
				timer.Reset(time.Until(next))
			}
			tick = timer.C
		}
	}
}

// takeDue removes and returns the records due at now, and when the next one
// is due (zero if none is queued).
func (r *recorder) takeDue(now time.Time) (time.Time, []retryRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var due []retryRecord
	keep := r.retry[:0]
	var next time.Time
	for _, rr := range r.retry {
		if !rr.due.After(now) {
			due = append(due, rr)
			continue
		}
		keep = append(keep, rr)
		if next.IsZero() || rr.due.Before(next) {
			next = rr.due
		}
	}
	clear(r.retry[len(keep):])
	r.retry = keep
	return next, due
}

// close resends everything queued once, waits (bounded by ctx) for the
// answers, and counts what is left as lost.
func (r *recorder) close(ctx context.Context) error {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	r.closed = true // failures from here on are lost
	queued := r.retry
	r.retry = nil
	r.mu.Unlock()
	for _, rr := range queued {
		r.send(rr.key, rr.attempts)
	}
	for r.inflight.Load() > 0 {
		select {
		case <-r.idle:
		case <-ctx.Done():
			n := r.inflight.Load()
			r.lost.Add(uint64(n))
			r.log.Error().Int64("lost", n).
				Msg("dedup records unacknowledged at shutdown: a redelivery of their webhook-ids after the broker's duplicate window could be stored twice")
			return fmt.Errorf("dedup: %d records unacknowledged: %w", n, ctx.Err())
		}
	}
	if n := r.lost.Load(); n > 0 {
		r.log.Warn().Uint64("lost", n).Msg("dedup records lost during this run")
	}
	return nil
}
