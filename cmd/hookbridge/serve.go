package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

const serveUsage = `Usage: hookbridge serve [--dev]

Runs the bridge: verifies OpenAI webhooks on HOOKBRIDGE_LISTEN_ADDR and
publishes each event to <prefix>.<type> on the configured broker, answering
2xx only after the broker has acknowledged it.

  --dev   local development: if no secret is configured, generate one under
          HOOKBRIDGE_DATA_DIR and use it; if a default port (8080, 9090, the
          embedded NATS 4222) is taken, use a free one instead; record the
          addresses in HOOKBRIDGE_DATA_DIR/dev.json for send and tail.
          Never use --dev in production.

Configuration (environment):
`

func runServe(args []string, io stdio) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.err)
	dev := fs.Bool("dev", false, "local development mode (generated secret, free ports for taken defaults)")
	fs.Usage = func() { fmt.Fprint(io.err, serveUsage+configHelp()+tracingHelp) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(io.err, "hookbridge serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, *dev, io)
}

// serve configures the bridge from io's environment and runs it until ctx
// ends; it returns the exit code: 0 after a clean shutdown, 1 when the bridge
// failed, 2 for an invalid configuration.
func serve(ctx context.Context, dev bool, io stdio) int {
	environ := maps.Clone(io.env)
	var devInfo *devState
	if dev {
		var err error
		if devInfo, err = prepareDev(environ); err != nil {
			fmt.Fprintf(io.err, "hookbridge serve --dev: %v\n", err)
			return 1
		}
	}
	cfg, err := loadConfig(environ)
	if err != nil {
		msg := redactText(err.Error(), credentials(environ))
		fmt.Fprintf(io.err, "hookbridge: invalid configuration:\n  %s\n", strings.ReplaceAll(msg, "\n", "\n  "))
		return 2
	}
	log := newLogger(cfg, io)
	routeRedisLogs(log)
	setGCPercent(environ)
	b, err := newBridge(ctx, cfg, environ, log)
	if err == nil {
		b.dev = devInfo
		err = b.run(ctx)
	}
	if err != nil {
		log.Error().Err(err).Msg("hookbridge stopped with an error")
		return 1
	}
	return 0
}

// setGCPercent sets GOGC to 300 unless the environment sets it. The live heap
// is a few MiB (plus the memory dedup store), so at the default of 100 the
// collector runs constantly at tens of thousands of requests a second, for
// about a fifth of the CPU per request (make bench-e2e); 300 trades a few
// MiB of heap for it. No memory limit is set: with dedup=memory the live heap
// grows with the ids kept, and a limit near it would make the collector run
// back to back.
func setGCPercent(environ map[string]string) {
	if _, set := environ["GOGC"]; !set {
		debug.SetGCPercent(300)
	}
}

func newLogger(cfg *config, io stdio) zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	zerolog.DurationFieldUnit = time.Millisecond
	lvl, _ := zerolog.ParseLevel(cfg.LogLevel)
	// Every line passes the credential filter (redact.go), whoever wrote it.
	var w stdioWriter = redactWriter{w: io.err, creds: cfg.credentials}
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("service", "hookbridge").Logger()
}
