package publish

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"
)

// Embedded defaults.
const (
	DefaultEmbeddedAddr       = "127.0.0.1:4222"
	DefaultEmbeddedDataDir    = "./data"
	DefaultEmbeddedMaxPayload = 4 << 20
)

// embeddedStartTimeout bounds the wait for the server to accept clients;
// recovering a large JetStream store on restart is the slow part.
const embeddedStartTimeout = 2 * time.Minute

// EmbeddedConfig configures the in-process nats-server of
// HOOKBRIDGE_BROKER=embedded.
type EmbeddedConfig struct {
	Addr    string // host:port workers connect to, default "127.0.0.1:4222"; port 0 picks a free one
	DataDir string // JetStream store lives in "<DataDir>/jetstream", default "./data"

	// SyncAlways fsyncs every JetStream write before the ack
	// (HOOKBRIDGE_EMBEDDED_SYNC=always). Without it the server fsyncs every
	// two minutes: an acknowledged message survives a crash of hookbridge
	// (the OS has the write) but not a power loss or kernel crash within the
	// interval. Always costs a disk flush per message, which is a large
	// slowdown on most disks.
	SyncAlways bool

	// MaxPayload is the largest message (body plus headers) the server
	// accepts, default 4 MiB. It must exceed the HTTP body limit.
	MaxPayload int32

	// Token (HOOKBRIDGE_EMBEDDED_NATS_TOKEN) or NKeySeedFile
	// (HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE, a file holding an nkey user seed,
	// "SU…") makes the server require authentication from every client, the
	// bridge's own in-process connection included: workers connect with the
	// same token (nats://<token>@host:port, or nats.Token) or seed
	// (nats.NkeyOptionFromSeed). At most one of them. An Addr that is not a
	// loopback address is refused without one: anyone who reaches the port
	// could publish forged events, purge the stream (losing events already
	// acknowledged to OpenAI) or delete the dedup bucket.
	Token        string
	NKeySeedFile string
}

// ErrEmbeddedNoAuth is returned by StartEmbedded for an address beyond
// loopback without authentication.
var ErrEmbeddedNoAuth = errors.New("publish: embedded NATS: an address beyond loopback needs authentication")

// LoopbackAddr reports whether addr (host:port) listens on loopback only:
// "localhost" or a loopback IP. An empty host or an unspecified IP (all
// interfaces) and any other name are not.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Embedded is a nats-server with JetStream running inside the hookbridge
// process. The bridge publishes over an in-process connection; workers
// connect to ClientURL.
type Embedded struct {
	srv  *server.Server
	url  string
	log  zerolog.Logger
	auth embeddedAuth
}

// StartEmbedded starts the server and waits until it accepts clients.
func StartEmbedded(cfg EmbeddedConfig, log zerolog.Logger) (*Embedded, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultEmbeddedAddr
	}
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultEmbeddedDataDir
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = DefaultEmbeddedMaxPayload
	}
	log = log.With().Str("component", "publish.nats").Str("server", "embedded").Logger()

	host, portText, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("publish: embedded NATS: address %q (HOOKBRIDGE_EMBEDDED_NATS_ADDR): %w", cfg.Addr, err)
	}
	auth, err := cfg.auth()
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("publish: embedded NATS: address %q (HOOKBRIDGE_EMBEDDED_NATS_ADDR): bad port", cfg.Addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT // 0 means "default 4222" to nats-server
	} else if err := probeListen(cfg.Addr, host); err != nil {
		// The server would only log this and never become ready; say it
		// ourselves, with the ways out.
		return nil, err
	}

	opts := &server.Options{
		ServerName: "hookbridge-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.DataDir, // the server appends "jetstream"
		SyncAlways: cfg.SyncAlways,
		MaxPayload: cfg.MaxPayload,
		NoSigs:     true, // hookbridge owns SIGTERM and the shutdown order
	}
	auth.serverOptions(opts)
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("publish: embedded NATS: %w", err)
	}
	sl := &serverLog{log: log}
	srv.SetLoggerV2(sl, log.GetLevel() <= zerolog.DebugLevel, log.GetLevel() <= zerolog.TraceLevel, false)
	srv.Start()
	if !waitReady(srv, sl) {
		srv.Shutdown()
		srv.WaitForShutdown()
		if ferr := sl.fatal(); ferr != nil {
			return nil, fmt.Errorf("publish: embedded NATS did not start: %w", ferr)
		}
		return nil, fmt.Errorf("publish: embedded NATS not ready after %s", embeddedStartTimeout)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		reason := sl.fatal()
		if reason == nil {
			reason = errors.New("see the server log at debug level")
		}
		return nil, fmt.Errorf("publish: embedded NATS: JetStream did not start (DataDir %q): %w", cfg.DataDir, reason)
	}

	e := &Embedded{srv: srv, log: log, auth: auth}
	bound, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("publish: embedded NATS: no TCP listener")
	}
	urlHost := host
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		urlHost = "127.0.0.1" // listening on all interfaces; loopback reaches it locally
	}
	e.url = "nats://" + net.JoinHostPort(urlHost, strconv.Itoa(bound.Port))
	log.Info().Str("url", e.url).Str("store_dir", cfg.DataDir).Bool("sync_always", cfg.SyncAlways).
		Str("auth", auth.kind()).Msg("embedded NATS started")
	return e, nil
}

