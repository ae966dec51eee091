package ingest

import (
	"context"
	"net/http"
	"time"

	"github.com/hookbridge/hookbridge/schema"
)

// DedupPath is how a verified delivery was kept from being published twice.
// The values are bounded and double as a metric label.
type DedupPath string

const (
	// PathWindow: the broker's duplicate window was the claim. A young
	// delivery (or, without a Deduper, any delivery) is published with its
	// dedup key and nothing else on the request path; the broker drops it
	// if it already holds the key. The key is then recorded in the Deduper
	// without waiting, as the memory that outlasts the window.
	PathWindow DedupPath = "window"
	// PathStore: claim in the Deduper, publish, complete (release on
	// failure): old deliveries, dead letters, and every delivery when the
	// broker has no usable duplicate window.
	PathStore DedupPath = "store"
	// PathNone: no Deduper and no broker window: the publish alone.
	PathNone DedupPath = "none"
)

// clockAllowance is added to the timestamp tolerance in the default
// WindowMargin: the tolerance bounds the skew between OpenAI's clock and
// ours, this the skew between ours and the broker's, which times the window.
const clockAllowance = time.Minute

// young reports whether every earlier delivery of d is certainly still
// inside the broker's duplicate window. Earlier deliveries happened after the
// event was created (give or take the clock skew the margin covers), so that
// holds when the event is younger than the window less the margin. A
// created_at further in the future than the margin says nothing about when
// earlier deliveries happened, and neither does a missing one (dead letters).
func (h *Handler) young(d *schema.Delivery) bool {
	if h.youngSec <= 0 || d.Event == nil || d.Event.CreatedAt <= 0 {
		return false
	}
	// The verifier's clock, which judged the timestamp: one notion of now.
	age := h.cfg.Verifier.now().Unix() - d.Event.CreatedAt
	return age > -h.marginSec && age < h.youngSec
}

// deliver publishes a verified delivery on the path its age allows (see
// DedupPath) and answers. It reports whether ctx may be recycled: not after a
// failure, to keep a misbehaving store or publisher that still watches ctx on
// the safe side.
//
// The publish must not be cut short because the sender hung up: a publish
// that lands after the sender gave up is harmless (its retry is answered
// "duplicate"), while one abandoned half-way costs a retry for nothing. ctx
// is context.WithTimeout(context.WithoutCancel(r.Context()), PublishTimeout)
// without the allocations (see budgetCtx).
func (h *Handler) deliver(w http.ResponseWriter, ctx *budgetCtx, d *schema.Delivery) (Outcome, bool) {
	// Not h.log.With()…Logger(): that copies the logger's context for every
	// request, logged or not.
	log := idLog{&h.log, d.WebhookID}
	dd := h.cfg.Deduper
	if dd == nil || h.young(d) {
		h.obs.DedupPath(h.directPath)
		h.traceDedupPath(ctx, h.directPath)
		dup, ok := h.publish(ctx, d, log)
		if !ok {
			return h.unavailable(w, "broker did not acknowledge the event"), false
		}
		if dd != nil {
			// The window covers repeats for now; the record covers them
			// after it. On a duplicate the record is written again, which
			// heals one lost with a crashed replica.
			h.record(ctx, d.DedupKey(), log)
		}
		return h.acknowledged(w, d, dup, log), true
	}

	h.obs.DedupPath(PathStore)
	h.traceDedupPath(ctx, PathStore)
	key := d.DedupKey()
	st, owner, err := dd.Claim(ctx, key)
	if err != nil {
		h.obs.Dedup("error")
		log.Error().Err(err).Msg("dedup claim failed")
		return h.unavailable(w, "dedup store unavailable"), false
	}
	h.obs.Dedup(st.String())
	switch st {
	case ClaimDone:
		log.Debug().Msg("duplicate delivery")
		return h.reply(w, http.StatusOK, OutcomeDuplicate, "already published"), true
	case ClaimInFlight:
		w.Header().Set("Retry-After", "1")
		return h.reply(w, http.StatusConflict, OutcomeInFlight, "a delivery with this webhook-id is being published"), true
	}
	dup, ok := h.publish(ctx, d, log)
	if !ok {
		// Detached and short: the request's budget may be spent, and a
		// claim left behind would only expire after its lease.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		if err := dd.Release(rctx, key, owner); err != nil {
			log.Warn().Err(err).Msg("dedup release failed; the claim expires with its lease")
		}
		rcancel()
		return h.unavailable(w, "broker did not acknowledge the event"), false
	}
	h.record(ctx, key, log)
	return h.acknowledged(w, d, dup, log), true
}

// publish hands d to the Publisher and reports the broker's answer. A
// failure is counted and logged, and a delivery whose outcome is unknown goes
// to the re-publisher, which settles it while the broker's window still
// holds its key.
func (h *Handler) publish(ctx context.Context, d *schema.Delivery, log idLog) (duplicate, ok bool) {
	start := time.Now()
	dup, err := h.cfg.Publisher.Publish(ctx, d)
	if err != nil {
		h.obs.PublishFailed(time.Since(start))
		unknown := MaybeStored(err)
		log.Error().Err(err).Bool("maybe_stored", unknown).Msg("publish failed")
		if unknown && h.rep != nil {
			h.rep.add(d, start)
		}
		return false, false
	}
	h.obs.Published(d.Event, time.Since(start), dup)
	return dup, true
}

// record completes key in the Deduper after the broker acknowledged it. The
// event is on the bus, so a failure still answers 2xx: a repeat within the
// broker's window is dropped there.
func (h *Handler) record(ctx context.Context, key string, log idLog) {
	if err := h.cfg.Deduper.Complete(ctx, key); err != nil {
		log.Warn().Err(err).Msg("dedup record failed")
	}
}

// acknowledged answers a delivery the broker acknowledged.
func (h *Handler) acknowledged(w http.ResponseWriter, d *schema.Delivery, duplicate bool, log idLog) Outcome {
	switch {
	case duplicate:
		log.Debug().Msg("the broker already had this delivery")
		return h.reply(w, http.StatusOK, OutcomeDuplicate, "already published")
	case d.Event == nil:
		log.Warn().Str("reason", d.DeadLetterReason).Msg("verified body dead-lettered")
		return h.reply(w, http.StatusOK, OutcomeDeadLettered, "verified but not routable ("+d.DeadLetterReason+"); kept on the dead-letter subject")
	}
	log.Debug().Str("event_type", string(d.Event.Type)).Str("event_id", d.Event.ID).Msg("published")
	return h.reply(w, http.StatusOK, OutcomePublished, "")
}
