package ingest

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

const (
	secretPrefix    = "whsec_"
	publicKeyPrefix = "whpk_"
	// Standard Webhooks symmetric keys hold at least 24 bytes; openai-go
	// v3.98.0 enforces the same bound, and so must we to agree with it.
	minSecretBytes = 24
)

// strictB64 is the only base64 flavour openai-go accepts for whsec_ secrets;
// we use it for whpk_ keys and v1a signatures too, for one rule everywhere.
var strictB64 = base64.StdEncoding.Strict()

// Secret problems. They are matched with errors.Is; the errors returned wrap
// them in a *SecretError, which adds the position in a list and never the value.
// The texts are openai-go's, so operators can search for them.
var (
	ErrSecretEmpty     = errors.New("webhook secret is empty")
	ErrSecretFormat    = errors.New("invalid webhook secret format")
	ErrSecretTooShort  = errors.New("invalid webhook secret: decoded secret must be at least 24 bytes")
	ErrPublicKeyFormat = errors.New("invalid webhook public key: expected whpk_ followed by a 32-byte ed25519 key in canonical base64")
	ErrNoSecrets       = errors.New("no webhook secrets configured")
)

// SecretError says why a configured secret was rejected. It carries the
// secret's position and a description of the problem, never the secret.
type SecretError struct {
	Index  int   // 1-based position in a list; 0 for a single secret
	Err    error // one of the ErrSecret*/ErrPublicKeyFormat/ErrNoSecrets values
	Detail string
}

func (e *SecretError) Error() string {
	var b strings.Builder
	b.WriteString("ingest: ")
	if e.Index > 0 {
		b.WriteString("secret #")
		b.WriteString(strconv.Itoa(e.Index))
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

func (e *SecretError) Unwrap() error { return e.Err }

type secretKind uint8

const (
	kindRaw       secretKind = iota + 1 // no prefix: the string's bytes are the HMAC key
	kindWhsec                           // whsec_: base64-decoded HMAC key
	kindPublicKey                       // whpk_: ed25519 public key for v1a signatures
)

// Secret is a parsed webhook signing secret: an HMAC-SHA256 key (from a whsec_
// or unprefixed secret) or an ed25519 public key (whpk_). Every textual form of
// a Secret is redacted. The zero Secret is invalid. Secrets are comparable.
type Secret struct {
	kind secretKind
	key  string // raw key bytes; a string so that Secret stays comparable
}

// ParseSecret parses one secret the way openai-go v3.98.0 does:
//
//   - "whsec_<base64>": strict, canonical standard base64 of at least 24 bytes;
//   - "whpk_<base64>": a 32-byte ed25519 public key (Standard Webhooks v1a;
//     beyond openai-go, which would use this text as a raw key);
//   - anything else, non-empty: the string's bytes, used as the HMAC key as is
//     (no trimming, no decoding: that is what OpenAI's SDKs do).
//
// The error never contains the secret.
func ParseSecret(s string) (Secret, error) {
	if s == "" {
		return Secret{}, &SecretError{Err: ErrSecretEmpty}
	}
	if enc, ok := strings.CutPrefix(s, publicKeyPrefix); ok {
		key, detail := decodeCanonical(enc)
		if detail == "" && len(key) != ed25519.PublicKeySize {
			detail = "decoded key is " + strconv.Itoa(len(key)) + " bytes"
		}
		if detail != "" {
			return Secret{}, &SecretError{Err: ErrPublicKeyFormat, Detail: detail}
		}
		return Secret{kind: kindPublicKey, key: string(key)}, nil
	}
	enc, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return Secret{kind: kindRaw, key: s}, nil
	}
	key, detail := decodeCanonical(enc)
	if detail != "" {
		return Secret{}, &SecretError{Err: ErrSecretFormat, Detail: detail}
	}
	if len(key) < minSecretBytes {
		return Secret{}, &SecretError{Err: ErrSecretTooShort}
	}
	return Secret{kind: kindWhsec, key: string(key)}, nil
}

// decodeCanonical applies openai-go's two checks in its order. detail is
// openai-go's wording; a base64.CorruptInputError names an offset, not data.
func decodeCanonical(enc string) (key []byte, detail string) {
	key, err := strictB64.DecodeString(enc)
	if err != nil {
		return nil, err.Error()
	}
	// Strict still skips CR and LF, so a re-encode is what proves canonical.
	if base64.StdEncoding.EncodeToString(key) != enc {
		return nil, "expected canonical base64 encoding"
	}
	return key, ""
}

// ParseSecrets parses a list of secrets separated by commas and/or whitespace
// (so a file ending in a newline works). A secret containing either cannot be
// given this way; use ParseSecret. Every bad entry is reported, by position.
func ParseSecrets(list string) ([]Secret, error) {
	fields := strings.FieldsFunc(list, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if len(fields) == 0 {
		return nil, &SecretError{Err: ErrNoSecrets}
	}
	secrets := make([]Secret, 0, len(fields))
	var errs []error
	for i, f := range fields {
		s, err := ParseSecret(f)
		if err != nil {
			se := err.(*SecretError)
			se.Index = i + 1
			errs = append(errs, se)
			continue
		}
		secrets = append(secrets, s)
	}
	if errs != nil {
		return nil, errors.Join(errs...)
	}
	return secrets, nil
}

// String returns a redacted form that keeps only the kind of secret.
// HMACKey returns the HMAC key of a whsec_ or unprefixed secret, for callers
// that sign deliveries (tests, `hookbridge send`); ok is false for a whpk_
// public key, which can only verify.
func (s Secret) HMACKey() (key []byte, ok bool) {
	if s.kind != kindRaw && s.kind != kindWhsec {
		return nil, false
	}
	return []byte(s.key), true
}

func (s Secret) String() string {
	switch s.kind {
	case kindWhsec:
		return "whsec_[REDACTED]"
	case kindPublicKey:
		return "whpk_[REDACTED]"
	case kindRaw:
		return "[REDACTED]"
	}
	return "[INVALID SECRET]"
}

// GoString keeps %#v from printing the key bytes.
func (s Secret) GoString() string { return "ingest.Secret(" + s.String() + ")" }

// Format redacts every verb, including %d and %x, which would otherwise print
// the key bytes of the unexported field.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// MarshalText redacts, so config dumps and structured logs cannot leak a key.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalJSON redacts; see MarshalText.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }
