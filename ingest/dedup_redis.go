package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultDedupRedisPrefix prefixes every key the Redis store writes.
const DefaultDedupRedisPrefix = "hookbridge:dedup:"

// RedisOptions configure NewRedisDeduper. Zero values take the defaults.
type RedisOptions struct {
	Prefix string        // key prefix; default "hookbridge:dedup:"
	TTL    time.Duration // how long a completed id is remembered; default 72h
	Lease  time.Duration // how long an in-flight claim blocks others; default 30s
}

// RedisDeduper is a Deduper on Redis, shared by every replica using the same
// Redis: the store for Kafka deployments that run more than one replica.
//
// Each webhook-id is the key Prefix+id (Redis keys are binary-safe, so the id
// is used as is) holding "inflight" with the lease as its expiry, or "done"
// with the TTL as its expiry. Redis expires both by itself, so a lapsed lease
// needs no takeover logic: the next SET NX simply wins.
type RedisDeduper struct {
	client redis.UniversalClient
	prefix string
	ttl    time.Duration
	lease  time.Duration
}

// NewRedisDeduper returns a RedisDeduper using client. It does not contact
// Redis; call Check for that. Close closes client.
func NewRedisDeduper(client redis.UniversalClient, opts RedisOptions) (*RedisDeduper, error) {
	ttl, lease, err := dedupDurations(opts.TTL, opts.Lease)
	if err != nil {
		return nil, err
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultDedupRedisPrefix
	}
	return &RedisDeduper{client: client, prefix: prefix, ttl: ttl, lease: lease}, nil
}

// NewRedisDeduperURL is NewRedisDeduper with a client for a redis:// or
// rediss:// URL (HOOKBRIDGE_REDIS_URL); see ParseRedisURL.
func NewRedisDeduperURL(rawURL string, opts RedisOptions) (*RedisDeduper, error) {
	o, err := ParseRedisURL(rawURL)
	if err != nil {
		return nil, err
	}
	return NewRedisDeduper(redis.NewClient(o), opts)
}

// ParseRedisURL parses redis://[user:password@]host[:port][/db][?options] or
// rediss://… (TLS) as go-redis does. Errors never repeat the URL, which may
// hold a password.
func ParseRedisURL(rawURL string) (*redis.Options, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error quotes the whole URL, password included
		}
		return nil, fmt.Errorf("ingest: HOOKBRIDGE_REDIS_URL: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("ingest: HOOKBRIDGE_REDIS_URL: scheme %q: want redis:// or rediss://", u.Scheme)
	}
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("ingest: HOOKBRIDGE_REDIS_URL: %w", err)
	}
	return o, nil
}

// Claim implements Deduper.
func (d *RedisDeduper) Claim(ctx context.Context, id string) (ClaimStatus, error) {
	if id == "" {
		return 0, errEmptyID
	}
	key := d.prefix + id
	// A claim can vanish between SET NX and GET (lease expiry, Release); the
	// next SET NX then decides. Two rounds are enough in practice; after that
	// the id is busy and the sender's retry will learn the outcome.
	for range 2 {
		ok, err := d.client.SetNX(ctx, key, dedupValueInFlight, d.lease).Result()
		if err != nil {
			return 0, fmt.Errorf("ingest: dedup claim: %w", err)
		}
		if ok {
			return ClaimNew, nil
		}
		v, err := d.client.Get(ctx, key).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			return 0, fmt.Errorf("ingest: dedup claim: %w", err)
		case v == dedupValueDone:
			return ClaimDone, nil
		}
		return ClaimInFlight, nil
	}
	return ClaimInFlight, nil
}

// Complete implements Deduper.
func (d *RedisDeduper) Complete(ctx context.Context, id string) error {
	if id == "" {
		return errEmptyID
	}
	if err := d.client.Set(ctx, d.prefix+id, dedupValueDone, d.ttl).Err(); err != nil {
		return fmt.Errorf("ingest: dedup complete: %w", err)
	}
	return nil
}

// releaseScript deletes the key only while it holds a claim, so a late Release
// cannot forget an id that another replica has since completed.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0
`)

// Release implements Deduper.
func (d *RedisDeduper) Release(ctx context.Context, id string) error {
	if id == "" {
		return errEmptyID
	}
	if err := releaseScript.Run(ctx, d.client, []string{d.prefix + id}, dedupValueInFlight).Err(); err != nil {
		return fmt.Errorf("ingest: dedup release: %w", err)
	}
	return nil
}

// Check pings Redis.
func (d *RedisDeduper) Check(ctx context.Context) error {
	if err := d.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ingest: dedup redis: %w", err)
	}
	return nil
}

// Close closes the Redis client.
func (d *RedisDeduper) Close() error { return d.client.Close() }
