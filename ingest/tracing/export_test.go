package tracing

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/hookbridge/hookbridge/integration/otlptest"
)

type countStats struct {
	mu       sync.Mutex
	exported int
	dropped  map[string]int
}

func (s *countStats) SpansExported(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exported += n
}

func (s *countStats) SpansDropped(reason string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped == nil {
		s.dropped = map[string]int{}
	}
	s.dropped[reason] += n
}

func (s *countStats) get() (int, map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := map[string]int{}
	for k, v := range s.dropped {
		d[k] = v
	}
	return s.exported, d
}

func startProvider(t *testing.T, env map[string]string) (*Provider, *countStats) {
	t.Helper()
	c, err := FromEnv(env)
	if err != nil {
		t.Fatal(err)
	}
	st := &countStats{}
	p, err := Start(c, Options{Version: "test", Log: zerolog.Nop(), Stats: st})
	if err != nil || p == nil {
		t.Fatalf("Start: %v, %v", p, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return p, st
}

// TestExport_ProtobufStructure: spans arrive at a real OTLP/HTTP receiver
// with their ids, parent, kind, times, attributes of every type, events,
// links, status and resource.
func TestExport_ProtobufStructure(t *testing.T) {
	col := otlptest.Start(t)
	p, st := startProvider(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":    col.URL,
		"OTEL_EXPORTER_OTLP_HEADERS":     "x-api-key=k%201",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
		"OTEL_SERVICE_NAME":              "svc",
		"OTEL_RESOURCE_ATTRIBUTES":       "deployment.environment=test",
		"OTEL_BSP_SCHEDULE_DELAY":        "20",
	})
	tr := p.TracerProvider().Tracer("scope-a", trace.WithInstrumentationVersion("v9"))
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, Remote: true,
	})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	ctx, parent := tr.Start(ctx, "parent", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithLinks(trace.Link{SpanContext: remote, Attributes: []attribute.KeyValue{attribute.String("l", "1")}}))
	_, child := tr.Start(ctx, "child", trace.WithSpanKind(trace.SpanKindProducer))
	child.SetAttributes(attribute.String("s", "v"), attribute.Int("i", 7), attribute.Bool("b", true),
		attribute.Float64("f", 1.5), attribute.StringSlice("ss", []string{"a", "b"}), attribute.Int64Slice("is", []int64{1}))
	child.RecordError(errors.New("boom"))
	child.SetStatus(codes.Error, "it broke")
	child.End()
	parent.SetStatus(codes.Ok, "")
	parent.End()

	if !col.Wait(5*time.Second, func(s []otlptest.Span) bool { return len(s) == 2 }) {
		t.Fatalf("spans: %d", len(col.Spans()))
	}
	spans := col.Spans()
	ps, _ := otlptest.Find(spans, parent.SpanContext().SpanID().String())
	cs, _ := otlptest.Find(spans, child.SpanContext().SpanID().String())
	if ps.Span == nil || cs.Span == nil {
		t.Fatalf("spans by id: %v", spans)
	}
	if ps.TraceID() != remote.TraceID().String() || ps.ParentID() != remote.SpanID().String() ||
		cs.TraceID() != remote.TraceID().String() || cs.ParentID() != ps.SpanID() {
		t.Errorf("ids: parent %s/%s<-%s child %s/%s<-%s", ps.TraceID(), ps.SpanID(), ps.ParentID(), cs.TraceID(), cs.SpanID(), cs.ParentID())
	}
	if ps.Kind != tracepb.Span_SPAN_KIND_SERVER || cs.Kind != tracepb.Span_SPAN_KIND_PRODUCER {
		t.Errorf("kinds %v %v", ps.Kind, cs.Kind)
	}
	if ps.Status.Code != tracepb.Status_STATUS_CODE_OK || cs.Status.Code != tracepb.Status_STATUS_CODE_ERROR || cs.Status.Message != "it broke" {
		t.Errorf("status %v %v", ps.Status, cs.Status)
	}
	// The parent's parent is remote, the child's is not; both are sampled.
	remoteBits := uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK | tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	if ps.Flags != remoteBits|1 || cs.Flags != uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)|1 {
		t.Errorf("flags %#x %#x", ps.Flags, cs.Flags)
	}
	if ps.StartTimeUnixNano == 0 || ps.EndTimeUnixNano < ps.StartTimeUnixNano || cs.StartTimeUnixNano < ps.StartTimeUnixNano {
		t.Errorf("times %d-%d %d", ps.StartTimeUnixNano, ps.EndTimeUnixNano, cs.StartTimeUnixNano)
	}
	for k, want := range map[string]string{"s": "v", "i": "7", "b": "true"} {
		if v, _ := cs.Attr(k); v != want {
			t.Errorf("attribute %s = %q, want %q", k, v, want)
		}
	}
	if len(cs.Attributes) != 6 || len(cs.Events) != 1 || cs.Events[0].Name != "exception" {
		t.Errorf("attributes %v events %v", cs.Attributes, cs.Events)
	}
	if len(ps.Links) != 1 || hex.EncodeToString(ps.Links[0].SpanId) != remote.SpanID().String() {
		t.Errorf("links %v", ps.Links)
	}
	if cs.Scope != "scope-a" || cs.Resource["service.name"] != "svc" || cs.Resource["service.version"] != "test" ||
		cs.Resource["deployment.environment"] != "test" || cs.Resource["telemetry.sdk.language"] != "go" {
		t.Errorf("scope %q resource %v", cs.Scope, cs.Resource)
	}
	h := col.Headers()[0]
	if h.Get("X-Api-Key") != "k 1" || h.Get("Content-Encoding") != "gzip" || h.Get("User-Agent") != "hookbridge/test" {
		t.Errorf("request headers %v", h)
	}
	if exp, dropped := st.get(); exp != 2 || len(dropped) != 0 {
		t.Errorf("stats: exported %d dropped %v", exp, dropped)
	}
}

