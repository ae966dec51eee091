package dedup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// dedupRedisURL returns HOOKBRIDGE_IT_REDIS_URL. Unset, the test is skipped,
// except in CI, where a silently skipped broker test is a defect.
func dedupRedisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("HOOKBRIDGE_IT_REDIS_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but HOOKBRIDGE_IT_REDIS_URL is unset: the Redis store would go untested")
		}
		t.Skip("HOOKBRIDGE_IT_REDIS_URL unset: skipping Redis tests (e.g. HOOKBRIDGE_IT_REDIS_URL=redis://127.0.0.1:6379/0)")
	}
	return u
}

// newTestRedis returns a store on its own key prefix, whose keys are
// deleted after t.
func newTestRedis(t *testing.T, lease, ttl time.Duration) *Redis {
	t.Helper()
	o, err := ParseRedisURL(dedupRedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(o)
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "hookbridge-test:" + hex.EncodeToString(b) + ":"
	d, err := NewRedis(client, RedisOptions{Prefix: prefix, TTL: ttl, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer d.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Bounded: a test writes a few dozen keys.
		var cursor uint64
		for range 1000 {
			keys, next, err := client.Scan(ctx, cursor, prefix+"*", 1000).Result()
			if err != nil {
				t.Errorf("clean up %s*: %v", prefix, err)
				return
			}
			if len(keys) > 0 {
				if err := client.Del(ctx, keys...).Err(); err != nil {
					t.Errorf("clean up %s*: %v", prefix, err)
					return
				}
			}
			if cursor = next; cursor == 0 {
				return
			}
		}
	})
	return d
}

func TestRedisContract(t *testing.T) {
	dedupRedisURL(t)
	testDeduperContract(t, func(t *testing.T, lease, ttl time.Duration) Deduper {
		return newTestRedis(t, lease, ttl)
	})
}

// TestRedisKeys pins what operators see in redis-cli: the prefix, the
// raw id, the values and their expiries.
func TestRedisKeys(t *testing.T) {
	d := newTestRedis(t, time.Minute, time.Hour)
	ctx := dedupCtx(t)
	key := d.prefix + "wh_1 . *>"
	owner := dedupClaim(t, d, "wh_1 . *>", ClaimNew)
	if v, err := d.client.Get(ctx, key).Result(); err != nil || v != "inflight "+strconv.FormatUint(uint64(owner), 16) {
		t.Fatalf("GET %q = %q, %v; want inflight and the owner %x", key, v, err, owner)
	}
	if ttl, err := d.client.PTTL(ctx, key).Result(); err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL of a claim = %v, %v; want (0, 1m]", ttl, err)
	}
	dedupComplete(t, d, "wh_1 . *>")
	if v, err := d.client.Get(ctx, key).Result(); err != nil || v != "done" {
		t.Fatalf("GET %q = %q, %v; want done", key, v, err)
	}
	if ttl, err := d.client.PTTL(ctx, key).Result(); err != nil || ttl <= time.Minute || ttl > time.Hour {
		t.Fatalf("PTTL of a completed id = %v, %v; want (1m, 1h]", ttl, err)
	}
	if err := d.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func TestRedisStoreErrors(t *testing.T) {
	// A loopback port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	o, err := ParseRedisURL("redis://" + addr + "/0?dial_timeout=1s&max_retries=-1")
	if err != nil {
		t.Fatal(err)
	}
	o.DialerRetries = 1 // fail fast; the default backs off for half a second per operation
	d, err := NewRedis(redis.NewClient(o), RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := dedupCtx(t)
	if st, _, err := d.Claim(ctx, "x"); err == nil {
		t.Errorf("Claim without Redis = %v, want an error", st)
	}
	if err := d.Complete(ctx, "x"); err == nil {
		t.Error("Complete without Redis: no error")
	}
	if err := d.Release(ctx, "x", 1); err == nil {
		t.Error("Release without Redis: no error")
	}
	if err := d.Check(ctx); err == nil {
		t.Error("Check without Redis: no error")
	}
}

func TestDedupParseRedisURL(t *testing.T) {
	tests := []struct {
		url     string
		addr    string
		db      int
		tls     bool
		wantErr bool
	}{
		{url: "redis://127.0.0.1:6379/0", addr: "127.0.0.1:6379"},
		{url: "redis://127.0.0.1/2", addr: "127.0.0.1:6379", db: 2},
		{url: "redis://user:s3cret@127.0.0.1:6380", addr: "127.0.0.1:6380"},
		{url: "rediss://cache.example:6380/1", addr: "cache.example:6380", db: 1, tls: true},
		{url: "unix:///tmp/redis.sock", wantErr: true},
		{url: "http://127.0.0.1:6379", wantErr: true},
		{url: "127.0.0.1:6379", wantErr: true},
		{url: "redis://127.0.0.1/notadb", wantErr: true},
		{url: "redis://user:s3cret@127.0.0.1:bad port/0", wantErr: true},
		{url: "redis://user:s3cret@[::1/0", wantErr: true},
	}
	for _, tt := range tests {
		o, err := ParseRedisURL(tt.url)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseRedisURL(%q): no error", tt.url)
			} else if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("ParseRedisURL(%q) error %q leaks the password", tt.url, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRedisURL(%q): %v", tt.url, err)
			continue
		}
		if o.Addr != tt.addr || o.DB != tt.db || (o.TLSConfig != nil) != tt.tls {
			t.Errorf("ParseRedisURL(%q) = addr %q db %d tls %v; want %q %d %v", tt.url, o.Addr, o.DB, o.TLSConfig != nil, tt.addr, tt.db, tt.tls)
		}
	}
}

func TestRedisOptions(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer client.Close()
	d, err := NewRedis(client, RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.prefix != DefaultRedisPrefix || d.ttl != DefaultTTL || d.lease != DefaultLease {
		t.Fatalf("defaults: prefix %q ttl %v lease %v", d.prefix, d.ttl, d.lease)
	}
	if _, err := NewRedis(client, RedisOptions{TTL: -time.Second}); err == nil {
		t.Fatal("negative TTL accepted")
	}
	if _, err := NewRedisURL("ftp://x", RedisOptions{}); err == nil {
		t.Fatal("ftp:// URL accepted")
	}
	u, err := NewRedisURL("redis://127.0.0.1:1/3", RedisOptions{Prefix: "p:"}) // never dialled
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got := u.client.(*redis.Client).Options(); got.Addr != "127.0.0.1:1" || got.DB != 3 || u.prefix != "p:" {
		t.Fatalf("NewRedisURL: addr %q db %d prefix %q", got.Addr, got.DB, u.prefix)
	}
}

// BenchmarkRedis measures Claim+Complete of unique ids (two Redis
// round trips) from parallel goroutines.
func BenchmarkRedis(b *testing.B) {
	u := os.Getenv("HOOKBRIDGE_IT_REDIS_URL")
	if u == "" {
		b.Skip("HOOKBRIDGE_IT_REDIS_URL unset")
	}
	o, err := ParseRedisURL(u)
	if err != nil {
		b.Fatal(err)
	}
	client := redis.NewClient(o)
	defer client.Close()
	prefix := "hookbridge-bench:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	// Short TTL: the keys clean themselves up.
	d, err := NewRedis(client, RedisOptions{Prefix: prefix, TTL: 10 * time.Second, Lease: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var next atomic.Uint64
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := "wh_" + strconv.FormatUint(next.Add(1), 16)
			if st, _, err := d.Claim(ctx, id); err != nil || st != ClaimNew {
				b.Fatalf("Claim = %v, %v", st, err)
			}
			if err := d.Complete(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	})
}
