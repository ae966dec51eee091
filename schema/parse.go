package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxTypeLen bounds a routable type name, so subjects and topic names stay far
// inside NATS and Kafka limits.
const MaxTypeLen = 200

// Dead-letter reasons: why a verified body could not be routed. They are
// bounded values, safe for metric labels and the hookbridge-reason header.
const (
	ReasonNotJSON        = "not_json"
	ReasonNotObject      = "not_object"
	ReasonMissingType    = "missing_type"
	ReasonUnroutableType = "unroutable_type"
)

// ParseError says why a body is not a routable event. Reason is one of the
// Reason* constants.
type ParseError struct {
	Reason string
	Err    error // underlying decode error, if any
}

func (e *ParseError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("schema: %s: %v", e.Reason, e.Err)
	}
	return "schema: " + e.Reason
}

func (e *ParseError) Unwrap() error { return e.Err }

// Routable reports whether t may be used as the last tokens of a subject or
// topic: dot-separated, non-empty tokens of [a-z0-9_], at most MaxTypeLen bytes.
// It keeps NATS wildcards, spaces and empty tokens out of subjects.
func (t Type) Routable() bool {
	if len(t) == 0 || len(t) > MaxTypeLen {
		return false
	}
	prevDot := true // a leading dot is an empty token
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '.':
			if prevDot {
				return false
			}
			prevDot = true
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
			prevDot = false
		default:
			return false
		}
	}
	return !prevDot
}

// Parse decodes the envelope of a webhook body. It never rejects an event
// because its type is unknown (OpenAI adds types every few months); it fails
// only when the body is not a JSON object with a routable "type", and then
// returns a *ParseError whose Reason says why.
//
// Only "type" decides: an "id", "object" or "created_at" of the wrong JSON
// type is left zero rather than dead-lettering an event that can still be
// routed (its body travels unchanged either way). A "type" that is present
// but not a string is unroutable; a null one counts as missing. Member names
// match exactly, as in JavaScript (encoding/json would also take "TYPE"), and
// the last of a repeated member wins, so the bridge routes on the same "type"
// a worker in any language reads. Data is kept raw: see DecodeData.
//
// The returned Event does not share memory with body.
func Parse(body []byte) (*Event, error) {
	ev := new(Event)
	if err := ParseInto(ev, body); err != nil {
		return nil, err
	}
	ev.Data = bytes.Clone(ev.Data)
	return ev, nil
}

// ParseInto is Parse into a caller-owned Event, for a hot path that reuses
// Events: it overwrites every field of *ev and allocates at most once (the
// strings of ID and ObjectID) for what OpenAI sends. Unlike Parse, ev.Data
// shares memory with body (it is a sub-slice of it), so body must not be
// modified while ev is in use. On error *ev is left zero and the error is
// the same *ParseError Parse returns.
func ParseInto(ev *Event, body []byte) error {
	*ev = Event{}
	// validJSON enforces encoding/json's nesting limit, so a deeply nested
	// data cannot exhaust the stack here or in DecodeData.
	if !validJSON(body) {
		return &ParseError{Reason: ReasonNotJSON, Err: syntaxError(body)}
	}
	if i := skipSpace(body, 0); body[i] != '{' {
		return &ParseError{Reason: ReasonNotObject}
	}
	// One walk over the top-level members, after validation, reads every
	// field with at most one allocation (BenchmarkParseInto): json.Unmarshal
	// into a struct allocates per field, and ObjectID would need a second
	// Unmarshal of data.
	var id, object, created, typ, data []byte
	eachMember(body, func(name, value []byte) {
		switch string(name) {
		case "id":
			id = value
		case "object":
			object = value
		case "created_at":
			created = value
		case "type":
			typ = value
		case "data":
			data = value
		}
	})
	switch {
	case typ == nil || string(typ) == "null":
		return &ParseError{Reason: ReasonMissingType}
	case typ[0] != '"':
		return &ParseError{Reason: ReasonUnroutableType, Err: errTypeNotString}
	}
	var t Type
	if raw := typ[1 : len(typ)-1]; isPlain(raw) {
		t = internType(raw)
	} else {
		t = Type(stringValue(typ))
	}
	if t == "" {
		return &ParseError{Reason: ReasonMissingType}
	}
	if !t.Routable() {
		return &ParseError{Reason: ReasonUnroutableType}
	}

	// Full slice expression: an append to Data must not write into body.
	ev.Type, ev.Data, ev.parsed = t, data[:len(data):len(data)], true
	ev.ID, ev.objectID = twoStrings(id, objectIDValue(data))
	if string(object) == `"event"` {
		ev.Object = "event" // what OpenAI always sends: no need to allocate
	} else {
		ev.Object = stringValue(object)
	}
	// As encoding/json into an int64: a fraction, exponent or overflow is
	// not an integer, and CreatedAt stays 0.
	if n, err := strconv.ParseInt(string(created), 10, 64); err == nil {
		ev.CreatedAt = n
	}
	return nil
}

