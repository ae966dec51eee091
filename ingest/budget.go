package ingest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookbridge/hookbridge/schema"
)

// deliveryEvent is a Delivery and its Event in one allocation. It is not pooled:
// a Publisher may keep the delivery after Publish returned (a test double
// records it; the Kafka writer keeps the message of a timed-out
// WriteMessages).
type deliveryEvent struct {
	d  schema.Delivery
	ev schema.Event
}

var budgetPool sync.Pool

// getBudget returns context.WithTimeout(context.WithoutCancel(parent),
// timeout) as a pooled budgetCtx: parent supplies values only, so the sender
// hanging up does not cut the publish short.
func getBudget(parent context.Context, timeout time.Duration) *budgetCtx {
	c, _ := budgetPool.Get().(*budgetCtx)
	if c == nil {
		c = &budgetCtx{done: make(chan struct{}), parent: parent, deadline: time.Now().Add(timeout)}
		c.timer = time.AfterFunc(timeout, c.expire)
		return c
	}
	c.parent = parent
	c.deadline = time.Now().Add(timeout)
	c.timer.Reset(timeout)
	return c
}

// putBudget recycles c unless it expired: then its Done channel is closed
// for good, and late readers keep seeing that. The caller must be done with
// c: every Claim, Publish, Complete and Release it was passed to returned
// (they may use ctx only until they return).
func putBudget(c *budgetCtx) {
	if !c.timer.Stop() {
		// Fired, or firing right now (expire may still be running): leave c
		// to the garbage collector.
		return
	}
	c.parent = nil
	budgetPool.Put(c)
}

// budgetCtx is the publish budget: context.WithTimeout(context.WithoutCancel(
// parent), timeout) without its five allocations per request. Its Done
// channel is closed only when the timer fires, and a budget whose timer
// fired is never reused, so one channel and one timer serve many requests.
type budgetCtx struct {
	parent   context.Context
	deadline time.Time
	done     chan struct{}
	timer    *time.Timer
	expired  atomic.Bool
}

func (c *budgetCtx) expire() {
	c.expired.Store(true) // before close: whoever sees Done closed sees Err set
	close(c.done)
}

func (c *budgetCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *budgetCtx) Done() <-chan struct{}       { return c.done }

func (c *budgetCtx) Err() error {
	if c.expired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *budgetCtx) Value(key any) any { return c.parent.Value(key) }

func (c *budgetCtx) String() string { return "ingest.publishBudget" }
