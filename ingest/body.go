package ingest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
)

// bodyFirstAlloc is the most a request is given before its body bytes
// arrive. A body whose Content-Length is at most this gets exactly its size
// in one allocation (every real webhook: OpenAI's events are thin); a larger
// or unknown one starts here and doubles as bytes arrive, so a sender that
// declares a megabyte and sends nothing holds 8 KiB, not a megabyte.
const bodyFirstAlloc = 8 << 10

// errOverBudget ends a body read when growing its buffer would exceed the
// global in-flight byte bound.
var errOverBudget = errors.New("in-flight body bytes bound reached")

// readBody reads the whole body, bounded by MaxBodyBytes, into a buffer that
// grows with the bytes received, each growth reserved in held against the
// in-flight byte bound. On failure it returns the outcome and a message for
// the sender; OutcomeUnavailable means the bound was reached.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, held *int64) ([]byte, Outcome, string) {
	limit := h.cfg.MaxBodyBytes
	cl := r.ContentLength
	if cl > limit {
		// Refuse before reading a byte; net/http closes the connection rather
		// than draining a huge body.
		return nil, OutcomeTooLarge, fmt.Sprintf("body of %d bytes exceeds the limit of %d bytes", cl, limit)
	}
	rd := r.Body
	// The buffer's final capacity: one byte beyond the body, to see that
	// nothing follows Content-Length (or, unknown length, that the limit is
	// exceeded) without a second buffer.
	size := cl + 1
	if cl < 0 {
		// Unknown length (chunked): the limit is enforced while reading. A
		// known length is already bounded above, and net/http's body reader
		// stops at it, so it needs no wrapper (one allocation less).
		rd = http.MaxBytesReader(w, r.Body, limit)
		size = limit + 1
	}
	first := min(size, bodyFirstAlloc)
	if !h.adm.reserve(held, first) {
		return nil, OutcomeUnavailable, "too many request bodies in flight; retry later"
	}
	buf := make([]byte, 0, first)
	var err error
	for {
		if len(buf) == cap(buf) {
			if int64(cap(buf)) >= size {
				break // known length: the probe byte arrived, handled below
			}
			n := min(2*int64(cap(buf)), size)
			if !h.adm.reserve(held, n) {
				err = errOverBudget
				break
			}
			nb := make([]byte, len(buf), n)
			copy(nb, buf)
			h.adm.release(held, int64(cap(buf)))
			buf = nb
		}
		var m int
		m, err = rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			break
		}
	}
	if err == nil && cl < 0 && int64(len(buf)) > limit {
		err = &http.MaxBytesError{Limit: limit}
	}
	if err == nil && cl >= 0 && int64(len(buf)) != cl {
		// net/http's reader never gets here (it reports a short body as
		// io.ErrUnexpectedEOF and stops at Content-Length); other callers'
		// requests may.
		err = errors.New("body length differs from Content-Length")
	}
	if err == nil {
		return buf, "", ""
	}
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case err == errOverBudget:
		return nil, OutcomeUnavailable, "too many request bodies in flight; retry later"
	case errors.As(err, &tooBig):
		return nil, OutcomeTooLarge, fmt.Sprintf("body exceeds the limit of %d bytes", limit)
	case errors.As(err, &netErr) && netErr.Timeout():
		return nil, OutcomeTimeout, "request body not received in time"
	}
	return nil, OutcomeBadRequest, "could not read the request body"
}
