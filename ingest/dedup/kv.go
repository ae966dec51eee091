package dedup

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/ingest"
)

// DefaultBucket is the JetStream KV bucket the KV store uses.
const DefaultBucket = "HOOKBRIDGE_DEDUP"

// KVOptions configure NewKV. Zero values take the defaults.
type KVOptions struct {
	Bucket   string           // default "HOOKBRIDGE_DEDUP"
	TTL      time.Duration    // bucket max age: how long a completed key is remembered; default 72h
	Lease    time.Duration    // how long an in-flight claim blocks others; default 30s
	Replicas int              // bucket replicas when it is created; default 1
	Now      func() time.Time // clock for lease deadlines, for tests; default time.Now
	// Writer, when set, carries the claims and the records instead of the
	// jetstream KeyValue API (publish.NATS implements it): it saves a
	// request/reply round trip per claim, and records are not waited for.
	Writer KVWriter
	// MaxPendingRecords bounds the records awaiting a resend (default
	// DefaultMaxPendingRecords); beyond it a record is dropped, with a log
	// line.
	MaxPendingRecords int
	Log               zerolog.Logger // for dropped records
}

// DefaultMaxPendingRecords bounds the records the KV store keeps for a
// resend while the bucket does not answer: about 100 bytes each.
const DefaultMaxPendingRecords = 100_000

// KVWriter is a cheaper path for the KV store's two hot writes, provided by
// the NATS publisher on the connection it shares with the store.
type KVWriter interface {
	// PublishIfNew stores data on subject only if the subject has no message
	// (what KeyValue.Create sends), waiting for the ack. A conflict is a
	// *jetstream.APIError with the wrong-last-sequence code. It may send
	// more than once within ctx when no answer comes; the caller must
	// recognise its own write in a conflict.
	PublishIfNew(ctx context.Context, subject string, data []byte) error
	// PublishAsync sends data to subject and returns without waiting.
	// done is called exactly once, on another goroutine, with JetStream's
	// answer: nil once stored, else why not or why it is unknown (no
	// answer in time, connection lost). done must not block. An error
	// returned means nothing was sent and done will not be called.
	PublishAsync(subject string, data []byte, done func(error)) error
}

// KV is an ingest.Deduper on a JetStream KV bucket, shared by every replica
// connected to the same NATS system and durable across restarts.
//
// Each dedup key is one KV key (see kvKey) whose value is
// "inflight <unix-ms lease deadline> <owner>" or "done". The bucket's max age
// is the dedup TTL, so the server forgets keys by itself; lease deadlines are
// compared with the replicas' clocks, so clock skew between replicas shortens
// or lengthens a lease by the skew. It uses only features of NATS 2.9.
type KV struct {
	kv    jetstream.KeyValue
	lease time.Duration
	now   func() time.Time

	// w and putPre serve the fast path: putPre is the subject prefix of a
	// Put ("$KV.<bucket>."), empty when the bucket is a mirror, whose writes
	// go elsewhere; Claim and Complete then use the KeyValue API.
	w      KVWriter
	putPre string
	rec    *recorder // nil without w
}

// NewKV opens the bucket, creating it (file storage, history 1, max age TTL)
// when it does not exist. An existing bucket with another TTL is an error
// wrapping ErrTTLMismatch: it is never rewritten behind the operator's back.
func NewKV(ctx context.Context, js jetstream.JetStream, opts KVOptions) (*KV, error) {
	ttl, lease, err := durations(opts.TTL, opts.Lease)
	if err != nil {
		return nil, err
	}
	bucket := opts.Bucket
	if bucket == "" {
		bucket = DefaultBucket
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}

	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: "hookbridge: webhook-ids published or being published",
			History:     1,
			TTL:         ttl,
			Storage:     jetstream.FileStorage,
			Replicas:    opts.Replicas,
		})
		// Another replica may have created it meanwhile; with our config that
		// is not an error, with another one the TTL check below explains it.
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dedup: bucket %s: %w", bucket, err)
	}

	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("dedup: bucket %s: %w", bucket, err)
	}
	if st.TTL() != ttl {
		return nil, fmt.Errorf("%w: bucket %s keeps ids for %v, HOOKBRIDGE_DEDUP_TTL is %v: "+
			"set HOOKBRIDGE_DEDUP_TTL=%v, or delete the bucket (nats kv rm %s) to recreate it with the new TTL",
			ErrTTLMismatch, bucket, st.TTL(), ttl, st.TTL(), bucket)
	}
	d := &KV{kv: kv, lease: lease, now: now}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && opts.Writer != nil {
		if si := bs.StreamInfo(); si != nil && si.Config.Mirror == nil {
			d.w, d.putPre = opts.Writer, "$KV."+bucket+"."
			maxPending := opts.MaxPendingRecords
			if maxPending <= 0 {
				maxPending = DefaultMaxPendingRecords
			}
			d.rec = newRecorder(d.w, d.putPre, maxPending, opts.Log)
		}
	}
	return d, nil
}

// kvClaimAttempts bounds Claim's retries when the key vanishes between the
// failed create and the read (a Release or expiry in between).
const kvClaimAttempts = 3

