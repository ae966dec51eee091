package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ackMux publishes JetStream messages and hands each acknowledgement to the
// caller waiting for it (publish), or to a callback (publishAsync): what
// jetstream.PublishMsgAsync and a wait on its future do, without a timer per
// message, a reflective JSON decode per ack or two channels per future.
// Overdue acks are given up by one sweep twice a second, against a clock it
// keeps itself: a synchronous publish after its attempt timeout (the caller
// may send again), an asynchronous one after asyncAckTimeout. Acks are read
// by hand, with encoding/json only for errors.
//
// One wildcard subscription receives every ack; each publish's reply subject
// ends in the next number of a counter.
type ackMux struct {
	nc       *nats.Conn
	prefix   string // reply subjects are prefix + base-36 number
	sub      *nats.Subscription
	status   chan nats.Status
	sem      chan struct{} // bounds synchronous publishes awaiting an ack
	async    atomic.Int64  // asynchronous publishes awaiting an ack
	maxAsync int64
	attempt  int64         // ns a synchronous publish waits before errAckTimeout
	now      atomic.Int64  // unix ns, updated by the sweep
	stop     chan struct{} // ends the sweep

	mu      sync.Mutex
	next    uint64
	pending map[uint64]*ackWaiter
	closed  bool
}

// errAckLost fails the publishes waiting when the connection drops: their
// acks would go to a subscription that no longer exists. The messages may
// have been stored; a repeat is dropped by Nats-Msg-Id or refused by its
// expected sequence.
var errAckLost = errors.New("NATS connection lost before the JetStream ack")

var (
	errMuxClosed      = errors.New("publisher closed")
	errAckTimeout     = errors.New("no JetStream ack in time")
	errTooManyPending = errors.New("too many asynchronous publishes awaiting their acks")
)

// ackWaiter is one publish awaiting its ack: a synchronous one waits on ch
// (buffered: one result, never blocks the sender); an asynchronous one has
// done, called once. deadline is when the sweep gives it up.
type ackWaiter struct {
	ch       chan ackResult
	done     func(error)
	deadline int64 // unix ns, by the mux's clock
}

type ackResult struct {
	seq       uint64
	duplicate bool
	err       error
}

var waiterPool = sync.Pool{New: func() any { return &ackWaiter{ch: make(chan ackResult, 1)} }}

// asyncAckTimeout is how long an asynchronous publish waits for its ack
// before its callback is told there is none.
const asyncAckTimeout = 5 * time.Second

// sweepEvery is how often overdue publishes are given up: the granularity
// of both timeouts.
const sweepEvery = 500 * time.Millisecond

// newAckMux returns a mux on nc; a synchronous publish gets errAckTimeout
// after attempt, give or take sweepEvery.
func newAckMux(nc *nats.Conn, maxPending, maxAsync int, attempt time.Duration) (*ackMux, error) {
	m := &ackMux{
		nc:       nc,
		prefix:   nc.NewInbox() + ".",
		pending:  make(map[uint64]*ackWaiter),
		sem:      make(chan struct{}, maxPending),
		maxAsync: int64(maxAsync),
		attempt:  int64(attempt),
		stop:     make(chan struct{}),
	}
	m.now.Store(time.Now().UnixNano())
	sub, err := nc.Subscribe(m.prefix+"*", m.handle)
	if err != nil {
		return nil, fmt.Errorf("publish: ack subscription: %w", err)
	}
	// A dropped ack costs a 503 after the whole budget for an event that was
	// stored; sem already bounds how many can be outstanding.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("publish: ack subscription: %w", err)
	}
	m.sub = sub
	m.status = nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	go func() {
		for range m.status { // closed by RemoveStatusListener in close
			m.failAll(errAckLost)
		}
	}()
	go m.sweep()
	return m, nil
}

