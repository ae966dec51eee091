package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookbridge/hookbridge/schema"
)

// Outcome is the result of one webhook request. Its values are bounded and
// double as the "status"/"error" code in the JSON response and as a metric
// label.
type Outcome string

// Outcomes, one per row of the status table in the README.
const (
	OutcomePublished        Outcome = "published"
	OutcomeDuplicate        Outcome = "duplicate"
	OutcomeDeadLettered     Outcome = "deadlettered"
	OutcomeBadRequest       Outcome = "bad_request"
	OutcomeInvalidSignature Outcome = "invalid_signature"
	OutcomeNotFound         Outcome = "not_found"
	OutcomeMethodNotAllowed Outcome = "method_not_allowed"
	OutcomeInFlight         Outcome = "in_flight"
	OutcomeTooLarge         Outcome = "too_large"
	OutcomeTimeout          Outcome = "timeout"
	OutcomeUnavailable      Outcome = "unavailable"
)

// Observer receives what the handler saw, for metrics. Implementations must be
// cheap and safe for concurrent use; they must not retain the delivery.
type Observer interface {
	// Request is called once per request with its outcome and duration.
	Request(o Outcome, d time.Duration)
	// SignatureFailure is called with the VerifyError reason of a rejected request.
	SignatureFailure(reason string)
	// SecretMatched is called with the position of the configured secret that
	// verified a request, so operators can see when an old secret is unused.
	SecretMatched(index int)
	// Published is called after the broker acknowledged a delivery; ev is nil
	// for dead letters. duplicate says the broker already held the
	// delivery's dedup key and dropped this copy.
	Published(ev *schema.Event, d time.Duration, duplicate bool)
	// PublishFailed is called when the broker did not acknowledge in time.
	PublishFailed(d time.Duration)
	// DedupPath is called once per verified delivery with the path it took.
	DedupPath(p DedupPath)
	// Dedup is called with the result of a claim in the Deduper: "new",
	// "in_flight", "done" or "error".
	Dedup(result string)
	// Republished is called when the re-publishing of a delivery whose
	// outcome was unknown ends, with one of the Republish* results.
	Republished(result string)
}

// Handler defaults.
const (
	DefaultPath           = "/webhooks/openai"
	DefaultMaxBodyBytes   = 1 << 20
	DefaultPublishTimeout = 5 * time.Second
)

// HandlerConfig configures NewHandler. Publisher is required, and Verifier
// unless Routes are set.
type HandlerConfig struct {
	Verifier  *Verifier
	Publisher Publisher
	// Deduper may be nil: then every verified delivery is published and only
	// the broker's own duplicate detection (JetStream Nats-Msg-Id) remains.
	Deduper Deduper
	// BrokerWindow is how long the Publisher's broker drops any repeat of a
	// stored delivery's dedup key, atomically with the write (JetStream's
	// duplicate window, when the stream keeps it across restarts); 0 for
	// none. With it, a delivery whose every earlier delivery must lie inside
	// the window (see PathWindow) is published with nothing else on the
	// request path, and deliveries whose outcome is unknown are re-published
	// in the background until the broker answers.
	BrokerWindow time.Duration
	// WindowMargin is taken off BrokerWindow when judging an event's age, for
	// clock skew between OpenAI, this host and the broker. It must be at
	// least the verifier's tolerance; default tolerance + 1 minute.
	WindowMargin time.Duration
	// RepublishMax and RepublishMaxBytes bound the deliveries awaiting a
	// background re-publish (defaults DefaultRepublishMax and
	// DefaultRepublishMaxBytes); beyond them a delivery is not taken, with a
	// log line.
	RepublishMax      int
	RepublishMaxBytes int64
	// Path is the only path served without Routes (default DefaultPath).
	Path string
	// Routes, when set, are the endpoints served instead of Path and
	// Verifier: each its own path, secrets and prefix (see Route).
	Routes []Route
	// MaxBodyBytes bounds the body (default DefaultMaxBodyBytes); larger
	// requests get 413 without the body being read whole.
	MaxBodyBytes int64
	// MaxInFlightBytes bounds the body bytes held by all requests at once,
	// from the first byte read until the answer (default
	// DefaultMaxInFlightBytes); MaxInFlightRequests bounds the requests past
	// the header checks at once (default DefaultMaxInFlightRequests). Beyond
	// either, requests get 503 + Retry-After without their body being read.
	MaxInFlightBytes    int64
	MaxInFlightRequests int
	// PublishTimeout bounds dedup claim + publish per request (default
	// DefaultPublishTimeout).
	PublishTimeout time.Duration
	// RetryAfter is sent with 503 responses (default 5s; 409 always says 1s,
	// since an in-flight claim resolves within one publish).
	RetryAfter time.Duration
	Log        zerolog.Logger
	Observer   Observer // optional
	// TracerProvider, when set, traces every request with OpenTelemetry
	// (see trace.go). nil, the default, turns tracing off at no cost.
	TracerProvider trace.TracerProvider
}