// Claim implements ingest.Deduper.
func (d *KV) Claim(ctx context.Context, key string) (ingest.ClaimStatus, ingest.Owner, error) {
	if key == "" {
		return 0, 0, errEmptyKey
	}
	k := kvKey(key)
	owner := newOwner()
	for range kvClaimAttempts {
		now := d.now()
		claim := []byte(kvInFlightValue(now.Add(d.lease), owner))
		err := d.create(ctx, k, claim)
		if err == nil {
			return ingest.ClaimNew, owner, nil
		}
		if !kvConflict(err) {
			return 0, 0, fmt.Errorf("dedup: claim: %w", err)
		}
		e, err := d.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("dedup: claim: %w", err)
		}
		v, err := parseKVValue(e.Value())
		if err != nil {
			return 0, 0, fmt.Errorf("dedup: claim: key %s: %w", k, err)
		}
		switch {
		case v.done:
			return ingest.ClaimDone, 0, nil
		case v.owner == owner:
			// Our own create, stored although its answer was lost and the
			// writer sent it again.
			return ingest.ClaimNew, owner, nil
		case now.Before(v.deadline):
			return ingest.ClaimInFlight, 0, nil
		}
		// The lease lapsed: take the claim over, but only from the revision we
		// read, so that of two takers exactly one wins.
		_, err = d.kv.Update(ctx, k, claim, e.Revision())
		switch {
		case err == nil:
			return ingest.ClaimNew, owner, nil
		case kvConflict(err):
			return ingest.ClaimInFlight, 0, nil
		}
		return 0, 0, fmt.Errorf("dedup: claim: %w", err)
	}
	// The key keeps appearing and vanishing: someone else is working on it;
	// the sender's retry will find out how it ended.
	return ingest.ClaimInFlight, 0, nil
}

// create stores claim under key if the key is new: through the writer's
// conditional publish first, since almost every key is new, then, on a
// conflict, through KeyValue.Create, which also succeeds over a delete marker
// (a released key) and reports a live key as ErrKeyExists.
func (d *KV) create(ctx context.Context, key string, claim []byte) error {
	if d.w != nil {
		err := d.w.PublishIfNew(ctx, d.putPre+key, claim)
		if err == nil || !kvConflict(err) {
			return err
		}
	}
	_, err := d.kv.Create(ctx, key, claim)
	return err
}

// kvDoneValue is the stored "done"; writers never modify the payload.
var kvDoneValue = []byte(valueDone)

// Complete implements ingest.Deduper. With a writer it sends the "done"
// record (what KeyValue.Put sends) and returns without waiting for the ack;
// a record that is not acknowledged is sent again in the background (see
// recorder). A Claim sent later on the same connection is stored after it,
// so it finds the key done. Without a writer it is a KeyValue.Put, waited
// for.
func (d *KV) Complete(ctx context.Context, key string) error {
	if key == "" {
		return errEmptyKey
	}
	if d.rec != nil {
		d.rec.send(kvKey(key), 0)
		return nil
	}
	if _, err := d.kv.Put(ctx, kvKey(key), kvDoneValue); err != nil {
		return fmt.Errorf("dedup: complete: %w", err)
	}
	return nil
}

// Release implements ingest.Deduper. It deletes the key only while it still
// holds owner's claim, at the revision read, so a Release that comes late
// (after another request took the claim over, or completed the key) changes
// nothing.
func (d *KV) Release(ctx context.Context, key string, owner ingest.Owner) error {
	if key == "" {
		return errEmptyKey
	}
	k := kvKey(key)
	e, err := d.kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dedup: release: %w", err)
	}
	if v, err := parseKVValue(e.Value()); err != nil || v.done || v.owner != owner {
		return nil // nothing of ours to release
	}
	err = d.kv.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
	if err != nil && !kvConflict(err) {
		return fmt.Errorf("dedup: release: %w", err)
	}
	return nil
}

// Check reports whether the bucket is reachable.
func (d *KV) Check(ctx context.Context) error {
	if _, err := d.kv.Status(ctx); err != nil {
		return fmt.Errorf("dedup: bucket %s: %w", d.kv.Bucket(), err)
	}
	return nil
}

// PendingRecords returns how many records are sent and not yet acknowledged,
// or wait to be sent again.
func (d *KV) PendingRecords() int {
	if d.rec == nil {
		return 0
	}
	return d.rec.pending()
}

// LostRecords returns how many records were given up (the resend queue was
// full, or the store closed before they were acknowledged).
func (d *KV) LostRecords() uint64 {
	if d.rec == nil {
		return 0
	}
	return d.rec.lost.Load()
}

// Close sends the records still waiting and waits, bounded by ctx, for
// their acks; what is left is counted as lost and logged. Call it after the
// handler has stopped and before the writer closes.
func (d *KV) Close(ctx context.Context) error {
	if d.rec == nil {
		return nil
	}
	return d.rec.close(ctx)
}

func kvInFlightValue(deadline time.Time, owner ingest.Owner) string {
	return valueInFlight + " " + strconv.FormatInt(deadline.UnixMilli(), 10) + " " + strconv.FormatUint(uint64(owner), 16)
}

// kvValue is a parsed stored value. A claim written before owners were
// recorded has owner 0, which no Release matches: it expires with its lease.
type kvValue struct {
	done     bool
	deadline time.Time
	owner    ingest.Owner
}

func parseKVValue(b []byte) (kvValue, error) {
	s := string(b)
	if s == valueDone {
		return kvValue{done: true}, nil
	}
	rest, ok := strings.CutPrefix(s, valueInFlight+" ")
	if ok {
		ms, owner, hasOwner := strings.Cut(rest, " ")
		n, err := strconv.ParseInt(ms, 10, 64)
		var o uint64
		if err == nil && hasOwner {
			o, err = strconv.ParseUint(owner, 16, 64)
		}
		if err == nil {
			return kvValue{deadline: time.UnixMilli(n), owner: ingest.Owner(o)}, nil
		}
	}
	return kvValue{}, fmt.Errorf("unexpected value %q", s)
}

// kvConflict reports whether err is JetStream's "wrong last sequence": the key
// exists (Create) or changed since it was read (Update, Delete). Replicated
// streams report it with another code than single-replica ones.
func kvConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
