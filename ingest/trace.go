package ingest

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookbridge/hookbridge/schema"
)

// Tracing. With HandlerConfig.TracerProvider set, each request gets:
//
//	POST /webhooks/openai       server span; continues the caller's traceparent
//	├── verify                  the signature check and its verdict
//	├── dedup claim             the Deduper's claim and its result
//	└── send <subject|topic>    producer span, until the broker's ack; the
//	                            message's traceparent/tracestate name it
//
// A request that fails verification (or is refused before it: 404, 405, 413,
// …) gets a server span whose traceparent header is ignored (a new root, or
// the child of a span the application's own middleware put in the request's
// context): an unauthenticated client can neither join a trace nor force
// sampling, the sampler alone decides.
//
// Without a TracerProvider the handler does none of this: h.tr is nil, the
// hooks below return at once, and nothing is allocated.

// DestinationNamer is implemented by Publishers that can say, for tracing,
// which messaging system they publish to and where a delivery goes (the
// OpenTelemetry attributes messaging.system and messaging.destination.name).
type DestinationNamer interface {
	MessagingSystem() string
	DestinationName(d *schema.Delivery) string
}

// routeName is the hookbridge.route attribute of a route without a name
// (a handler without Routes).
const routeName = schema.DefaultRoute

// Attribute keys: OpenTelemetry semantic conventions (HTTP, messaging,
// CloudEvents, errors) and hookbridge's own.
const (
	attrHTTPMethod      = attribute.Key("http.request.method")
	attrHTTPRoute       = attribute.Key("http.route")
	attrHTTPStatus      = attribute.Key("http.response.status_code")
	attrURLScheme       = attribute.Key("url.scheme")
	attrURLPath         = attribute.Key("url.path")
	attrProtocolVersion = attribute.Key("network.protocol.version")
	attrPeerAddress     = attribute.Key("network.peer.address")
	attrErrorType       = attribute.Key("error.type")

	attrMsgSystem   = attribute.Key("messaging.system")
	attrMsgDest     = attribute.Key("messaging.destination.name")
	attrMsgOpType   = attribute.Key("messaging.operation.type")
	attrMsgOpName   = attribute.Key("messaging.operation.name")
	attrMsgID       = attribute.Key("messaging.message.id")
	attrMsgBodySize = attribute.Key("messaging.message.body.size")
	attrEventType   = attribute.Key("cloudevents.event_type")
	attrEventID     = attribute.Key("cloudevents.event_id")

	attrRoute        = attribute.Key("hookbridge.route")
	attrOutcome      = attribute.Key("hookbridge.outcome")
	attrWebhookID    = attribute.Key("hookbridge.webhook.id")
	attrVerifyResult = attribute.Key("hookbridge.verify.result")
	attrSecretIndex  = attribute.Key("hookbridge.verify.secret_index")
	attrDedupPath    = attribute.Key("hookbridge.dedup.path")
	attrDedupResult  = attribute.Key("hookbridge.dedup.result")
	attrDuplicate    = attribute.Key("hookbridge.publish.duplicate")
	attrDeadLetter   = attribute.Key("hookbridge.deadletter.reason")
)

// maxPathAttr bounds url.path of requests to other paths: the client chose it.
const maxPathAttr = 128

// tracer holds what every request's spans share. nil means tracing is off.
type tracer struct {
	t trace.Tracer
	// routes maps each route's path (http.route) to what its spans say.
	routes map[string]traceRoute
	system string // messaging.system; "" when the Publisher does not say
	dest   func(*schema.Delivery) string
}

// newTracer returns nil when cfg has no TracerProvider. Otherwise it wraps
// cfg.Publisher and cfg.Deduper, so that the publish and the claim get their
// spans without the delivery path knowing about tracing.
func newTracer(cfg *HandlerConfig) *tracer {
	if cfg.TracerProvider == nil {
		return nil
	}
	t := &tracer{
		t:      cfg.TracerProvider.Tracer("github.com/hookbridge/hookbridge/ingest"),
		routes: map[string]traceRoute{cfg.Path: {routeName, http.MethodPost + " " + cfg.Path}},
	}
	if len(cfg.Routes) > 0 {
		t.routes = make(map[string]traceRoute, len(cfg.Routes))
		for _, r := range cfg.Routes {
			t.routes[r.Path] = traceRoute{cmp.Or(r.Name, routeName), http.MethodPost + " " + r.Path}
		}
	}
	if dn, ok := cfg.Publisher.(DestinationNamer); ok {
		t.system, t.dest = dn.MessagingSystem(), dn.DestinationName
	}
	cfg.Publisher = tracedPublisher{cfg.Publisher, t}
	if cfg.Deduper != nil {
		cfg.Deduper = tracedDeduper{cfg.Deduper, t}
	}
	return t
}

