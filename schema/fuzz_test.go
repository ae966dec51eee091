package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, typ := range Types() {
		body, _ := Sample(typ)
		f.Add(body)
	}
	for _, s := range []string{
		``, ` `, `null`, `[]`, `"a.b"`, `{}`, `{"type":null}`, `{"type":1}`, `{"type":"A"}`,
		`{"type":"a.b","data":[]}`, `{"type":"a.b","data":"x"}`, `{"type":"a\u002eb","id":"\ud83d\ude00"}`,
		`{"type":"a.b","type":"c"}`, `{"TYPE":"a.b"}`, `{"\u0074ype":"a.b","created_at":1e3}`,
		`{"type":"batch.completed","data":{"id":1,"call_id":"rtc_1"}}`,
		`{"type":"batch.completed","data":{"x":[[[{"id":"}"}]]],"id":"b\"1"}}`,
		"{\"type\":\"a.b\",\"id\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := Parse(body)
		want, wantReason := refParse(body)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || ev != nil {
				t.Fatalf("Parse = %v, %v; want a *ParseError and no event", ev, err)
			}
			if pe.Reason != wantReason {
				t.Fatalf("reason %q, reference says %q", pe.Reason, wantReason)
			}
			return
		}
		if wantReason != "" {
			t.Fatalf("Parse accepted a body the reference rejects with %s", wantReason)
		}
		if !ev.Type.Routable() {
			t.Fatalf("Parse accepted unroutable type %q", ev.Type)
		}
		if !reflect.DeepEqual(ev, want) {
			t.Fatalf("Parse =\n%#v\nreference\n%#v", ev, want)
		}
		again, err := Parse(body)
		if err != nil || !reflect.DeepEqual(again, ev) {
			t.Fatalf("second Parse = %#v, %v; first %#v", again, err, ev)
		}
		d, err := ev.DecodeData()
		if err != nil {
			if isObject(ev.Data) && !ev.Type.Known() {
				t.Fatalf("DecodeData of an object into a map: %v", err)
			}
			return
		}
		if _, isMap := d.(map[string]any); isMap == ev.Type.Known() {
			t.Fatalf("DecodeData for %s (known %v) returned %T", ev.Type, ev.Type.Known(), d)
		}
	})
}

// refParse is the slow, obvious Parse built on encoding/json: it decodes the
// top level into a map (exact member names, last repeated one wins) and each
// envelope member on its own, and data into a second map for ObjectID.
func refParse(body []byte) (*Event, string) {
	if !json.Valid(body) {
		return nil, ReasonNotJSON
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || m == nil {
		return nil, ReasonNotObject
	}
	ev := &Event{Data: m["data"]}
	raw, ok := m["type"]
	if !ok || string(raw) == "null" {
		return nil, ReasonMissingType
	}
	if json.Unmarshal(raw, &ev.Type) != nil {
		return nil, ReasonUnroutableType
	}
	if ev.Type == "" {
		return nil, ReasonMissingType
	}
	if !ev.Type.Routable() {
		return nil, ReasonUnroutableType
	}
	json.Unmarshal(m["id"], &ev.ID)
	json.Unmarshal(m["object"], &ev.Object)
	json.Unmarshal(m["created_at"], &ev.CreatedAt)
	var data map[string]json.RawMessage
	if json.Unmarshal(ev.Data, &data) == nil {
		for _, k := range []string{"id", "call_id", "session_id"} {
			var s string
			if json.Unmarshal(data[k], &s) == nil && s != "" {
				ev.objectID = s
				break
			}
		}
	}
	ev.parsed = true
	if ev.Data != nil {
		ev.Data = bytes.Clone(ev.Data)
	}
	return ev, ""
}

// FuzzObjectID checks the member walker on arbitrary bytes, valid or not: it
// must not panic, and on a valid object it must agree with encoding/json.
func FuzzObjectID(f *testing.F) {
	for _, typ := range Types() {
		body, _ := Sample(typ)
		ev, _ := Parse(body)
		f.Add([]byte(ev.Data))
	}
	f.Add([]byte(`{"a":{"b":[1,"}",{"c":"]"}]},"b":"\"","id":"as_1"}`))
	f.Add([]byte(`{"id":"x","id":"y"}`))
	f.Add([]byte(`{"id":`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got := (&Event{Data: data}).ObjectID()
		if !json.Valid(data) {
			return
		}
		var want string
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) == nil {
			for _, k := range []string{"id", "call_id", "session_id"} {
				if json.Unmarshal(m[k], &want) == nil && want != "" {
					break
				}
				want = ""
			}
		}
		if got != want {
			t.Fatalf("ObjectID(%s) = %q, encoding/json says %q", data, got, want)
		}
	})
}

// FuzzValidJSON: validJSON, which ParseInto uses to tell JSON from
// dead letters, must agree with encoding/json.Valid on every input.
func FuzzValidJSON(f *testing.F) {
	for _, typ := range Types() {
		body, _ := Sample(typ)
		f.Add(body)
	}
	for _, s := range []string{
		``, ` `, `null`, `nul`, `true `, ` false`, `[]`, `[1,]`, `[,1]`, `{}`, `{"a":1,}`, `{"a" 1}`, `{1:2}`,
		`0`, `-0`, `01`, `-`, `1.`, `.5`, `1.5e`, `1.5e+`, `1E-7`, `-12.50e+10`, `1e1.5`,
		`"\u12"`, `"\u12G4"`, `"\uABCD"`, `"\x"`, `"\/\b\f\n\r\t\\\""`, "\"\x1f\"", "\"\x7f\xff\"", `"abc`,
		`{"a":[{"b":[]},{}],"c":{"d":null}}`, `{} {}`, `[] x`, "\t\r\n[]\n",
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
		strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := validJSON(data), json.Valid(data); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid = %v", data, got, want)
		}
	})
}
