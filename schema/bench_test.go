package schema

import "testing"

// BenchmarkParse parses a realistic ~430-byte delivery (realtime.call.incoming
// with SIP headers), ObjectID included, as the bridge does per request.
func BenchmarkParse(b *testing.B) {
	body, _ := Sample(RealtimeCallIncoming)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ev, err := Parse(body)
		if err != nil || ev.ObjectID() == "" {
			b.Fatal(ev, err)
		}
	}
}

// BenchmarkDecodeData is the worker side: typed decode of the same event.
func BenchmarkDecodeData(b *testing.B) {
	body, _ := Sample(RealtimeCallIncoming)
	ev, err := Parse(body)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ev.DecodeData(); err != nil {
			b.Fatal(err)
		}
	}
}