// twoStrings returns stringValue(a) and stringValue(b) in one allocation
// when both are plain (what OpenAI sends), two otherwise.
func twoStrings(a, b []byte) (string, string) {
	pa, pb := plainInside(a), plainInside(b)
	if pa == nil || pb == nil {
		return stringValue(a), stringValue(b)
	}
	var buf [128]byte
	s := string(append(append(buf[:0], pa...), pb...))
	return s[:len(pa)], s[len(pa):]
}

// plainInside returns the inside of the JSON string v when it needs no
// decoding, an empty non-nil slice when v is not a string (stringValue
// gives ""), and nil when it must be decoded.
func plainInside(v []byte) []byte {
	if len(v) < 2 || v[0] != '"' {
		return v[:0:0]
	}
	if s := v[1 : len(v)-1]; isPlain(s) {
		return s
	}
	return nil
}

var errTypeNotString = errors.New(`"type" is not a JSON string`)

// syntaxError returns encoding/json's description of why body is not JSON.
func syntaxError(body []byte) error {
	var v struct{}
	return json.Unmarshal(body, &v) // fails in its validity check, before decoding
}

// ObjectID returns the id of the object the event is about: data.id, else
// data.call_id (realtime calls), else data.session_id (live calls), else "".
// Only non-empty string members count, matched by exact name.
// Kafka uses it as the record key so that every event about one batch,
// response or session lands on one partition, in order.
//
// Parse computes it once; on an Event built by hand it is derived from Data on
// each call. It never writes to e, so concurrent calls are safe.
func (e *Event) ObjectID() string {
	if e.parsed {
		return e.objectID
	}
	return objectIDOf(e.Data)
}

func objectIDOf(data []byte) string {
	return stringValue(objectIDValue(data))
}

// objectIDValue is the raw JSON value ObjectID decodes, or nil.
func objectIDValue(data []byte) []byte {
	var id, callID, sessionID []byte
	ok := eachMember(data, func(name, value []byte) {
		switch string(name) {
		case "id":
			id = value
		case "call_id":
			callID = value
		case "session_id":
			sessionID = value
		}
	})
	if !ok {
		return nil
	}
	for _, v := range [...][]byte{id, callID, sessionID} {
		if s := plainInside(v); len(s) > 0 || (s == nil && stringValue(v) != "") {
			return v
		}
	}
	return nil
}

// eachMember calls fn with the name (unquoted) and raw value of each
// top-level member of the JSON object in b, in order. Repeated names are all
// reported, so the caller's last assignment wins, as in encoding/json and
// JavaScript. It is meant for input that json.Valid accepts; on anything else
// it stops early and reports false, but never panics.
func eachMember(b []byte, fn func(name, value []byte)) bool {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return false
	}
	if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
		return true
	}
	for {
		if i == len(b) || b[i] != '"' {
			return false
		}
		end := skipString(b, i)
		if end < 0 {
			return false
		}
		name := b[i+1 : end-1]
		if !isPlain(name) {
			name = []byte(stringValue(b[i:end])) // rare: escapes in a member name
		}
		if i = skipSpace(b, end); i == len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if end = skipValue(b, i); end < 0 {
			return false
		}
		fn(name, b[i:end])
		if i = skipSpace(b, end); i == len(b) {
			return false
		}
		switch b[i] {
		case '}':
			return true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return false
		}
	}
}

// stringValue returns the text of the JSON string v, decoded as encoding/json
// does, or "" if v is not a string.
func stringValue(v []byte) string {
	if len(v) < 2 || v[0] != '"' {
		return ""
	}
	if s := v[1 : len(v)-1]; isPlain(s) {
		return string(s)
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

// isPlain reports whether the inside of a valid JSON string needs no
// decoding: no escapes, and ASCII only (encoding/json replaces invalid UTF-8,
// so anything else goes through it).
func isPlain(s []byte) bool {
	for _, c := range s {
		if c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i] (a
// quote), or -1 if it is not terminated.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index just past the JSON value starting at b[i], or
// -1 if there is none. Nesting is followed by counting brackets, which is
// enough for valid JSON and needs no stack.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end := skipString(b, i)
				if end < 0 {
					return -1
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	case ',', ':', '}', ']':
		return -1
	}
	start := i // number, true, false or null
	for i < len(b) && !isDelim(b[i]) {
		i++
	}
	if i == start {
		return -1
	}
	return i
}

func isDelim(c byte) bool {
	switch c {
	case ',', '}', ']', ':', '{', '[', '"', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}
