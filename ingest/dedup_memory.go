package ingest

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// DefaultMemoryMaxEntries bounds the memory store; see
// BenchmarkMemoryDeduperBytesPerID for what an id costs.
const DefaultMemoryMaxEntries = 1_000_000

// MemoryOptions configure NewMemoryDeduper. Zero values take the defaults.
type MemoryOptions struct {
	TTL        time.Duration    // how long a completed id is remembered; default 72h
	Lease      time.Duration    // how long an in-flight claim blocks others; default 30s
	MaxEntries int              // ids remembered at most; default 1_000_000
	Now        func() time.Time // clock, for tests; default time.Now
}

// MemoryDeduper is a Deduper for a single replica. It is lost on restart and
// not shared between replicas; use the KV or Redis store for those.
//
// It is bounded: when MaxEntries ids are remembered, a new id first displaces
// an expired entry, then the oldest completed one. When every entry is in
// flight, Claim returns ErrDedupFull rather than forget a claim some request
// still owns. Every operation is O(1) amortised.
//
// Ids are remembered by a 96-bit hash (see idKey), so the store holds no
// pointers: the garbage collector never scans it, and an id costs the same
// whatever its length.
//
// One mutex guards it: an operation holds it for about as long as a map
// insert, so even 35 k deliveries/s (two operations each) keep it busy a few
// percent of the time. A 16-shard variant measured no faster on 2 cores
// (BenchmarkMemoryDeduper) and could not honour MaxEntries exactly.
type MemoryDeduper struct {
	now          func() time.Time
	seedA, seedB maphash.Seed

	mu       sync.Mutex
	ttl      int64 // ns
	lease    int64 // ns
	max      int
	ids      map[idKey]int32 // id → index in ents
	ents     []memEntry
	free     int32 // unused entries, linked through next
	inflight memList
	done     memList
}

// NewMemoryDeduper returns an empty MemoryDeduper.
func NewMemoryDeduper(opts MemoryOptions) (*MemoryDeduper, error) {
	ttl, lease, err := dedupDurations(opts.TTL, opts.Lease)
	if err != nil {
		return nil, err
	}
	maxEntries := opts.MaxEntries
	if maxEntries == 0 {
		maxEntries = DefaultMemoryMaxEntries
	}
	if maxEntries < 0 || maxEntries > math.MaxInt32 {
		return nil, fmt.Errorf("ingest: dedup MaxEntries %d out of range [1, %d]", maxEntries, math.MaxInt32)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &MemoryDeduper{
		now:      now,
		ttl:      int64(ttl),
		lease:    int64(lease),
		max:      maxEntries,
		seedA:    maphash.MakeSeed(),
		seedB:    maphash.MakeSeed(),
		ids:      make(map[idKey]int32),
		free:     nilEntry,
		inflight: memList{head: nilEntry, tail: nilEntry},
		done:     memList{head: nilEntry, tail: nilEntry},
	}, nil
}

// Claim implements Deduper.
func (d *MemoryDeduper) Claim(_ context.Context, id string) (ClaimStatus, error) {
	if id == "" {
		return 0, errEmptyID
	}
	k, now := d.key(id), d.now().UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	if i, ok := d.ids[k]; ok {
		e := &d.ents[i]
		if now < e.deadline {
			if e.done {
				return ClaimDone, nil
			}
			return ClaimInFlight, nil
		}
		// A forgotten completion or a lapsed lease: the id is ours now. The
		// lock makes the takeover atomic.
		d.move(i, false, now+d.lease)
		return ClaimNew, nil
	}
	if err := d.insert(k, false, now+d.lease, now); err != nil {
		return 0, err
	}
	return ClaimNew, nil
}

// Complete implements Deduper.
func (d *MemoryDeduper) Complete(_ context.Context, id string) error {
	if id == "" {
		return errEmptyID
	}
	k, now := d.key(id), d.now().UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	if i, ok := d.ids[k]; ok {
		d.move(i, true, now+d.ttl)
		return nil
	}
	// Not claimed here, or dropped since: remember it anyway, the message is
	// on the bus.
	return d.insert(k, true, now+d.ttl, now)
}

// Release implements Deduper. It forgets only an in-flight claim: a completed
// id stays completed, whoever calls Release.
func (d *MemoryDeduper) Release(_ context.Context, id string) error {
	if id == "" {
		return errEmptyID
	}
	k := d.key(id)
	d.mu.Lock()
	defer d.mu.Unlock()
	if i, ok := d.ids[k]; ok && !d.ents[i].done {
		d.remove(i)
	}
	return nil
}

// Check reports readiness; memory is always ready.
func (d *MemoryDeduper) Check(context.Context) error { return nil }

// Len returns how many ids are remembered, counting expired entries that
// have not been dropped yet.
func (d *MemoryDeduper) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.ids)
}