// Route is one webhook endpoint: OpenAI signs each endpoint (project) with
// its own secret, so a delivery is verified only with the secrets of the
// route whose path it arrived on.
type Route struct {
	// Name is carried by the route's deliveries (schema.Delivery.Route),
	// and with it into their dedup key: one event sent to two endpoints is
	// published once per route.
	Name string
	// Path is matched exactly.
	Path     string
	Verifier *Verifier
	// Prefix is the route's subject/topic prefix (schema.Delivery.Prefix);
	// "" publishes with the Publisher's own.
	Prefix string
	// Observer, when set, receives the route's Request, SignatureFailure
	// and SecretMatched calls instead of HandlerConfig.Observer (a metric
	// labelled with the route); everything else goes to the handler's.
	Observer Observer
}

// route is a Route as the request path uses it.
type route struct {
	path string
	// tag is what the route's deliveries carry; nil for the unnamed route
	// of a handler without Routes.
	tag *schema.Route
	v   *Verifier
	obs Observer
}

// Handler is the webhook endpoint: read (bounded) → verify → parse → dedup
// and publish (see DedupPath), answering 2xx only once the broker has
// acknowledged.
type Handler struct {
	cfg        HandlerConfig
	adm        admission // global in-flight bounds (admit.go)
	log        zerolog.Logger
	warnLog    zerolog.Logger // sampled: rejected requests are attacker-controlled
	obs        Observer
	retryAfter string
	draining   atomic.Bool
	tr         *tracer // nil: tracing off

	// one is the route when there is only one, compared with the request's
	// path directly; otherwise byPath holds every route.
	one    *route
	byPath map[string]*route

	// youngSec and marginSec are BrokerWindow − WindowMargin and
	// WindowMargin in seconds (see young); directPath is the path of a
	// delivery published without a claim.
	youngSec, marginSec int64
	directPath          DedupPath
	rep                 *republisher // nil without a BrokerWindow
}

// Drain makes every later response carry "Connection: close". Call it when
// shutdown begins, before the shutdown delay: each keep-alive connection is
// then closed by the server right after its next response, instead of being
// closed while idle when the server stops, which races with a request the
// client is sending on it at that moment (the client sees EOF or a reset for
// a request that had already left).
func (h *Handler) Drain() { h.draining.Store(true) }

// NewHandler checks cfg, fills in defaults and returns the handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Verifier == nil && len(cfg.Routes) == 0 {
		return nil, errors.New("ingest: handler needs a Verifier")
	}
	if cfg.Publisher == nil {
		return nil, errors.New("ingest: handler needs a Publisher")
	}
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if len(cfg.Routes) > 0 {
		// The first route's verifier is the handler's clock (see young),
		// and the longest tolerance bounds the window margin.
		cfg.Verifier, cfg.Path = nil, cfg.Routes[0].Path
		for _, r := range cfg.Routes {
			if r.Verifier == nil {
				return nil, fmt.Errorf("ingest: route %q needs a Verifier", r.Name)
			}
			if cfg.Verifier == nil || r.Verifier.tolerance > cfg.Verifier.tolerance {
				cfg.Verifier = r.Verifier
			}
		}
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxInFlightBytes <= 0 {
		cfg.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if cfg.MaxInFlightRequests <= 0 {
		cfg.MaxInFlightRequests = DefaultMaxInFlightRequests
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * time.Second
	}
	obs := cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	if cfg.BrokerWindow < 0 || cfg.WindowMargin < 0 {
		return nil, errors.New("ingest: BrokerWindow and WindowMargin must not be negative")
	}
	if cfg.WindowMargin == 0 {
		cfg.WindowMargin = cfg.Verifier.tolerance + clockAllowance
	}
	if cfg.WindowMargin < cfg.Verifier.tolerance {
		return nil, fmt.Errorf("ingest: WindowMargin %v is below the timestamp tolerance %v", cfg.WindowMargin, cfg.Verifier.tolerance)
	}
	if cfg.RepublishMax <= 0 {
		cfg.RepublishMax = DefaultRepublishMax
	}
	if cfg.RepublishMaxBytes <= 0 {
		cfg.RepublishMaxBytes = DefaultRepublishMaxBytes
	}
	log := cfg.Log.With().Str("component", "ingest").Logger()
	tr := newTracer(&cfg) // with tracing on, wraps cfg.Publisher and cfg.Deduper
	h := &Handler{
		tr:         tr,
		cfg:        cfg,
		log:        log,
		warnLog:    log.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second}),
		obs:        obs,
		retryAfter: strconv.Itoa(int((cfg.RetryAfter + time.Second - 1) / time.Second)),
		directPath: PathNone,
	}
	if cfg.BrokerWindow > 0 {
		h.directPath = PathWindow
		h.youngSec = int64((cfg.BrokerWindow - cfg.WindowMargin) / time.Second)
		h.marginSec = int64(cfg.WindowMargin / time.Second)
		h.rep = newRepublisher(cfg.Publisher, cfg.Deduper, obs, log, cfg.PublishTimeout, cfg.BrokerWindow/2,
			cfg.RepublishMax, cfg.RepublishMaxBytes)
	}
	if err := h.setRoutes(); err != nil {
		return nil, err
	}
	return h, nil
}

