package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
func Parse(body []byte) (*Event, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		if !json.Valid(body) {
			return nil, &ParseError{Reason: ReasonNotJSON}
		}
		return nil, &ParseError{Reason: ReasonNotObject}
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field == "type" {
			return nil, &ParseError{Reason: ReasonUnroutableType, Err: err}
		}
		if errors.As(err, &typeErr) {
			// A well-formed object whose envelope fields have the wrong JSON
			// types (e.g. "created_at":"x") is still not an event we can trust.
			return nil, &ParseError{Reason: ReasonNotObject, Err: err}
		}
		return nil, &ParseError{Reason: ReasonNotJSON, Err: err}
	}
	if ev.Type == "" {
		return nil, &ParseError{Reason: ReasonMissingType}
	}
	if !ev.Type.Routable() {
		return nil, &ParseError{Reason: ReasonUnroutableType}
	}
	ev.objectID = objectIDOf(ev.Data)
	return &ev, nil
}

// ObjectID returns the id of the object the event is about: data.id, else
// data.call_id (realtime calls), else data.session_id (live calls), else "".
// Kafka uses it as the record key so that every event about one batch,
// response or session lands on one partition, in order.
func (e *Event) ObjectID() string {
	if e.objectID == "" && len(e.Data) > 0 {
		e.objectID = objectIDOf(e.Data)
	}
	return e.objectID
}

func objectIDOf(data json.RawMessage) string {
	if len(data) == 0 || data[0] != '{' {
		return ""
	}
	var ids struct {
		ID        string `json:"id"`
		CallID    string `json:"call_id"`
		SessionID string `json:"session_id"`
	}
	if json.Unmarshal(data, &ids) != nil {
		return ""
	}
	switch {
	case ids.ID != "":
		return ids.ID
	case ids.CallID != "":
		return ids.CallID
	}
	return ids.SessionID
}
