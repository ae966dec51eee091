// Package ingest is hookbridge's HTTP side: it verifies OpenAI webhook
// signatures exactly as openai-go does (and signs them, for tests and load
// generators), deduplicates deliveries, and maps every outcome to the status
// code OpenAI's retry logic expects.
//
// It defines the small interfaces it needs from the rest of the system
// (Publisher, Deduper) and imports no broker or database client, so that it
// can be used on its own to verify webhooks in any handler. The broker
// implementations live in package publish, the dedup stores in ingest/dedup;
// cmd/hookbridge wires them together.
package ingest

import (
	"context"
	"errors"

	"github.com/hookbridge/hookbridge/schema"
)

// Publisher delivers a verified webhook to a broker.
//
// Publish returns a nil error only once the broker has stored d durably, or
// has found that it already holds a message with d.DedupKey() and dropped
// this one: then duplicate is true. It must be safe for concurrent use and
// give up when ctx is done.
//
// ctx is valid only until Publish returns: the handler recycles it for the
// next request, so a Publisher must not keep ctx, or anything derived from
// it, after returning. It may keep d: the handler never reuses a Delivery or
// its Body.
//
// An error means the broker did not acknowledge d. When the message may have
// been stored all the same (the acknowledgement timed out, or the connection
// dropped after the message was sent), the error says so: see MaybeStored.
type Publisher interface {
	Publish(ctx context.Context, d *schema.Delivery) (duplicate bool, err error)
}

// MaybeStored reports whether err, returned by a Publisher, leaves open
// whether the broker stored the message. An error says so with a method
// MaybeStored() bool that returns true, anywhere in its chain; ingest defines
// no error value for it, so that publishers need not import ingest.
//
// With a broker that drops repeats of a dedup key (HandlerConfig.BrokerWindow),
// the handler re-publishes such deliveries in the background until the broker
// answers, so that the outcome is settled while the broker still remembers
// the key.
func MaybeStored(err error) bool {
	var m interface{ MaybeStored() bool }
	return errors.As(err, &m) && m.MaybeStored()
}

// ClaimStatus is the state of a dedup key in a Deduper.
type ClaimStatus int

const (
	// ClaimNew means the caller now owns the key and must Complete or Release it.
	ClaimNew ClaimStatus = iota
	// ClaimInFlight means another request holds an unexpired claim on the key.
	ClaimInFlight
	// ClaimDone means the key was published within the dedup TTL.
	ClaimDone
)

func (s ClaimStatus) String() string {
	switch s {
	case ClaimNew:
		return "new"
	case ClaimInFlight:
		return "in_flight"
	case ClaimDone:
		return "done"
	}
	return "unknown"
}

// Owner identifies one claim of a key: Release removes a claim only while it
// still carries the owner that Claim returned, so a request whose lease
// expired cannot remove the claim another request took over.
type Owner uint64

// Deduper remembers which dedup keys have been published, so that OpenAI's
// retries and concurrent duplicate deliveries are published at most once.
//
// The protocol is Claim → publish → Complete, or Release when the publish
// failed so that the sender's retry can try again. A claim that is neither
// completed nor released expires after a lease, so a crashed replica cannot
// block a key forever; after that another request may take it over.
//
// Every method's ctx is valid only until the method returns (the handler
// recycles it); a store that works in the background must not keep it.
type Deduper interface {
	// Claim takes key for the caller unless it is published (ClaimDone) or
	// another request holds an unexpired claim on it (ClaimInFlight). With
	// ClaimNew it returns the claim's owner, for Release.
	Claim(ctx context.Context, key string) (ClaimStatus, Owner, error)
	// Complete records key as published, whoever claimed it: also without
	// a claim, when the broker's duplicate window guarded the publish. A
	// store may return before the record is stored: the JetStream KV store
	// sends it on the connection its claims use, in order, without waiting,
	// and sends again what JetStream did not store. A Claim after Complete
	// then finds the key done unless the first send was lost, a case the
	// broker's window covers while the resend is pending.
	Complete(ctx context.Context, key string) error
	// Release removes the claim of owner on key, so that a retry can publish.
	// A claim another request took over, and a completed key, stay as they
	// are.
	Release(ctx context.Context, key string, owner Owner) error
}