// TestExport_RetriesThenSucceeds: 503 is retried within the export timeout;
// a 400 is not retried and the batch is counted as dropped.
func TestExport_Retries(t *testing.T) {
	col := otlptest.Start(t)
	col.Fail(http.StatusServiceUnavailable)
	p, st := startProvider(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL, "OTEL_BSP_SCHEDULE_DELAY": "10", "OTEL_BSP_EXPORT_TIMEOUT": "10000",
	})
	tr := p.TracerProvider().Tracer("t")
	_, s := tr.Start(context.Background(), "one")
	s.End()
	if !waitFor(5*time.Second, func() bool { return col.Requests() >= 2 }) {
		t.Fatalf("503 not retried: %d requests", col.Requests())
	}
	col.Fail(0)
	if !col.Wait(10*time.Second, func(s []otlptest.Span) bool { return len(s) == 1 }) {
		t.Fatal("span not exported after the collector recovered")
	}

	col.Fail(http.StatusBadRequest)
	before := col.Requests()
	_, s = tr.Start(context.Background(), "two")
	s.End()
	if !waitFor(5*time.Second, func() bool { _, d := st.get(); return d[DropExportFailed] == 1 }) {
		_, d := st.get()
		t.Fatalf("a refused export is not counted: %v", d)
	}
	if n := col.Requests() - before; n != 1 {
		t.Errorf("a 400 was sent %d times, want once", n)
	}
}

// TestQueue_DropsWhenFullAndNeverBlocks: with the collector holding every
// export open, ending spans never blocks, the queue stays at its bound, and
// the excess is counted.
func TestQueue_DropsWhenFullAndNeverBlocks(t *testing.T) {
	col := otlptest.Start(t)
	col.Hold()
	p, st := startProvider(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL, "OTEL_BSP_SCHEDULE_DELAY": "1",
		"OTEL_BSP_MAX_QUEUE_SIZE": "8", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2",
	})
	tr := p.TracerProvider().Tracer("t")
	// The first batch goes out and hangs.
	for range 2 {
		_, s := tr.Start(context.Background(), "first")
		s.End()
	}
	if !waitFor(5*time.Second, func() bool { return col.Requests() == 1 }) {
		t.Fatal("no export started")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			_, s := tr.Start(context.Background(), "flood")
			s.End()
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ending spans blocked while the collector hangs")
	}
	if q := p.Queued(); q > 8 {
		t.Errorf("queue holds %d spans, bound 8", q)
	}
	if _, d := st.get(); d[DropQueueFull] < 1000-8 {
		t.Errorf("dropped %v, want at least %d queue_full", d, 1000-8)
	}
	col.Release()
}

