package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// The event types hookbridge knows, as sent by OpenAI (openai-node 7.57.0 and
// openai-go v3.98.0 webhook unions, plus the video types the endpoint API
// accepts). Parse routes other routable types too; this list only decides
// which typed struct DecodeData returns.
const (
	AgentEnvironmentExpired   Type = "agent.environment.expired"
	AgentEnvironmentFailed    Type = "agent.environment.failed"
	AgentEnvironmentReady     Type = "agent.environment.ready"
	AgentEnvironmentSuspended Type = "agent.environment.suspended"

	AgentSessionActionRequired Type = "agent.session.action_required"
	AgentSessionCreated        Type = "agent.session.created"
	AgentSessionFailed         Type = "agent.session.failed"
	AgentSessionIdle           Type = "agent.session.idle"
	AgentSessionInProgress     Type = "agent.session.in_progress"

	BatchCancelled Type = "batch.cancelled"
	BatchCompleted Type = "batch.completed"
	BatchExpired   Type = "batch.expired"
	BatchFailed    Type = "batch.failed"

	// EvalRunCanceled is spelt with one "l", unlike batch.cancelled: that is
	// how OpenAI sends it.
	EvalRunCanceled  Type = "eval.run.canceled"
	EvalRunFailed    Type = "eval.run.failed"
	EvalRunSucceeded Type = "eval.run.succeeded"

	FineTuningJobCancelled Type = "fine_tuning.job.cancelled"
	FineTuningJobFailed    Type = "fine_tuning.job.failed"
	FineTuningJobSucceeded Type = "fine_tuning.job.succeeded"

	// LiveCallIncoming announces an incoming SIP call to the Live API.
	//
	// Deprecated: OpenAI replaced it with [LiveTransportIncoming] (openai-node
	// 7.57.0). It is kept because endpoints subscribed to it still receive it.
	LiveCallIncoming       Type = "live.call.incoming"
	LiveTransportConnected Type = "live.transport.connected"
	LiveTransportIncoming  Type = "live.transport.incoming"

	RealtimeCallIncoming Type = "realtime.call.incoming"

	ResponseCancelled  Type = "response.cancelled"
	ResponseCompleted  Type = "response.completed"
	ResponseFailed     Type = "response.failed"
	ResponseIncomplete Type = "response.incomplete"

	SafetyAlertCreated       Type = "safety.alert.created"
	SafetyDeactivationIssued Type = "safety.deactivation_issued"
	SafetyOrgAlertCreated    Type = "safety.org_alert.created"
	SafetyWarningIssued      Type = "safety.warning_issued"
	VideoCompleted           Type = "video.completed"
	VideoFailed              Type = "video.failed"
)

// catalogue maps every known type to a constructor for its data struct. It is
// the one place that says which struct a type decodes into.
var catalogue = map[Type]func() any{
	AgentEnvironmentExpired:   newData[ResourceData],
	AgentEnvironmentFailed:    newData[ResourceData],
	AgentEnvironmentReady:     newData[ResourceData],
	AgentEnvironmentSuspended: newData[ResourceData],

	AgentSessionActionRequired: newData[AgentSessionActionRequiredData],
	AgentSessionCreated:        newData[AgentSessionCreatedData],
	AgentSessionFailed:         newData[AgentSessionData],
	AgentSessionIdle:           newData[AgentSessionData],
	AgentSessionInProgress:     newData[AgentSessionData],

	BatchCancelled: newData[ResourceData],
	BatchCompleted: newData[ResourceData],
	BatchExpired:   newData[ResourceData],
	BatchFailed:    newData[ResourceData],

	EvalRunCanceled:  newData[ResourceData],
	EvalRunFailed:    newData[ResourceData],
	EvalRunSucceeded: newData[ResourceData],

	FineTuningJobCancelled: newData[ResourceData],
	FineTuningJobFailed:    newData[ResourceData],
	FineTuningJobSucceeded: newData[ResourceData],

	LiveCallIncoming:       newData[LiveCallIncomingData],
	LiveTransportConnected: newData[LiveTransportConnectedData],
	LiveTransportIncoming:  newData[LiveTransportIncomingData],

	RealtimeCallIncoming: newData[RealtimeCallIncomingData],

	ResponseCancelled:  newData[ResourceData],
	ResponseCompleted:  newData[ResourceData],
	ResponseFailed:     newData[ResourceData],
	ResponseIncomplete: newData[ResourceData],

	SafetyAlertCreated:       newData[ResourceData],
	SafetyDeactivationIssued: newData[ResourceData],
	SafetyOrgAlertCreated:    newData[ResourceData],
	SafetyWarningIssued:      newData[ResourceData],

	VideoCompleted: newData[ResourceData],
	VideoFailed:    newData[ResourceData],
}

