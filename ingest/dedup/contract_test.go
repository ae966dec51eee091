package dedup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/ingest"
)

// Names of the ingest types, to keep the contract readable.
type (
	Deduper     = ingest.Deduper
	ClaimStatus = ingest.ClaimStatus
	Owner       = ingest.Owner
)

const (
	ClaimNew      = ingest.ClaimNew
	ClaimInFlight = ingest.ClaimInFlight
	ClaimDone     = ingest.ClaimDone
)

// dedupClockAdvancer is implemented by stores under test whose clock is fake;
// the contract then advances it instead of sleeping.
type dedupClockAdvancer interface{ advance(time.Duration) }

// dedupElapse lets dur pass for d: instantly on a fake clock, else by
// sleeping (real-clock stores only get durations of a few seconds). A store
// may keep some deadlines on a fake clock and others on its server's clock
// (KV: leases client-side, TTL server-side); the TTL test polls for that.
func dedupElapse(d Deduper, dur time.Duration) {
	if a, ok := d.(dedupClockAdvancer); ok {
		a.advance(dur)
		return
	}
	time.Sleep(dur)
}

// dedupClaim claims id, expects want, and returns the owner (0 unless new).
func dedupClaim(t *testing.T, d Deduper, id string, want ClaimStatus) Owner {
	t.Helper()
	got, owner, err := d.Claim(context.Background(), id)
	if err != nil {
		t.Fatalf("Claim(%q): %v", id, err)
	}
	if got != want {
		t.Fatalf("Claim(%q) = %v, want %v", id, got, want)
	}
	if (owner != 0) != (got == ClaimNew) {
		t.Fatalf("Claim(%q) = %v with owner %x: want an owner exactly with new", id, got, owner)
	}
	return owner
}

func dedupComplete(t *testing.T, d Deduper, id string) {
	t.Helper()
	if err := d.Complete(context.Background(), id); err != nil {
		t.Fatalf("Complete(%q): %v", id, err)
	}
}

func dedupRelease(t *testing.T, d Deduper, id string, owner Owner) {
	t.Helper()
	if err := d.Release(context.Background(), id, owner); err != nil {
		t.Fatalf("Release(%q, %x): %v", id, owner, err)
	}
}

// dedupConcurrentClaims runs n Claims of id at once and counts the outcomes.
func dedupConcurrentClaims(t *testing.T, d Deduper, id string, n int) map[ClaimStatus]int {
	t.Helper()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[ClaimStatus]int{}
		start  = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			<-start
			st, _, err := d.Claim(context.Background(), id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("Claim(%q): %v", id, err)
				return
			}
			counts[st]++
		})
	}
	close(start)
	wg.Wait()
	return counts
}

// dedupWeirdIDs are webhook-ids that are valid HTTP header values but are not
// valid KV keys or NATS subjects as they stand, plus ids on both sides of the
// KV key's hashing threshold and ids that look like another id's encoding.
func dedupWeirdIDs() []string {
	long := strings.Repeat("x", 1024)
	sum := sha256.Sum256([]byte(long))
	return []string{
		"wh_685342e6c53c8190a1be43f081506c52",
		"a", "YQ", // "YQ" is base64("a")
		" ", "a b", "a  b", "\t",
		".", "a.b", "a..b", ".a", "a.",
		"*", ">", "a.*.>", "foo.>",
		"日本語", "ü", "\x00", "\xff\xfe",
		"/", "=", "-_", "a/b=c",
		strings.Repeat("y", maxPlainKeyLen),
		strings.Repeat("y", maxPlainKeyLen+1),
		long,
		long[:1023] + "z",
		"sha256." + hex.EncodeToString(sum[:]), // the KV key of long, as an id
	}
}

