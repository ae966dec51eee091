package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// wantData is the Go type DecodeData must return for each catalogue type,
// written out again so that a slip in the catalogue table shows up here.
var wantData = map[Type]any{
	AgentEnvironmentExpired:    &ResourceData{},
	AgentEnvironmentFailed:     &ResourceData{},
	AgentEnvironmentReady:      &ResourceData{},
	AgentEnvironmentSuspended:  &ResourceData{},
	AgentSessionActionRequired: &AgentSessionActionRequiredData{},
	AgentSessionCreated:        &AgentSessionCreatedData{},
	AgentSessionFailed:         &AgentSessionData{},
	AgentSessionIdle:           &AgentSessionData{},
	AgentSessionInProgress:     &AgentSessionData{},
	BatchCancelled:             &ResourceData{},
	BatchCompleted:             &ResourceData{},
	BatchExpired:               &ResourceData{},
	BatchFailed:                &ResourceData{},
	EvalRunCanceled:            &ResourceData{},
	EvalRunFailed:              &ResourceData{},
	EvalRunSucceeded:           &ResourceData{},
	FineTuningJobCancelled:     &ResourceData{},
	FineTuningJobFailed:        &ResourceData{},
	FineTuningJobSucceeded:     &ResourceData{},
	LiveCallIncoming:           &LiveCallIncomingData{},
	LiveTransportConnected:     &LiveTransportConnectedData{},
	LiveTransportIncoming:      &LiveTransportIncomingData{},
	RealtimeCallIncoming:       &RealtimeCallIncomingData{},
	ResponseCancelled:          &ResourceData{},
	ResponseCompleted:          &ResourceData{},
	ResponseFailed:             &ResourceData{},
	ResponseIncomplete:         &ResourceData{},
	SafetyAlertCreated:         &ResourceData{},
	SafetyDeactivationIssued:   &ResourceData{},
	SafetyOrgAlertCreated:      &ResourceData{},
	SafetyWarningIssued:        &ResourceData{},
	VideoCompleted:             &ResourceData{},
	VideoFailed:                &ResourceData{},
}

func TestTypesKnownSamples(t *testing.T) {
	types := Types()
	if len(types) != 33 {
		t.Errorf("Types() has %d types, want the 31 of the SDK unions + 2 video", len(types))
	}
	if !slices.IsSorted(types) {
		t.Errorf("Types() not sorted: %v", types)
	}
	types[0] = "scribbled"
	if Types()[0] == "scribbled" {
		t.Error("Types() returns a shared slice")
	}

	files, err := fs.Glob(samples, "testdata/events/*.json")
	if err != nil {
		t.Fatal(err)
	}
	var fromFiles []Type
	for _, f := range files {
		fromFiles = append(fromFiles, Type(strings.TrimSuffix(strings.TrimPrefix(f, "testdata/events/"), ".json")))
	}
	if !slices.Equal(fromFiles, Types()) {
		t.Errorf("sample files %v\n!= Types() %v", fromFiles, Types())
	}

	for _, typ := range Types() {
		if !typ.Known() || !typ.Routable() {
			t.Errorf("%s: Known=%v Routable=%v", typ, typ.Known(), typ.Routable())
		}
		if _, ok := wantData[typ]; !ok {
			t.Errorf("%s: no expected data type in this test", typ)
		}
	}
	for _, typ := range []Type{"", "batch", "batch.completed.", "Batch.completed", "batch.canceled", "eval.run.cancelled", "video.created", "safety_identifier.blocked"} {
		if typ.Known() {
			t.Errorf("Type(%q).Known() = true", typ)
		}
		if b, ok := Sample(typ); ok || b != nil {
			t.Errorf("Sample(%q) = %q, %v", typ, b, ok)
		}
	}
}