// setRoutes builds the routes the request path looks up: the configured
// ones, or one unnamed route at Path.
func (h *Handler) setRoutes() error {
	rs := h.cfg.Routes
	if len(rs) == 0 {
		rs = []Route{{Path: h.cfg.Path, Verifier: h.cfg.Verifier}}
	}
	h.byPath = make(map[string]*route, len(rs))
	names := make(map[string]bool, len(rs))
	for _, r := range rs {
		switch {
		case r.Path == "":
			return fmt.Errorf("ingest: route %q needs a Path", r.Name)
		case h.byPath[r.Path] != nil:
			return fmt.Errorf("ingest: two routes on path %q", r.Path)
		case names[r.Name]:
			return fmt.Errorf("ingest: two routes named %q", r.Name)
		}
		names[r.Name] = true
		obs := r.Observer
		if obs == nil {
			obs = h.obs
		}
		ro := &route{path: r.Path, v: r.Verifier, obs: obs}
		if r.Name != "" || r.Prefix != "" {
			ro.tag = &schema.Route{Name: r.Name, Prefix: r.Prefix}
		}
		h.byPath[r.Path] = ro
	}
	if len(rs) == 1 {
		h.one = h.byPath[rs[0].Path]
	}
	return nil
}

// route returns the route serving path, nil if none does.
func (h *Handler) route(path string) *route {
	if h.one != nil {
		if path == h.one.path {
			return h.one
		}
		return nil
	}
	return h.byPath[path]
}

// Close stops re-publishing deliveries whose outcome is unknown: one last
// attempt each, bounded by ctx, then whatever is left is dropped with a log
// line. Call it after the HTTP server has drained and before the Publisher
// and the Deduper close.
func (h *Handler) Close(ctx context.Context) error {
	if h.rep != nil {
		h.rep.close(ctx)
	}
	return nil
}

