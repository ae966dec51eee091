package ingest

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/schema"
)

// Results of a background re-publish, reported to Observer.Republished.
const (
	// RepublishStored: the broker stored the delivery now; the first attempt
	// had not reached it.
	RepublishStored = "stored"
	// RepublishDuplicate: the broker already had it from the first attempt.
	RepublishDuplicate = "duplicate"
	// RepublishGaveUp: no answer while the broker's window would still have
	// dropped a repeat; the outcome stays unknown.
	RepublishGaveUp = "gave_up"
	// RepublishDropped: not taken (the queue was full) or still queued at
	// shutdown; the outcome stays unknown.
	RepublishDropped = "dropped"
)

// Defaults bounding the re-publisher (HandlerConfig.RepublishMax and
// RepublishMaxBytes).
const (
	DefaultRepublishMax      = 10_000
	DefaultRepublishMaxBytes = 64 << 20
)

const (
	republishBackoffMin = 250 * time.Millisecond
	republishBackoffMax = 5 * time.Second
	// republishLogIDs bounds the webhook-ids named in the shutdown log line.
	republishLogIDs = 20
)

// republisher settles deliveries whose publish outcome is unknown (the ack
// timed out or the connection dropped after sending). It re-publishes each,
// the same bytes with the same dedup key, until the broker answers: stored
// (the first attempt never arrived) or duplicate (it did). Then it records
// the key in the Deduper, which remembers it after the broker's window
// closes. Without this, a sender retry arriving after the window (OpenAI
// backs off for hours) could be stored a second time.
//
// The broker drops a repeat only within its window, so each delivery is
// given up half a window after its first attempt. One goroutine works
// through the queue in turn and backs off while the broker does not answer;
// the queue is bounded in count and bytes.
type republisher struct {
	pub      Publisher
	dd       Deduper // nil: nothing to record
	obs      Observer
	log      zerolog.Logger
	timeout  time.Duration // per attempt
	horizon  time.Duration // give up this long after the first attempt
	maxN     int
	maxBytes int64

	mu     sync.Mutex
	queue  []unsettled // oldest first
	bytes  int64
	closed bool

	wake   chan struct{} // capacity 1
	cancel context.CancelFunc
	ctx    context.Context
	done   chan struct{}
}

type unsettled struct {
	d     *schema.Delivery
	first time.Time
}

func newRepublisher(pub Publisher, dd Deduper, obs Observer, log zerolog.Logger, timeout, horizon time.Duration, maxN int, maxBytes int64) *republisher {
	ctx, cancel := context.WithCancel(context.Background())
	r := &republisher{
		pub: pub, dd: dd, obs: obs, log: log, timeout: timeout, horizon: horizon,
		maxN: maxN, maxBytes: maxBytes,
		wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
	go r.run()
	return r
}

// add queues d, whose first publish started at first.
func (r *republisher) add(d *schema.Delivery, first time.Time) {
	r.mu.Lock()
	if r.closed || len(r.queue) >= r.maxN || r.bytes+int64(len(d.Body)) > r.maxBytes {
		n := len(r.queue)
		r.mu.Unlock()
		r.obs.Republished(RepublishDropped)
		r.log.Error().Str("webhook_id", d.WebhookID).Int("queued", n).
			Msg("publish outcome unknown and the re-publish queue is full: a redelivery after the broker's duplicate window could be stored twice")
		return
	}
	r.queue = append(r.queue, unsettled{d: d, first: first})
	r.bytes += int64(len(d.Body))
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// pending returns how many deliveries wait to be settled.
func (r *republisher) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

func (r *republisher) head() (unsettled, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return unsettled{}, false
	}
	return r.queue[0], true
}

func (r *republisher) pop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bytes -= int64(len(r.queue[0].d.Body))
	r.queue[0] = unsettled{}
	r.queue = r.queue[1:]
	if len(r.queue) == 0 {
		r.queue = nil // let the backing array go
	}
}

// rotate moves the head to the tail.
func (r *republisher) rotate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) > 1 {
		u := r.queue[0]
		r.queue[0] = unsettled{}
		r.queue = append(r.queue[1:], u)
	}
}

func (r *republisher) run() {
	defer close(r.done)
	backoff := republishBackoffMin
	for {
		u, ok := r.head()
		if !ok {
			select {
			case <-r.wake:
				continue
			case <-r.ctx.Done():
				return
			}
		}
		if time.Since(u.first) > r.horizon {
			r.pop()
			r.obs.Republished(RepublishGaveUp)
			r.log.Error().Str("webhook_id", u.d.WebhookID).Dur("after_ms", time.Since(u.first)).
				Msg("publish outcome still unknown after half the broker's duplicate window; giving up: a redelivery from now on could be stored twice")
			continue
		}
		if r.attempt(r.ctx, u) {
			r.pop()
			backoff = republishBackoffMin
			continue
		}
		// The broker is not answering (or refuses this one): let the next
		// have its turn after a pause, so that one delivery cannot hold up
		// the rest.
		r.rotate()
		select {
		case <-time.After(backoff):
		case <-r.ctx.Done():
			return
		}
		backoff = min(2*backoff, republishBackoffMax)
	}
}

// attempt re-publishes u once and reports whether its outcome is settled.
func (r *republisher) attempt(parent context.Context, u unsettled) bool {
	ctx, cancel := context.WithTimeout(parent, r.timeout)
	defer cancel()
	dup, err := r.pub.Publish(ctx, u.d)
	if err != nil {
		r.log.Debug().Err(err).Str("webhook_id", u.d.WebhookID).Msg("re-publish failed; will try again")
		return false
	}
	result := RepublishStored
	if dup {
		result = RepublishDuplicate
	}
	if r.dd != nil {
		if err := r.dd.Complete(ctx, u.d.DedupKey()); err != nil {
			r.log.Warn().Err(err).Str("webhook_id", u.d.WebhookID).Msg("dedup record after re-publish failed")
		}
	}
	r.obs.Republished(result)
	r.log.Info().Str("webhook_id", u.d.WebhookID).Str("result", result).Dur("after_ms", time.Since(u.first)).
		Msg("publish outcome settled")
	return true
}

// close stops the background loop, makes one last pass over the queue
// bounded by ctx (stopping at the first failure: the broker is not
// answering), and drops what is left with one log line.
func (r *republisher) close(ctx context.Context) {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	<-r.done
	for ctx.Err() == nil {
		u, ok := r.head()
		if !ok || time.Since(u.first) > r.horizon || !r.attempt(ctx, u) {
			break
		}
		r.pop()
	}
	r.mu.Lock()
	left := r.queue
	r.queue, r.bytes = nil, 0
	r.mu.Unlock()
	if len(left) == 0 {
		return
	}
	ids := make([]string, 0, min(len(left), republishLogIDs))
	for i, u := range left {
		if i == republishLogIDs {
			break
		}
		ids = append(ids, u.d.WebhookID)
		r.obs.Republished(RepublishDropped)
	}
	for range left[len(ids):] {
		r.obs.Republished(RepublishDropped)
	}
	r.log.Error().Int("dropped", len(left)).Str("webhook_ids", strings.Join(ids, ",")).
		Msg("shutting down with publish outcomes still unknown: a redelivery of these after the broker's duplicate window could be stored twice")
}
