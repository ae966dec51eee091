package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ackMux publishes JetStream messages and hands each acknowledgement to the
// caller waiting for it: what jetstream.PublishMsgAsync and a wait on its
// future do, without what the request path does not need. Profiles of the
// bridge under load (make bench-e2e -profile) put that call at about 4 µs
// per message, three times what the baseline handler paid for it without
// options: a timer per message for the ack timeout, a reflective JSON
// decode per ack, two channels per future and per-call option processing. Here a caller's own context bounds its wait, so no
// timer is needed; acks are read by hand, with encoding/json only for
// errors.
//
// One wildcard subscription receives every ack; each publish's reply subject
// ends in the next number of a counter.
type ackMux struct {
	nc     *nats.Conn
	prefix string // reply subjects are prefix + base-36 number
	sub    *nats.Subscription
	status chan nats.Status
	sem    chan struct{} // bounds publishes awaiting an ack

	mu      sync.Mutex
	next    uint64
	pending map[uint64]*ackWaiter
	closed  bool
}

// errAckLost fails the publishes waiting when the connection drops: their
// acks would go to a subscription that no longer exists. The messages may
// have been stored; the sender's retry is deduplicated by Nats-Msg-Id.
var errAckLost = errors.New("NATS connection lost before the JetStream ack")

var errMuxClosed = errors.New("publisher closed")

type ackWaiter struct{ ch chan ackResult } // buffered: one result, never blocks the sender

type ackResult struct {
	seq       uint64
	duplicate bool
	err       error
}

var waiterPool = sync.Pool{New: func() any { return &ackWaiter{ch: make(chan ackResult, 1)} }}

func newAckMux(nc *nats.Conn, maxPending int) (*ackMux, error) {
	m := &ackMux{
		nc:      nc,
		prefix:  nc.NewInbox() + ".",
		pending: make(map[uint64]*ackWaiter),
		sem:     make(chan struct{}, maxPending),
	}
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
	return m, nil
}

// publish sends msg with a reply subject of its own and waits, bounded by
// ctx, for JetStream's answer.
func (m *ackMux) publish(ctx context.Context, msg *nats.Msg) (ackResult, error) {
	select {
	case m.sem <- struct{}{}:
	default:
		select {
		case m.sem <- struct{}{}:
		case <-ctx.Done():
			return ackResult{}, fmt.Errorf("%d publishes awaiting their acks: %w", cap(m.sem), ctx.Err())
		}
	}
	defer func() { <-m.sem }()

	w := waiterPool.Get().(*ackWaiter)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		waiterPool.Put(w)
		return ackResult{}, errMuxClosed
	}
	m.next++
	id := m.next
	m.pending[id] = w
	m.mu.Unlock()

	var buf [16]byte
	msg.Reply = m.prefix + string(strconv.AppendUint(buf[:0], id, 36))
	if err := m.nc.PublishMsg(msg); err != nil {
		m.forget(id, w)
		return ackResult{}, err
	}
	select {
	case r := <-w.ch:
		waiterPool.Put(w)
		return r, r.err
	case <-ctx.Done():
		if r, ok := m.forget(id, w); ok {
			return r, r.err // the answer came at the last moment
		}
		return ackResult{}, ctx.Err()
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
		w.ch <- parseAck(msg.Data, msg.Header)
	}
}

func (m *ackMux) failAll(err error) {
	m.mu.Lock()
	ws := m.pending
	m.pending = make(map[uint64]*ackWaiter, len(ws))
	m.mu.Unlock()
	for _, w := range ws {
		w.ch <- ackResult{err: err}
	}
}

// close fails whatever still waits and stops the subscription. Call it after
// the last publish has returned.
func (m *ackMux) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.nc.RemoveStatusListener(m.status)
	_ = m.sub.Unsubscribe()
	m.failAll(errMuxClosed)
}

var (
	ackError     = []byte(`"error":{`)
	ackSeq       = []byte(`"seq":`)
	ackStream    = []byte(`"stream":"`)
	ackDuplicate = []byte(`"duplicate":true`)
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
				return ackResult{seq: seq, duplicate: bytes.Contains(data, ackDuplicate)}
			}
		}
	}
	return parseAckJSON(data)
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