// testDeduperContract is the behaviour every Deduper store must have.
// newStore returns an empty store with the given lease and TTL.
func testDeduperContract(t *testing.T, newStore func(t *testing.T, lease, ttl time.Duration) Deduper) {
	const (
		longLease = time.Minute
		longTTL   = time.Hour
	)

	t.Run("transitions", func(t *testing.T) {
		d := newStore(t, longLease, longTTL)
		a := dedupClaim(t, d, "a", ClaimNew)
		dedupClaim(t, d, "a", ClaimInFlight)
		dedupRelease(t, d, "a", a)
		a = dedupClaim(t, d, "a", ClaimNew) // a released id can be published again
		dedupComplete(t, d, "a")
		dedupClaim(t, d, "a", ClaimDone)
		dedupClaim(t, d, "a", ClaimDone)
		dedupRelease(t, d, "a", a) // a late Release must not forget a published id
		dedupClaim(t, d, "a", ClaimDone)
		dedupClaim(t, d, "b", ClaimNew) // ids are independent
	})

	t.Run("release and complete without claim", func(t *testing.T) {
		d := newStore(t, longLease, longTTL)
		dedupRelease(t, d, "never-claimed", 12345)
		dedupClaim(t, d, "never-claimed", ClaimNew)
		dedupComplete(t, d, "never-claimed-done")
		dedupClaim(t, d, "never-claimed-done", ClaimDone)
	})

	t.Run("release by another owner leaves the claim", func(t *testing.T) {
		d := newStore(t, longLease, longTTL)
		a := dedupClaim(t, d, "owned", ClaimNew)
		dedupRelease(t, d, "owned", a+1)
		dedupRelease(t, d, "owned", 0)
		dedupClaim(t, d, "owned", ClaimInFlight)
		dedupRelease(t, d, "owned", a)
		dedupClaim(t, d, "owned", ClaimNew)
	})

	t.Run("empty id is an error", func(t *testing.T) {
		d := newStore(t, longLease, longTTL)
		ctx := context.Background()
		if _, _, err := d.Claim(ctx, ""); !errors.Is(err, errEmptyKey) {
			t.Errorf("Claim(\"\") error = %v, want errEmptyKey", err)
		}
		if err := d.Complete(ctx, ""); !errors.Is(err, errEmptyKey) {
			t.Errorf("Complete(\"\") error = %v, want errEmptyKey", err)
		}
		if err := d.Release(ctx, "", 1); !errors.Is(err, errEmptyKey) {
			t.Errorf("Release(\"\") error = %v, want errEmptyKey", err)
		}
	})

	t.Run("lease expiry takeover", func(t *testing.T) {
		// With a real clock the 50 Claims below must all run within one
		// lease of the takeover, so the lease is long for a loaded CI box.
		const lease = 2 * time.Second
		d := newStore(t, lease, longTTL)
		dedupClaim(t, d, "crashed", ClaimNew)
		dedupClaim(t, d, "crashed", ClaimInFlight)
		dedupElapse(d, lease+100*time.Millisecond)
		start := time.Now()
		got := dedupConcurrentClaims(t, d, "crashed", 50)
		if got[ClaimNew] != 1 || got[ClaimInFlight] != 49 {
			t.Fatalf("50 Claims after the lease lapsed: %v, want exactly one new and 49 in flight (they took %v)", got, time.Since(start))
		}
		dedupComplete(t, d, "crashed")
		dedupClaim(t, d, "crashed", ClaimDone)
	})

	t.Run("late release after a takeover leaves the new claim", func(t *testing.T) {
		// A claims; its lease expires (A is slow, not dead); B takes over;
		// A's publish fails and it releases: B's claim must stay, or a third
		// delivery would publish while B is still publishing.
		const lease = 2 * time.Second
		d := newStore(t, lease, longTTL)
		a := dedupClaim(t, d, "slow", ClaimNew)
		dedupElapse(d, lease+100*time.Millisecond)
		b := dedupClaim(t, d, "slow", ClaimNew)
		if a == b {
			t.Fatalf("the takeover got the same owner %x as the first claim", a)
		}
		dedupRelease(t, d, "slow", a)
		dedupClaim(t, d, "slow", ClaimInFlight)
		dedupComplete(t, d, "slow") // B published
		dedupRelease(t, d, "slow", a)
		dedupRelease(t, d, "slow", b)
		dedupClaim(t, d, "slow", ClaimDone)
	})

	t.Run("ttl expiry forgets a done id", func(t *testing.T) {
		const ttl = 2 * time.Second
		d := newStore(t, longLease, ttl)
		dedupClaim(t, d, "old", ClaimNew)
		dedupComplete(t, d, "old")
		dedupClaim(t, d, "old", ClaimDone)
		dedupElapse(d, ttl)
		// Servers expire on their own schedule: poll, boundedly.
		for i := 0; ; i++ {
			st, _, err := d.Claim(context.Background(), "old")
			if err != nil {
				t.Fatal(err)
			}
			if st == ClaimNew {
				break
			}
			if st != ClaimDone || i == 100 {
				t.Fatalf("Claim after TTL = %v (attempt %d), want new", st, i)
			}
			time.Sleep(100 * time.Millisecond)
		}
		dedupClaim(t, d, "old", ClaimInFlight)
	})

	t.Run("concurrent claims of one id", func(t *testing.T) {
		d := newStore(t, longLease, longTTL)
		got := dedupConcurrentClaims(t, d, "hot", 50)
		if got[ClaimNew] != 1 || got[ClaimInFlight] != 49 {
			t.Fatalf("50 concurrent Claims: %v, want exactly one new and 49 in flight", got)
		}
		dedupComplete(t, d, "hot")
		if got := dedupConcurrentClaims(t, d, "hot", 50); got[ClaimDone] != 50 {
			t.Fatalf("50 concurrent Claims of a done id: %v, want 50 done", got)
		}
	})

	t.Run("weird ids work and do not collide", func(t *testing.T) {
		d := newStore(t, longLease, longTTL)
		ids := dedupWeirdIDs()
		owners := make([]Owner, len(ids))
		// A collision would show as in flight on the first pass.
		for i, id := range ids {
			owners[i] = dedupClaim(t, d, id, ClaimNew)
		}
		for _, id := range ids {
			dedupClaim(t, d, id, ClaimInFlight)
		}
		for _, id := range ids[:len(ids)/2] {
			dedupComplete(t, d, id)
		}
		for i, id := range ids {
			want := ClaimInFlight
			if i < len(ids)/2 {
				want = ClaimDone
			}
			dedupClaim(t, d, id, want)
		}
		for i, id := range ids {
			dedupRelease(t, d, id, owners[i])
		}
		for i, id := range ids {
			want := ClaimNew
			if i < len(ids)/2 {
				want = ClaimDone
			}
			dedupClaim(t, d, id, want)
		}
	})
}

func TestKVKey(t *testing.T) {
	seen := map[string]string{}
	for _, id := range dedupWeirdIDs() {
		k := kvKey(id)
		if !dedupValidKVKey(k) {
			t.Errorf("kvKey(%q) = %q: not a valid KV key", id, k)
		}
		if len(k) > 128 {
			t.Errorf("kvKey(%q) is %d bytes, want ≤ 128", id, len(k))
		}
		if other, ok := seen[k]; ok {
			t.Errorf("kvKey(%q) = kvKey(%q) = %q", id, other, k)
		}
		seen[k] = id
	}
	if got, want := kvKey("wh_123"), "d2hfMTIz"; got != want {
		t.Errorf("kvKey(wh_123) = %q, want %q (the documented encoding)", got, want)
	}
}

// dedupValidKVKey restates nats.go's key rule: [-/_=.a-zA-Z0-9]+ with no
// empty dot-separated token.
func dedupValidKVKey(k string) bool {
	if k == "" || k[0] == '.' || k[len(k)-1] == '.' || strings.Contains(k, "..") {
		return false
	}
	for _, c := range k {
		ok := c == '-' || c == '/' || c == '_' || c == '=' || c == '.' ||
			'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !ok {
			return false
		}
	}
	return true
}
