package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/ingest/dedup"
)

// checker is anything /readyz asks.
type checker interface {
	Check(ctx context.Context) error
}

// dedupParts is what the dedup configuration adds to the bridge.
type dedupParts struct {
	deduper ingest.Deduper // nil: no store
	window  time.Duration  // the broker window the handler relies on; 0: none
	check   checker        // for /readyz; nil: nothing to check
	steps   []step
}

// openDedup builds the dedup store of cfg.Dedup. With "nats" the stream's
// duplicate window is the claim for young deliveries (if the stream keeps
// it across restarts) and the KV bucket the memory beyond it; when the
// window alone covers HOOKBRIDGE_DEDUP_TTL there is no bucket at all. The
// steps release what was built, also on error.
func openDedup(ctx context.Context, cfg *config, br broker, m *metrics, log zerolog.Logger) (dedupParts, error) {
	switch cfg.Dedup {
	case "nats":
		return openNATSDedup(ctx, cfg, br, m, log)
	case "redis":
		var p dedupParts
		rd, err := dedup.NewRedisURL(cfg.RedisURL, dedup.RedisOptions{TTL: cfg.DedupTTL, Lease: cfg.DedupLease})
		if err != nil {
			return p, err
		}
		p.steps = append(p.steps, step{stageDedup, "redis close", func(context.Context) error { return rd.Close() }})
		if err := rd.Check(ctx); err != nil {
			return p, fmt.Errorf("HOOKBRIDGE_REDIS_URL: redis unreachable: %w", err)
		}
		p.deduper, p.check = rd, rd
		return p, nil
	case "memory":
		mem, err := dedup.NewMemory(dedup.MemoryOptions{TTL: cfg.DedupTTL, Lease: cfg.DedupLease, MaxEntries: cfg.DedupMax})
		return dedupParts{deduper: mem}, err
	}
	return dedupParts{}, nil
}

// openNATSDedup uses the stream's duplicate window when it survives a server
// restart, and the KV bucket for what the window does not cover.
func openNATSDedup(ctx context.Context, cfg *config, br broker, m *metrics, log zerolog.Logger) (dedupParts, error) {
	var p dedupParts
	w, why := br.nats.DedupWindow()
	if w == 0 {
		log.Warn().Str("stream", cfg.NATSStream).Str("reason", why).
			Msg("dedup: the stream's duplicate window does not survive a server restart; every delivery takes the KV claim")
	} else {
		p.window = w
		log.Info().Stringer("window", w).Stringer("young_within", w-cfg.Tolerance-time.Minute).
			Msg("dedup: the stream's duplicate window is the claim for young deliveries")
	}
	if w > 0 && cfg.DedupTTL <= w {
		log.Info().Stringer("window", w).Stringer("dedup_ttl", cfg.DedupTTL).
			Msg("dedup: the stream's duplicate window covers HOOKBRIDGE_DEDUP_TTL; no KV bucket")
		return p, nil
	}
	kv, err := dedup.NewKV(ctx, br.nats.JetStream(), dedup.KVOptions{
		Bucket: cfg.DedupBucket, TTL: cfg.DedupTTL, Lease: cfg.DedupLease, Replicas: cfg.NATSReplicas,
		Writer: br.nats, Log: log,
	})
	if err != nil {
		return p, err
	}
	p.deduper, p.check = kv, kv
	p.steps = append(p.steps, step{stageRecords, "dedup records flush", kv.Close})
	m.kvRecords(kv)
	return p, nil
}
