package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	type200 := strings.Repeat("a", 196) + ".b_c"
	type201 := type200 + "d"
	const batch = `{"object":"event","id":"evt_1","type":"batch.completed","created_at":1780435613,"data":{"id":"batch_1"}}`

	tests := []struct {
		name   string
		body   string
		reason string // "" when Parse must succeed
		want   Event  // checked when Parse succeeds; objectID/parsed ignored
		wantID string // ObjectID
	}{
		{name: "batch", body: batch,
			want:   Event{ID: "evt_1", Object: "event", CreatedAt: 1780435613, Type: BatchCompleted, Data: json.RawMessage(`{"id":"batch_1"}`)},
			wantID: "batch_1"},
		{name: "whitespace before object", body: " \t\r\n" + batch + "\n",
			want:   Event{ID: "evt_1", Object: "event", CreatedAt: 1780435613, Type: BatchCompleted, Data: json.RawMessage(`{"id":"batch_1"}`)},
			wantID: "batch_1"},
		{name: "pretty printed", body: "{\n  \"type\" : \"response.completed\",\n  \"data\" : { \"id\" : \"resp_1\" }\n}",
			want: Event{Type: ResponseCompleted, Data: json.RawMessage(`{ "id" : "resp_1" }`)}, wantID: "resp_1"},
		{name: "unknown routable type", body: `{"type":"future.thing.happened","data":{"id":"x_1"}}`,
			want: Event{Type: "future.thing.happened", Data: json.RawMessage(`{"id":"x_1"}`)}, wantID: "x_1"},
		{name: "type only", body: `{"type":"batch.failed"}`, want: Event{Type: BatchFailed}},
		{name: "escaped type", body: `{"type":"batch\u002ecompleted"}`, want: Event{Type: BatchCompleted}},
		{name: "type of 200 bytes", body: `{"type":"` + type200 + `"}`, want: Event{Type: Type(type200)}},
		{name: "last repeated type wins", body: `{"type":"a.b","type":"batch.expired"}`, want: Event{Type: BatchExpired}},
		{name: "null data kept raw", body: `{"type":"batch.failed","data":null}`, want: Event{Type: BatchFailed, Data: json.RawMessage(`null`)}},
		{name: "created_at string left zero", body: `{"id":"evt_1","type":"batch.failed","created_at":"2026-06-01T00:00:00Z"}`,
			want: Event{ID: "evt_1", Type: BatchFailed}},
		{name: "created_at float left zero", body: `{"type":"batch.failed","created_at":1.78e9}`, want: Event{Type: BatchFailed}},
		{name: "created_at overflow left zero", body: `{"type":"batch.failed","created_at":99999999999999999999}`, want: Event{Type: BatchFailed}},
		{name: "negative created_at", body: `{"type":"batch.failed","created_at":-1}`, want: Event{Type: BatchFailed, CreatedAt: -1}},
		{name: "id number left empty", body: `{"id":5,"object":["event"],"type":"batch.failed"}`, want: Event{Type: BatchFailed}},
		{name: "escaped id", body: `{"id":"evt_\u00e9\"x","type":"batch.failed"}`, want: Event{ID: `evt_é"x`, Type: BatchFailed}},

		{name: "empty", body: "", reason: ReasonNotJSON},
		{name: "whitespace only", body: " \n", reason: ReasonNotJSON},
		{name: "text", body: "hello", reason: ReasonNotJSON},
		{name: "truncated", body: batch[:len(batch)-1], reason: ReasonNotJSON},
		{name: "trailing garbage", body: batch + "x", reason: ReasonNotJSON},
		{name: "two objects", body: batch + batch, reason: ReasonNotJSON},
		{name: "single quotes", body: `{'type':'batch.completed'}`, reason: ReasonNotJSON},
		{name: "form encoded", body: "type=batch.completed", reason: ReasonNotJSON},

		{name: "array", body: `[]`, reason: ReasonNotObject},
		{name: "array of event", body: "[" + batch + "]", reason: ReasonNotObject},
		{name: "string", body: `"batch.completed"`, reason: ReasonNotObject},
		{name: "null", body: `null`, reason: ReasonNotObject},
		{name: "number", body: ` 42 `, reason: ReasonNotObject},
		{name: "bool", body: `true`, reason: ReasonNotObject},

		{name: "empty object", body: `{}`, reason: ReasonMissingType},
		{name: "empty type", body: `{"type":""}`, reason: ReasonMissingType},
		{name: "null type", body: `{"type":null}`, reason: ReasonMissingType},
		{name: "type only nested", body: `{"data":{"type":"batch.completed"}}`, reason: ReasonMissingType},
		{name: "type name in other case", body: `{"Type":"batch.completed"}`, reason: ReasonMissingType},

		{name: "type number", body: `{"type":123}`, reason: ReasonUnroutableType},
		{name: "type bool", body: `{"type":true}`, reason: ReasonUnroutableType},
		{name: "type array", body: `{"type":["batch.completed"]}`, reason: ReasonUnroutableType},
		{name: "type object", body: `{"type":{"name":"batch.completed"}}`, reason: ReasonUnroutableType},
		{name: "uppercase", body: `{"type":"Batch.Completed"}`, reason: ReasonUnroutableType},
		{name: "space", body: `{"type":"batch completed"}`, reason: ReasonUnroutableType},
		{name: "star wildcard", body: `{"type":"batch.*"}`, reason: ReasonUnroutableType},
		{name: "gt wildcard", body: `{"type":"batch.>"}`, reason: ReasonUnroutableType},
		{name: "empty token", body: `{"type":"batch..completed"}`, reason: ReasonUnroutableType},
		{name: "leading dot", body: `{"type":".batch"}`, reason: ReasonUnroutableType},
		{name: "trailing dot", body: `{"type":"batch."}`, reason: ReasonUnroutableType},
		{name: "type of 201 bytes", body: `{"type":"` + type201 + `"}`, reason: ReasonUnroutableType},
		{name: "non-ASCII", body: `{"type":"bätch.completed"}`, reason: ReasonUnroutableType},
		{name: "escaped newline", body: `{"type":"batch.completed\n"}`, reason: ReasonUnroutableType},
		{name: "last repeated type wins, unroutable", body: `{"type":"batch.expired","type":"a b"}`, reason: ReasonUnroutableType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Parse([]byte(tc.body))
			if tc.reason != "" {
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("Parse = %+v, %v; want *ParseError %s", ev, err, tc.reason)
				}
				if pe.Reason != tc.reason || ev != nil {
					t.Fatalf("Parse reason = %q (%v), event %v; want %q, nil", pe.Reason, err, ev, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := *ev
			got.objectID, got.parsed = "", false
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, tc.want)
			}
			if id := ev.ObjectID(); id != tc.wantID {
				t.Errorf("ObjectID = %q, want %q", id, tc.wantID)
			}
		})
	}
}

