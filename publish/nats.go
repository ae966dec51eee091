package publish

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/schema"
)

// NATS defaults.
const (
	DefaultNATSPrefix     = "openai"
	DefaultNATSStream     = "OPENAI_WEBHOOKS"
	DefaultNATSDuplicates = 2 * time.Hour
	DefaultNATSMaxAge     = 7 * 24 * time.Hour
)

const (
	// natsHeaderRoom is added to NATSConfig.MaxMsgSize for the stream limit:
	// JetStream counts headers against max_msg_size, so a stream sized to the
	// body limit alone would refuse the largest bodies, forever (every retry
	// gets the same 503).
	natsHeaderRoom = 64 << 10

	// natsMaxPending bounds publishes awaiting an ack on the shared
	// connection. Each holds its message, so this bounds memory when the
	// server is slow; at full speed a few dozen are outstanding.
	natsMaxPending = 1024

	// natsCloseFlush bounds Close's final flush when its ctx has no deadline.
	natsCloseFlush = 5 * time.Second
)

// NATSConfig configures the JetStream publisher and the stream it provisions.
type NATSConfig struct {
	Prefix string // subject prefix (HOOKBRIDGE_TOPIC_PREFIX), default "openai"
	Stream string // stream name (HOOKBRIDGE_NATS_STREAM), default "OPENAI_WEBHOOKS"

	// Duplicates is the stream's Nats-Msg-Id window (default 2h), a second
	// line of defence behind the dedup store. The server keeps every id seen
	// in the window in memory, roughly 100-150 bytes each: at 1,000 msg/s a
	// 2h window is about 7.2M ids, around 1 GB. Size it to the message rate.
	Duplicates time.Duration
	MaxAge     time.Duration // retention (default 7 days)
	Replicas   int           // default 1
	// MaxMsgSize is the largest body to accept (the HTTP body limit). The
	// stream allows it plus room for headers. 0 leaves the stream unlimited.
	MaxMsgSize int32
	Headers    HeaderOptions
}

func (c NATSConfig) withDefaults() NATSConfig {
	if c.Prefix == "" {
		c.Prefix = DefaultNATSPrefix
	}
	if c.Stream == "" {
		c.Stream = DefaultNATSStream
	}
	if c.Duplicates <= 0 {
		c.Duplicates = DefaultNATSDuplicates
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultNATSMaxAge
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return c
}

// streamMaxMsgSize is the stream's max_msg_size for a body limit.
func (c NATSConfig) streamMaxMsgSize() int32 {
	if c.MaxMsgSize <= 0 {
		return 0
	}
	return int32(min(int64(c.MaxMsgSize)+natsHeaderRoom, math.MaxInt32))
}

// streamConfig is what NewNATS creates. Fields that nats-server 2.9 does not
// know are left zero: the client omits them, so older servers accept it.
func (c NATSConfig) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              c.Stream,
		Description:       "OpenAI webhooks published by hookbridge",
		Subjects:          []string{c.Prefix + ".>"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		MaxAge:            c.MaxAge,
		Duplicates:        c.Duplicates,
		Replicas:          c.Replicas,
		MaxMsgSize:        c.streamMaxMsgSize(),
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		MaxConsumers:      -1,
	}
}

// NATS publishes deliveries to a JetStream stream. It is safe for
// concurrent use; all requests share one connection.
type NATS struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg NATSConfig
	log zerolog.Logger

	// acks carries the publishes of the request path (see ackMux).
	acks *ackMux
	// expectStream is the Nats-Expected-Stream value, shared by every
	// message and never modified.
	expectStream []string

	// syncPublish switches from acks to jetstream's PublishMsg, a request
	// per message. When the connection drops, acks fails every pending
	// publish at once while PublishMsg waits out each caller's ctx. It stays
	// for BenchmarkNATSPublish, to keep the comparison honest.
	syncPublish bool

	// mu guards closed against inflight.Add, so Close can wait for every
	// publish that got past the closed check.
	mu       sync.RWMutex
	closed   bool
	inflight sync.WaitGroup
}

