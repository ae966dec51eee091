package main

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// routeRedisLogs sends go-redis's own log lines (connection pool dial
// failures) through zerolog, and so through the credential filter, instead of
// the standard logger on stderr. Sampled: during an outage it logs every
// dial attempt.
func routeRedisLogs(log zerolog.Logger) {
	l := log.With().Str("component", "redis").Logger().
		Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second})
	redis.SetLogger(redisLogger{l})
}

type redisLogger struct{ l zerolog.Logger }

func (r redisLogger) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn().Msgf(format, v...)
}
