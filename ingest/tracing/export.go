package tracing

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Retry pacing of an export, within its OTEL_BSP_EXPORT_TIMEOUT.
const (
	retryFirst = 250 * time.Millisecond
	retryMax   = 5 * time.Second
	// maxResponse bounds what is read of a collector's answer.
	maxResponse = 64 << 10
)

// exporter sends spans to an OTLP/HTTP collector as binary protobuf
// (POST <endpoint>, Content-Type application/x-protobuf), retrying what the
// OTLP specification calls retryable: network errors and 429, 502, 503, 504,
// honouring Retry-After.
type exporter struct {
	url       string
	shownURL  string // without credentials, for errors
	headers   map[string]string
	timeout   time.Duration // per request
	gzip      bool
	userAgent string
	client    *http.Client
	transport *http.Transport
}

func newExporter(c Config, version string) *exporter {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = c.tls
	tr.MaxIdleConnsPerHost = 2
	return &exporter{
		url:       c.Endpoint,
		shownURL:  redactURL(c.Endpoint),
		headers:   c.Headers,
		timeout:   c.Timeout,
		gzip:      c.Gzip,
		userAgent: "hookbridge/" + version,
		client:    &http.Client{Transport: tr},
		transport: tr,
	}
}

// partial is what a collector says when it accepted only part of an export.
type partial struct {
	rejected int64
	message  string
}

// export sends spans and returns what the collector rejected, if anything.
// ctx bounds the whole export, retries included.
func (e *exporter) export(ctx context.Context, spans []sdktrace.ReadOnlySpan) (partial, error) {
	body, err := proto.Marshal(tracesData(spans))
	if err != nil {
		return partial{}, fmt.Errorf("encoding spans: %w", err)
	}
	if e.gzip {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write(body)
		if err := zw.Close(); err != nil {
			return partial{}, err
		}
		body = b.Bytes()
	}
	wait := retryFirst
	for {
		p, retryAfter, err := e.send(ctx, body)
		if err == nil || retryAfter < 0 {
			return p, err
		}
		if retryAfter == 0 {
			// Full jitter: replicas that lost the collector together do not
			// come back together.
			retryAfter = time.Duration(rand.Int64N(int64(wait))) + time.Millisecond
			wait = min(2*wait, retryMax)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < retryAfter {
			return partial{}, err
		}
		t := time.NewTimer(retryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return partial{}, err
		case <-t.C:
		}
	}
}

// send makes one request. retryAfter is negative for a permanent failure,
// else how long the collector asked to wait (0: not said).
func (e *exporter) send(ctx context.Context, body []byte) (p partial, retryAfter time.Duration, err error) {
	rctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return partial{}, -1, fmt.Errorf("export to %s: %w", e.shownURL, err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", e.userAgent)
	if e.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range e.headers {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL, credentials included
		}
		if ctx.Err() != nil {
			return partial{}, -1, fmt.Errorf("export to %s: %w", e.shownURL, err)
		}
		return partial{}, 0, fmt.Errorf("export to %s: %w", e.shownURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		n, msg := partialSuccess(b)
		return partial{n, msg}, 0, nil
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusBadGateway,
		resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusGatewayTimeout:
		return partial{}, parseRetryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("export to %s: collector answered %s", e.shownURL, resp.Status)
	}
	return partial{}, -1, fmt.Errorf("export to %s: collector answered %s", e.shownURL, resp.Status)
}

func (e *exporter) shutdown() { e.transport.CloseIdleConnections() }

// parseRetryAfter reads a Retry-After of delay-seconds (the form collectors
// send), capped at retryMax.
func parseRetryAfter(v string) time.Duration {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, retryMax)
}

// partialSuccess reads ExportTraceServiceResponse.partial_success (field 1:
// rejected_spans = 1, error_message = 2) by hand: the generated type lives in
// the package that links gRPC.
func partialSuccess(b []byte) (rejected int64, msg string) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, ""
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			ps, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, ""
			}
			b = b[n:]
			for len(ps) > 0 {
				pnum, ptyp, m := protowire.ConsumeTag(ps)
				if m < 0 {
					return 0, ""
				}
				ps = ps[m:]
				switch {
				case pnum == 1 && ptyp == protowire.VarintType:
					v, m := protowire.ConsumeVarint(ps)
					if m < 0 {
						return 0, ""
					}
					rejected, ps = int64(v), ps[m:]
				case pnum == 2 && ptyp == protowire.BytesType:
					v, m := protowire.ConsumeBytes(ps)
					if m < 0 {
						return 0, ""
					}
					msg, ps = string(v), ps[m:]
				default:
					m := protowire.ConsumeFieldValue(pnum, ptyp, ps)
					if m < 0 {
						return 0, ""
					}
					ps = ps[m:]
				}
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, ""
		}
		b = b[n:]
	}
	return rejected, msg
}
