package main

import (
	"context"
	"fmt"

	"github.com/hookbridge/hookbridge/ingest"
)

// checker is anything /readyz asks.
type checker interface {
	Check(ctx context.Context) error
}

// openDedup builds the configured dedup store: nil for "off". check is what
// /readyz asks about it, nil when it has nothing to ask (memory, off).
func openDedup(ctx context.Context, cfg *config, br broker) (d ingest.Deduper, check checker, steps []step, err error) {
	switch cfg.Dedup {
	case "nats":
		kv, err := ingest.NewKVDeduper(ctx, br.nats.JetStream(), ingest.KVOptions{
			Bucket: cfg.DedupBucket, TTL: cfg.DedupTTL, Lease: cfg.DedupLease, Replicas: cfg.NATSReplicas,
			Writer: br.nats,
		})
		if err != nil {
			return nil, nil, nil, err
		}
		return kv, kv, nil, nil
	case "redis":
		rd, err := ingest.NewRedisDeduperURL(cfg.RedisURL, ingest.RedisOptions{TTL: cfg.DedupTTL, Lease: cfg.DedupLease})
		if err != nil {
			return nil, nil, nil, err
		}
		steps := []step{{stageDedup, "redis close", func(context.Context) error { return rd.Close() }}}
		if err := rd.Check(ctx); err != nil {
			return nil, nil, steps, fmt.Errorf("HOOKBRIDGE_REDIS_URL: redis unreachable: %w", err)
		}
		return rd, rd, steps, nil
	case "memory":
		mem, err := ingest.NewMemoryDeduper(ingest.MemoryOptions{TTL: cfg.DedupTTL, Lease: cfg.DedupLease, MaxEntries: cfg.DedupMax})
		if err != nil {
			return nil, nil, nil, err
		}
		return mem, nil, nil, nil
	}
	return nil, nil, nil, nil
}
