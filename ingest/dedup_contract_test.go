package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
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

func dedupClaim(t *testing.T, d Deduper, id string, want ClaimStatus) {
	t.Helper()
	got, err := d.Claim(context.Background(), id)
	if err != nil {
		t.Fatalf("Claim(%q): %v", id, err)
	}
	if got != want {
		t.Fatalf("Claim(%q) = %v, want %v", id, got, want)
	}
}

func dedupDo(t *testing.T, name string, id string, op func(context.Context, string) error) {
	t.Helper()
	if err := op(context.Background(), id); err != nil {
		t.Fatalf("%s(%q): %v", name, id, err)
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
			st, err := d.Claim(context.Background(), id)
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
		strings.Repeat("y", maxPlainKeyIDLen),
		strings.Repeat("y", maxPlainKeyIDLen+1),
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
		dedupClaim(t, d, "a", ClaimNew)
		dedupClaim(t, d, "a", ClaimInFlight)
		dedupDo(t, "Release", "a", d.Release)
		dedupClaim(t, d, "a", ClaimNew) // a released id can be published again
		dedupDo(t, "Complete", "a", d.Complete)
		dedupClaim(t, d, "a", ClaimDone)
		dedupClaim(t, d, "a", ClaimDone)
		dedupDo(t, "Release", "a", d.Release) // a late Release must not forget a published id
		dedupClaim(t, d, "a", ClaimDone)
		dedupClaim(t, d, "b", ClaimNew) // ids are independent
	})

	t.Run("release and complete without claim", func(t *testing.T) {
		d := newStore(t, longLease, longTTL)
		dedupDo(t, "Release", "never-claimed", d.Release)
		dedupClaim(t, d, "never-claimed", ClaimNew)
		dedupDo(t, "Complete", "never-claimed-done", d.Complete)
		dedupClaim(t, d, "never-claimed-done", ClaimDone)
	})

	t.Run("empty id is an error", func(t *testing.T) {
		d := newStore(t, longLease, longTTL)
		ctx := context.Background()
		if _, err := d.Claim(ctx, ""); !errors.Is(err, errEmptyID) {
			t.Errorf("Claim(\"\") error = %v, want errEmptyID", err)
		}
		if err := d.Complete(ctx, ""); !errors.Is(err, errEmptyID) {
			t.Errorf("Complete(\"\") error = %v, want errEmptyID", err)
		}
		if err := d.Release(ctx, ""); !errors.Is(err, errEmptyID) {
			t.Errorf("Release(\"\") error = %v, want errEmptyID", err)
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
		dedupDo(t, "Complete", "crashed", d.Complete)
		dedupClaim(t, d, "crashed", ClaimDone)
	})

	t.Run("ttl expiry forgets a done id", func(t *testing.T) {
		const ttl = 2 * time.Second
		d := newStore(t, longLease, ttl)
		dedupClaim(t, d, "old", ClaimNew)
		dedupDo(t, "Complete", "old", d.Complete)
		dedupClaim(t, d, "old", ClaimDone)
		dedupElapse(d, ttl)
		// Servers expire on their own schedule: poll, boundedly.
		for i := 0; ; i++ {
			st, err := d.Claim(context.Background(), "old")
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
		dedupDo(t, "Complete", "hot", d.Complete)
		if got := dedupConcurrentClaims(t, d, "hot", 50); got[ClaimDone] != 50 {
			t.Fatalf("50 concurrent Claims of a done id: %v, want 50 done", got)
		}
	})

	t.Run("weird ids work and do not collide", func(t *testing.T) {
		d := newStore(t, longLease, longTTL)
		ids := dedupWeirdIDs()
		// A collision would show as in flight on the first pass.
		for _, id := range ids {
			dedupClaim(t, d, id, ClaimNew)
		}
		for _, id := range ids {
			dedupClaim(t, d, id, ClaimInFlight)
		}
		for _, id := range ids[:len(ids)/2] {
			dedupDo(t, "Complete", id, d.Complete)
		}
		for i, id := range ids {
			want := ClaimInFlight
			if i < len(ids)/2 {
				want = ClaimDone
			}
			dedupClaim(t, d, id, want)
		}
		for _, id := range ids {
			dedupDo(t, "Release", id, d.Release)
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

func TestDedupKVKey(t *testing.T) {
	seen := map[string]string{}
	for _, id := range dedupWeirdIDs() {
		k := kvDedupKey(id)
		if !dedupValidKVKey(k) {
			t.Errorf("kvDedupKey(%q) = %q: not a valid KV key", id, k)
		}
		if len(k) > 128 {
			t.Errorf("kvDedupKey(%q) is %d bytes, want ≤ 128", id, len(k))
		}
		if other, ok := seen[k]; ok {
			t.Errorf("kvDedupKey(%q) = kvDedupKey(%q) = %q", id, other, k)
		}
		seen[k] = id
	}
	if got, want := kvDedupKey("wh_123"), "d2hfMTIz"; got != want {
		t.Errorf("kvDedupKey(wh_123) = %q, want %q (the documented encoding)", got, want)
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