// NewNATS provisions the stream on nc and returns a publisher. An existing
// stream is never modified; one that does not capture "<prefix>.>" is an
// error telling the operator what to change.
func NewNATS(ctx context.Context, nc *nats.Conn, cfg NATSConfig, log zerolog.Logger) (*NATS, error) {
	cfg = cfg.withDefaults()
	log = log.With().Str("component", "publish.nats").Logger()
	if cfg.Duplicates > cfg.MaxAge {
		// The server refuses a window longer than the retention.
		log.Warn().Stringer("duplicates", cfg.Duplicates).Stringer("max_age", cfg.MaxAge).
			Msg("duplicate window longer than max age; using max age")
		cfg.Duplicates = cfg.MaxAge
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("publish: jetstream: %w", err)
	}
	n := &NATS{nc: nc, js: js, cfg: cfg, log: log, expectStream: []string{cfg.Stream}}
	if err := n.provision(ctx); err != nil {
		return nil, err
	}
	if n.acks, err = newAckMux(nc, natsMaxPending); err != nil {
		return nil, err
	}
	if mp := nc.MaxPayload(); mp > 0 && cfg.MaxMsgSize > 0 && mp < int64(cfg.streamMaxMsgSize()) {
		log.Warn().Int64("server_max_payload", mp).Int32("max_body_bytes", cfg.MaxMsgSize).
			Msg("NATS server max_payload is below the body limit plus headers; larger bodies will be refused (raise max_payload or lower HOOKBRIDGE_MAX_BODY_BYTES)")
	}
	return n, nil
}

func (n *NATS) provision(ctx context.Context) error {
	want := n.cfg.streamConfig()
	s, err := n.js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = n.js.CreateStream(ctx, want)
		if err == nil {
			n.log.Info().Str("stream", want.Name).Strs("subjects", want.Subjects).
				Stringer("duplicates", want.Duplicates).Stringer("max_age", want.MaxAge).
				Int("replicas", want.Replicas).Msg("created JetStream stream")
			return nil
		}
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another replica created it between our lookup and create.
			s, err = n.js.Stream(ctx, want.Name)
		}
	}
	if err != nil {
		return fmt.Errorf("publish: JetStream stream %q (HOOKBRIDGE_NATS_STREAM, subjects %q): %w%s",
			want.Name, want.Subjects[0], err, provisionHint(err))
	}
	have := s.CachedInfo().Config
	if !subjectsCapture(have.Subjects, n.cfg.Prefix+".>") {
		return fmt.Errorf("publish: JetStream stream %q (HOOKBRIDGE_NATS_STREAM) exists with subjects %q, "+
			"which do not capture %q (HOOKBRIDGE_TOPIC_PREFIX=%s); hookbridge does not modify existing streams. "+
			"Add %q to the stream's subjects, or set HOOKBRIDGE_NATS_STREAM to a stream that captures it, "+
			"or set HOOKBRIDGE_TOPIC_PREFIX to a prefix this stream captures",
			have.Name, have.Subjects, n.cfg.Prefix+".>", n.cfg.Prefix, n.cfg.Prefix+".>")
	}
	if have.Duplicates < want.Duplicates {
		n.log.Warn().Str("stream", have.Name).Stringer("stream_duplicates", have.Duplicates).
			Stringer("configured_duplicates", want.Duplicates).
			Msg("existing stream has a shorter duplicate window than configured; left unchanged")
	}
	if have.MaxMsgSize > 0 && want.MaxMsgSize > 0 && have.MaxMsgSize < want.MaxMsgSize {
		n.log.Warn().Str("stream", have.Name).Int32("stream_max_msg_size", have.MaxMsgSize).
			Int32("needed", want.MaxMsgSize).
			Msg("existing stream's max message size is below the body limit plus headers; large bodies will be refused")
	}
	n.log.Info().Str("stream", have.Name).Strs("subjects", have.Subjects).Msg("using existing JetStream stream")
	return nil
}

// provisionHint adds what an operator can do about common provisioning errors.
func provisionHint(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return " (enable JetStream on the server, e.g. nats-server -js)"
	case errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "overlap"):
		return " (another stream already captures these subjects: set HOOKBRIDGE_NATS_STREAM to its name, or choose another HOOKBRIDGE_TOPIC_PREFIX)"
	}
	return ""
}

// subjectsCapture reports whether one of the stream subjects matches every
// subject that want (a filter such as "openai.>") matches.
func subjectsCapture(subjects []string, want string) bool {
	for _, s := range subjects {
		if SubjectMatches(s, want) {
			return true
		}
	}
	return false
}

