package dedup

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/hookbridge/hookbridge/ingest"
)

// DefaultMemoryMaxEntries bounds the memory store; see
// BenchmarkMemoryBytesPerID for what a key costs.
const DefaultMemoryMaxEntries = 1_000_000

// MemoryOptions configure NewMemory. Zero values take the defaults.
type MemoryOptions struct {
	TTL        time.Duration    // how long a completed key is remembered; default 72h
	Lease      time.Duration    // how long an in-flight claim blocks others; default 30s
	MaxEntries int              // keys remembered at most; default 1_000_000
	Now        func() time.Time // clock, for tests; default time.Now
}

// Memory is an ingest.Deduper for a single replica. It is lost on restart
// and not shared between replicas; use the KV or Redis store for those.
//
// It is bounded: when MaxEntries keys are remembered, a new key first
// displaces an expired entry, then the oldest completed one. When every entry
// is in flight, Claim returns ErrFull rather than forget a claim some request
// still owns. Every operation is O(1) amortised.
//
// Keys are remembered by a 96-bit hash (see idKey), so the store holds no
// pointers: the garbage collector never scans it, and a key costs the same
// whatever its length.
//
// One mutex guards it: an operation holds it for about as long as a map
// insert, so even 35 k deliveries/s (two operations each) keep it busy a few
// percent of the time; sharding would gain nothing on a few cores and could
// not honour MaxEntries exactly.
type Memory struct {
	now          func() time.Time
	seedA, seedB maphash.Seed

	mu       sync.Mutex
	ttl      int64 // ns
	lease    int64 // ns
	max      int
	ids      map[idKey]int32 // key → index in ents
	ents     []memEntry
	free     int32 // unused entries, linked through next
	inflight memList
	done     memList
	owners   uint32 // the last owner handed out
}

// NewMemory returns an empty Memory store.
func NewMemory(opts MemoryOptions) (*Memory, error) {
	ttl, lease, err := durations(opts.TTL, opts.Lease)
	if err != nil {
		return nil, err
	}
	maxEntries := opts.MaxEntries
	if maxEntries == 0 {
		maxEntries = DefaultMemoryMaxEntries
	}
	if maxEntries < 0 || maxEntries > math.MaxInt32 {
		return nil, fmt.Errorf("dedup: MaxEntries %d out of range [1, %d]", maxEntries, math.MaxInt32)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Memory{
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

// Claim implements ingest.Deduper.
func (d *Memory) Claim(_ context.Context, key string) (ingest.ClaimStatus, ingest.Owner, error) {
	if key == "" {
		return 0, 0, errEmptyKey
	}
	k, now := d.key(key), d.now().UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	if i, ok := d.ids[k]; ok {
		e := &d.ents[i]
		if now < e.deadline {
			if e.done() {
				return ingest.ClaimDone, 0, nil
			}
			return ingest.ClaimInFlight, 0, nil
		}
		// A forgotten completion or a lapsed lease: the key is ours now. The
		// lock makes the takeover atomic.
		o := d.nextOwner()
		d.move(i, o, now+d.lease)
		return ingest.ClaimNew, ingest.Owner(o), nil
	}
	o := d.nextOwner()
	if err := d.insert(k, o, now+d.lease, now); err != nil {
		return 0, 0, err
	}
	return ingest.ClaimNew, ingest.Owner(o), nil
}

// nextOwner returns a non-zero owner no live claim has: owners are handed
// out in turn, and one would come round again only after 2³² claims while
// its first claim is still live. d.mu must be held.
func (d *Memory) nextOwner() uint32 {
	d.owners++
	if d.owners == ownerDone {
		d.owners++
	}
	return d.owners
}

// Complete implements ingest.Deduper.
func (d *Memory) Complete(_ context.Context, key string) error {
	if key == "" {
		return errEmptyKey
	}
	k, now := d.key(key), d.now().UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	if i, ok := d.ids[k]; ok {
		d.move(i, ownerDone, now+d.ttl)
		return nil
	}
	// Not claimed here, or dropped since: remember it anyway, the message is
	// on the bus.
	return d.insert(k, ownerDone, now+d.ttl, now)
}

// Release implements ingest.Deduper. It forgets only the caller's own
// in-flight claim: a completed key stays completed, and a claim taken over
// by another request stays with it.
func (d *Memory) Release(_ context.Context, key string, owner ingest.Owner) error {
	if key == "" {
		return errEmptyKey
	}
	k := d.key(key)
	d.mu.Lock()
	defer d.mu.Unlock()
	if i, ok := d.ids[k]; ok && !d.ents[i].done() && ingest.Owner(d.ents[i].owner) == owner {
		d.remove(i)
	}
	return nil
}

// Check reports readiness; memory is always ready.
func (d *Memory) Check(context.Context) error { return nil }

// Len returns how many keys are remembered, counting expired entries that
// have not been dropped yet.
func (d *Memory) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.ids)
}

// idKey is a dedup key as 96 bits of two independent hashes. Only verified
// requests reach the store, so keys are not chosen by an attacker, and a
// collision between any two of n keys has a probability of about n²/2⁹⁷:
// 6e-18 for the default million. (A collision would answer a new key
// "duplicate".) 96 rather than 128 bits keep an entry at 32 bytes.
type idKey [12]byte

func (d *Memory) key(id string) idKey {
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
	owner      uint32 // the claim's owner while in flight; ownerDone once completed
	deadline   int64  // unix ns: lease end while in flight, forget time once done
}

// ownerDone is the owner of a completed entry; claims never get it.
const ownerDone = 0

func (e *memEntry) done() bool { return e.owner == ownerDone }

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

func (d *Memory) insert(k idKey, owner uint32, deadline, now int64) error {
	d.prune(&d.done, now, pruneBudget)
	d.prune(&d.inflight, now, pruneBudget)
	if len(d.ids) >= d.max {
		// Still full after pruning, so no list head has expired: give up the
		// oldest completed key, never a live claim.
		if d.done.head == nilEntry {
			return ErrFull
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
	d.ents[i] = memEntry{key: k, deadline: deadline, owner: owner}
	d.push(i)
	d.ids[k] = i
	return nil
}

// prune drops up to n expired entries from the head of l.
func (d *Memory) prune(l *memList, now int64, n int) {
	for ; n > 0 && l.head != nilEntry && d.ents[l.head].deadline <= now; n-- {
		d.remove(l.head)
	}
}

func (d *Memory) list(i int32) *memList {
	if d.ents[i].done() {
		return &d.done
	}
	return &d.inflight
}

func (d *Memory) push(i int32) {
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

func (d *Memory) unlink(i int32) {
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

// move re-files entry i with a new owner and deadline at the tail of its list.
func (d *Memory) move(i int32, owner uint32, deadline int64) {
	d.unlink(i)
	d.ents[i].owner = owner
	d.ents[i].deadline = deadline
	d.push(i)
}

func (d *Memory) remove(i int32) {
	d.unlink(i)
	delete(d.ids, d.ents[i].key)
	d.ents[i] = memEntry{next: d.free}
	d.free = i
}