// idKey is a webhook-id as 96 bits of two independent hashes. Only verified
// requests reach the store, so ids are not chosen by an attacker, and a
// collision between any two of n ids has a probability of about n²/2⁹⁷:
// 6e-18 for the default million. (A collision would answer a new id
// "duplicate".) 96 rather than 128 bits make an entry 32 bytes, not 40.
type idKey [12]byte

func (d *MemoryDeduper) key(id string) idKey {
	var k idKey
	binary.LittleEndian.PutUint64(k[:8], maphash.String(d.seedA, id))
	binary.LittleEndian.PutUint32(k[8:], uint32(maphash.String(d.seedB, id)))
	return k
}

// nilEntry ends a list. Entries live in a slice and link by index, which
// keeps them pointer-free and the links cheap (2×4 bytes).
const nilEntry = int32(-1)

type memEntry struct { // 32 bytes
	key        idKey
	prev, next int32
	done       bool
	deadline   int64 // unix ns: lease end while in flight, forget time once done
}

// memList is a doubly linked list of entries in insertion order. Lease and
// TTL are fixed, so insertion order is deadline order: the head of each list
// is the first to expire and, for done, the oldest completed.
type memList struct{ head, tail int32 }

// pruneBudget is how many expired entries each insert drops from the head of
// each list. That is how a full store gives up expired entries before live
// ones, and, being more than the one entry an insert adds, it lets memory
// follow the live set when the store is not full. Each entry is dropped at
// most once, so this stays O(1) amortised.
const pruneBudget = 2

func (d *MemoryDeduper) insert(k idKey, done bool, deadline, now int64) error {
	d.prune(&d.done, now, pruneBudget)
	d.prune(&d.inflight, now, pruneBudget)
	if len(d.ids) >= d.max {
		// Still full after pruning, so no list head has expired: give up the
		// oldest completed id, never a live claim.
		if d.done.head == nilEntry {
			return ErrDedupFull
		}
		d.remove(d.done.head)
	}
	var i int32
	if d.free != nilEntry {
		i = d.free
		d.free = d.ents[i].next
	} else {
		d.ents = append(d.ents, memEntry{})
		i = int32(len(d.ents) - 1)
	}
	d.ents[i] = memEntry{key: k, deadline: deadline, done: done}
	d.push(i)
	d.ids[k] = i
	return nil
}

// prune drops up to n expired entries from the head of l.
func (d *MemoryDeduper) prune(l *memList, now int64, n int) {
	for ; n > 0 && l.head != nilEntry && d.ents[l.head].deadline <= now; n-- {
		d.remove(l.head)
	}
}

func (d *MemoryDeduper) list(i int32) *memList {
	if d.ents[i].done {
		return &d.done
	}
	return &d.inflight
}

func (d *MemoryDeduper) push(i int32) {
	l := d.list(i)
	e := &d.ents[i]
	e.prev, e.next = l.tail, nilEntry
	if l.tail != nilEntry {
		d.ents[l.tail].next = i
	} else {
		l.head = i
	}
	l.tail = i
}

func (d *MemoryDeduper) unlink(i int32) {
	l := d.list(i)
	e := &d.ents[i]
	if e.prev != nilEntry {
		d.ents[e.prev].next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nilEntry {
		d.ents[e.next].prev = e.prev
	} else {
		l.tail = e.prev
	}
}

// move re-files entry i with a new state and deadline at the tail of its list.
func (d *MemoryDeduper) move(i int32, done bool, deadline int64) {
	d.unlink(i)
	d.ents[i].done = done
	d.ents[i].deadline = deadline
	d.push(i)
}

func (d *MemoryDeduper) remove(i int32) {
	d.unlink(i)
	delete(d.ids, d.ents[i].key)
	d.ents[i] = memEntry{next: d.free}
	d.free = i
}
