package main

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// rateLimiter is an optional per-source token bucket in front of the
// webhook handler (a source is an IPv4 address or an IPv6 /64, see
// sourceKey), so that a flood from one address is refused before any
// HMAC work. It keys on the TCP peer address (never on X-Forwarded-For, which
// the sender controls): behind a proxy or ingress every request shares the
// proxy's address, so enable it only where hookbridge faces the senders.
//
// The table of sources is bounded: entries idle long enough to have refilled
// are dropped (they are equivalent to a new entry), and when the table is
// still full an arbitrary entry is evicted.
type rateLimiter struct {
	next    http.Handler
	rate    float64 // tokens per second
	burst   float64
	max     int // sources tracked at most
	now     func() time.Time
	limited func(d time.Duration) // metrics hook

	mu      sync.Mutex
	sources map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

const rateLimitMaxSources = 100_000

func newRateLimiter(next http.Handler, perSecond float64, burst int, limited func(time.Duration)) *rateLimiter {
	return &rateLimiter{
		next:    next,
		rate:    perSecond,
		burst:   float64(max(burst, 1)),
		max:     rateLimitMaxSources,
		now:     time.Now,
		limited: limited,
		sources: make(map[string]*bucket),
	}
}

// fullAfter is how long an idle bucket takes to refill completely.
func (l *rateLimiter) fullAfter() time.Duration {
	return time.Duration(l.burst / l.rate * float64(time.Second))
}

// allow takes a token for key; when none is left it returns how long until
// one is.
func (l *rateLimiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) >= max(l.fullAfter(), time.Minute) {
		l.sweep(now)
	}
	b, ok := l.sources[key]
	if !ok {
		if len(l.sources) >= l.max {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.sources[key] = b
	} else {
		if el := now.Sub(b.last).Seconds(); el > 0 {
			b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		}
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// evict makes room: first every bucket that has refilled (at most once per
// refill period, so a full table of active sources does not rescan on every
// new address), then, if still full, one arbitrary entry.
func (l *rateLimiter) evict(now time.Time) {
	if now.Sub(l.swept) >= l.fullAfter() {
		l.sweep(now)
	}
	for k := range l.sources {
		if len(l.sources) < l.max {
			break
		}
		delete(l.sources, k)
	}
}

// sweep drops every bucket that has refilled while idle.
func (l *rateLimiter) sweep(now time.Time) {
	l.swept = now
	idle := l.fullAfter()
	for k, b := range l.sources {
		if now.Sub(b.last) >= idle {
			delete(l.sources, k)
		}
	}
}

func (l *rateLimiter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ok, wait := l.allow(sourceKey(r.RemoteAddr))
	if ok {
		l.next.ServeHTTP(w, r)
		return
	}
	secs := max(1, int(math.Ceil(wait.Seconds())))
	h := w.Header()
	h.Set("Retry-After", strconv.Itoa(secs))
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(`{"error":"rate_limited","message":"too many requests from this address; retry after ` + strconv.Itoa(secs) + ` s"}` + "\n"))
	if l.limited != nil {
		l.limited(time.Since(start))
	}
}

// sourceKey is the rate-limited source of a peer address: the IPv4 address,
// or the /64 prefix of an IPv6 one. A single IPv6 host is routinely given a
// whole /64 and can send from any of its 2^64 addresses, so keying on the
// address would give it as many buckets as it likes (and fill the table).
// IPv4-mapped IPv6 addresses count as IPv4.
func sourceKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return addr.String()
	}
	p, _ := addr.WithZone("").Prefix(64)
	return p.String()
}