// traceRoute is what the spans of one route's requests say: the route's
// name (hookbridge.route) and the server span's name, "POST <path>".
type traceRoute struct{ name, span string }

// reqTrace is one request's tracing state. It travels in the request's
// context, so that the wrapped Publisher and Deduper find the server span.
type reqTrace struct {
	t      *tracer
	r      *http.Request
	start  time.Time
	ctx    context.Context // carries server once it is started
	server trace.Span      // nil until started: see verified
	path   DedupPath       // how the delivery is deduplicated, once known
}

type reqTraceKey struct{}

// begin starts tracing a request that arrived at start: it returns the
// request with the tracing state in its context.
func (t *tracer) begin(r *http.Request, start time.Time) (*reqTrace, *http.Request) {
	rt := &reqTrace{t: t, start: start}
	r = r.WithContext(context.WithValue(r.Context(), reqTraceKey{}, rt))
	rt.r = r
	return rt, r
}

func traceOf(ctx context.Context) *reqTrace {
	rt, _ := ctx.Value(reqTraceKey{}).(*reqTrace)
	return rt
}

// traceStart is the start of a traced step: the zero time when tracing is
// off, so that the request path does not even read the clock.
func (h *Handler) traceStart() time.Time {
	if h.tr == nil {
		return time.Time{}
	}
	return time.Now()
}

// traceVerify records the verification that began at start and ended now
// with err (nil: verified by the secret at index secret).
func (h *Handler) traceVerify(r *http.Request, start time.Time, secret int, err error) {
	if h.tr == nil {
		return
	}
	if rt := traceOf(r.Context()); rt != nil {
		rt.verified(start, secret, err)
	}
}

// verified starts the server span now that it is known whether the request
// is authentic: only then is its traceparent trusted. The span starts when
// the request arrived all the same.
func (rt *reqTrace) verified(start time.Time, secret int, err error) {
	end := time.Now()
	rt.startServer(err == nil)
	if !rt.server.IsRecording() {
		return
	}
	_, vs := rt.t.t.Start(rt.ctx, "verify", trace.WithTimestamp(start))
	var ve *VerifyError
	switch {
	case err == nil:
		vs.SetAttributes(attrVerifyResult.String("ok"), attrSecretIndex.Int(secret))
	case errors.As(err, &ve):
		// A verdict on the request, not a failure of the bridge.
		vs.SetAttributes(attrVerifyResult.String(ve.Reason))
	default:
		vs.RecordError(err)
		vs.SetStatus(codes.Error, "verifier failed")
	}
	vs.End(trace.WithTimestamp(end))
}

// startServer starts the server span, continuing the caller's trace context
// only when the request is authentic.
func (rt *reqTrace) startServer(authentic bool) {
	r := rt.r
	ctx := r.Context()
	if authentic {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	route, matched := rt.t.routes[r.URL.Path]
	name := route.span
	method := r.Method
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
	default:
		method = "_OTHER" // the client's own word: unbounded
	}
	if !matched || method != http.MethodPost {
		name = method
		if method == "_OTHER" {
			name = "HTTP"
		}
		if matched {
			name += " " + r.URL.Path
		}
	}
	rt.ctx, rt.server = rt.t.t.Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(rt.start))
	if !rt.server.IsRecording() {
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	path := r.URL.Path
	if len(path) > maxPathAttr {
		path = path[:maxPathAttr]
	}
	proto := "1.1"
	switch {
	case r.ProtoMajor == 2:
		proto = "2"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		proto = "1.0"
	}
	peer, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		peer = r.RemoteAddr
	}
	rt.server.SetAttributes(attrHTTPMethod.String(method), attrURLScheme.String(scheme),
		attrURLPath.String(path), attrProtocolVersion.String(proto), attrPeerAddress.String(peer))
	if matched {
		rt.server.SetAttributes(attrHTTPRoute.String(r.URL.Path), attrRoute.String(route.name))
	}
	if authentic {
		rt.server.SetAttributes(attrWebhookID.String(r.Header.Get("Webhook-Id")))
	}
}

// deliveryRoute is the hookbridge.route of d.
func deliveryRoute(d *schema.Delivery) string {
	if d.Route == nil || d.Route.Name == "" {
		return routeName
	}
	return d.Route.Name
}

// end ends the request's server span with its outcome. A request refused
// before verification gets its (root) span here. nil-safe: tracing off.
func (rt *reqTrace) end(o Outcome) {
	if rt == nil {
		return
	}
	if rt.server == nil {
		rt.startServer(false)
	}
	if rt.server.IsRecording() {
		status := statusOf(o)
		rt.server.SetAttributes(attrOutcome.String(string(o)))
		if status != 0 {
			rt.server.SetAttributes(attrHTTPStatus.Int(status))
		}
		// 4xx are the sender's problem, answered as designed: an outcome,
		// not an error of the bridge.
		if status >= 500 {
			rt.server.SetAttributes(attrErrorType.String(string(o)))
			rt.server.SetStatus(codes.Error, string(o))
		}
	}
	rt.server.End()
}

