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
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/ingest/dedup"
	"github.com/hookbridge/hookbridge/publish"
	"github.com/hookbridge/hookbridge/schema"
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

// step is one named, bounded stage of the shutdown. Steps run by ascending
// stage whatever the order they were acquired in: the publisher is flushed
// before the dedup store and the connection under both are closed, and the
// admin listener goes last so that /metrics stays scrapeable during the drain.
type step struct {
	stage int
	name  string
	fn    func(ctx context.Context) error
}

const (
	stageHTTP      = iota
	stageRepublish // settle or drop deliveries whose outcome is unknown
	stageRecords   // flush the KV store's records, through the publisher
	stagePublisher
	stageDedup
	stageConn
	stageEmbedded
	stageTracing
	stageAdmin
)

// stepFloor is the least time a step gets once the shutdown budget is spent,
// so that the quick closes after an overrunning step still happen.
const stepFloor = 100 * time.Millisecond

// runSteps runs steps in stage order within one deadline: each step gets what
// is left of it (at least stepFloor), and a step that does not return in time
// is abandoned (its goroutine ends with the process) so the next one runs.
func runSteps(deadline time.Time, steps []step, log zerolog.Logger) error {
	slices.SortStableFunc(steps, func(a, b step) int { return a.stage - b.stage })
	var errs []error
	for _, s := range steps {
		start := time.Now()
		ctx, cancel := context.WithDeadline(context.Background(), later(deadline, start.Add(stepFloor)))
		done := make(chan error, 1)
		go func() { done <- s.fn(ctx) }()
		var err error
		select {
		case err = <-done:
		case <-ctx.Done():
			select {
			case err = <-done: // finished at the same moment
			default:
				err = fmt.Errorf("did not finish within HOOKBRIDGE_SHUTDOWN_GRACE: %w", ctx.Err())
			}
		}
		cancel()
		ev := log.Info()
		if err != nil {
			ev = log.Warn().Err(err)
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
		ev.Str("step", s.name).Dur("duration_ms", time.Since(start)).Msg("shutdown step done")
	}
	return errors.Join(errs...)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

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
		msg := redactText(err.Error(), credentials(environ))
		fmt.Fprintf(io.err, "hookbridge: invalid configuration:\n  %s\n", strings.ReplaceAll(msg, "\n", "\n  "))
		return 2
	}
	log := newLogger(cfg, io)
	routeRedisLogs(log)
	// GC: the live heap is a few MiB (plus the memory dedup store), but at
	// tens of thousands of req/s the default GOGC=100 collects constantly
	// (~20% of the bridge's CPU). GOGC=300 cut bridge+broker CPU per request
	// by ~20% in `make bench-e2e` (peak RSS 27 → 33 MiB with dedup nats/off).
	// No memory limit is set: with dedup=memory the live heap grows with the
	// ids kept, and a limit near it would make the GC run back to back. The
	// GOGC and GOMEMLIMIT environment variables still take precedence.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(300)
	}
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
	// Every line passes the credential filter (redact.go), whoever wrote it.
	var w stdioWriter = redactWriter{w: io.err, creds: cfg.credentials}
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("service", "hookbridge").Logger()
}

