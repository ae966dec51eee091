package ingest

import (
	"net/http"
	"sync/atomic"
)

// Defaults of the global in-flight bounds (HandlerConfig).
const (
	DefaultMaxInFlightBytes    = 64 << 20
	DefaultMaxInFlightRequests = 1024
)

// admission counts what requests hold at once before and while they are
// verified and published, against the global bounds of HandlerConfig: how
// many are past the header checks (MaxInFlightRequests), and how many body
// bytes their buffers hold (MaxInFlightBytes). Beyond either, a request is
// answered 503 with Retry-After without its body being read, so that many
// slow or idle senders cannot together exhaust memory.
type admission struct {
	requests atomic.Int64
	bytes    atomic.Int64
}

// enter takes a request slot, if fewer than limit are taken.
func (a *admission) enter(limit int64) bool {
	if a.requests.Add(1) > limit {
		a.requests.Add(-1)
		return false
	}
	return true
}

// leave gives back the slot and every byte the request still holds.
func (a *admission) leave(held *int64) {
	if *held != 0 {
		a.bytes.Add(-*held)
		*held = 0
	}
	a.requests.Add(-1)
}

// reserve adds n bytes to what the request holds, if the total stays
// within limit.
func (a *admission) reserve(held *int64, n, limit int64) bool {
	if a.bytes.Add(n) > limit {
		a.bytes.Add(-n)
		return false
	}
	*held += n
	return true
}

// release gives back n of the bytes the request holds (a buffer outgrown).
func (a *admission) release(held *int64, n int64) {
	a.bytes.Add(-n)
	*held -= n
}

// InFlight reports the requests currently past the header checks and the
// body bytes their buffers hold, for metrics.
func (h *Handler) InFlight() (requests, bodyBytes int64) {
	return h.adm.requests.Load(), h.adm.bytes.Load()
}

// OverloadObserver is an optional extension of Observer: a HandlerConfig
// Observer that implements it is told of every request refused because a
// global in-flight bound was reached, with the bound: "requests" or
// "body_bytes".
type OverloadObserver interface {
	Overloaded(bound string)
}

// overloaded answers a request refused by a global in-flight bound. Its body
// is left unread (or partly read): the connection is closed after the answer.
func (h *Handler) overloaded(w http.ResponseWriter, r *http.Request, bound string) Outcome {
	bodyUnread(w, r)
	if o, ok := h.obs.(OverloadObserver); ok {
		o.Overloaded(bound)
	}
	h.warnLog.Warn().Str("bound", bound).Str("remote", r.RemoteAddr).Msg("request refused: in-flight bound reached")
	return h.unavailable(w, "too many requests in flight; retry later")
}

// bodyUnread is called when answering without reading the body. Over
// HTTP/1.x, net/http would otherwise read a body of up to 256 KiB before
// writing the answer (to keep the connection), waiting for a sender that may
// never send it; closing the connection answers at once. HTTP/2 resets the
// stream by itself, and there "Connection: close" would end every stream of
// the connection.
func bodyUnread(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
}