// statusOf is the HTTP status the handler answers an outcome with (0 if
// it is not one of the handler's).
func statusOf(o Outcome) int {
	switch o {
	case OutcomePublished, OutcomeDuplicate, OutcomeDeadLettered:
		return http.StatusOK
	case OutcomeBadRequest:
		return http.StatusBadRequest
	case OutcomeInvalidSignature:
		return http.StatusUnauthorized
	case OutcomeNotFound:
		return http.StatusNotFound
	case OutcomeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case OutcomeTimeout:
		return http.StatusRequestTimeout
	case OutcomeInFlight:
		return http.StatusConflict
	case OutcomeTooLarge:
		return http.StatusRequestEntityTooLarge
	case OutcomeUnavailable:
		return http.StatusServiceUnavailable
	}
	return 0
}

// tracedPublisher gives each publish of a traced request its producer span
// and puts that span's context on the message.
type tracedPublisher struct {
	Publisher
	t *tracer
}

func (p tracedPublisher) Publish(ctx context.Context, d *schema.Delivery) (bool, error) {
	rt := traceOf(ctx)
	if rt == nil || rt.server == nil {
		return p.Publisher.Publish(ctx, d)
	}
	t := p.t
	dest := ""
	if t.dest != nil {
		dest = t.dest(d)
	}
	name := "send"
	if dest != "" {
		name += " " + dest
	}
	_, span := t.t.Start(rt.ctx, name, trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 10)
		attrs = append(attrs, attrMsgOpType.String("send"), attrMsgOpName.String("send"),
			attrMsgID.String(d.WebhookID), attrMsgBodySize.Int(len(d.Body)), attrRoute.String(deliveryRoute(d)))
		if rt.path != "" {
			attrs = append(attrs, attrDedupPath.String(string(rt.path)))
		}
		if t.system != "" {
			attrs = append(attrs, attrMsgSystem.String(t.system))
		}
		if dest != "" {
			attrs = append(attrs, attrMsgDest.String(dest))
		}
		if d.Event != nil {
			attrs = append(attrs, attrEventType.String(string(d.Event.Type)), attrEventID.String(d.Event.ID))
		} else {
			attrs = append(attrs, attrDeadLetter.String(d.DeadLetterReason))
		}
		span.SetAttributes(attrs...)
	}
	// The message carries the producer span's context, whether it is
	// sampled or not: a worker that extracts it continues this trace.
	d.TraceParent, d.TraceState = "", ""
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), span.SpanContext()),
		deliveryCarrier{d})
	dup, err := p.Publisher.Publish(trace.ContextWithSpan(ctx, span), d)
	if err == nil && span.IsRecording() {
		span.SetAttributes(attrDuplicate.Bool(dup))
	}
	if err != nil {
		span.RecordError(err)
		errType := "unavailable"
		if errors.Is(err, context.DeadlineExceeded) {
			errType = "timeout"
		}
		span.SetAttributes(attrErrorType.String(errType))
		span.SetStatus(codes.Error, "the broker did not acknowledge")
	}
	span.End()
	return dup, err
}

// deliveryCarrier puts a trace context into a Delivery's trace fields.
type deliveryCarrier struct{ d *schema.Delivery }

func (c deliveryCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.d.TraceParent
	case "tracestate":
		return c.d.TraceState
	}
	return ""
}

func (c deliveryCarrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.d.TraceParent = value
	case "tracestate":
		c.d.TraceState = value
	}
}

func (c deliveryCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// tracedDeduper gives each claim of a traced request its span.
type tracedDeduper struct {
	Deduper
	t *tracer
}

func (d tracedDeduper) Claim(ctx context.Context, key string) (ClaimStatus, Owner, error) {
	rt := traceOf(ctx)
	if rt == nil || rt.server == nil {
		return d.Deduper.Claim(ctx, key)
	}
	_, span := d.t.t.Start(rt.ctx, "dedup claim")
	st, owner, err := d.Deduper.Claim(ctx, key)
	result := st.String()
	if err != nil {
		result = "error"
		span.RecordError(err)
		span.SetStatus(codes.Error, "dedup claim failed")
	}
	span.SetAttributes(attrDedupPath.String(string(PathStore)), attrDedupResult.String(result))
	span.End()
	return st, owner, err
}

// traceDedupPath notes on a traced request how its delivery is
// deduplicated, for the producer span. Nothing when tracing is off.
func (h *Handler) traceDedupPath(ctx context.Context, p DedupPath) {
	if h.tr == nil {
		return
	}
	if rt := traceOf(ctx); rt != nil {
		rt.path = p
	}
}