// RepublishPending returns how many deliveries whose outcome is unknown
// wait to be re-published.
func (h *Handler) RepublishPending() int {
	if h.rep == nil {
		return 0
	}
	return h.rep.pending()
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var rt *reqTrace
	if h.tr != nil {
		rt, r = h.tr.begin(r, start)
	}
	obs := h.obs
	var o Outcome
	if ro := h.route(r.URL.Path); ro != nil {
		o, obs = h.serve(w, r, ro), ro.obs
	} else {
		o = h.reply(w, http.StatusNotFound, OutcomeNotFound, "no webhook endpoint at this path")
	}
	obs.Request(o, time.Since(start))
	rt.end(o)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, ro *route) Outcome {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return h.reply(w, http.StatusMethodNotAllowed, OutcomeMethodNotAllowed, "only POST is accepted")
	}

	// Everything that needs no body first: a request that is stale,
	// incomplete or over a bound costs no body buffer.
	vstart := h.traceStart()
	id, ts, sig, err := ro.v.checkHeaders(r.Header)
	if err != nil {
		h.traceVerify(r, vstart, 0, err)
		bodyUnread(w, r)
		return h.rejectSignature(w, r, ro.obs, err)
	}
	if !h.adm.enter(int64(h.cfg.MaxInFlightRequests)) {
		return h.overloaded(w, r, "requests")
	}
	var held int64 // body bytes reserved by this request
	defer h.adm.leave(&held)

	body, o, msg := h.readBody(w, r, &held)
	if o != "" {
		if o == OutcomeUnavailable {
			return h.overloaded(w, r, "body_bytes")
		}
		h.warnLog.Warn().Str("outcome", string(o)).Str("remote", r.RemoteAddr).Msg(msg)
		status := http.StatusBadRequest
		switch o {
		case OutcomeTooLarge:
			status = http.StatusRequestEntityTooLarge
		case OutcomeTimeout:
			status = http.StatusRequestTimeout
		}
		return h.reply(w, status, o, msg)
	}

	// The header checks are not repeated: their verdict is the one of the
	// moment the request arrived.
	vstart = h.traceStart()
	secret, err := ro.v.match(body, id, ts, sig)
	h.traceVerify(r, vstart, secret, err)
	if err != nil {
		return h.rejectSignature(w, r, ro.obs, err)
	}
	ro.obs.SecretMatched(secret)

	dv := new(deliveryEvent) // Delivery and Event in one allocation
	d := &dv.d
	*d = schema.Delivery{
		// Canonical keys: Get canonicalizes any other spelling into a new
		// string, an allocation per header per request.
		WebhookID:   r.Header.Get("Webhook-Id"),
		Timestamp:   r.Header.Get("Webhook-Timestamp"),
		Signature:   r.Header.Get("Webhook-Signature"),
		Body:        body,
		TraceParent: r.Header.Get("Traceparent"),
		TraceState:  r.Header.Get("Tracestate"),
		Route:       ro.tag,
	}
	// Data aliases body, which is never reused or modified.
	if err := schema.ParseInto(&dv.ev, body); err != nil {
		var pe *schema.ParseError
		if errors.As(err, &pe) {
			d.DeadLetterReason = pe.Reason
		} else {
			d.DeadLetterReason = schema.ReasonNotJSON
		}
	} else {
		d.Event = &dv.ev
	}
	ctx := getBudget(r.Context(), h.cfg.PublishTimeout)
	o, recycle := h.deliver(w, ctx, d)
	if recycle {
		putBudget(ctx)
	}
	return o
}

// bodyFirstAlloc is the most a request is given before its body bytes
// arrive. A body whose Content-Length is at most this gets exactly its size
// in one allocation (every real webhook: OpenAI's events are thin); a larger
// or unknown one starts here and doubles as bytes arrive, so a sender that
// declares a megabyte and sends nothing holds 8 KiB, not a megabyte.
const bodyFirstAlloc = 8 << 10

// errOverBudget ends a body read when growing its buffer would exceed the
// global in-flight byte bound.
var errOverBudget = errors.New("in-flight body bytes bound reached")

// readBody reads the whole body, bounded by MaxBodyBytes, into a buffer that
// grows with the bytes received, each growth reserved in held against the
// in-flight byte bound. On failure it returns the outcome and a message for
// the sender; OutcomeUnavailable means the bound was reached.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, held *int64) ([]byte, Outcome, string) {
	limit := h.cfg.MaxBodyBytes
	cl := r.ContentLength
	if cl > limit {
		// Refuse before reading a byte; net/http closes the connection rather
		// than draining a huge body.
		return nil, OutcomeTooLarge, fmt.Sprintf("body of %d bytes exceeds the limit of %d bytes", cl, limit)
	}
	rd := r.Body
	// The buffer's final capacity: one byte beyond the body, to see that
	// nothing follows Content-Length (or, unknown length, that the limit is
	// exceeded) without a second buffer.
	size := cl + 1
	if cl < 0 {
		// Unknown length (chunked): the limit is enforced while reading. A
		// known length is already bounded above, and net/http's body reader
		// stops at it, so it needs no wrapper (one allocation less).
		rd = http.MaxBytesReader(w, r.Body, limit)
		size = limit + 1
	}
	first := min(size, bodyFirstAlloc)
	if !h.adm.reserve(held, first, h.cfg.MaxInFlightBytes) {
		return nil, OutcomeUnavailable, "too many request bodies in flight; retry later"
	}
	buf := make([]byte, 0, first)
	var err error
	for {
		if len(buf) == cap(buf) {
			if int64(cap(buf)) >= size {
				break // known length: the probe byte arrived, handled below
			}
			n := min(2*int64(cap(buf)), size)
			if !h.adm.reserve(held, n, h.cfg.MaxInFlightBytes) {
				err = errOverBudget
				break
			}
			nb := make([]byte, len(buf), n)
			copy(nb, buf)
			h.adm.release(held, int64(cap(buf)))
			buf = nb
		}
		var m int
		m, err = rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			break
		}
	}
	if err == nil && cl < 0 && int64(len(buf)) > limit {
		err = &http.MaxBytesError{Limit: limit}
	}
	if err == nil && cl >= 0 && int64(len(buf)) != cl {
		// net/http's reader never gets here (it reports a short body as
		// io.ErrUnexpectedEOF and stops at Content-Length); other callers'
		// requests may.
		err = errors.New("body length differs from Content-Length")
	}
	if err == nil {
		return buf, "", ""
	}
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case err == errOverBudget:
		return nil, OutcomeUnavailable, "too many request bodies in flight; retry later"
	case errors.As(err, &tooBig):
		return nil, OutcomeTooLarge, fmt.Sprintf("body exceeds the limit of %d bytes", limit)
	case errors.As(err, &netErr) && netErr.Timeout():
		return nil, OutcomeTimeout, "request body not received in time"
	}
	return nil, OutcomeBadRequest, "could not read the request body"
}