func newData[T any]() any { return new(T) }

// Types returns every known type, sorted. The slice is the caller's to keep.
func Types() []Type {
	return slices.Sorted(maps.Keys(catalogue))
}

// Known reports whether t is in the catalogue, i.e. whether DecodeData returns
// a typed struct for it. Unknown types are still valid events.
func (t Type) Known() bool {
	_, ok := catalogue[t]
	return ok
}

// ResourceData is the data of every "thin" event that names one resource by
// its id and nothing else; fetch the resource from the OpenAI API for its
// state. The id is a batch (batch.*), response (response.*), eval run
// (eval.run.*), fine-tuning job (fine_tuning.job.*), agent environment
// (agent.environment.*), safety alert (safety.alert.created,
// safety.org_alert.created), safety case (safety.deactivation_issued,
// safety.warning_issued) or video (video.*).
//
// No OpenAI SDK defines a payload for video.completed and video.failed; they
// are assumed to be thin like the others, so only ID is decoded.
type ResourceData struct {
	ID string `json:"id"`
}

// EnvironmentType says where an agent session runs. Values not listed here
// may appear and are kept as sent.
type EnvironmentType string

const (
	EnvironmentNone         EnvironmentType = "none"
	EnvironmentOpenAIHosted EnvironmentType = "openai_hosted"
	EnvironmentSelfHosted   EnvironmentType = "self_hosted"
)

// AgentSessionData is the data of agent.session.failed, agent.session.idle and
// agent.session.in_progress. Retrieve the session for details.
type AgentSessionData struct {
	ID              string          `json:"id"`
	EnvironmentType EnvironmentType `json:"environment_type"`
	EnvironmentID   string          `json:"environment_id,omitempty"` // absent when the session has no environment
}

// AgentSessionCreatedData is the data of agent.session.created.
type AgentSessionCreatedData struct {
	ID              string          `json:"id"`
	EnvironmentType EnvironmentType `json:"environment_type"`
	EnvironmentID   string          `json:"environment_id,omitempty"`
	Connect         *AgentConnect   `json:"connect,omitempty"` // set for self-hosted environments
}

// AgentConnect tells a self-hosted environment where to connect.
type AgentConnect struct {
	RemoteURL string `json:"remote_url"`
}

// AgentSessionActionRequiredData is the data of agent.session.action_required.
// The webhook names only the kind of action; its details come from retrieving
// the session.
type AgentSessionActionRequiredData struct {
	ID             string         `json:"id"`
	RequiredAction RequiredAction `json:"required_action"`
}

// RequiredAction is the action an agent session waits for.
type RequiredAction struct {
	Type RequiredActionType `json:"type"`
}

// RequiredActionType is the kind of a RequiredAction. Values not listed here
// may appear and are kept as sent.
type RequiredActionType string

const (
	RequiredActionFunctionCall               RequiredActionType = "function_call"
	RequiredActionEnvironmentConnection      RequiredActionType = "environment_connection"
	RequiredActionComputerUseApprovalRequest RequiredActionType = "computer_use_approval_request"
	RequiredActionMCPApprovalRequest         RequiredActionType = "mcp_approval_request"
)

// SIPHeader is one header of the SIP INVITE behind an incoming call. OpenAI
// keeps names, values, repeats and order but drops authorization headers.
// Values come from the caller's network: treat them as untrusted.
type SIPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// SIPMediaSecurity is the media protection negotiated on a SIP leg. It is
// empty when OpenAI does not know it; treat unlisted values as unknown too.
type SIPMediaSecurity string

