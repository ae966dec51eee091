package schema

import (
	"slices"
	"testing"
)

func TestParseTraceParent(t *testing.T) {
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	tests := []struct {
		in string
		ok bool
	}{
		{"00-" + tid + "-" + sid + "-01", true},
		{"00-" + tid + "-" + sid + "-00", true},
		{"01-" + tid + "-" + sid + "-01-future", true}, // later versions may append fields
		{"00-" + tid + "-" + sid + "-01-x", false},     // version 00 may not
		{"ff-" + tid + "-" + sid + "-01", false},
		{"00-" + "4BF92F3577B34DA6A3CE929D0E0E4736" + "-" + sid + "-01", false},
		{"00-00000000000000000000000000000000-" + sid + "-01", false},
		{"00-" + tid + "-0000000000000000-01", false},
		{"00-" + tid + "-" + sid + "-0", false},
		{"00_" + tid + "-" + sid + "-01", false},
		{"", false},
		{"garbage", false},
	}
	for _, tc := range tests {
		gt, gs, ok := ParseTraceParent(tc.in)
		if ok != tc.ok || (ok && (gt != tid || gs != sid)) {
			t.Errorf("ParseTraceParent(%q) = %q %q %v, want ok %v", tc.in, gt, gs, ok, tc.ok)
		}
	}
}

func TestHeaders(t *testing.T) {
	h := Headers{"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "Webhook-Id": {"wh_1", "wh_2"}}
	if got := h.Get("webhook-id"); got != "wh_1" {
		t.Errorf("case-insensitive Get = %q", got)
	}
	if got := h.TraceID(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("TraceID = %q", got)
	}
	h.Set("tracestate", "a=b")
	if got := h.Get("tracestate"); got != "a=b" {
		t.Errorf("Set/Get = %q", got)
	}
	keys := h.Keys()
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"Webhook-Id", "traceparent", "tracestate"}) {
		t.Errorf("Keys = %q", keys)
	}
	if (Headers{}).TraceID() != "" || (Headers{"traceparent": {"nope"}}).TraceID() != "" {
		t.Error("TraceID of a message without a valid traceparent")
	}

	// The shape of kafka-go's kafka.Header and franz-go's kgo.RecordHeader.
	type recordHeader struct {
		Key   string
		Value []byte
	}
	kh := KafkaHeaders([]recordHeader{{"traceparent", []byte("tp")}, {"x", []byte("1")}, {"x", []byte("2")}})
	if kh.Get("traceparent") != "tp" || !slices.Equal(kh["x"], []string{"1", "2"}) {
		t.Errorf("KafkaHeaders = %v", kh)
	}
}