func (h *Handler) rejectSignature(w http.ResponseWriter, r *http.Request, obs Observer, err error) Outcome {
	var ve *VerifyError
	if !errors.As(err, &ve) {
		// Not a verification verdict: a bug, never the sender's fault. Answer
		// retryably so that nothing is lost while it is fixed.
		h.log.Error().Err(err).Msg("verifier failed")
		return h.unavailable(w, "verification failed unexpectedly")
	}
	obs.SignatureFailure(ve.Reason)
	h.warnLog.Warn().Str("reason", ve.Reason).Str("remote", r.RemoteAddr).Msg("webhook rejected")
	switch ve {
	case ErrMissingSignature, ErrMissingTimestamp, ErrMissingID, ErrBadTimestamp:
		return h.reply(w, http.StatusBadRequest, OutcomeBadRequest, ve.Message)
	}
	return h.reply(w, http.StatusUnauthorized, OutcomeInvalidSignature, ve.Message)
}

func (h *Handler) unavailable(w http.ResponseWriter, msg string) Outcome {
	w.Header().Set("Retry-After", h.retryAfter)
	return h.reply(w, http.StatusServiceUnavailable, OutcomeUnavailable, msg)
}

// reply writes {"status": o} for 2xx and {"error": o, "message": msg} otherwise.
// Messages are fixed texts or built from numbers and bounded reasons, never
// from request data, so no secret, signature or body can leak through them.
func (h *Handler) reply(w http.ResponseWriter, status int, o Outcome, msg string) Outcome {
	hdr := w.Header()
	// Shared, never-modified value slices: Header.Set would allocate one
	// per header per request.
	hdr["Content-Type"] = hdrJSON
	if h.draining.Load() {
		hdr.Set("Connection", "close")
	}
	hdr["Cache-Control"] = hdrNoStore
	w.WriteHeader(status)
	if msg == "" && status < 300 {
		if b := okBodies[o]; b != nil {
			_, _ = w.Write(b)
			return o
		}
	}
	key := "error"
	if status < 300 {
		key = "status"
	}
	b := make([]byte, 0, 64+len(msg))
	b = append(b, `{"`...)
	b = append(b, key...)
	b = append(b, `":"`...)
	b = append(b, o...)
	if msg != "" {
		b = append(b, `","message":`...)
		b = strconv.AppendQuote(b, msg)
		b = append(b, "}\n"...)
	} else {
		b = append(b, "\"}\n"...)
	}
	_, _ = w.Write(b)
	return o
}

var (
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
	// okBodies are the 2xx answers without a message, rendered once.
	okBodies = map[Outcome][]byte{
		OutcomePublished: []byte(`{"status":"published"}` + "\n"),
		OutcomeDuplicate: []byte(`{"status":"duplicate"}` + "\n"),
	}
)

// idLog adds the webhook id to the events of one request's log lines, and
// costs nothing for lines that are not logged.
type idLog struct {
	l  *zerolog.Logger
	id string
}

func (x idLog) Error() *zerolog.Event { return x.l.Error().Str("webhook_id", x.id) }
func (x idLog) Warn() *zerolog.Event  { return x.l.Warn().Str("webhook_id", x.id) }
func (x idLog) Debug() *zerolog.Event { return x.l.Debug().Str("webhook_id", x.id) }

type nopObserver struct{}

func (nopObserver) Request(Outcome, time.Duration)               {}
func (nopObserver) SignatureFailure(string)                      {}
func (nopObserver) SecretMatched(int)                            {}
func (nopObserver) Published(*schema.Event, time.Duration, bool) {}
func (nopObserver) PublishFailed(time.Duration)                  {}
func (nopObserver) DedupPath(DedupPath)                          {}
func (nopObserver) Dedup(string)                                 {}
func (nopObserver) Republished(string)                           {}
