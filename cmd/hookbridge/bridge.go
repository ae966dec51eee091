package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/ingest/tracing"
)

// bridge is one `hookbridge serve`: newBridge builds its parts, from the
// broker connection to the open listeners, and run serves on them until its
// context ends, then shuts them down in order.
type bridge struct {
	cfg     *config
	log     zerolog.Logger
	metrics *metrics

	handler *ingest.Handler
	secrets []*secretReloader // one per route
	certs   *certReloader     // nil without TLS
	// shutting makes /readyz fail: set when the shutdown begins.
	shutting atomic.Bool

	public, admin        *http.Server
	publicLn, adminLn    net.Listener
	webhookURL, adminURL string
	// natsURL is where workers reach the embedded server; "" otherwise.
	natsURL string
	// dev, when set, is told the addresses (serve --dev).
	dev *devState

	// steps release what newBridge acquired, by stage (runSteps).
	steps []step
}

// newBridge builds every part of the bridge from cfg, in the order they
// depend on each other. environ is the environment cfg was loaded from (the
// secrets are read from it again on reload). If a part fails, what was
// built before it is released and the error says what to fix.
func newBridge(ctx context.Context, cfg *config, environ map[string]string, log zerolog.Logger) (_ *bridge, err error) {
	b := &bridge{cfg: cfg, log: log, metrics: newMetrics(version, cfg.Broker)}
	defer func() {
		if err != nil {
			_ = runSteps(time.Now().Add(cfg.ShutdownGrace), b.steps, log)
		}
	}()
	log.Info().Str("version", version).Interface("config", cfg.redacted()).Msg("starting")
	startCtx, cancel := context.WithTimeout(ctx, brokerStartTimeout)
	defer cancel()

	br, steps, err := openBroker(startCtx, cfg, log)
	b.steps = append(b.steps, steps...)
	if err != nil {
		return nil, err
	}
	b.natsURL = br.clientURL
	if br.nats != nil {
		b.metrics.natsRetries(br.nats)
	}
	checks := map[string]checker{"broker": br.pub}

	dd, err := openDedup(startCtx, cfg, br, b.metrics, log)
	b.steps = append(b.steps, dd.steps...)
	if err != nil {
		return nil, err
	}
	if dd.check != nil {
		checks["dedup"] = dd.check
	}

	routes, err := b.buildRoutes(environ)
	if err != nil {
		return nil, err
	}
	traces, err := startTracing(cfg.tracing, b.metrics.registry, log) // nil when off
	if err != nil {
		return nil, err
	}
	b.steps = append(b.steps, tracingSteps(traces)...)
	if b.handler, err = newWebhookHandler(cfg, br, dd, routes, traces, b.metrics, log); err != nil {
		return nil, err
	}
	b.steps = append(b.steps, step{stageRepublish, "re-publisher stop", b.handler.Close})
	b.metrics.republishPending(b.handler)
	b.metrics.enableInFlight(b.handler)
	ready := newReadiness(checks, &b.shutting)
	ready.routes = cfg.routeSummaries()
	b.metrics.brokerUp(ready)
	if err := b.buildServers(ready); err != nil {
		return nil, err
	}
	return b, b.listen()
}

// newWebhookHandler is the public endpoint: verify, dedup, publish.
func newWebhookHandler(cfg *config, br broker, dd dedupParts, routes []ingest.Route, traces *tracing.Provider, m *metrics, log zerolog.Logger) (*ingest.Handler, error) {
	return ingest.NewHandler(ingest.HandlerConfig{
		Routes:              routes,
		Publisher:           br.pub,
		Deduper:             dd.deduper,
		BrokerWindow:        dd.window,
		MaxBodyBytes:        br.maxBody,
		PublishTimeout:      cfg.PublishTimeout,
		Log:                 log,
		Observer:            m,
		TracerProvider:      traces.TracerProvider(), // nil when off
		MaxInFlightBytes:    cfg.MaxInFlightBytes,
		MaxInFlightRequests: cfg.MaxInFlightRequests,
	})
}

// buildServers makes the public and the admin server, and their shutdown
// steps.
func (b *bridge) buildServers(ready *readiness) error {
	var front http.Handler = b.handler
	if b.cfg.RateLimit > 0 {
		front = newRateLimiter(b.handler, b.cfg.RateLimit, b.cfg.RateBurst, func(d time.Duration) {
			b.metrics.Request(outcomeRateLimited, d)
		})
	}
	if b.cfg.TLSCertFile != "" {
		b.metrics.enableTLS()
		var err error
		if b.certs, err = newCertReloader(b.cfg.TLSCertFile, b.cfg.TLSKeyFile, b.metrics, b.log); err != nil {
			return err
		}
	}
	b.public = publicServer(b.cfg, front, b.certs, b.log)
	b.admin = adminServer(b.cfg, adminMux(ready, b.metrics.registry, b.cfg.PProf))
	b.steps = append(b.steps,
		step{stageHTTP, "http server shutdown (in-flight requests finished)", shutdownServer(b.public)},
		step{stageAdmin, "admin server close", shutdownServer(b.admin)})
	return nil
}

