package ingest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Defaults shared by every Deduper store.
const (
	// DefaultDedupTTL covers OpenAI's retry horizon: a completed webhook-id is
	// remembered for 72 h, so any retry within it is answered "duplicate".
	DefaultDedupTTL = 72 * time.Hour
	// DefaultDedupLease is how long an in-flight claim blocks other deliveries
	// of the same id. It only matters when a replica dies between Claim and
	// Complete/Release; it must exceed the publish budget (default 5 s).
	DefaultDedupLease = 30 * time.Second
)

var (
	// ErrDedupFull is returned by the memory store when every remembered id
	// is in flight and there is no room for another.
	ErrDedupFull = errors.New("ingest: dedup store full: every entry is in flight")
	// ErrDedupTTLMismatch is returned by NewKVDeduper when the bucket already
	// exists with a TTL other than the configured one.
	ErrDedupTTLMismatch = errors.New("ingest: dedup bucket TTL differs from HOOKBRIDGE_DEDUP_TTL")

	// errEmptyID: an empty webhook-id is a missing header, which the handler
	// answers 400 before any store is consulted. Stores reject it rather than
	// let every header-less request share one key.
	errEmptyID = errors.New("ingest: dedup: empty webhook-id")
)

// Stored values. They are plain text so that `nats kv get` and `redis-cli GET`
// show an operator what state an id is in.
const (
	dedupValueDone     = "done"
	dedupValueInFlight = "inflight"
)

// maxPlainKeyIDLen is the longest webhook-id whose KV key is its base64
// encoding (128 characters). Longer ids, which OpenAI does not send but which
// must still work, are keyed by their SHA-256 so keys stay short.
const maxPlainKeyIDLen = 96

// kvDedupKey maps any non-empty webhook-id to a valid JetStream KV key
// (characters [-/_=.a-zA-Z0-9], no empty tokens):
//
//   - ids of up to 96 bytes: base64.RawURLEncoding(id), which is reversible
//     and therefore collision-free; its alphabet [-_a-zA-Z0-9] has no '.'.
//   - longer ids: "sha256." + hex(sha256(id)). The '.' can never appear in the
//     first form, so the two forms never collide with each other.
//
// Raw ids cannot be used directly: '.', '*', '>', spaces and unicode are
// subject syntax or invalid in keys.
func kvDedupKey(id string) string {
	if len(id) <= maxPlainKeyIDLen {
		return base64.RawURLEncoding.EncodeToString([]byte(id))
	}
	sum := sha256.Sum256([]byte(id))
	return "sha256." + hex.EncodeToString(sum[:])
}

// dedupDurations applies the defaults and rejects negative durations.
func dedupDurations(ttl, lease time.Duration) (time.Duration, time.Duration, error) {
	if ttl == 0 {
		ttl = DefaultDedupTTL
	}
	if lease == 0 {
		lease = DefaultDedupLease
	}
	if ttl < 0 || lease < 0 {
		return 0, 0, fmt.Errorf("ingest: dedup TTL (%v) and lease (%v) must be positive", ttl, lease)
	}
	return ttl, lease, nil
}
