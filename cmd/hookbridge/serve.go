package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/publish"
	"github.com/hookbridge/hookbridge/schema"
)

const serveUsage = `Usage: hookbridge serve [--dev]

Runs the bridge: verifies OpenAI webhooks on HOOKBRIDGE_LISTEN_ADDR and
publishes each event to <prefix>.<type> on the configured broker, answering
2xx only after the broker has acknowledged it.

  --dev   local development: if no secret is configured, generate one under
          HOOKBRIDGE_DATA_DIR and use it; if the embedded NATS port is taken,
          pick a free one. Never use --dev in production.

Configuration (environment):
`

// publisher is what serve needs from a broker beyond ingest.Publisher.
type publisher interface {
	ingest.Publisher
	Check(ctx context.Context) error
	Close(ctx context.Context) error
}

// checker is anything /readyz asks.
type checker interface {
	Check(ctx context.Context) error
}

// step is one named, bounded stage of the shutdown, run in order.
type step struct {
	name string
	fn   func(ctx context.Context) error
}

func runServe(args []string, io stdio) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.err)
	dev := fs.Bool("dev", false, "local development mode (generated secret, free NATS port if 4222 is taken)")
	fs.Usage = func() { fmt.Fprint(io.err, serveUsage+configHelp()) }
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

	environ := environMap(os.Environ())
	var devInfo *devState
	if *dev {
		var err error
		if devInfo, err = prepareDev(environ, io); err != nil {
			fmt.Fprintf(io.err, "hookbridge serve --dev: %v\n", err)
			return 1
		}
	}
	cfg, err := loadConfig(environ)
	if err != nil {
		fmt.Fprintf(io.err, "hookbridge: invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 2
	}
	log := newLogger(cfg, io)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, log, devInfo); err != nil {
		log.Error().Err(err).Msg("hookbridge stopped with an error")
		return 1
	}
	return 0
}

func newLogger(cfg *config, io stdio) zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	zerolog.DurationFieldUnit = time.Millisecond
	lvl, _ := zerolog.ParseLevel(cfg.LogLevel)
	w := io.err
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: io.err, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("service", "hookbridge").Logger()
}

