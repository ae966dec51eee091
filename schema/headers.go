package schema

import "strings"

// Headers are a message's headers as a worker receives them: a NATS message's
// header map as it is (schema.Headers(msg.Headers())), or Kafka record
// headers converted with [KafkaHeaders]. hookbridge writes its header keys in
// lower case (traceparent, tracestate, webhook-id, ce-type / ce_type, …).
//
// Headers has the methods of OpenTelemetry's propagation.TextMapCarrier, so a
// worker continues the bridge's trace with
//
//	ctx = propagation.TraceContext{}.Extract(ctx, schema.Headers(msg.Headers()))
//
// (propagation.HeaderCarrier would not find the keys: http.Header.Get looks
// up "Traceparent", and NATS header keys are case-sensitive.)
type Headers map[string][]string

// Get returns the first value of key, matched exactly, else ignoring case.
func (h Headers) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Set replaces the values of key with value.
func (h Headers) Set(key, value string) { h[key] = []string{value} }

// Keys returns the header keys.
func (h Headers) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// TraceID returns the trace id of the traceparent header in lower-case hex,
// or "" when the message has no well-formed one.
func (h Headers) TraceID() string {
	id, _, ok := ParseTraceParent(h.Get("traceparent"))
	if !ok {
		return ""
	}
	return id
}

// ParseTraceParent returns the trace and parent (span) ids of a W3C
// traceparent value (version-traceid-parentid-flags), in lower-case hex, and
// whether it is well-formed with non-zero ids.
func ParseTraceParent(v string) (traceID, spanID string, ok bool) {
	// 2 + 1 + 32 + 1 + 16 + 1 + 2; later versions may append "-…".
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || (len(v) > 55 && v[55] != '-') {
		return "", "", false
	}
	version, traceID, spanID, flags := v[:2], v[3:35], v[36:52], v[53:55]
	if !lowerHex(version) || version == "ff" || (version == "00" && len(v) != 55) ||
		!lowerHex(traceID) || !lowerHex(spanID) || !lowerHex(flags) ||
		strings.Trim(traceID, "0") == "" || strings.Trim(spanID, "0") == "" {
		return "", "", false
	}
	return traceID, spanID, true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// KafkaHeaders converts Kafka record headers to Headers. It takes the header
// type of any client whose headers are a Key string and a Value []byte
// (segmentio/kafka-go's kafka.Header, franz-go's kgo.RecordHeader,
// confluent-kafka-go's kafka.Header):
//
//	ctx = propagation.TraceContext{}.Extract(ctx, schema.KafkaHeaders(m.Headers))
func KafkaHeaders[H ~struct {
	Key   string
	Value []byte
}](hs []H) Headers {
	out := make(Headers, len(hs))
	for _, h := range hs {
		kv := struct {
			Key   string
			Value []byte
		}(h)
		out[kv.Key] = append(out[kv.Key], string(kv.Value))
	}
	return out
}