// serve runs until ctx is cancelled (SIGTERM/SIGINT), then shuts down in order.
func serve(ctx context.Context, cfg *config, log zerolog.Logger, dev *devState) error {
	log.Info().Str("version", version).Interface("config", cfg.redacted()).Msg("starting")
	metrics := newMetrics(version, cfg.Broker)

	var (
		cleanup []step // what was acquired, released by stage (runSteps)
		pub     publisher
		nc      *nats.Conn
	)
	fail := func(err error) error {
		_ = runSteps(time.Now().Add(cfg.ShutdownGrace), cleanup, log)
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
			Addr:         cfg.EmbeddedAddr,
			DataDir:      cfg.DataDir,
			SyncAlways:   cfg.EmbeddedSync == "always",
			MaxPayload:   int32(max(publish.DefaultEmbeddedMaxPayload, min(cfg.MaxBodyBytes+messageHeaderRoom, 1<<30))),
			Token:        cfg.EmbeddedToken,
			NKeySeedFile: cfg.EmbeddedNKeyFile,
		}, log)
		if err != nil {
			return fail(err)
		}
		cleanup = append(cleanup, step{stageEmbedded, "embedded nats shutdown", func(context.Context) error { emb.Shutdown(); return nil }})
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
		if err := fitBodyLimit(cfg, nc.MaxPayload(), "the NATS server", log); err != nil {
			return fail(err)
		}
		natsCfg.MaxMsgSize = int32(min(cfg.MaxBodyBytes, 1<<30))
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
			SASL:            publish.KafkaSASL{Mechanism: cfg.KafkaSASL, Username: cfg.KafkaUser, Password: cfg.KafkaPassword},
			Headers:         headers,
			KnownTypes:      typeNames(),
			MaxTopics:       cfg.KafkaMaxTopics,
			MaxMessageBytes: max(publish.DefaultKafkaMaxMessageBytes, cfg.MaxBodyBytes+messageHeaderRoom),
		}, log)
		if err != nil {
			return fail(err)
		}
		pub = kp
		limit, err := kp.MaxMessageBytes(startCtx)
		if err != nil {
			log.Warn().Err(err).Msg("could not read the Kafka cluster's message size limit; HOOKBRIDGE_MAX_BODY_BYTES is not checked against it")
		}
		if err := fitBodyLimit(cfg, limit, "the Kafka cluster", log); err != nil {
			_ = kp.Close(startCtx)
			return fail(err)
		}
	}
	if nc != nil {
		conn := nc
		cleanup = append(cleanup, step{stageConn, "nats connection close", func(context.Context) error { conn.Close(); return nil }})
		var err error
		if nps, err = publish.NewNATS(startCtx, nc, natsCfg, log); err != nil {
			return fail(err)
		}
		pub = nps
		metrics.natsRetries(nps)
	}
	cleanup = append(cleanup, step{stagePublisher, "publisher flush and close", pub.Close})
	metrics.brokerUp(pub)

	checks := map[string]checker{"broker": pub}
	dd, err := newDedup(startCtx, cfg, nps, metrics, log)
	cleanup = append(cleanup, dd.steps...) // what was built, also on error
	if err != nil {
		return fail(err)
	}
	if dd.check != nil {
		checks["dedup"] = dd.check
	}

	verifier, err := ingest.NewVerifier(cfg.secrets, ingest.WithTolerance(cfg.Tolerance))
	if err != nil {
		return fail(err)
	}
	traces, err := startTracing(cfg.tracing, metrics.registry, log) // nil when off
	if err != nil {
		return fail(err)
	}
	cleanup = append(cleanup, tracingSteps(traces)...)
	secrets := newSecretReloader(cfg, environMap(os.Environ()), verifier, metrics, log)
	handler, err := ingest.NewHandler(ingest.HandlerConfig{
		Verifier:       verifier,
		Publisher:      pub,
		Deduper:        dd.deduper,
		BrokerWindow:   dd.window,
		Path:           cfg.Path,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		PublishTimeout: cfg.PublishTimeout,
		Log:            log,
		Observer:       metrics,
		TracerProvider: traces.TracerProvider(), // nil when off

		MaxInFlightBytes:    cfg.MaxInFlightBytes,
		MaxInFlightRequests: cfg.MaxInFlightRequests,
	})
	if err != nil {
		return fail(err)
	}
	cleanup = append(cleanup, step{stageRepublish, "re-publisher stop", handler.Close})
	metrics.republishPending(handler)

	var shuttingDown atomic.Bool
	ready := newReadiness(checks, &shuttingDown)
	metrics.enableInFlight(handler)
	admin := &http.Server{
		Addr:              cfg.AdminAddr,
		Handler:           adminMux(ready, metrics.registry, cfg.PProf),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	var front http.Handler = handler
	if cfg.RateLimit > 0 {
		front = newRateLimiter(handler, cfg.RateLimit, cfg.RateBurst, func(d time.Duration) {
			metrics.Request(outcomeRateLimited, d)
		})
	}
	var certs *certReloader
	if cfg.TLSCertFile != "" {
		metrics.enableTLS()
		if certs, err = newCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile, metrics, log); err != nil {
			return fail(err)
		}
	}
	public := &http.Server{
		Addr:    cfg.ListenAddr,
		Handler: front,
		// Slow-loris headers are cut off as soon as slow bodies are.
		ReadHeaderTimeout: min(5*time.Second, cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		// Writing starts after the body is read and the broker answered.
		WriteTimeout:   cfg.ReadTimeout + cfg.PublishTimeout + 5*time.Second,
		IdleTimeout:    90 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       newStdLogger(log, "http"),
		// HTTP/2 (with TLS): net/http would allow 250 streams per
		// connection, each a request in flight.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: maxConcurrentStreams},
	}
	if certs != nil {
		public.TLSConfig = certs.tlsConfig()
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
	cleanup = append(cleanup, step{stageAdmin, "admin server close", func(ctx context.Context) error {
		if err := admin.Shutdown(ctx); err != nil {
			admin.Close()
			return err
		}
		return nil
	}})

	errc := make(chan error, 2)
	go func() { errc <- ignoreClosed(admin.Serve(adminLn)) }()
	scheme := "http"
	if certs != nil {
		scheme = "https"
		go func() { errc <- ignoreClosed(public.ServeTLS(pubLn, "", "")) }()
	} else {
		go func() { errc <- ignoreClosed(public.Serve(pubLn)) }()
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go secrets.run(watchCtx, cfg.ReloadInterval)
	if certs != nil {
		go certs.watch.run(watchCtx, cfg.ReloadInterval)
	}
	webhookURL := scheme + "://" + hostForURL(pubLn.Addr()) + cfg.Path
	log.Info().Str("webhook_url", webhookURL).Str("admin_addr", adminLn.Addr().String()).
		Str("broker", cfg.Broker).Str("dedup", cfg.Dedup).Msg("ready to receive webhooks")
	if dev != nil {
		dev.WebhookURL = webhookURL
		dev.AdminURL = "http://" + hostForURL(adminLn.Addr())
		if err := dev.announce(log); err != nil {
			log.Warn().Err(err).Msg("could not write the dev state file")
		}
		defer dev.withdraw()
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
			secrets.reload()
			if certs != nil {
				certs.watch.check(true)
			}
		case serveErr = <-errc:
			if serveErr != nil {
				log.Error().Err(serveErr).Msg("listener failed")
				break loop
			}
		}
	}

	// Ordered shutdown (DESIGN §9.4): readiness flips first, keep serving while
	// load balancers notice, then drain requests, then flush publishers and
	// close what is under them, the admin listener last. Everything after the
	// delay shares one HOOKBRIDGE_SHUTDOWN_GRACE budget.
	log.Info().Dur("delay_ms", cfg.ShutdownDelay).Msg("shutting down: readiness now fails")
	shuttingDown.Store(true)
	// Responses from now on carry "Connection: close", so keep-alive
	// connections end after their next answer rather than being closed while
	// idle at Shutdown, racing a request the client is sending on them.
	handler.Drain()
	if serveErr == nil && cfg.ShutdownDelay > 0 {
		time.Sleep(cfg.ShutdownDelay)
	}
	start := time.Now()
	stopWatch()
	steps := append([]step{{stageHTTP, "http server shutdown (in-flight requests finished)", func(ctx context.Context) error {
		if err := public.Shutdown(ctx); err != nil {
			public.Close() // cut what is left rather than overrun the grace period
			return err
		}
		return nil
	}}}, cleanup...)
	err = runSteps(start.Add(cfg.ShutdownGrace), steps, log)
	log.Info().Dur("duration_ms", time.Since(start)).Msg("shutdown complete")
	return errors.Join(serveErr, err)
}

// dedupParts is what the dedup configuration adds to the bridge.
type dedupParts struct {
	deduper ingest.Deduper // nil: no store
	window  time.Duration  // the broker window the handler relies on; 0: none
	check   checker        // for /readyz; nil: nothing to check
	steps   []step
}

// newDedup builds the dedup store of cfg.Dedup. With "nats" the stream's
// duplicate window is the claim for young deliveries (if the stream keeps
// it across restarts) and the KV bucket the memory beyond it; when the
// window alone covers HOOKBRIDGE_DEDUP_TTL there is no bucket at all.
func newDedup(ctx context.Context, cfg *config, nps *publish.NATS, m *metrics, log zerolog.Logger) (dedupParts, error) {
	var p dedupParts
	switch cfg.Dedup {
	case "nats":
		w, why := nps.DedupWindow()
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
		kv, err := dedup.NewKV(ctx, nps.JetStream(), dedup.KVOptions{
			Bucket: cfg.DedupBucket, TTL: cfg.DedupTTL, Lease: cfg.DedupLease, Replicas: cfg.NATSReplicas,
			Writer: nps, Log: log,
		})
		if err != nil {
			return p, err
		}
		p.deduper, p.check = kv, kv
		p.steps = append(p.steps, step{stageRecords, "dedup records flush", kv.Close})
		m.kvRecords(kv)
	case "redis":
		rd, err := dedup.NewRedisURL(cfg.RedisURL, dedup.RedisOptions{TTL: cfg.DedupTTL, Lease: cfg.DedupLease})
		if err != nil {
			return p, err
		}
		p.steps = append(p.steps, step{stageDedup, "redis close", func(context.Context) error { return rd.Close() }})
		if err := rd.Check(ctx); err != nil {
			return p, fmt.Errorf("HOOKBRIDGE_REDIS_URL: redis unreachable: %w", err)
		}
		p.deduper, p.check = rd, rd
	case "memory":
		mem, err := dedup.NewMemory(dedup.MemoryOptions{TTL: cfg.DedupTTL, Lease: cfg.DedupLease, MaxEntries: cfg.DedupMax})
		if err != nil {
			return p, err
		}
		p.deduper = mem
	}
	return p, nil
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
