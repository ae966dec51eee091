package schema

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// TestParseInto checks ParseInto against Parse on every sample and on the
// edge cases of FuzzParse, reusing one Event so that stale fields would show.
func TestParseInto(t *testing.T) {
	bodies := [][]byte{}
	for _, typ := range Types() {
		b, _ := Sample(typ)
		bodies = append(bodies, b)
	}
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `{"type":null}`, `{"type":1}`, `{"type":"A"}`,
		`{"type":"a.b","data":[]}`, `{"type":"a\u002eb","id":"\ud83d\ude00"}`,
		`{"type":"a.b","type":"c"}`, `{"\u0074ype":"a.b","created_at":1e3}`,
		`{"type":"batch.completed","data":{"id":1,"call_id":"rtc_1"}}`,
		`{"id":"evt_1","object":"thing","created_at":7,"type":"x.y"}`,
	} {
		bodies = append(bodies, []byte(s))
	}
	var ev Event
	for _, body := range bodies {
		want, wantErr := Parse(body)
		err := ParseInto(&ev, body)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%s: ParseInto err %v, Parse err %v", body, err, wantErr)
		}
		if err != nil {
			var pe, wpe *ParseError
			if !errors.As(err, &pe) || !errors.As(wantErr, &wpe) || pe.Reason != wpe.Reason {
				t.Fatalf("%s: ParseInto err %v, Parse err %v", body, err, wantErr)
			}
			if !reflect.DeepEqual(ev, Event{}) {
				t.Fatalf("%s: failed ParseInto left %#v", body, ev)
			}
			continue
		}
		if !reflect.DeepEqual(&ev, want) {
			t.Fatalf("%s: ParseInto =\n%#v\nParse\n%#v", body, ev, *want)
		}
	}
}

// TestParseIntoAliasesData documents the difference from Parse: Data is a
// sub-slice of body, with no spare capacity to append into body.
func TestParseIntoAliasesData(t *testing.T) {
	body := []byte(`{"type":"a.b","data":{"id":"x"},"id":"evt_1"}`)
	orig := bytes.Clone(body)
	var ev Event
	if err := ParseInto(&ev, body); err != nil {
		t.Fatal(err)
	}
	if cap(ev.Data) != len(ev.Data) {
		t.Fatalf("cap(Data) = %d, len %d", cap(ev.Data), len(ev.Data))
	}
	_ = append(ev.Data, "zzzz"...)
	if !bytes.Equal(body, orig) {
		t.Fatalf("append to Data changed body: %s", body)
	}
	if &ev.Data[0] != &body[bytes.IndexByte(body, '{')+len(`{"type":"a.b","data":`)] {
		t.Fatal("Data does not alias body")
	}
}

func TestParseIntoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are checked without -race")
	}
	body, _ := Sample(RealtimeCallIncoming)
	var ev Event
	n := testing.AllocsPerRun(100, func() {
		if err := ParseInto(&ev, body); err != nil {
			t.Fatal(err)
		}
	})
	if n > 1 {
		t.Fatalf("ParseInto: %v allocations, want ≤ 1", n)
	}
}

// BenchmarkParseInto is BenchmarkParse into a reused Event (the handler's way).
func BenchmarkParseInto(b *testing.B) {
	body, _ := Sample(RealtimeCallIncoming)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var ev Event
	for b.Loop() {
		if err := ParseInto(&ev, body); err != nil || ev.ObjectID() == "" {
			b.Fatal(ev, err)
		}
	}
}