const (
	SIPMediaRTP  SIPMediaSecurity = "rtp"  // unencrypted RTP
	SIPMediaSRTP SIPMediaSecurity = "srtp" // SRTP
)

// TransportType is the transport of a Live API session.
type TransportType string

const (
	TransportSIP    TransportType = "sip"
	TransportWebRTC TransportType = "webrtc"
)

// RealtimeCallIncomingData is the data of realtime.call.incoming. Accept or
// reject the call through the Realtime API with CallID (an rtc_ id).
type RealtimeCallIncomingData struct {
	CallID           string           `json:"call_id"`
	SIPHeaders       []SIPHeader      `json:"sip_headers"`
	SIPMediaSecurity SIPMediaSecurity `json:"sip_media_security,omitempty"`
}

// LiveTransportIncomingData is the data of live.transport.incoming: a SIP call
// waiting for the Live API. SessionID (a live_ id) is what Live call controls
// take; it differs from the rtc_ id of the matching realtime.call.incoming.
type LiveTransportIncomingData struct {
	SessionID        string           `json:"session_id"`
	SIPHeaders       []SIPHeader      `json:"sip_headers"`
	Type             TransportType    `json:"type"` // always "sip"
	SIPMediaSecurity SIPMediaSecurity `json:"sip_media_security,omitempty"`
}

// LiveCallIncomingData is the data of the deprecated live.call.incoming: the
// same as LiveTransportIncomingData without Type.
type LiveCallIncomingData struct {
	SessionID        string           `json:"session_id"`
	SIPHeaders       []SIPHeader      `json:"sip_headers"`
	SIPMediaSecurity SIPMediaSecurity `json:"sip_media_security,omitempty"`
}

// LiveTransportConnectedData is the data of live.transport.connected.
type LiveTransportConnectedData struct {
	SessionID string        `json:"session_id"`
	Type      TransportType `json:"type"` // "webrtc"
}

// ErrNoData is returned when an event's data is missing, null or not a JSON
// object, so there is nothing to decode.
var ErrNoData = errors.New("schema: event data is not a JSON object")

// DecodeData decodes Data into the struct the catalogue holds for Type and
// returns a pointer to it (e.g. *ResourceData for batch.completed). For a
// type the catalogue does not know it returns a map[string]any, so new OpenAI
// types can still be inspected. Fields OpenAI adds later are ignored, and enum
// fields keep values this package does not list.
func (e *Event) DecodeData() (any, error) {
	if !isObject(e.Data) {
		return nil, fmt.Errorf("%w (type %s)", ErrNoData, e.Type)
	}
	if newT, ok := catalogue[e.Type]; ok {
		v := newT()
		if err := json.Unmarshal(e.Data, v); err != nil {
			return nil, fmt.Errorf("schema: decode %s data: %w", e.Type, err)
		}
		return v, nil
	}
	var m map[string]any
	if err := json.Unmarshal(e.Data, &m); err != nil {
		return nil, fmt.Errorf("schema: decode %s data: %w", e.Type, err)
	}
	return m, nil
}

// DecodeDataAs decodes e.Data into a T, for workers that subscribed to types
// whose data they know: DecodeDataAs[schema.ResourceData](ev). T may also be a
// worker's own struct. It does not check T against e.Type.
func DecodeDataAs[T any](e *Event) (T, error) {
	var v T
	if !isObject(e.Data) {
		return v, fmt.Errorf("%w (type %s)", ErrNoData, e.Type)
	}
	if err := json.Unmarshal(e.Data, &v); err != nil {
		return v, fmt.Errorf("schema: decode %s data as %T: %w", e.Type, v, err)
	}
	return v, nil
}

func isObject(data []byte) bool {
	data = bytes.TrimLeft(data, " \t\r\n")
	return len(data) > 0 && data[0] == '{'
}

// knownTypes lets Parse reuse a known type's constant instead of allocating a
// string per event.
var knownTypes = func() map[string]Type {
	m := make(map[string]Type, len(catalogue))
	for t := range catalogue {
		m[string(t)] = t
	}
	return m
}()

func internType(b []byte) Type {
	if t, ok := knownTypes[string(b)]; ok {
		return t
	}
	return Type(b)
}
