// Package dedup holds the stores behind ingest.Deduper: a JetStream KV
// bucket (shared by replicas, durable), Redis (shared, for Kafka
// deployments) and memory (one replica). They live apart from ingest so that
// importing ingest to verify webhooks pulls in no NATS or Redis client.
//
// Every store keeps the same contract (contract_test.go): a claim records
// its owner, so a late Release cannot remove another request's takeover; a
// completed key stays completed for the TTL whoever calls Release.
package dedup

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hookbridge/hookbridge/ingest"
)

// Defaults shared by every store.
const (
	// DefaultTTL covers OpenAI's retry horizon: a completed key is
	// remembered for 72 h, so any retry within it is answered "duplicate".
	DefaultTTL = 72 * time.Hour
	// DefaultLease is how long an in-flight claim blocks other deliveries of
	// the same key. It only matters when a replica dies between Claim and
	// Complete/Release; it must exceed the publish budget (default 5 s).
	DefaultLease = 30 * time.Second
)

var (
	// ErrFull is returned by the memory store when every remembered key is
	// in flight and there is no room for another.
	ErrFull = errors.New("dedup: store full: every entry is in flight")
	// ErrTTLMismatch is returned by NewKV when the bucket already exists with
	// a TTL other than the configured one.
	ErrTTLMismatch = errors.New("dedup: bucket TTL differs from HOOKBRIDGE_DEDUP_TTL")

	// errEmptyKey: an empty webhook-id is a missing header, which the handler
	// answers 400 before any store is consulted. Stores reject it rather than
	// let every header-less request share one key.
	errEmptyKey = errors.New("dedup: empty key")
)

// Stored values. They are plain text so that `nats kv get` and `redis-cli GET`
// show an operator what state a key is in: "done", or "inflight …" with the
// owner (and, on KV, the lease deadline).
const (
	valueDone     = "done"
	valueInFlight = "inflight"
)

// newOwner returns a random non-zero owner for a claim in a shared store:
// unique across replicas without coordination (a collision needs two claims
// of one key, both live, to draw the same 64 bits).
func newOwner() ingest.Owner {
	for {
		if o := ingest.Owner(rand.Uint64()); o != 0 {
			return o
		}
	}
}

// maxPlainKeyLen is the longest key whose KV key is its base64 encoding
// (128 characters). Longer keys, which OpenAI's webhook-ids never are but
// which must still work, are keyed by their SHA-256 so keys stay short.
const maxPlainKeyLen = 96

// kvKey maps any non-empty dedup key to a valid JetStream KV key
// (characters [-/_=.a-zA-Z0-9], no empty tokens):
//
//   - keys of up to 96 bytes: base64.RawURLEncoding(key), which is
//     reversible and therefore collision-free; its alphabet [-_a-zA-Z0-9]
//     has no '.'.
//   - longer keys: "sha256." + hex(sha256(key)). The '.' can never appear in
//     the first form, so the two forms never collide with each other.
//
// Raw keys cannot be used directly: '.', '*', '>', spaces and unicode are
// subject syntax or invalid in keys.
func kvKey(key string) string {
	if len(key) <= maxPlainKeyLen {
		return base64.RawURLEncoding.EncodeToString([]byte(key))
	}
	sum := sha256.Sum256([]byte(key))
	return "sha256." + hex.EncodeToString(sum[:])
}

// durations applies the defaults and rejects negative durations.
func durations(ttl, lease time.Duration) (time.Duration, time.Duration, error) {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if lease == 0 {
		lease = DefaultLease
	}
	if ttl < 0 || lease < 0 {
		return 0, 0, fmt.Errorf("dedup: TTL (%v) and lease (%v) must be positive", ttl, lease)
	}
	return ttl, lease, nil
}