// publish sends msg with a reply subject of its own and waits, bounded by
// ctx and by the attempt timeout (errAckTimeout), for JetStream's answer.
// sent reports whether msg was handed to the connection, that is whether it
// may have been stored.
func (m *ackMux) publish(ctx context.Context, msg *nats.Msg) (r ackResult, sent bool, err error) {
	select {
	case m.sem <- struct{}{}:
	default:
		select {
		case m.sem <- struct{}{}:
		case <-ctx.Done():
			return ackResult{}, false, fmt.Errorf("%d publishes awaiting their acks: %w", cap(m.sem), ctx.Err())
		}
	}
	defer func() { <-m.sem }()

	w := waiterPool.Get().(*ackWaiter)
	w.deadline = m.now.Load() + m.attempt
	id, ok := m.register(w)
	if !ok {
		waiterPool.Put(w)
		return ackResult{}, false, errMuxClosed
	}
	var buf [16]byte
	msg.Reply = m.prefix + string(strconv.AppendUint(buf[:0], id, 36))
	if err := m.nc.PublishMsg(msg); err != nil {
		m.forget(id, w)
		return ackResult{}, false, err
	}
	select {
	case r := <-w.ch:
		waiterPool.Put(w)
		return r, true, r.err
	case <-ctx.Done():
		if r, ok := m.forget(id, w); ok {
			return r, true, r.err // the answer came at the last moment
		}
		return ackResult{}, true, ctx.Err()
	}
}

// publishAsync sends msg with a reply subject of its own and returns; done is
// called exactly once with JetStream's answer, errAckTimeout after about
// asyncAckTimeout, or errAckLost/errMuxClosed. It runs on the subscription's
// goroutine and must not block. An error returned means msg was not sent and
// done will not be called.
func (m *ackMux) publishAsync(msg *nats.Msg, done func(error)) error {
	if m.async.Add(1) > m.maxAsync {
		m.async.Add(-1)
		return errTooManyPending
	}
	w := &ackWaiter{done: done, deadline: m.now.Load() + int64(asyncAckTimeout)}
	id, ok := m.register(w)
	if !ok {
		m.async.Add(-1)
		return errMuxClosed
	}
	var buf [16]byte
	msg.Reply = m.prefix + string(strconv.AppendUint(buf[:0], id, 36))
	if err := m.nc.PublishMsg(msg); err != nil {
		m.mu.Lock()
		_, mine := m.pending[id]
		delete(m.pending, id)
		m.mu.Unlock()
		if mine {
			m.async.Add(-1)
			return err
		}
		// failAll or close took it and calls done.
	}
	return nil
}

// register adds w to the pending publishes and returns its number.
func (m *ackMux) register(w *ackWaiter) (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, false
	}
	m.next++
	m.pending[m.next] = w
	return m.next, true
}

// deliver hands r to w's waiter or callback.
func (m *ackMux) deliver(w *ackWaiter, r ackResult) {
	if w.done != nil {
		m.async.Add(-1)
		w.done(r.err)
		return
	}
	w.ch <- r
}

// sweep gives up publishes whose ack is overdue.
func (m *ackMux) sweep() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	var late []*ackWaiter
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			ns := now.UnixNano()
			m.now.Store(ns)
			m.mu.Lock()
			for id, w := range m.pending {
				if w.deadline < ns {
					delete(m.pending, id)
					late = append(late, w)
				}
			}
			m.mu.Unlock()
			for i, w := range late {
				m.deliver(w, ackResult{err: errAckTimeout})
				late[i] = nil
			}
			late = late[:0]
		}
	}
}

// forget withdraws the wait for id and recycles w. If the answer was already
// taken for w (handle or failAll got there first), it waits for it, since it
// is being sent, and returns it.
func (m *ackMux) forget(id uint64, w *ackWaiter) (ackResult, bool) {
	m.mu.Lock()
	_, mine := m.pending[id]
	delete(m.pending, id)
	m.mu.Unlock()
	if mine {
		waiterPool.Put(w)
		return ackResult{}, false
	}
	r := <-w.ch
	waiterPool.Put(w)
	return r, true
}