// listen opens both listeners; the last part to be built, so that nothing
// can fail after the ports are taken.
func (b *bridge) listen() error {
	var err error
	if b.publicLn, err = listen(b.cfg.ListenAddr, "HOOKBRIDGE_LISTEN_ADDR"); err != nil {
		return err
	}
	if b.adminLn, err = listen(b.cfg.AdminAddr, "HOOKBRIDGE_ADMIN_ADDR"); err != nil {
		b.publicLn.Close()
		return err
	}
	scheme := "http"
	if b.certs != nil {
		scheme = "https"
	}
	b.webhookURL = scheme + "://" + hostForURL(b.publicLn.Addr()) + b.cfg.routes[0].path
	b.adminURL = "http://" + hostForURL(b.adminLn.Addr())
	return nil
}

// run serves until ctx ends (SIGTERM, SIGINT) or a listener fails, reloading
// the secrets and the certificate on SIGHUP; then it shuts down in order.
func (b *bridge) run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- ignoreClosed(b.admin.Serve(b.adminLn)) }()
	go func() {
		if b.certs != nil {
			errc <- ignoreClosed(b.public.ServeTLS(b.publicLn, "", ""))
		} else {
			errc <- ignoreClosed(b.public.Serve(b.publicLn))
		}
	}()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	for _, s := range b.secrets {
		go s.run(watchCtx, b.cfg.ReloadInterval)
	}
	if b.certs != nil {
		go b.certs.watch.run(watchCtx, b.cfg.ReloadInterval)
	}
	b.log.Info().Str("webhook_url", b.webhookURL).Str("admin_addr", b.adminLn.Addr().String()).
		Str("broker", b.cfg.Broker).Str("dedup", b.cfg.Dedup).Msg("ready to receive webhooks")
	if b.dev != nil {
		b.announceDev()
		defer b.dev.withdraw()
	}
	serveErr := b.wait(ctx, errc)
	return errors.Join(serveErr, b.shutdown(serveErr != nil, stopWatch))
}

// wait blocks until ctx ends or a listener fails (the error), handling
// SIGHUP meanwhile.
func (b *bridge) wait(ctx context.Context, errc <-chan error) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			b.reload()
		case err := <-errc:
			if err != nil {
				b.log.Error().Err(err).Msg("listener failed")
				return err
			}
		}
	}
}

// reload re-reads the secrets and the TLS certificate now.
func (b *bridge) reload() {
	for _, s := range b.secrets {
		s.reload()
	}
	if b.certs != nil {
		b.certs.watch.check(true)
	}
}

// shutdown stops the bridge in order: readiness flips first, serving goes on
// while load balancers notice (not after a listener failed), then the steps
// run by stage within one HOOKBRIDGE_SHUTDOWN_GRACE budget: requests drain,
// the publisher flushes, what is under it closes, the admin listener last.
func (b *bridge) shutdown(failed bool, stopWatch func()) error {
	b.log.Info().Dur("delay_ms", b.cfg.ShutdownDelay).Msg("shutting down: readiness now fails")
	b.shutting.Store(true)
	// Responses from now on carry "Connection: close", so keep-alive
	// connections end after their next answer rather than being closed while
	// idle at Shutdown, racing a request the client is sending on them.
	b.handler.Drain()
	if !failed && b.cfg.ShutdownDelay > 0 {
		time.Sleep(b.cfg.ShutdownDelay)
	}
	start := time.Now()
	stopWatch()
	err := runSteps(start.Add(b.cfg.ShutdownGrace), b.steps, b.log)
	b.log.Info().Dur("duration_ms", time.Since(start)).Msg("shutdown complete")
	return err
}

// announceDev writes dev.json, so that send and tail find this bridge.
func (b *bridge) announceDev() {
	b.dev.WebhookURL, b.dev.AdminURL, b.dev.NATSURL = b.webhookURL, b.adminURL, b.natsURL
	if err := b.dev.announce(b.log); err != nil {
		b.log.Warn().Err(err).Msg("could not write the dev state file")
	}
}
