// Package otlptest is an OTLP/HTTP trace collector for tests: an httptest
// server on loopback that decodes every export with the OTLP protobuf
// messages and keeps the spans, so tests can check what a process exported
// exactly as a real collector would receive it.
package otlptest

import (
	"compress/gzip"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one exported span with its resource and scope.
type Span struct {
	*tracepb.Span
	Resource map[string]string // string-valued resource attributes
	Scope    string
}

// TraceID and SpanID are the ids in lower-case hex, as in a traceparent.
func (s Span) TraceID() string { return hex.EncodeToString(s.TraceId) }
func (s Span) SpanID() string  { return hex.EncodeToString(s.SpanId) }

// ParentID is the parent span id in hex, "" for a root span.
func (s Span) ParentID() string { return hex.EncodeToString(s.ParentSpanId) }

// Attr returns the attribute key as a string (ints and bools formatted), and
// whether the span has it.
func (s Span) Attr(key string) (string, bool) { return attr(s.Attributes, key) }

// Int returns the integer attribute key, and whether the span has one.
func (s Span) Int(key string) (int64, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if v, ok := kv.Value.GetValue().(*commonpb.AnyValue_IntValue); ok {
				return v.IntValue, true
			}
		}
	}
	return 0, false
}

func attr(kvs []*commonpb.KeyValue, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key != key {
			continue
		}
		switch v := kv.Value.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			return v.StringValue, true
		case *commonpb.AnyValue_IntValue:
			return strconv.FormatInt(v.IntValue, 10), true
		case *commonpb.AnyValue_BoolValue:
			if v.BoolValue {
				return "true", true
			}
			return "false", true
		}
		return "", true
	}
	return "", false
}

// Collector receives OTLP/HTTP trace exports on loopback.
type Collector struct {
	// URL is the base endpoint, for OTEL_EXPORTER_OTLP_ENDPOINT; exports
	// go to URL + "/v1/traces".
	URL string

	srv *httptest.Server

	mu       sync.Mutex
	spans    []Span
	requests int
	headers  []http.Header
	status   int           // answer with this status instead of 200, when set
	hold     chan struct{} // when set, requests wait until it is closed
}

// Start starts a collector that closes when the test ends.
func Start(t testing.TB) *Collector {
	t.Helper()
	c := &Collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	c.URL = c.srv.URL
	t.Cleanup(c.Close)
	return c
}

// Close releases held requests and stops the server.
func (c *Collector) Close() {
	c.Release()
	c.srv.CloseClientConnections()
	c.srv.Close()
}

// Hold makes every export wait (unanswered) until Release or Close, as a
// collector that accepts connections but never answers.
func (c *Collector) Hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold == nil {
		c.hold = make(chan struct{})
	}
}

// Release answers the held exports and stops holding.
func (c *Collector) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold != nil {
		close(c.hold)
		c.hold = nil
	}
}

// Fail makes the collector answer every export with status (0: succeed).
func (c *Collector) Fail(status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status = status
}

func (c *Collector) serve(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.requests++
	c.headers = append(c.headers, r.Header.Clone())
	hold, status := c.hold, c.status
	c.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "want POST /v1/traces", http.StatusNotFound)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "want application/x-protobuf, got "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(io.LimitReader(body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	// The body is an ExportTraceServiceRequest, whose only field is the
	// same as TracesData's: repeated ResourceSpans resource_spans = 1.
	var td tracepb.TracesData
	if err := proto.Unmarshal(b, &td); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var got []Span
	for _, rs := range td.ResourceSpans {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.Key] = kv.Value.GetStringValue()
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				got = append(got, Span{Span: s, Resource: res, Scope: ss.GetScope().GetName()})
			}
		}
	}
	c.mu.Lock()
	c.spans = append(c.spans, got...)
	c.mu.Unlock()
	// An empty ExportTraceServiceResponse: full success.
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// Spans returns every span received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

// Requests returns how many export requests arrived, answered or not.
func (c *Collector) Requests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests
}

// Headers returns the headers of every request so far.
func (c *Collector) Headers() []http.Header {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]http.Header(nil), c.headers...)
}

// Wait polls until cond holds for the spans received, or within passes.
func (c *Collector) Wait(within time.Duration, cond func([]Span) bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond(c.Spans()) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Find returns the span with the given hex span id.
func Find(spans []Span, spanID string) (Span, bool) {
	for _, s := range spans {
		if s.SpanID() == spanID {
			return s, true
		}
	}
	return Span{}, false
}