// handle runs on the subscription's goroutine for every ack.
func (m *ackMux) handle(msg *nats.Msg) {
	if len(msg.Subject) <= len(m.prefix) {
		return
	}
	id, err := strconv.ParseUint(msg.Subject[len(m.prefix):], 36, 64)
	if err != nil {
		return
	}
	m.mu.Lock()
	w := m.pending[id]
	delete(m.pending, id)
	m.mu.Unlock()
	if w != nil { // nil: its caller gave up
		m.deliver(w, parseAck(msg.Data, msg.Header))
	}
}

func (m *ackMux) failAll(err error) {
	m.mu.Lock()
	ws := m.pending
	m.pending = make(map[uint64]*ackWaiter, len(ws))
	m.mu.Unlock()
	for _, w := range ws {
		m.deliver(w, ackResult{err: err})
	}
}

// close fails whatever still waits and stops the subscription. Call it after
// the last publish has returned.
func (m *ackMux) close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.mu.Unlock()
	close(m.stop)
	m.nc.RemoveStatusListener(m.status)
	_ = m.sub.Unsubscribe()
	m.failAll(errMuxClosed)
}

var (
	ackError     = []byte(`"error":{`)
	ackSeq       = []byte(`"seq":`)
	ackStream    = []byte(`"stream":"`)
	ackDuplicate = []byte(`"duplicate":`)
)

// parseAck reads a JetStream publish answer: {"stream":"S","seq":N} with
// optional "domain" and "duplicate":true, or {"error":{…}}, or an empty
// message with status 503 when no stream captures the subject. Quotes are
// escaped inside JSON strings, so the patterns cannot match inside a value.
// Anything unexpected goes through encoding/json.
func parseAck(data []byte, hdr nats.Header) ackResult {
	if len(data) == 0 {
		if hdr.Get("Status") == "503" {
			return ackResult{err: jetstream.ErrNoStreamResponse}
		}
		return ackResult{err: jetstream.ErrInvalidJSAck}
	}
	if si := bytes.Index(data, ackStream) + len(ackStream); si >= len(ackStream) && si < len(data) &&
		data[si] != '"' && !bytes.Contains(data, ackError) {
		if i := bytes.Index(data, ackSeq); i >= 0 {
			d := data[i+len(ackSeq):]
			var seq uint64
			n := 0
			// At most 19 digits cannot overflow a uint64; longer goes the slow way.
			for n < len(d) && n < 19 && d[n] >= '0' && d[n] <= '9' {
				seq = seq*10 + uint64(d[n]-'0')
				n++
			}
			if n > 0 && n < len(d) && (d[n] == ',' || d[n] == '}') {
				return ackResult{seq: seq, duplicate: ackIsDuplicate(data)}
			}
		}
	}
	return parseAckJSON(data)
}

// ackIsDuplicate reports whether an ack says "duplicate": true. The server
// writes it with a space after the colon (nats-server 2.9 to 2.12 at least),
// so any JSON spacing is accepted.
func ackIsDuplicate(data []byte) bool {
	i := bytes.Index(data, ackDuplicate)
	if i < 0 {
		return false
	}
	rest := data[i+len(ackDuplicate):]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n' || rest[0] == '\r') {
		rest = rest[1:]
	}
	return bytes.HasPrefix(rest, []byte("true"))
}

func parseAckJSON(data []byte) ackResult {
	var r struct {
		Error     *jetstream.APIError `json:"error"`
		Stream    string              `json:"stream"`
		Sequence  uint64              `json:"seq"`
		Duplicate bool                `json:"duplicate"`
	}
	switch {
	case json.Unmarshal(data, &r) != nil:
		return ackResult{err: jetstream.ErrInvalidJSAck}
	case r.Error != nil:
		return ackResult{err: r.Error}
	case r.Stream == "":
		return ackResult{err: jetstream.ErrInvalidJSAck}
	}
	return ackResult{seq: r.Sequence, duplicate: r.Duplicate}
}
