package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultDedupBucket is the JetStream KV bucket the KV store uses.
const DefaultDedupBucket = "HOOKBRIDGE_DEDUP"

// KVOptions configure NewKVDeduper. Zero values take the defaults.
type KVOptions struct {
	Bucket   string           // default "HOOKBRIDGE_DEDUP"
	TTL      time.Duration    // bucket max age: how long a completed id is remembered; default 72h
	Lease    time.Duration    // how long an in-flight claim blocks others; default 30s
	Replicas int              // bucket replicas when it is created; default 1
	Now      func() time.Time // clock for lease deadlines, for tests; default time.Now
	// Writer, when set, carries the claims and completions instead of the
	// jetstream KeyValue API (publish.NATS implements it): it saves a
	// request/reply round trip per claim and the ack of every completion.
	Writer KVWriter
}

// KVWriter is a cheaper path for the KV store's two hot writes, provided by
// the NATS publisher on the connection it shares with the store.
type KVWriter interface {
	// PublishIfNew stores data on subject only if the subject has no message
	// (what KeyValue.Create sends), waiting for the ack. A conflict is a
	// *jetstream.APIError with the wrong-last-sequence code.
	PublishIfNew(ctx context.Context, subject string, data []byte) error
	// PublishNoAck sends data to subject without waiting for, or asking
	// for, an ack.
	PublishNoAck(subject string, data []byte) error
}

// KVDeduper is a Deduper on a JetStream KV bucket, shared by every replica
// connected to the same NATS system and durable across restarts.
//
// Each webhook-id is one key (see kvDedupKey) whose value is
// "inflight <unix-ms lease deadline>" or "done". The bucket's max age is the
// dedup TTL, so the server forgets ids by itself; lease deadlines are compared
// with the replicas' clocks, so clock skew between replicas shortens or
// lengthens a lease by the skew. It uses only features of NATS 2.9.
type KVDeduper struct {
	kv    jetstream.KeyValue
	lease time.Duration
	now   func() time.Time

	// w and putPre serve the fast path: putPre is the subject prefix of a
	// Put ("$KV.<bucket>."), empty when the bucket is a mirror, whose writes
	// go elsewhere; Claim and CompleteAsync then use the KeyValue API.
	w      KVWriter
	putPre string
}

// NewKVDeduper opens the bucket, creating it (file storage, history 1, max
// age TTL) when it does not exist. An existing bucket with another TTL is an
// error wrapping ErrDedupTTLMismatch: it is never rewritten behind the
// operator's back.
func NewKVDeduper(ctx context.Context, js jetstream.JetStream, opts KVOptions) (*KVDeduper, error) {
	ttl, lease, err := dedupDurations(opts.TTL, opts.Lease)
	if err != nil {
		return nil, err
	}
	bucket := opts.Bucket
	if bucket == "" {
		bucket = DefaultDedupBucket
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
		return nil, fmt.Errorf("ingest: dedup bucket %s: %w", bucket, err)
	}

	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("ingest: dedup bucket %s: %w", bucket, err)
	}
	if st.TTL() != ttl {
		return nil, fmt.Errorf("%w: bucket %s keeps ids for %v, HOOKBRIDGE_DEDUP_TTL is %v: "+
			"set HOOKBRIDGE_DEDUP_TTL=%v, or delete the bucket (nats kv rm %s) to recreate it with the new TTL",
			ErrDedupTTLMismatch, bucket, st.TTL(), ttl, st.TTL(), bucket)
	}
	d := &KVDeduper{kv: kv, lease: lease, now: now}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && opts.Writer != nil {
		if si := bs.StreamInfo(); si != nil && si.Config.Mirror == nil {
			d.w, d.putPre = opts.Writer, "$KV."+bucket+"."
		}
	}
	return d, nil
}

// kvClaimAttempts bounds Claim's retries when the key vanishes between the
// failed create and the read (a Release or expiry in between).
const kvClaimAttempts = 3