// TestShutdown_FlushesAndIsBounded: Shutdown exports what is queued (the
// schedule delay is far away), and with a collector that never answers it
// returns when its context ends, counting the spans as dropped.
func TestShutdown_FlushesAndIsBounded(t *testing.T) {
	col := otlptest.Start(t)
	c, _ := FromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL, "OTEL_BSP_SCHEDULE_DELAY": "600000"})
	st := &countStats{}
	p, _ := Start(c, Options{Log: zerolog.Nop(), Stats: st})
	_, s := p.TracerProvider().Tracer("t").Start(context.Background(), "last")
	s.End()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(col.Spans()); n != 1 {
		t.Fatalf("%d spans exported at shutdown, want 1", n)
	}

	hung := otlptest.Start(t)
	hung.Hold()
	c, _ = FromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": hung.URL, "OTEL_BSP_SCHEDULE_DELAY": "600000"})
	st = &countStats{}
	p, _ = Start(c, Options{Log: zerolog.Nop(), Stats: st})
	_, s = p.TracerProvider().Tracer("t").Start(context.Background(), "stuck")
	s.End()
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Shutdown against a hung collector reported success")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not respect its context")
	}
	if !waitFor(5*time.Second, func() bool { _, d := st.get(); return d[DropShutdown] == 1 }) {
		_, d := st.get()
		t.Errorf("dropped %v, want the span counted as shutdown", d)
	}
}

// TestShutdown_EndedContext: a shutdown step whose time is already spent
// (the process is out of grace) still stops the queue and cuts the hung
// export, rather than leaving it to its own export timeout.
func TestShutdown_EndedContext(t *testing.T) {
	hung := otlptest.Start(t)
	hung.Hold()
	c, _ := FromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": hung.URL, "OTEL_BSP_SCHEDULE_DELAY": "1"})
	st := &countStats{}
	p, _ := Start(c, Options{Log: zerolog.Nop(), Stats: st})
	_, s := p.TracerProvider().Tracer("t").Start(context.Background(), "stuck")
	s.End()
	if !waitFor(5*time.Second, func() bool { return hung.Requests() > 0 }) {
		t.Fatal("the export never reached the collector")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Shutdown(ctx); err == nil {
		t.Error("Shutdown with an ended context reported success")
	}
	if !waitFor(5*time.Second, func() bool { _, d := st.get(); return d[DropShutdown] == 1 }) {
		_, d := st.get()
		t.Errorf("dropped %v, want the span counted as shutdown (the default export timeout is 30s)", d)
	}
}

// TestUnreachableCollector: nothing listens at the endpoint: spans are
// dropped and counted, ending them costs nothing more.
func TestUnreachableCollector(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, st := startProvider(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr, "OTEL_BSP_SCHEDULE_DELAY": "1", "OTEL_BSP_EXPORT_TIMEOUT": "300",
	})
	_, s := p.TracerProvider().Tracer("t").Start(context.Background(), "lost")
	s.End()
	if !waitFor(5*time.Second, func() bool { _, d := st.get(); return d[DropExportFailed] == 1 }) {
		_, d := st.get()
		t.Errorf("dropped %v, want 1 export_failed", d)
	}
}

// TestOff_NoGoroutine: tracing off starts nothing.
func TestOff_NoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	c, err := FromEnv(map[string]string{"OTEL_SERVICE_NAME": "x"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(c, Options{})
	if p != nil || err != nil {
		t.Fatalf("Start: %v %v", p, err)
	}
	if p.TracerProvider() != nil || p.Queued() != 0 || p.Shutdown(context.Background()) != nil {
		t.Error("a nil Provider must be inert")
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines %d -> %d", before, after)
	}
}

func TestPartialSuccess(t *testing.T) {
	var ps []byte
	ps = protowire.AppendTag(ps, 1, protowire.VarintType)
	ps = protowire.AppendVarint(ps, 3)
	ps = protowire.AppendTag(ps, 2, protowire.BytesType)
	ps = protowire.AppendString(ps, "too old")
	ps = protowire.AppendTag(ps, 9, protowire.VarintType) // unknown: skipped
	ps = protowire.AppendVarint(ps, 1)
	var resp []byte
	resp = protowire.AppendTag(resp, 1, protowire.BytesType)
	resp = protowire.AppendBytes(resp, ps)
	if n, msg := partialSuccess(resp); n != 3 || msg != "too old" {
		t.Errorf("partialSuccess = %d %q", n, msg)
	}
	for _, b := range [][]byte{nil, {0xff}, resp[:len(resp)-2]} {
		if n, _ := partialSuccess(b); n != 0 {
			t.Errorf("partialSuccess(%x) = %d", b, n)
		}
	}
}

func waitFor(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
