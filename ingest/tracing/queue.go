package tracing

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Why spans were dropped: the label values of Stats.SpansDropped.
const (
	DropQueueFull    = "queue_full"    // the queue was full when the span ended
	DropExportFailed = "export_failed" // the collector was unreachable or refused, retries spent
	DropRejected     = "rejected"      // the collector accepted the export but not these spans
	DropShutdown     = "shutdown"      // ended after shutdown began, or not exported in its time
)

// Stats receives the span queue's counts, for metrics. Its methods are called
// from the request path (SpansDropped with DropQueueFull) and must be cheap
// and safe for concurrent use.
type Stats interface {
	SpansExported(n int)
	SpansDropped(reason string, n int)
}

// queue is the span processor: ended spans wait in a channel and one
// goroutine exports them in batches. At most OTEL_BSP_MAX_QUEUE_SIZE spans
// are held at once, waiting or being exported. OnEnd never blocks: beyond
// the bound the span is dropped and counted, so a slow or unreachable
// collector, or a flood of requests, costs memory up to the bound and
// nothing else.
//
// It replaces the SDK's batch span processor, which counts its drops only
// where Prometheus cannot see them.
type queue struct {
	exp           *exporter
	spans         chan sdktrace.ReadOnlySpan
	maxHeld       int64
	held          atomic.Int64 // spans queued, batched or being exported
	maxBatch      int
	delay         time.Duration
	exportTimeout time.Duration
	stats         Stats
	log           zerolog.Logger

	flushes chan chan struct{}
	stop    chan struct{} // closed when shutdown begins
	done    chan struct{} // closed when run has returned
	closed  atomic.Bool

	// base is the parent of every export's context; Shutdown cancels it
	// when its own context ends, so no export outlives the shutdown step.
	base  context.Context
	abort context.CancelFunc

	// Owned by run: the failure streak, for logging once per streak.
	failing  bool
	failedAt time.Time
}

// failureLogEvery spaces the log lines of a collector that stays down.
const failureLogEvery = time.Minute

func newQueue(exp *exporter, c Config, stats Stats, log zerolog.Logger) *queue {
	base, abort := context.WithCancel(context.Background())
	q := &queue{
		exp:           exp,
		spans:         make(chan sdktrace.ReadOnlySpan, c.MaxQueueSize),
		maxHeld:       int64(c.MaxQueueSize),
		maxBatch:      c.MaxBatchSize,
		delay:         c.ScheduleDelay,
		exportTimeout: c.ExportTimeout,
		stats:         stats,
		log:           log,
		flushes:       make(chan chan struct{}),
		stop:          make(chan struct{}),
		done:          make(chan struct{}),
		base:          base,
		abort:         abort,
	}
	go q.run()
	return q
}

func (q *queue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues s for export, or drops it when the queue is full.
func (q *queue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return // recorded for the process only (RecordOnly), never exported
	}
	if q.closed.Load() {
		q.stats.SpansDropped(DropShutdown, 1)
		return
	}
	if q.held.Add(1) > q.maxHeld {
		q.held.Add(-1)
		q.stats.SpansDropped(DropQueueFull, 1)
		return
	}
	select {
	case q.spans <- s: // never full: it holds no more than held
	default:
		q.held.Add(-1)
		q.stats.SpansDropped(DropQueueFull, 1)
	}
}

// Len is the number of spans held: waiting, batched or being exported.
func (q *queue) Len() int { return int(q.held.Load()) }

// ForceFlush exports every span queued so far, bounded by ctx.
func (q *queue) ForceFlush(ctx context.Context) error {
	if q.closed.Load() {
		return nil
	}
	ack := make(chan struct{})
	select {
	case q.flushes <- ack:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued, bounded by ctx, and stops the goroutine.
// Spans it could not export in time are counted as dropped.
func (q *queue) Shutdown(ctx context.Context) error {
	if !q.closed.CompareAndSwap(false, true) {
		return nil
	}
	stopAbort := context.AfterFunc(ctx, q.abort)
	defer stopAbort()
	close(q.stop)
	select {
	case <-q.done:
	case <-ctx.Done():
		// Abort here too: the deferred stopAbort may run before the
		// context's cancellation has started the AfterFunc, and the export
		// would then hang on until its own timeout. Aborted, run counts
		// what is left as dropped and returns without the caller waiting.
		q.abort()
		return ctx.Err()
	}
	q.abort()
	q.exp.shutdown()
	return nil
}

func (q *queue) run() {
	defer close(q.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, q.maxBatch)
	timer := time.NewTimer(q.delay)
	timer.Stop()
	flush := func() {
		if len(batch) > 0 {
			q.export(batch)
			clear(batch) // let the spans go
			batch = batch[:0]
		}
		timer.Stop()
	}
	// drain exports everything queued now.
	drain := func() {
		for {
			select {
			case s := <-q.spans:
				batch = append(batch, s)
				if len(batch) == q.maxBatch {
					flush()
				}
			default:
				flush()
				return
			}
		}
	}
	for {
		select {
		case s := <-q.spans:
			if len(batch) == 0 {
				timer.Reset(q.delay)
			}
			batch = append(batch, s)
			if len(batch) == q.maxBatch {
				flush()
			}
		case <-timer.C:
			flush()
		case ack := <-q.flushes:
			drain()
			close(ack)
		case <-q.stop:
			drain()
			return
		}
	}
}

// export sends one batch, bounded by OTEL_BSP_EXPORT_TIMEOUT and by
// shutdown, and counts the outcome.
func (q *queue) export(batch []sdktrace.ReadOnlySpan) {
	n := len(batch)
	defer q.held.Add(int64(-n))
	if q.base.Err() != nil {
		q.stats.SpansDropped(DropShutdown, n)
		return
	}
	ctx, cancel := context.WithTimeout(q.base, q.exportTimeout)
	p, err := q.exp.export(ctx, batch)
	cancel()
	if err != nil {
		reason := DropExportFailed
		if q.base.Err() != nil {
			reason = DropShutdown
		}
		q.stats.SpansDropped(reason, n)
		if !q.failing || time.Since(q.failedAt) >= failureLogEvery {
			q.log.Warn().Err(err).Int("spans", n).Msg("trace export failed; spans dropped (requests are not affected)")
			q.failedAt = time.Now()
		}
		q.failing = true
		return
	}
	if q.failing {
		q.log.Info().Msg("trace export works again")
		q.failing = false
	}
	rejected := int(min(max(p.rejected, 0), int64(n)))
	q.stats.SpansExported(n - rejected)
	if rejected > 0 || p.message != "" {
		q.stats.SpansDropped(DropRejected, rejected)
		q.log.Warn().Int64("rejected_spans", p.rejected).Str("collector_message", p.message).
			Msg("the trace collector accepted an export in part")
	}
}