// Each sample must look like a real delivery and decode, strictly, into the
// struct the catalogue names, with every field the type always has.
func TestSamples(t *testing.T) {
	for _, typ := range Types() {
		t.Run(string(typ), func(t *testing.T) {
			body, ok := Sample(typ)
			if !ok {
				t.Fatal("no sample")
			}
			if len(body) < 150 || len(body) > 600 || bytes.ContainsAny(body, "\n\r\t") {
				t.Errorf("sample is %d bytes or not compact single-line JSON", len(body))
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, body); err != nil || !bytes.Equal(compact.Bytes(), body) {
				t.Errorf("sample is not compact JSON (%v)", err)
			}
			ev, err := Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			year := ev.Time().Year()
			if ev.Type != typ || ev.Object != "event" || year != 2026 || !strings.HasPrefix(ev.ID, "evt_") || len(ev.ID) != 36 {
				t.Errorf("envelope = %q %q %d %q", ev.Type, ev.Object, year, ev.ID)
			}

			// No field in the sample that the struct does not have.
			want := reflect.New(reflect.TypeOf(wantData[typ]).Elem()).Interface()
			dec := json.NewDecoder(bytes.NewReader(ev.Data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(want); err != nil {
				t.Errorf("sample data does not fit %T: %v", want, err)
			}

			got, err := ev.DecodeData()
			if err != nil {
				t.Fatal(err)
			}
			if reflect.TypeOf(got) != reflect.TypeOf(wantData[typ]) {
				t.Fatalf("DecodeData returned %T, want %T", got, wantData[typ])
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("DecodeData = %+v, want %+v", got, want)
			}
			requireFields(t, reflect.ValueOf(got).Elem(), "data")

			// The generic helper agrees with DecodeData.
			viaAs, err := decodeAsValue(ev, reflect.TypeOf(got).Elem())
			if err != nil || !reflect.DeepEqual(viaAs, reflect.ValueOf(got).Elem().Interface()) {
				t.Errorf("DecodeDataAs = %+v, %v", viaAs, err)
			}
		})
	}
}

// requireFields fails for every zero field of v that the JSON tag does not
// mark optional (omitempty), recursing into structs and slices.
func requireFields(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			fv := v.Field(i)
			if fv.IsZero() {
				if !strings.Contains(tag, "omitempty") {
					t.Errorf("%s.%s is empty", path, name)
				}
				continue
			}
			requireFields(t, reflect.Indirect(fv), path+"."+name)
		}
	case reflect.Slice:
		if v.Len() == 0 {
			t.Errorf("%s is empty", path)
		}
		for i := 0; i < v.Len(); i++ {
			requireFields(t, v.Index(i), path)
		}
	}
}

// decodeAsValue calls DecodeDataAs with the type parameter for typ.
func decodeAsValue(ev *Event, typ reflect.Type) (any, error) {
	switch typ {
	case reflect.TypeFor[ResourceData]():
		return DecodeDataAs[ResourceData](ev)
	case reflect.TypeFor[AgentSessionData]():
		return DecodeDataAs[AgentSessionData](ev)
	case reflect.TypeFor[AgentSessionCreatedData]():
		return DecodeDataAs[AgentSessionCreatedData](ev)
	case reflect.TypeFor[AgentSessionActionRequiredData]():
		return DecodeDataAs[AgentSessionActionRequiredData](ev)
	case reflect.TypeFor[RealtimeCallIncomingData]():
		return DecodeDataAs[RealtimeCallIncomingData](ev)
	case reflect.TypeFor[LiveCallIncomingData]():
		return DecodeDataAs[LiveCallIncomingData](ev)
	case reflect.TypeFor[LiveTransportIncomingData]():
		return DecodeDataAs[LiveTransportIncomingData](ev)
	case reflect.TypeFor[LiveTransportConnectedData]():
		return DecodeDataAs[LiveTransportConnectedData](ev)
	}
	return nil, errors.New("no case for " + typ.String())
}

