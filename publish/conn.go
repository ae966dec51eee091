package publish

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// ConnConfig says how to reach an external NATS server (HOOKBRIDGE_BROKER=nats).
// At most one of CredsFile, NKeyFile, User/Password and Token is expected;
// the server decides which one it checks.
type ConnConfig struct {
	URL         string // comma-separated server URLs (HOOKBRIDGE_NATS_URL)
	Name        string // connection name shown by the server's monitoring
	CredsFile   string // JWT + seed .creds file
	NKeyFile    string // NKey seed file
	User        string
	Password    string
	Token       string
	TLSCAFile   string // CA bundle to verify the server with
	TLSCertFile string // client certificate for mutual TLS, with TLSKeyFile
	TLSKeyFile  string
}

// reconnectWait is the pause between reconnect attempts to one server. With
// MaxReconnects(-1) the client keeps trying for as long as the process runs;
// readiness reports the outage in the meantime.
const reconnectWait = time.Second

// Connect dials NATS and waits until the first connection is up or ctx is
// done. The connection reconnects forever afterwards; its owner closes it.
func Connect(ctx context.Context, cfg ConnConfig, log zerolog.Logger) (*nats.Conn, error) {
	if strings.TrimSpace(cfg.URL) == "" {
		return nil, errors.New("publish: HOOKBRIDGE_NATS_URL is empty")
	}
	log = log.With().Str("component", "publish.nats").Logger()
	opts, err := connOptions(cfg)
	if err != nil {
		return nil, err
	}
	connected := make(chan struct{})
	var once sync.Once
	opts = append(opts,
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(*nats.Conn) { once.Do(func() { close(connected) }) }),
	)
	opts = append(opts, connHandlers(log)...)

	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		// With RetryOnFailedConnect only option and URL errors get here.
		return nil, fmt.Errorf("publish: NATS at %s (HOOKBRIDGE_NATS_URL): %w", redactURLs(cfg.URL), err)
	}
	if nc.IsConnected() {
		return nc, nil
	}
	select {
	case <-connected:
		return nc, nil
	case <-ctx.Done():
		last := nc.LastError()
		nc.Close()
		if last == nil {
			last = ctx.Err()
		}
		return nil, fmt.Errorf("publish: cannot connect to NATS at %s (HOOKBRIDGE_NATS_URL): %w", redactURLs(cfg.URL), last)
	}
}

// connOptions turns cfg into client options. Order matters for TLS: Secure
// installs the base tls.Config that RootCAs and ClientCert then extend.
func connOptions(cfg ConnConfig) ([]nats.Option, error) {
	name := cfg.Name
	if name == "" {
		name = "hookbridge"
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		// Do not buffer while reconnecting: a publish made during an outage
		// fails at once (the HTTP caller answers 503 and OpenAI retries)
		// instead of sitting in a buffer that the sender has long given up on.
		nats.ReconnectBufSize(-1),
	}
	if cfg.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
	}
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
			return nil, errors.New("publish: NATS TLS client certificate needs both a certificate and a key file")
		}
		opts = append(opts, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("publish: NATS nkey file: %w", err)
		}
		opts = append(opts, o)
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	}
	return opts, nil
}

// connHandlers log the connection's life. They print only redacted URLs and
// error texts from the client, which never include credentials.
func connHandlers(log zerolog.Logger) []nats.Option {
	return []nats.Option{
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // our own Close; ClosedHandler reports it
			}
			ev := log.Warn()
			if err != nil {
				ev = ev.Err(err)
			}
			ev.Msg("NATS disconnected; reconnecting")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("NATS reconnected")
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			log.Info().Msg("NATS connection closed")
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Warn().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS asynchronous error")
		}),
	}
}

// redactURLs hides passwords and tokens in a comma-separated URL list.
func redactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := url.Parse(p); err == nil && u.User != nil {
			u.User = url.User("redacted")
			p = u.String()
		} else if err != nil && strings.Contains(p, "@") {
			p = "<unparsable URL>"
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
}