// Claim implements Deduper.
func (d *KVDeduper) Claim(ctx context.Context, id string) (ClaimStatus, error) {
	if id == "" {
		return 0, errEmptyID
	}
	key := kvDedupKey(id)
	for range kvClaimAttempts {
		now := d.now()
		claim := []byte(kvInFlightValue(now.Add(d.lease)))
		err := d.create(ctx, key, claim)
		if err == nil {
			return ClaimNew, nil
		}
		if !kvConflict(err) {
			return 0, fmt.Errorf("ingest: dedup claim: %w", err)
		}
		e, err := d.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("ingest: dedup claim: %w", err)
		}
		done, deadline, err := parseKVDedupValue(e.Value())
		if err != nil {
			return 0, fmt.Errorf("ingest: dedup claim: key %s: %w", key, err)
		}
		if done {
			return ClaimDone, nil
		}
		if now.Before(deadline) {
			return ClaimInFlight, nil
		}
		// The lease lapsed: take the claim over, but only from the revision we
		// read, so that of two takers exactly one wins.
		_, err = d.kv.Update(ctx, key, claim, e.Revision())
		switch {
		case err == nil:
			return ClaimNew, nil
		case kvConflict(err):
			return ClaimInFlight, nil
		}
		return 0, fmt.Errorf("ingest: dedup claim: %w", err)
	}
	// The key keeps appearing and vanishing: someone else is working on it;
	// the sender's retry will find out how it ended.
	return ClaimInFlight, nil
}

// create stores claim under key if the key is new: through the writer's
// conditional publish first, since almost every webhook-id is new, then,
// on a conflict, through KeyValue.Create, which also succeeds over a delete
// marker (a released id) and reports a live key as ErrKeyExists.
func (d *KVDeduper) create(ctx context.Context, key string, claim []byte) error {
	if d.w != nil {
		err := d.w.PublishIfNew(ctx, d.putPre+key, claim)
		if err == nil || !kvConflict(err) {
			return err
		}
	}
	_, err := d.kv.Create(ctx, key, claim)
	return err
}

// Complete implements Deduper.
func (d *KVDeduper) Complete(ctx context.Context, id string) error {
	if id == "" {
		return errEmptyID
	}
	if _, err := d.kv.Put(ctx, kvDedupKey(id), []byte(dedupValueDone)); err != nil {
		return fmt.Errorf("ingest: dedup complete: %w", err)
	}
	return nil
}

// kvDoneValue is the stored "done"; publishers never modify the payload.
var kvDoneValue = []byte(dedupValueDone)

// CompleteAsync is Complete without an ack: it publishes the "done" value
// to the key's subject (what KeyValue.Put does) on the shared connection,
// with no reply subject, and returns. The handler uses it after the broker
// acknowledged the event, which saves a JetStream round trip per request.
// The claim stays synchronous and atomic. Messages on one connection are
// stored in order, so a later Claim through the same connection sees
// "done"; if the write is lost, the claim's lease expires and a retry is
// published again, which the stream's Nats-Msg-Id window drops.
// Errors are those of sending, not of storing. Without a writer it is
// Complete.
func (d *KVDeduper) CompleteAsync(id string) error {
	if id == "" {
		return errEmptyID
	}
	if d.w == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return d.Complete(ctx, id)
	}
	if err := d.w.PublishNoAck(d.putPre+kvDedupKey(id), kvDoneValue); err != nil {
		return fmt.Errorf("ingest: dedup complete: %w", err)
	}
	return nil
}

// Release implements Deduper. It deletes the key only while it still holds an
// in-flight claim, at the revision read, so a Release that comes late (after
// a lease takeover and Complete by another replica) cannot forget a published
// id.
func (d *KVDeduper) Release(ctx context.Context, id string) error {
	if id == "" {
		return errEmptyID
	}
	key := kvDedupKey(id)
	e, err := d.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ingest: dedup release: %w", err)
	}
	if done, _, err := parseKVDedupValue(e.Value()); err != nil || done {
		return nil // nothing of ours to release
	}
	err = d.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if err != nil && !kvConflict(err) {
		return fmt.Errorf("ingest: dedup release: %w", err)
	}
	return nil
}

// Check reports whether the bucket is reachable.
func (d *KVDeduper) Check(ctx context.Context) error {
	if _, err := d.kv.Status(ctx); err != nil {
		return fmt.Errorf("ingest: dedup bucket %s: %w", d.kv.Bucket(), err)
	}
	return nil
}

func kvInFlightValue(deadline time.Time) string {
	return dedupValueInFlight + " " + strconv.FormatInt(deadline.UnixMilli(), 10)
}

func parseKVDedupValue(v []byte) (done bool, deadline time.Time, err error) {
	s := string(v)
	if s == dedupValueDone {
		return true, time.Time{}, nil
	}
	ms, ok := strings.CutPrefix(s, dedupValueInFlight+" ")
	if ok {
		n, err := strconv.ParseInt(ms, 10, 64)
		if err == nil {
			return false, time.UnixMilli(n), nil
		}
	}
	return false, time.Time{}, fmt.Errorf("unexpected value %q", s)
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