// Publish sends d to "<prefix>.<type>" and returns nil once JetStream has
// stored it, or already had it (same webhook-id inside the duplicate
// window). Every failure wraps ErrUnavailable.
func (n *NATS) Publish(ctx context.Context, d *schema.Delivery) error {
	if d.Event != nil && !d.Event.Type.Routable() {
		// schema.Parse never yields this; a wildcard or empty token in a
		// subject would be refused or, worse, published elsewhere.
		return fmt.Errorf("publish: type %q is not routable", d.Event.Type)
	}
	n.mu.RLock()
	if n.closed {
		n.mu.RUnlock()
		return fmt.Errorf("%w: publisher closed", ErrUnavailable)
	}
	n.inflight.Add(1)
	n.mu.RUnlock()
	defer n.inflight.Done()

	// While reconnecting the client would fail the publish anyway
	// (ReconnectBufSize -1) or buffer it; answering now frees the request.
	if st := n.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: NATS connection is %s", ErrUnavailable, strings.ToLower(st.String()))
	}
	hdr := natsHeader(d, n.cfg.Headers)
	// The stream must be ours: another one capturing the subject would
	// store the event where no consumer looks.
	hdr[jetstream.ExpectedStreamHeader] = n.expectStream
	msg := &nats.Msg{
		Subject: Destination(n.cfg.Prefix, d),
		Header:  hdr,
		Data:    d.Body,
	}
	var seq uint64
	var dup bool
	var err error
	if n.syncPublish {
		var ack *jetstream.PubAck
		if ack, err = n.js.PublishMsg(ctx, msg); err == nil {
			seq, dup = ack.Sequence, ack.Duplicate
		}
	} else {
		var r ackResult
		if err = ctx.Err(); err == nil {
			r, err = n.acks.publish(ctx, msg)
		}
		seq, dup = r.seq, r.duplicate
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w%s", ErrUnavailable, msg.Subject, err, n.publishHint(err))
	}
	if dup {
		n.log.Info().Str("webhook_id", d.WebhookID).Str("subject", msg.Subject).
			Uint64("seq", seq).Msg("JetStream already had this webhook-id")
	}
	return nil
}

func (n *NATS) publishHint(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		return fmt.Sprintf(" (no JetStream stream answered; is stream %q still there?)", n.cfg.Stream)
	case errors.As(err, &apiErr) && apiErr.ErrorCode == 10060: // JSStreamNotMatchErr
		return fmt.Sprintf(" (the subject is captured by a stream other than %q)", n.cfg.Stream)
	}
	return ""
}

// Check reports whether the connection is up and the stream answers. Each
// call asks the server: a caller that probes often bounds how often it asks.
func (n *NATS) Check(ctx context.Context) error {
	n.mu.RLock()
	closed := n.closed
	n.mu.RUnlock()
	if closed {
		return fmt.Errorf("%w: publisher closed", ErrUnavailable)
	}
	if st := n.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: NATS connection is %s", ErrUnavailable, strings.ToLower(st.String()))
	}
	if _, err := n.js.Stream(ctx, n.cfg.Stream); err != nil {
		return fmt.Errorf("%w: stream %q: %w", ErrUnavailable, n.cfg.Stream, err)
	}
	return nil
}

// JetStream returns the JetStream context on the publisher's connection, for
// components such as the KV dedup store that share it.
func (n *NATS) JetStream() jetstream.JetStream { return n.js }

// Close refuses further publishes and waits, bounded by ctx, for those in
// flight and for any async acks still outstanding. Call it after the HTTP
// server has drained. It does not close the connection, which belongs to the
// caller.
func (n *NATS) Close(ctx context.Context) error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	done := make(chan struct{})
	go func() {
		n.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
		n.acks.close()
		// Send what is still buffered (fire-and-forget writes such as
		// PublishNoAck) and wait until the server has read it.
		if !n.nc.IsConnected() {
			return nil // nothing can be sent; the reconnect buffer is off
		}
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if _, ok := ctx.Deadline(); !ok {
			fctx, cancel = context.WithTimeout(ctx, natsCloseFlush)
		}
		defer cancel()
		if err := n.nc.FlushWithContext(fctx); err != nil {
			return fmt.Errorf("publish: closing NATS publisher: flush: %w", err)
		}
		return nil
	case <-ctx.Done():
		// Each in-flight Publish gives up at its own ctx; the goroutine
		// above ends with them.
		return fmt.Errorf("publish: closing NATS publisher with publishes in flight: %w", ctx.Err())
	}
}

// PublishIfNew stores data under subject only if the stream holds no
// message on that subject yet (Nats-Expected-Last-Subject-Sequence: 0), and
// waits for the ack on the publisher's ack path. It is what
// jetstream.KeyValue.Create sends, for the KV dedup store's claims: a
// conflict is a *jetstream.APIError with code
// jetstream.JSErrCodeStreamWrongLastSequence.
func (n *NATS) PublishIfNew(ctx context.Context, subject string, data []byte) error {
	msg := &nats.Msg{Subject: subject, Data: data, Header: expectNewHeader}
	_, err := n.acks.publish(ctx, msg)
	return err
}

// expectNewHeader is shared by every PublishIfNew: nats.go only reads it.
var expectNewHeader = nats.Header{jetstream.ExpectedLastSubjSeqHeader: {"0"}}

// PublishNoAck sends data to subject without a reply subject: JetStream
// stores it and answers nothing, which saves the ack on both sides. Errors
// are those of sending, not of storing. The KV dedup store completes claims
// this way (see ingest.KVDeduper.CompleteAsync).
func (n *NATS) PublishNoAck(subject string, data []byte) error {
	return n.nc.Publish(subject, data)
}
