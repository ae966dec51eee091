package dedup

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hookbridge/hookbridge/ingest"
)

// DefaultRedisPrefix prefixes every key the Redis store writes.
const DefaultRedisPrefix = "hookbridge:dedup:"

// RedisOptions configure NewRedis. Zero values take the defaults.
type RedisOptions struct {
	Prefix string        // key prefix; default "hookbridge:dedup:"
	TTL    time.Duration // how long a completed key is remembered; default 72h
	Lease  time.Duration // how long an in-flight claim blocks others; default 30s
}

// Redis is an ingest.Deduper on Redis, shared by every replica using the
// same Redis: the store for Kafka deployments that run more than one replica.
//
// Each dedup key is the Redis key Prefix+key (Redis keys are binary-safe, so
// it is used as is) holding "inflight <owner>" with the lease as its expiry,
// or "done" with the TTL as its expiry. Redis expires both by itself, so a
// lapsed lease needs no takeover logic: the next SET NX simply wins.
type Redis struct {
	client redis.UniversalClient
	prefix string
	ttl    time.Duration
	lease  time.Duration
}

// NewRedis returns a Redis store using client. It does not contact Redis;
// call Check for that. Close closes client.
func NewRedis(client redis.UniversalClient, opts RedisOptions) (*Redis, error) {
	ttl, lease, err := durations(opts.TTL, opts.Lease)
	if err != nil {
		return nil, err
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	return &Redis{client: client, prefix: prefix, ttl: ttl, lease: lease}, nil
}

// NewRedisURL is NewRedis with a client for a redis:// or rediss:// URL
// (HOOKBRIDGE_REDIS_URL); see ParseRedisURL.
func NewRedisURL(rawURL string, opts RedisOptions) (*Redis, error) {
	o, err := ParseRedisURL(rawURL)
	if err != nil {
		return nil, err
	}
	return NewRedis(redis.NewClient(o), opts)
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
		return nil, fmt.Errorf("dedup: HOOKBRIDGE_REDIS_URL: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("dedup: HOOKBRIDGE_REDIS_URL: scheme %q: want redis:// or rediss://", u.Scheme)
	}
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("dedup: HOOKBRIDGE_REDIS_URL: %w", err)
	}
	return o, nil
}

// Claim implements ingest.Deduper.
func (d *Redis) Claim(ctx context.Context, key string) (ingest.ClaimStatus, ingest.Owner, error) {
	if key == "" {
		return 0, 0, errEmptyKey
	}
	rkey := d.prefix + key
	owner := newOwner()
	claim := redisInFlightValue(owner)
	// A claim can vanish between SET NX and GET (lease expiry, Release); the
	// next SET NX then decides. Two rounds are enough in practice; after that
	// the key is busy and the sender's retry will learn the outcome.
	for range 2 {
		ok, err := d.client.SetNX(ctx, rkey, claim, d.lease).Result()
		if err != nil {
			return 0, 0, fmt.Errorf("dedup: claim: %w", err)
		}
		if ok {
			return ingest.ClaimNew, owner, nil
		}
		v, err := d.client.Get(ctx, rkey).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			return 0, 0, fmt.Errorf("dedup: claim: %w", err)
		case v == valueDone:
			return ingest.ClaimDone, 0, nil
		case !strings.HasPrefix(v, valueInFlight):
			return 0, 0, fmt.Errorf("dedup: claim: key %q holds an unexpected value", rkey)
		}
		return ingest.ClaimInFlight, 0, nil
	}
	return ingest.ClaimInFlight, 0, nil
}

func redisInFlightValue(o ingest.Owner) string {
	return valueInFlight + " " + strconv.FormatUint(uint64(o), 16)
}

// Complete implements ingest.Deduper.
func (d *Redis) Complete(ctx context.Context, key string) error {
	if key == "" {
		return errEmptyKey
	}
	if err := d.client.Set(ctx, d.prefix+key, valueDone, d.ttl).Err(); err != nil {
		return fmt.Errorf("dedup: complete: %w", err)
	}
	return nil
}

// releaseScript deletes the key only while it holds the caller's claim, so a
// late Release can forget neither a key that another replica has since
// completed nor the claim it took over after the lease lapsed.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0
`)

// Release implements ingest.Deduper.
func (d *Redis) Release(ctx context.Context, key string, owner ingest.Owner) error {
	if key == "" {
		return errEmptyKey
	}
	if err := releaseScript.Run(ctx, d.client, []string{d.prefix + key}, redisInFlightValue(owner)).Err(); err != nil {
		return fmt.Errorf("dedup: release: %w", err)
	}
	return nil
}

// Check pings Redis.
func (d *Redis) Check(ctx context.Context) error {
	if err := d.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("dedup: redis: %w", err)
	}
	return nil
}

// Close closes the Redis client.
func (d *Redis) Close() error { return d.client.Close() }