// waitReady waits up to embeddedStartTimeout for the server to accept
// clients, giving up early on a fatal error: the server logs those (e.g. a
// port taken after our probe) and would otherwise leave us waiting.
func waitReady(srv *server.Server, sl *serverLog) bool {
	const step = 100 * time.Millisecond
	for range int(embeddedStartTimeout / step) {
		if srv.ReadyForConnections(step) {
			return true
		}
		if sl.fatal() != nil {
			return false
		}
	}
	return false
}

// probeListen turns "address in use" into a message an operator can act on.
func probeListen(addr, host string) error {
	l, err := net.Listen("tcp", addr)
	if err == nil {
		return l.Close()
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("publish: embedded NATS: %s is already in use (HOOKBRIDGE_EMBEDDED_NATS_ADDR); "+
			"set HOOKBRIDGE_EMBEDDED_NATS_ADDR=%s for a free port, "+
			"or use HOOKBRIDGE_BROKER=nats to use the server already running there: %w",
			addr, net.JoinHostPort(host, "0"), err)
	}
	return fmt.Errorf("publish: embedded NATS: cannot listen on %s (HOOKBRIDGE_EMBEDDED_NATS_ADDR): %w", addr, err)
}

// ClientURL is the nats:// URL of the bound listener, for external workers.
func (e *Embedded) ClientURL() string { return e.url }

// Connect opens an in-process connection: no TCP, no network failures
// between the bridge and its own server.
func (e *Embedded) Connect(log zerolog.Logger) (*nats.Conn, error) {
	log = log.With().Str("component", "publish.nats").Logger()
	opts := append([]nats.Option{
		nats.Name("hookbridge"),
		nats.InProcessServer(e.srv),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectBufSize(-1),
	}, connHandlers(log)...)
	opts = append(opts, e.auth.clientOptions()...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("publish: embedded NATS: in-process connection: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server and waits until its store is closed. Close the
// publishers and connections first.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.log.Info().Msg("embedded NATS stopped")
}

// serverLog routes nats-server logs through zerolog. Notices (the start-up
// banner, per-stream recovery lines) go to debug: at info they would drown
// hookbridge's own lines.
type serverLog struct {
	log zerolog.Logger

	mu       sync.Mutex
	firstErr error // first fatal: the server logs it instead of returning it
}

func (l *serverLog) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l *serverLog) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l *serverLog) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l *serverLog) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l *serverLog) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }

func (l *serverLog) Fatalf(format string, v ...any) {
	err := fmt.Errorf(format, v...)
	l.log.Error().Err(err).Msg("embedded NATS fatal error")
	l.mu.Lock()
	if l.firstErr == nil {
		l.firstErr = err
	}
	l.mu.Unlock()
}

func (l *serverLog) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstErr
}

// embeddedAuth is how clients of the embedded server authenticate: nothing,
// a token, or an nkey (the seed stays with the bridge and the workers; the
// server knows only the public key).
type embeddedAuth struct {
	token    string
	nkeyPub  string
	seedFile string
}

func (cfg EmbeddedConfig) auth() (embeddedAuth, error) {
	var a embeddedAuth
	switch {
	case cfg.Token != "" && cfg.NKeySeedFile != "":
		return a, errors.New("publish: embedded NATS: set HOOKBRIDGE_EMBEDDED_NATS_TOKEN or HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE, not both")
	case cfg.Token != "":
		a.token = cfg.Token
	case cfg.NKeySeedFile != "":
		seed, err := os.ReadFile(cfg.NKeySeedFile)
		if err != nil {
			return a, fmt.Errorf("publish: embedded NATS: HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE: %w", err)
		}
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
		if err != nil {
			return a, fmt.Errorf("publish: embedded NATS: HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE does not hold an nkey seed: %w", err)
		}
		defer kp.Wipe()
		pub, err := kp.PublicKey()
		if err != nil || !nkeys.IsValidPublicUserKey(pub) {
			return a, errors.New("publish: embedded NATS: HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE must hold a user seed (SU…)")
		}
		a.nkeyPub, a.seedFile = pub, cfg.NKeySeedFile
	case !LoopbackAddr(cfg.Addr):
		return a, fmt.Errorf("%w: HOOKBRIDGE_EMBEDDED_NATS_ADDR=%s is reachable from other hosts, and anyone reaching it could publish forged events, "+
			"purge the stream or delete the dedup bucket; set HOOKBRIDGE_EMBEDDED_NATS_TOKEN (or HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE) "+
			"for the server to require it, or listen on 127.0.0.1", ErrEmbeddedNoAuth, cfg.Addr)
	}
	return a, nil
}

func (a embeddedAuth) kind() string {
	switch {
	case a.token != "":
		return "token"
	case a.nkeyPub != "":
		return "nkey"
	}
	return "none"
}

func (a embeddedAuth) serverOptions(o *server.Options) {
	switch {
	case a.token != "":
		o.Authorization = a.token
	case a.nkeyPub != "":
		o.Nkeys = []*server.NkeyUser{{Nkey: a.nkeyPub}}
	}
}

func (a embeddedAuth) clientOptions() []nats.Option {
	switch {
	case a.token != "":
		return []nats.Option{nats.Token(a.token)}
	case a.nkeyPub != "":
		// The seed is read again at each (re)connect and wiped after use.
		o, err := nats.NkeyOptionFromSeed(a.seedFile)
		if err == nil {
			return []nats.Option{o}
		}
	}
	return nil
}