// Spot checks of values, so the tests do not only compare the code with
// itself.
func TestDecodeDataValues(t *testing.T) {
	decode := func(t *testing.T, typ Type) any {
		t.Helper()
		body, _ := Sample(typ)
		ev, err := Parse(body)
		if err != nil {
			t.Fatal(err)
		}
		d, err := ev.DecodeData()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Run("agent.session.created", func(t *testing.T) {
		d := decode(t, AgentSessionCreated).(*AgentSessionCreatedData)
		if d.EnvironmentType != EnvironmentSelfHosted || d.Connect == nil || !strings.HasPrefix(d.Connect.RemoteURL, "https://") ||
			!strings.HasPrefix(d.ID, "as_") || !strings.HasPrefix(d.EnvironmentID, "env_") {
			t.Errorf("%+v", d)
		}
	})
	t.Run("agent.session.idle without environment", func(t *testing.T) {
		d := decode(t, AgentSessionIdle).(*AgentSessionData)
		if d.EnvironmentType != EnvironmentNone || d.EnvironmentID != "" {
			t.Errorf("%+v", d)
		}
	})
	t.Run("agent.session.action_required", func(t *testing.T) {
		d := decode(t, AgentSessionActionRequired).(*AgentSessionActionRequiredData)
		if d.RequiredAction.Type != RequiredActionFunctionCall {
			t.Errorf("%+v", d)
		}
	})
	t.Run("realtime.call.incoming", func(t *testing.T) {
		d := decode(t, RealtimeCallIncoming).(*RealtimeCallIncomingData)
		if !strings.HasPrefix(d.CallID, "rtc_") || d.SIPMediaSecurity != SIPMediaSRTP || len(d.SIPHeaders) != 3 ||
			d.SIPHeaders[0].Name != "From" || !strings.HasPrefix(d.SIPHeaders[0].Value, `"+14155550123" <sip:`) {
			t.Errorf("%+v", d)
		}
	})
	t.Run("live.transport.incoming", func(t *testing.T) {
		d := decode(t, LiveTransportIncoming).(*LiveTransportIncomingData)
		if !strings.HasPrefix(d.SessionID, "live_") || d.Type != TransportSIP || d.SIPMediaSecurity != SIPMediaRTP || len(d.SIPHeaders) == 0 {
			t.Errorf("%+v", d)
		}
	})
	t.Run("live.transport.connected", func(t *testing.T) {
		d := decode(t, LiveTransportConnected).(*LiveTransportConnectedData)
		if !strings.HasPrefix(d.SessionID, "live_") || d.Type != TransportWebRTC {
			t.Errorf("%+v", d)
		}
	})
	t.Run("fine_tuning.job.succeeded", func(t *testing.T) {
		if d := decode(t, FineTuningJobSucceeded).(*ResourceData); !strings.HasPrefix(d.ID, "ftjob-") {
			t.Errorf("%+v", d)
		}
	})
}

func TestDecodeData(t *testing.T) {
	tests := []struct {
		name    string
		ev      Event
		want    any
		wantErr error // nil: no error; errAny: some error
	}{
		{name: "unknown type gives a map",
			ev:   Event{Type: "future.thing", Data: json.RawMessage(`{"id":"x_1","n":2,"tags":["a"]}`)},
			want: map[string]any{"id": "x_1", "n": 2.0, "tags": []any{"a"}}},
		{name: "unknown enum values kept",
			ev:   Event{Type: AgentSessionFailed, Data: json.RawMessage(`{"id":"as_1","environment_type":"sandbox"}`)},
			want: &AgentSessionData{ID: "as_1", EnvironmentType: "sandbox"}},
		{name: "unknown fields ignored, leading space",
			ev:   Event{Type: BatchCompleted, Data: json.RawMessage(` {"id":"batch_1","status":"completed","usage":{"n":1}}`)},
			want: &ResourceData{ID: "batch_1"}},
		{name: "unknown required action kept",
			ev:   Event{Type: AgentSessionActionRequired, Data: json.RawMessage(`{"id":"as_1","required_action":{"type":"telepathy"}}`)},
			want: &AgentSessionActionRequiredData{ID: "as_1", RequiredAction: RequiredAction{Type: "telepathy"}}},
		{name: "missing data", ev: Event{Type: BatchCompleted}, wantErr: ErrNoData},
		{name: "null data", ev: Event{Type: BatchCompleted, Data: json.RawMessage(`null`)}, wantErr: ErrNoData},
		{name: "array data, unknown type", ev: Event{Type: "future.thing", Data: json.RawMessage(`[1]`)}, wantErr: ErrNoData},
		{name: "string data", ev: Event{Type: BatchCompleted, Data: json.RawMessage(`"batch_1"`)}, wantErr: ErrNoData},
		{name: "id of the wrong JSON type", ev: Event{Type: BatchCompleted, Data: json.RawMessage(`{"id":42}`)}, wantErr: errAny},
		{name: "malformed", ev: Event{Type: BatchCompleted, Data: json.RawMessage(`{"id":`)}, wantErr: errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.ev.DecodeData()
			_, errAs := DecodeDataAs[map[string]any](&tc.ev)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("DecodeData: %v", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("DecodeData error = %v, want %v", err, tc.wantErr)
			case tc.wantErr == ErrNoData && !errors.Is(errAs, ErrNoData):
				t.Errorf("DecodeDataAs error = %v, want ErrNoData", errAs)
			}
			if tc.wantErr == nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("DecodeData = %#v, want %#v", got, tc.want)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestSampleIsACopy(t *testing.T) {
	a, _ := Sample(BatchCompleted)
	a[0] = 'x'
	if b, _ := Sample(BatchCompleted); b[0] != '{' {
		t.Error("Sample returned shared memory")
	}
}

// Known runs on every delivery; it must not allocate.
func TestKnownDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are checked without -race")
	}
	typ := Type("fine_tuning.job.succeeded")
	if n := testing.AllocsPerRun(100, func() {
		if !typ.Known() {
			t.Fatal("not known")
		}
	}); n != 0 {
		t.Errorf("Known allocates %v times", n)
	}
}