// serve runs until ctx is cancelled (SIGTERM/SIGINT), then shuts down in order.
func serve(ctx context.Context, cfg *config, log zerolog.Logger, dev *devState) error {
	log.Info().Str("version", version).Interface("config", cfg.redacted()).Msg("starting")
	metrics := newMetrics(version)

	var (
		cleanup []step // run in reverse order of acquisition on failure or exit
		pub     publisher
		nc      *nats.Conn
	)
	runCleanup := func(bctx context.Context) error {
		var errs []error
		for i := len(cleanup) - 1; i >= 0; i-- {
			s := cleanup[i]
			start := time.Now()
			sctx, cancel := context.WithTimeout(bctx, cfg.ShutdownGrace)
			err := s.fn(sctx)
			cancel()
			ev := log.Info()
			if err != nil {
				ev = log.Warn().Err(err)
				errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
			}
			ev.Str("step", s.name).Dur("duration_ms", time.Since(start)).Msg("shutdown step done")
		}
		cleanup = nil
		return errors.Join(errs...)
	}
	fail := func(err error) error {
		_ = runCleanup(context.Background())
		return err
	}

	startCtx, cancelStart := context.WithTimeout(ctx, 30*time.Second)
	defer cancelStart()

	headers := publish.HeaderOptions{Source: cfg.CESource, OmitSignature: !cfg.ForwardSig}
	natsCfg := publish.NATSConfig{
		Prefix:     cfg.TopicPrefix,
		Stream:     cfg.NATSStream,
		Duplicates: cfg.NATSDuplicates,
		MaxAge:     cfg.NATSMaxAge,
		Replicas:   cfg.NATSReplicas,
		MaxMsgSize: int32(min(cfg.MaxBodyBytes, 1<<30)),
		Headers:    headers,
	}
	var nps *publish.NATS
	switch cfg.Broker {
	case "embedded":
		emb, err := publish.StartEmbedded(publish.EmbeddedConfig{
			Addr:       cfg.EmbeddedAddr,
			DataDir:    cfg.DataDir,
			SyncAlways: cfg.EmbeddedSync == "always",
			MaxPayload: int32(max(publish.DefaultEmbeddedMaxPayload, min(cfg.MaxBodyBytes+64<<10, 1<<30))),
		}, log)
		if err != nil {
			return fail(err)
		}
		cleanup = append(cleanup, step{"embedded nats shutdown", func(context.Context) error { emb.Shutdown(); return nil }})
		log.Info().Str("nats_url", emb.ClientURL()).Str("data_dir", cfg.DataDir).Msg("embedded NATS JetStream running; workers can connect here")
		if dev != nil {
			dev.NATSURL = emb.ClientURL()
		}
		if nc, err = emb.Connect(log); err != nil {
			return fail(err)
		}
	case "nats":
		var err error
		nc, err = publish.Connect(startCtx, publish.ConnConfig{
			URL: cfg.NATSURL, Name: "hookbridge", CredsFile: cfg.NATSCreds, NKeyFile: cfg.NATSNKey,
			User: cfg.NATSUser, Password: cfg.NATSPassword, Token: cfg.NATSToken,
			TLSCAFile: cfg.NATSCAFile, TLSCertFile: cfg.NATSCertFile, TLSKeyFile: cfg.NATSKeyFile,
		}, log)
		if err != nil {
			return fail(err)
		}
	case "kafka":
		kp, err := publish.NewKafka(startCtx, publish.KafkaConfig{
			Brokers:           cfg.KafkaBrokers,
			Prefix:            cfg.TopicPrefix,
			Topic:             cfg.KafkaTopic,
			CreateTopics:      cfg.KafkaCreateTopics,
			Partitions:        cfg.KafkaPartitions,
			ReplicationFactor: cfg.KafkaReplication,
			BatchTimeout:      cfg.KafkaBatchTimeout,
			ClientID:          cfg.KafkaClientID,
			TLS: publish.KafkaTLS{
				Enabled: cfg.KafkaTLS || cfg.KafkaCAFile != "" || cfg.KafkaCertFile != "",
				CAFile:  cfg.KafkaCAFile, CertFile: cfg.KafkaCertFile, KeyFile: cfg.KafkaKeyFile,
			},
			SASL:       publish.KafkaSASL{Mechanism: cfg.KafkaSASL, Username: cfg.KafkaUser, Password: cfg.KafkaPassword},
			Headers:    headers,
			KnownTypes: typeNames(),
		}, log)
		if err != nil {
			return fail(err)
		}
		pub = kp
	}
	if nc != nil {
		conn := nc
		cleanup = append(cleanup, step{"nats connection close", func(context.Context) error { conn.Close(); return nil }})
		var err error
		if nps, err = publish.NewNATS(startCtx, nc, natsCfg, log); err != nil {
			return fail(err)
		}
		pub = nps
	}
	cleanup = append(cleanup, step{"publisher flush and close", pub.Close})
	metrics.brokerUp(cfg.Broker, pub)

	checks := map[string]checker{"broker": pub}
	var deduper ingest.Deduper
	switch cfg.Dedup {
	case "nats":
		kv, err := ingest.NewKVDeduper(startCtx, nps.JetStream(), ingest.KVOptions{
			Bucket: cfg.DedupBucket, TTL: cfg.DedupTTL, Lease: cfg.DedupLease, Replicas: cfg.NATSReplicas,
		})
		if err != nil {
			return fail(err)
		}
		deduper = kv
		checks["dedup"] = kv
	case "redis":
		rd, err := ingest.NewRedisDeduperURL(cfg.RedisURL, ingest.RedisOptions{TTL: cfg.DedupTTL, Lease: cfg.DedupLease})
		if err != nil {
			return fail(err)
		}
		if err := rd.Check(startCtx); err != nil {
			return fail(fmt.Errorf("HOOKBRIDGE_REDIS_URL: redis unreachable: %w", err))
		}
		cleanup = append(cleanup, step{"redis close", func(context.Context) error { return rd.Close() }})
		deduper = rd
		checks["dedup"] = rd
	case "memory":
		mem, err := ingest.NewMemoryDeduper(ingest.MemoryOptions{TTL: cfg.DedupTTL, Lease: cfg.DedupLease, MaxEntries: cfg.DedupMax})
		if err != nil {
			return fail(err)
		}
		deduper = mem
	}

	verifier, err := ingest.NewVerifier(cfg.secrets, ingest.WithTolerance(cfg.Tolerance))
	if err != nil {
		return fail(err)
	}
	handler, err := ingest.NewHandler(ingest.HandlerConfig{
		Verifier:       verifier,
		Publisher:      pub,
		Deduper:        deduper,
		Path:           cfg.Path,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		PublishTimeout: cfg.PublishTimeout,
		Log:            log,
		Observer:       metrics,
	})
	if err != nil {
		return fail(err)
	}

	var shuttingDown atomic.Bool
	ready := newReadiness(checks, &shuttingDown)
	admin := &http.Server{
		Addr:              cfg.AdminAddr,
		Handler:           adminMux(ready, metrics.registry),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	public := &http.Server{
		Addr:              cfg.ListenAddr,
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       cfg.ReadTimeout,
		// Writing starts after the body is read and the broker answered.
		WriteTimeout:   cfg.ReadTimeout + cfg.PublishTimeout + 5*time.Second,
		IdleTimeout:    90 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       newStdLogger(log, "http"),
	}

	pubLn, err := listen(cfg.ListenAddr, "HOOKBRIDGE_LISTEN_ADDR")
	if err != nil {
		return fail(err)
	}
	adminLn, err := listen(cfg.AdminAddr, "HOOKBRIDGE_ADMIN_ADDR")
	if err != nil {
		pubLn.Close()
		return fail(err)
	}
	cleanup = append(cleanup, step{"admin server close", func(ctx context.Context) error { return admin.Shutdown(ctx) }})

	errc := make(chan error, 2)
	go func() { errc <- ignoreClosed(admin.Serve(adminLn)) }()
	go func() { errc <- ignoreClosed(public.Serve(pubLn)) }()
	webhookURL := "http://" + hostForURL(pubLn.Addr()) + cfg.Path
	log.Info().Str("webhook_url", webhookURL).Str("admin_addr", adminLn.Addr().String()).
		Str("broker", cfg.Broker).Str("dedup", cfg.Dedup).Msg("ready to receive webhooks")
	if dev != nil {
		dev.WebhookURL = webhookURL
		if err := dev.announce(log); err != nil {
			log.Warn().Err(err).Msg("could not write the dev state file")
		}
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			reloadSecrets(cfg, verifier, log)
		case serveErr = <-errc:
			if serveErr != nil {
				log.Error().Err(serveErr).Msg("listener failed")
				break loop
			}
		}
	}

	// Ordered shutdown (DESIGN §9.4): readiness flips first, keep serving while
	// load balancers notice, then drain requests, then flush publishers.
	log.Info().Dur("delay_ms", cfg.ShutdownDelay).Msg("shutting down: readiness now fails")
	shuttingDown.Store(true)
	if serveErr == nil && cfg.ShutdownDelay > 0 {
		time.Sleep(cfg.ShutdownDelay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	start := time.Now()
	err = public.Shutdown(sctx)
	cancel()
	log.Info().Err(err).Dur("duration_ms", time.Since(start)).Msg("shutdown step done: in-flight requests finished")
	return errors.Join(serveErr, err, runCleanup(context.Background()))
}

// reloadSecrets re-reads the secrets on SIGHUP, keeping the last good set if
// the new one is invalid.
func reloadSecrets(cfg *config, v *ingest.Verifier, log zerolog.Logger) {
	environ := environMap(os.Environ())
	secrets, err := cfg.loadSecrets(environ)
	if err == nil && len(secrets) == 0 {
		err = errors.New("no secrets found")
	}
	if err == nil {
		err = v.SetSecrets(secrets)
	}
	if err != nil {
		log.Error().Err(err).Msg("secret reload failed; keeping the previous secrets")
		return
	}
	log.Info().Int("secrets", len(secrets)).Msg("secrets reloaded")
}

func listen(addr, variable string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s: %s is already in use; choose another address", variable, addr)
		}
		return nil, fmt.Errorf("%s: %w", variable, err)
	}
	return ln, nil
}

func hostForURL(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta.IP.IsUnspecified() {
		if ok {
			return fmt.Sprintf("127.0.0.1:%d", ta.Port)
		}
		return a.String()
	}
	return ta.String()
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func typeNames() []string {
	ts := schema.Types()
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}
