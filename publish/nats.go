package publish

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// natsMaxAsync bounds the asynchronous publishes (the KV store's
	// records) awaiting an ack; beyond it PublishAsync refuses and the
	// store resends later.
	natsMaxAsync = 8192

	// natsAttemptTimeout is how long one attempt waits for its ack (give or
	// take the ackMux sweep's half second) before the message is sent again,
	// within the request's budget. An ack that does not come within it
	// almost always went to a server that died: the repeat reaches the next
	// stream leader, and Nats-Msg-Id or the expected sequence keeps it from
	// being stored twice.
	natsAttemptTimeout = time.Second
	// natsRetryMin and natsRetryMax bound the pause before another attempt
	// while the stream has no leader or the connection is down.
	natsRetryMin = 20 * time.Millisecond
	natsRetryMax = 500 * time.Millisecond
	// natsInProcessRetry is the pause after "duplicate message id is in
	// process": a concurrent copy is being stored, and its answer (and so
	// ours, duplicate) comes within a replication round trip.
	natsInProcessRetry = 5 * time.Millisecond

	// natsCloseFlush bounds Close's final flush when its ctx has no deadline.
	natsCloseFlush = 5 * time.Second
)

// NATSConfig configures the JetStream publisher and the stream it provisions.
type NATSConfig struct {
	Prefix string // subject prefix (HOOKBRIDGE_TOPIC_PREFIX), default "openai"
	// Prefixes are the routes' prefixes, each published to with a
	// delivery's own Prefix; the stream must capture every one. Prefix is
	// always captured and need not be listed.
	Prefixes []string
	Stream   string // stream name (HOOKBRIDGE_NATS_STREAM), default "OPENAI_WEBHOOKS"

	// Duplicates is the stream's Nats-Msg-Id window when NewNATS creates it
	// (default 2h): within it JetStream drops a repeat of a webhook-id
	// atomically with the write, which makes it the claim for deliveries
	// younger than the window. The server keeps every id seen in the
	// window in memory, roughly 100-150 bytes each: at 1,000 msg/s a 2h
	// window is about 7.2M ids, around 1 GB. Size it to the message rate.
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
		Subjects:          c.subjects(),
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

// prefixes is every prefix the stream must capture.
func (c NATSConfig) prefixes() []string { return allPrefixes(c.Prefix, c.Prefixes) }

// allPrefixes is prefix followed by the routes' prefixes, without empty
// ones or repeats.
func allPrefixes(prefix string, routes []string) []string {
	out := []string{prefix}
	for _, p := range routes {
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// subjects are the stream subjects of a created stream: "<prefix>.>" for
// every prefix not already captured by another's, since JetStream refuses
// overlapping subjects in one stream.
func (c NATSConfig) subjects() []string {
	var out []string
	for _, p := range c.prefixes() {
		out = append(out, p+".>")
	}
	var keep []string
	for i, s := range out {
		captured := false
		for j, o := range out {
			if i != j && SubjectMatches(o, s) { // prefixes has no repeats
				captured = true
			}
		}
		if !captured {
			keep = append(keep, s)
		}
	}
	return keep
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

	// window is the stream's duplicate window if the stream keeps it
	// across server restarts, else 0, with windowWhy saying why (see
	// DedupWindow). Read from the stream as it is, at start-up.
	window    time.Duration
	windowWhy string

	// retries counts attempts repeated within a request's budget, by
	// reason (see RetryReasons).
	retries [numRetryReasons]atomic.Uint64

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
	if n.acks, err = newAckMux(nc, natsMaxPending, natsMaxAsync, natsAttemptTimeout); err != nil {
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
			n.window, n.windowWhy = dedupWindow(s.CachedInfo().Config)
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
	if err := n.checkCaptures(have); err != nil {
		return err
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
	n.window, n.windowWhy = dedupWindow(have)
	n.log.Info().Str("stream", have.Name).Strs("subjects", have.Subjects).
		Stringer("duplicates", have.Duplicates).Msg("using existing JetStream stream")
	return nil
}

// checkCaptures reports the prefixes an existing stream does not capture,
// with the command that adds them: hookbridge never rewrites a stream, so
// the operator does it knowingly.
func (n *NATS) checkCaptures(have jetstream.StreamConfig) error {
	var missing []string
	for _, p := range n.cfg.prefixes() {
		if !subjectsCapture(have.Subjects, p+".>") {
			missing = append(missing, p+".>")
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if len(n.cfg.prefixes()) == 1 {
		return fmt.Errorf("publish: JetStream stream %q (HOOKBRIDGE_NATS_STREAM) exists with subjects %q, "+
			"which do not capture %q (HOOKBRIDGE_TOPIC_PREFIX=%s); hookbridge does not modify existing streams. "+
			"Add %q to the stream's subjects (%s), or set HOOKBRIDGE_NATS_STREAM to a stream that captures it, "+
			"or set HOOKBRIDGE_TOPIC_PREFIX to a prefix this stream captures",
			have.Name, have.Subjects, missing[0], n.cfg.Prefix, missing[0], StreamEditCommand(have.Name, have.Subjects, missing))
	}
	return fmt.Errorf("publish: JetStream stream %q (HOOKBRIDGE_NATS_STREAM) exists with subjects %q, "+
		"which do not capture the route prefixes %q (HOOKBRIDGE_ROUTES_<n>_PREFIX); hookbridge does not modify existing streams. "+
		"Add them to the stream's subjects: %s",
		have.Name, have.Subjects, missing, StreamEditCommand(have.Name, have.Subjects, missing))
}

// StreamEditCommand is the nats CLI command that adds missing to a stream's
// subjects, keeping the ones it has.
func StreamEditCommand(stream string, have, missing []string) string {
	all := append(slices.Clip(have), missing...)
	return fmt.Sprintf("nats stream edit %s --subjects '%s'", stream, strings.Join(all, ","))
}

// dedupWindow returns the stream's duplicate window if JetStream still
// knows every id stored inside it after a server restart, else 0 and why.
// A restarted server rebuilds its id table from the messages stored within
// the window, so no message inside it may have gone by then: the stream
// must discard only by age (limits retention, no message or byte limit that
// drops old messages, no per-subject limit), and keep messages at least as
// long as the window.
func dedupWindow(c jetstream.StreamConfig) (time.Duration, string) {
	switch {
	case c.Duplicates <= 0:
		return 0, "the stream has no duplicate window"
	case c.Retention != jetstream.LimitsPolicy:
		return 0, "the stream's retention is " + c.Retention.String() + ", which removes consumed messages; want limits"
	case c.MaxAge > 0 && c.MaxAge < c.Duplicates:
		return 0, fmt.Sprintf("the stream keeps messages for %v, less than its duplicate window %v", c.MaxAge, c.Duplicates)
	case c.Discard == jetstream.DiscardOld && (c.MaxMsgs > 0 || c.MaxBytes > 0):
		return 0, "the stream discards old messages when its message or byte limit is reached; want no limit or discard new"
	case c.MaxMsgsPerSubject > 0:
		return 0, "the stream limits messages per subject"
	case c.Mirror != nil || len(c.Sources) > 0:
		return 0, "the stream is a mirror or has sources"
	}
	return c.Duplicates, ""
}

// DedupWindow returns the stream's duplicate window, inside which JetStream
// drops a repeat of a webhook-id atomically with the write, on the stream
// leader of a cluster too: the claim for young deliveries. It is 0 when the
// stream would forget ids across a server restart, with why in the string.
// It describes the stream as found at start-up.
func (n *NATS) DedupWindow() (time.Duration, string) { return n.window, n.windowWhy }

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

// Publish sends d to "<prefix>.<type>" with Nats-Msg-Id d.DedupKey() and
// returns once JetStream has stored it (duplicate false) or found the key
// inside the stream's duplicate window and dropped this copy (duplicate
// true). While no answer comes it sends the same message again within ctx
// (see request). An error after which the message may be stored says
// MaybeStored.
func (n *NATS) Publish(ctx context.Context, d *schema.Delivery) (duplicate bool, err error) {
	if d.Event != nil && !d.Event.Type.Routable() {
		// schema.Parse never yields this; a wildcard or empty token in a
		// subject would be refused or, worse, published elsewhere.
		return false, fmt.Errorf("publish: type %q is not routable", d.Event.Type)
	}
	n.mu.RLock()
	if n.closed {
		n.mu.RUnlock()
		return false, errors.New("publish: NATS publisher closed")
	}
	n.inflight.Add(1)
	n.mu.RUnlock()
	defer n.inflight.Done()

	hdr := natsHeader(d, n.cfg.Headers)
	// The stream must be ours: another one capturing the subject would
	// store the event where no consumer looks.
	hdr[jetstream.ExpectedStreamHeader] = n.expectStream
	msg := &nats.Msg{
		Subject: Destination(n.cfg.Prefix, d),
		Header:  hdr,
		Data:    d.Body,
	}
	r, err := n.request(ctx, msg)
	if err != nil {
		return false, n.publishError(msg.Subject, err)
	}
	if r.duplicate {
		n.log.Debug().Str("webhook_id", d.WebhookID).Str("subject", msg.Subject).
			Uint64("seq", r.seq).Msg("JetStream already had this webhook-id")
	}
	return r.duplicate, nil
}

// publishError adds the subject and a hint to err, keeping MaybeStored.
func (n *NATS) publishError(subject string, err error) error {
	e := fmt.Errorf("publish: %s: %w%s", subject, err, n.publishHint(err))
	if _, ok := err.(maybeStored); ok {
		return maybeStored{e}
	}
	return e
}

// Reasons an attempt is repeated within a request's budget.
const (
	retryNoResponders = iota // no stream leader took the message (503): nothing stored
	retryInProcess           // a concurrent copy of this Nats-Msg-Id is being stored
	retryTimeout             // no ack within natsAttemptTimeout: maybe stored
	retryDisconnected        // the connection is down, or dropped awaiting the ack
	numRetryReasons
)

// RetryReasons names the reasons counted by Retries, in its order.
var RetryReasons = [numRetryReasons]string{"no_responders", "in_process", "timeout", "disconnected"}

// Retries returns how many attempts were repeated within a request's budget,
// by reason (see RetryReasons).
func (n *NATS) Retries() [numRetryReasons]uint64 {
	var out [numRetryReasons]uint64
	for i := range out {
		out[i] = n.retries[i].Load()
	}
	return out
}

// request publishes msg, which carries Nats-Msg-Id or an expected last
// sequence so that a repeat can never be stored twice, and returns
// JetStream's answer. While there is none it tries again within ctx: after a
// pause when no stream leader took the message or the connection is down
// (a leader election or a reconnect in progress), at once when an attempt's
// ack is overdue, and shortly after "in process" (a concurrent copy of the
// same id, whose fate decides ours). A leader lost mid-request thus costs
// the election, not the request. The error, once ctx is done or the answer
// is a refusal, says MaybeStored if any attempt may have been stored.
func (n *NATS) request(ctx context.Context, msg *nats.Msg) (ackResult, error) {
	var mayBeStored bool
	pause := natsRetryMin
	for {
		var (
			r      ackResult
			err    error
			reason = -1
		)
		if err = n.waitConnected(ctx); err == nil {
			var sent bool
			r, sent, err = n.acks.publish(ctx, msg)
			if err == nil {
				return r, nil
			}
			mayBeStored = mayBeStored || sent && !isAnswer(err)
			reason = retryReason(err, sent, ctx)
		}
		if reason < 0 || ctx.Err() != nil {
			if mayBeStored {
				return ackResult{}, maybeStored{err}
			}
			return ackResult{}, err
		}
		n.retries[reason].Add(1)
		wait := pause
		switch reason {
		case retryTimeout:
			continue
		case retryInProcess:
			wait = natsInProcessRetry
		default:
			pause = min(2*pause, natsRetryMax)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if mayBeStored {
				return ackResult{}, maybeStored{err}
			}
			return ackResult{}, err
		}
	}
}

// isAnswer reports whether err is JetStream's answer to the message itself,
// which says it was not stored.
func isAnswer(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.As(err, &apiErr)
}

// retryReason says why an attempt that failed with err is worth repeating,
// or -1 when it is not: a refusal, the publisher closing, or ctx done.
func retryReason(err error, sent bool, ctx context.Context) int {
	var apiErr *jetstream.APIError
	switch {
	case ctx.Err() != nil:
		return -1
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		return retryNoResponders
	case errors.As(err, &apiErr):
		switch apiErr.ErrorCode {
		case jsErrCodeDuplicateInProcess:
			return retryInProcess
		case jsErrCodeClusterNotAvailable, jsErrCodeClusterNotLeader, jsErrCodeInsufficientResources:
			// Leadership is moving (a leader short of resources steps
			// down): the next attempt may reach the new one.
			return retryNoResponders
		}
		return -1
	case errors.Is(err, errAckLost), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionDraining):
		return retryDisconnected
	case sent && errors.Is(err, errAckTimeout):
		return retryTimeout
	}
	return -1
}

// JetStream error codes that say "not now" rather than "no". The first is
// "duplicate message id is in process" (nats-server 2.12+, clustered
// streams): a copy with the same Nats-Msg-Id is being replicated; asked again
// a moment later, the server answers duplicate (or stores ours if that copy
// failed).
const (
	jsErrCodeDuplicateInProcess    = 10158
	jsErrCodeClusterNotAvailable   = 10008
	jsErrCodeClusterNotLeader      = 10009
	jsErrCodeInsufficientResources = 10023
)

// waitConnected returns once the connection is up, or ctx's error. While
// reconnecting nothing can be sent (the reconnect buffer is off, so that no
// message waits where its sender has given up).
func (n *NATS) waitConnected(ctx context.Context) error {
	for {
		switch st := n.nc.Status(); st {
		case nats.CONNECTED:
			return nil
		case nats.CLOSED:
			return errors.New("NATS connection is closed")
		}
		t := time.NewTimer(natsRetryMin)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("NATS connection is %s: %w", strings.ToLower(n.nc.Status().String()), ctx.Err())
		}
	}
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
		return errors.New("publish: NATS publisher closed")
	}
	if st := n.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("publish: NATS connection is %s", strings.ToLower(st.String()))
	}
	if _, err := n.js.Stream(ctx, n.cfg.Stream); err != nil {
		return fmt.Errorf("publish: stream %q: %w", n.cfg.Stream, err)
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
// waits for the ack, sending again while none comes (see request): the
// expected sequence keeps a repeat from being stored twice, and a repeat of
// a stored write is answered as a conflict. It is what
// jetstream.KeyValue.Create sends, for the KV dedup store's claims: a
// conflict is a *jetstream.APIError with code
// jetstream.JSErrCodeStreamWrongLastSequence.
func (n *NATS) PublishIfNew(ctx context.Context, subject string, data []byte) error {
	msg := &nats.Msg{Subject: subject, Data: data, Header: expectNewHeader}
	_, err := n.request(ctx, msg)
	return err
}

// expectNewHeader is shared by every PublishIfNew: nats.go only reads it.
var expectNewHeader = nats.Header{jetstream.ExpectedLastSubjSeqHeader: {"0"}}

// PublishAsync sends data to subject with a reply subject and returns
// without waiting; done gets JetStream's answer later (nil once stored), or
// why there is none: no ack within a few seconds, connection lost, publisher
// closed. It must not block. An error returned means nothing was sent and
// done will not be called. The KV dedup store writes its records this way
// and sends again those that were not stored.
func (n *NATS) PublishAsync(subject string, data []byte, done func(error)) error {
	if n.nc.Status() != nats.CONNECTED {
		return errors.New("publish: NATS connection is not connected")
	}
	return n.acks.publishAsync(&nats.Msg{Subject: subject, Data: data}, done)
}