func TestParseErrorMessage(t *testing.T) {
	_, err := Parse([]byte(`{"type":`))
	var syn *json.SyntaxError
	if !errors.As(err, &syn) {
		t.Fatalf("Parse(truncated) = %v, want it to wrap a *json.SyntaxError", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "schema: not_json: ") {
		t.Errorf("Error() = %q", msg)
	}
	_, err = Parse([]byte(`[]`))
	if msg := err.Error(); msg != "schema: not_object" {
		t.Errorf("Error() = %q", msg)
	}
}

func TestParseDoesNotAliasBody(t *testing.T) {
	body, _ := Sample(BatchCompleted)
	ev, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	want := string(ev.Data)
	for i := range body {
		body[i] = 'x'
	}
	if string(ev.Data) != want {
		t.Errorf("Data changed with the body: %s", ev.Data)
	}
}

// A JSON bomb must be refused by encoding/json's nesting limit (10000), in
// Parse and in DecodeData, without exhausting the stack.
func TestParseDeepNesting(t *testing.T) {
	nested := func(depth int) string {
		return strings.Repeat("[", depth) + strings.Repeat("]", depth)
	}
	tests := []struct {
		name   string
		body   string
		reason string
	}{
		{"deep but allowed data", `{"type":"future.deep","data":{"x":` + nested(9000) + `}}`, ""},
		{"too deep data", `{"type":"batch.completed","data":{"x":` + nested(10001) + `}}`, ReasonNotJSON},
		{"too deep top level", nested(100000), ReasonNotJSON},
		{"unclosed bomb", `{"type":"batch.completed","data":` + strings.Repeat(`{"a":`, 1<<20), ReasonNotJSON},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Parse([]byte(tc.body))
			if tc.reason != "" {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Reason != tc.reason {
					t.Fatalf("Parse error = %v, want reason %s", err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			d, err := ev.DecodeData()
			if err != nil {
				t.Fatalf("DecodeData: %v", err)
			}
			if _, ok := d.(map[string]any)["x"]; !ok {
				t.Errorf("DecodeData lost the nested member")
			}
		})
	}
}

func TestRoutable(t *testing.T) {
	tests := []struct {
		t    Type
		want bool
	}{
		{"a", true},
		{"0", true},
		{"_", true},
		{"a.b", true},
		{"fine_tuning.job.succeeded", true},
		{"v2.batch.completed", true},
		{Type(strings.Repeat("a", MaxTypeLen)), true},
		{Type(strings.Repeat("a.", MaxTypeLen/2-1) + "ab"), true},
		{"", false},
		{".", false},
		{"..", false},
		{".a", false},
		{"a.", false},
		{"a..b", false},
		{"A", false},
		{"a.B", false},
		{"a-b", false},
		{"a b", false},
		{" a", false},
		{"a\t", false},
		{"a*", false},
		{"*", false},
		{"a.>", false},
		{">", false},
		{"a/b", false},
		{"a:b", false},
		{"a\x00", false},
		{"é", false},
		{Type(strings.Repeat("a", MaxTypeLen+1)), false},
		{Type(strings.Repeat("a", MaxTypeLen-1) + "."), false},
	}
	for _, tc := range tests {
		t.Run(string(tc.t), func(t *testing.T) {
			if got := tc.t.Routable(); got != tc.want {
				t.Errorf("Type(%q).Routable() = %v, want %v", tc.t, got, tc.want)
			}
		})
	}
}

func TestObjectID(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"id", `{"id":"batch_1"}`, "batch_1"},
		{"call_id", `{"call_id":"rtc_1","sip_headers":[]}`, "rtc_1"},
		{"session_id", `{"session_id":"live_1","type":"sip"}`, "live_1"},
		{"id before call_id", `{"call_id":"rtc_1","id":"x_1"}`, "x_1"},
		{"call_id before session_id", `{"session_id":"live_1","call_id":"rtc_1"}`, "rtc_1"},
		{"empty id falls through", `{"id":"","session_id":"live_1"}`, "live_1"},
		{"non-string id falls through", `{"id":7,"call_id":"rtc_1"}`, "rtc_1"},
		{"nested id ignored", `{"required_action":{"id":"inner"},"x":[{"id":"a"}]}`, ""},
		{"id after nested values", `{"a":{"b":[1,"}",{"c":"]"}]},"b":"\"","id":"as_1"}`, "as_1"},
		{"escaped", `{"id":"batch_\u0031"}`, "batch_1"},
		{"escaped name", `{"\u0069d":"batch_1"}`, "batch_1"},
		{"last repeated wins", `{"id":"a","id":"b"}`, "b"},
		{"whitespace", " {\n\t\"id\" :\r\n \"batch_1\" \n} ", "batch_1"},
		{"name in other case", `{"ID":"batch_1"}`, ""},
		{"empty object", `{}`, ""},
		{"array", `[{"id":"batch_1"}]`, ""},
		{"string", `"batch_1"`, ""},
		{"null", `null`, ""},
		{"missing", ``, ""},
		{"malformed", `{"id":"batch_1"`, ""},
		{"malformed value", `{"id":,"call_id":"rtc_1"}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := &Event{Type: "a.b", Data: json.RawMessage(tc.data)}
			if got := ev.ObjectID(); got != tc.want {
				t.Errorf("ObjectID of hand-built event = %q, want %q", got, tc.want)
			}
			body := []byte(`{"type":"a.b","data":` + tc.data + `}`)
			if !json.Valid(body) {
				return
			}
			parsed, err := Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			if got := parsed.ObjectID(); got != tc.want {
				t.Errorf("ObjectID of parsed event = %q, want %q", got, tc.want)
			}
		})
	}
}

// The samples exercise ObjectID on every data shape in the catalogue.
func TestObjectIDSamples(t *testing.T) {
	for _, typ := range Types() {
		t.Run(string(typ), func(t *testing.T) {
			body, _ := Sample(typ)
			ev, err := Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			var ids struct {
				ID        string `json:"id"`
				CallID    string `json:"call_id"`
				SessionID string `json:"session_id"`
			}
			if err := json.Unmarshal(ev.Data, &ids); err != nil {
				t.Fatal(err)
			}
			want := ids.ID + ids.CallID + ids.SessionID // each sample has exactly one
			switch {
			case want == "":
				t.Fatalf("sample has no id, call_id or session_id: %s", ev.Data)
			case !bytes.Contains(body, []byte(`"`+want+`"`)):
				t.Fatalf("id %q not in body", want)
			}
			if got := ev.ObjectID(); got != want {
				t.Errorf("ObjectID = %q, want %q", got, want)
			}
		})
	}
}
