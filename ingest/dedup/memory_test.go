package dedup

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

type dedupFakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newDedupFakeClock() *dedupFakeClock {
	return &dedupFakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *dedupFakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *dedupFakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// memoryDedupUnderTest lets the contract advance the store's clock.
type memoryDedupUnderTest struct {
	*Memory
	*dedupFakeClock
}

func TestMemoryContract(t *testing.T) {
	testDeduperContract(t, func(t *testing.T, lease, ttl time.Duration) Deduper {
		clock := newDedupFakeClock()
		d, err := NewMemory(MemoryOptions{TTL: ttl, Lease: lease, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return memoryDedupUnderTest{d, clock}
	})
}

func TestMemoryOptions(t *testing.T) {
	tests := []struct {
		name string
		opts MemoryOptions
		ok   bool
	}{
		{"defaults", MemoryOptions{}, true},
		{"negative TTL", MemoryOptions{TTL: -time.Second}, false},
		{"negative lease", MemoryOptions{Lease: -time.Second}, false},
		{"negative max entries", MemoryOptions{MaxEntries: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewMemory(tt.opts)
			if (err == nil) != tt.ok {
				t.Fatalf("NewMemory(%+v) error = %v, want ok=%v", tt.opts, err, tt.ok)
			}
		})
	}
	d, err := NewMemory(MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.ttl != int64(DefaultTTL) || d.lease != int64(DefaultLease) || d.max != DefaultMemoryMaxEntries {
		t.Fatalf("defaults: ttl %v lease %v max %d", time.Duration(d.ttl), time.Duration(d.lease), d.max)
	}
}

// TestMemoryBound checks what a full store gives up for a new id.
// Each step is "c <id>" (Claim), "d <id>" (Complete), "r <id>" (Release) or
// "+<duration>" (advance the clock); want is the Claim result of the last
// step, or the error.
func TestMemoryBound(t *testing.T) {
	const (
		lease = 10 * time.Second
		ttl   = time.Minute
	)
	tests := []struct {
		name      string
		steps     []string
		last      string
		want      ClaimStatus
		wantErr   error
		kept      []string // still remembered afterwards
		forgotten []string // dropped to make room
	}{
		{
			name:  "room left",
			steps: []string{"c a", "c b"},
			last:  "c",
			want:  ClaimNew,
			kept:  []string{"a", "b"},
		},
		{
			name:      "drops the oldest completed",
			steps:     []string{"c a", "c b", "c c", "d b", "d a"},
			last:      "d",
			want:      ClaimNew,
			kept:      []string{"a", "c"},
			forgotten: []string{"b"},
		},
		{
			name:      "drops an expired completed before the oldest completed",
			steps:     []string{"c a", "d a", "+30s", "c b", "d b", "+31s", "c c"},
			last:      "d",
			want:      ClaimNew,
			kept:      []string{"b", "c"},
			forgotten: []string{"a"},
		},
		{
			name:      "drops a lapsed claim before a live completed one",
			steps:     []string{"c a", "+11s", "c b", "d b", "c c"},
			last:      "d",
			want:      ClaimNew,
			kept:      []string{"b", "c"},
			forgotten: []string{"a"},
		},
		{
			name:    "all in flight",
			steps:   []string{"c a", "c b", "c c"},
			last:    "d",
			wantErr: ErrFull,
			kept:    []string{"a", "b", "c"},
		},
		{
			name:  "a released claim frees its slot",
			steps: []string{"c a", "c b", "c c", "r b"},
			last:  "d",
			want:  ClaimNew,
			kept:  []string{"a", "c"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newDedupFakeClock()
			d, err := NewMemory(MemoryOptions{TTL: ttl, Lease: lease, MaxEntries: 3, Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			owners := map[string]Owner{}
			for _, step := range tt.steps {
				if dur, ok := strings.CutPrefix(step, "+"); ok {
					dd, err := time.ParseDuration(dur)
					if err != nil {
						t.Fatal(err)
					}
					clock.advance(dd)
					continue
				}
				op, id, _ := strings.Cut(step, " ")
				switch op {
				case "c":
					_, owners[id], err = d.Claim(ctx, id)
				case "d":
					err = d.Complete(ctx, id)
				case "r":
					err = d.Release(ctx, id, owners[id])
				}
				if err != nil {
					t.Fatalf("step %q: %v", step, err)
				}
			}
			got, _, err := d.Claim(ctx, tt.last)
			if !errors.Is(err, tt.wantErr) || err == nil && got != tt.want {
				t.Fatalf("Claim(%q) = %v, %v; want %v, %v", tt.last, got, err, tt.want, tt.wantErr)
			}
			if n := d.Len(); n > 3 {
				t.Errorf("Len() = %d, want ≤ MaxEntries 3", n)
			}
			for _, id := range tt.kept {
				if _, ok := d.ids[d.key(id)]; !ok {
					t.Errorf("%q was dropped, want kept", id)
				}
			}
			for _, id := range tt.forgotten {
				if _, ok := d.ids[d.key(id)]; ok {
					t.Errorf("%q was kept, want dropped", id)
				}
			}
		})
	}
}

// TestMemoryChurnStaysBounded drives many ids through a small store
// and checks the bound and the lists' integrity at the end.
func TestMemoryChurnStaysBounded(t *testing.T) {
	clock := newDedupFakeClock()
	const maxEntries = 100
	d, err := NewMemory(MemoryOptions{TTL: time.Minute, Lease: time.Second, MaxEntries: maxEntries, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 10_000 {
		id := strconv.Itoa(i)
		st, owner, err := d.Claim(ctx, id)
		if err != nil || st != ClaimNew {
			t.Fatalf("Claim(%s) = %v, %v", id, st, err)
		}
		switch i % 3 {
		case 0:
			err = d.Complete(ctx, id)
		case 1:
			err = d.Release(ctx, id, owner)
		} // 2: left in flight, to lapse
		if err != nil {
			t.Fatal(err)
		}
		clock.advance(10 * time.Millisecond)
	}
	s := d
	if len(s.ids) > maxEntries || len(s.ents) > maxEntries {
		t.Fatalf("%d ids in %d slots, want ≤ %d", len(s.ids), len(s.ents), maxEntries)
	}
	n := 0
	for _, l := range []memList{s.inflight, s.done} {
		prev := nilEntry
		for i := l.head; i != nilEntry; i = s.ents[i].next {
			if s.ents[i].prev != prev || s.ids[s.ents[i].key] != i {
				t.Fatalf("list corrupt at entry %d", i)
			}
			if prev != nilEntry && s.ents[prev].deadline > s.ents[i].deadline {
				t.Fatalf("list out of deadline order at entry %d", i)
			}
			prev = i
			n++
			if n > maxEntries {
				t.Fatal("list longer than the map: cycle or leak")
			}
		}
	}
	if n != len(s.ids) {
		t.Fatalf("lists hold %d entries, map %d", n, len(s.ids))
	}
}

// BenchmarkMemory measures Claim+Complete of unique ids from parallel
// goroutines. Past 1 M ids (the default bound) every insert also evicts.
func BenchmarkMemory(b *testing.B) {
	d, err := NewMemory(MemoryOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Uint64
	ctx := context.Background()
	b.ReportAllocs()
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

// BenchmarkMemoryBytesPerID measures the heap kept per remembered id
// with 1 M realistic webhook-ids (35 bytes, "wh_" + 32 hex), the id's own
// bytes included, and reports it as B/id. Run it with -benchtime=1x.
func BenchmarkMemoryBytesPerID(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	var perID float64
	for range b.N {
		d, err := NewMemory(MemoryOptions{MaxEntries: n})
		if err != nil {
			b.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range n {
			id := fmt.Sprintf("wh_%032x", i)
			if _, _, err := d.Claim(ctx, id); err != nil {
				b.Fatal(err)
			}
			if err := d.Complete(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := d.Len(); got != n {
			b.Fatalf("Len() = %d, want %d", got, n)
		}
		perID += float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		runtime.KeepAlive(d)
	}
	b.ReportMetric(perID/float64(b.N), "B/id")
}

// The entry size is what BytesPerID is mostly made of; keep it at 32.
func TestMemEntrySize(t *testing.T) {
	if got := unsafe.Sizeof(memEntry{}); got != 32 {
		t.Errorf("memEntry is %d bytes, want 32", got)
	}
}
