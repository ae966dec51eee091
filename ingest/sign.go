package ingest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
)

// ErrCannotSign is returned for a whpk_ public key: it verifies v1a
// signatures but cannot make any.
var ErrCannotSign = errors.New("ingest: a whpk_ public key cannot sign; use a whsec_ secret")

// Signer signs webhooks the way OpenAI does: the webhook-signature value
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" that Verify accepts. It
// reuses its HMAC state, so it is cheap per delivery, and is not safe for
// concurrent use: use one per goroutine.
type Signer struct {
	mac hash.Hash
	pre []byte // "id.timestamp."
	sum []byte
	buf []byte
}

// NewSigner returns a Signer for an HMAC secret (whsec_ or raw).
func NewSigner(s Secret) (*Signer, error) {
	key, ok := s.HMACKey()
	if !ok {
		return nil, ErrCannotSign
	}
	return &Signer{
		mac: hmac.New(sha256.New, key),
		sum: make([]byte, 0, sha256.Size),
		buf: make([]byte, 0, len("v1,")+base64.StdEncoding.EncodedLen(sha256.Size)),
	}, nil
}

// Sign returns the webhook-signature header value for a delivery with
// webhook-id id, webhook-timestamp timestamp (the header text, as sent) and
// body.
func (s *Signer) Sign(id, timestamp string, body []byte) string {
	m := s.mac
	m.Reset()
	// One Write of the prefix: io.WriteString on a hash copies the string
	// into a new slice each time.
	s.pre = append(append(append(append(s.pre[:0], id...), '.'), timestamp...), '.')
	_, _ = m.Write(s.pre)
	_, _ = m.Write(body)
	s.sum = m.Sum(s.sum[:0])
	s.buf = base64.StdEncoding.AppendEncode(append(s.buf[:0], "v1,"...), s.sum)
	return string(s.buf)
}

// Sign is NewSigner(secret).Sign(id, timestamp, body), for one delivery.
func Sign(secret Secret, id, timestamp string, body []byte) (string, error) {
	s, err := NewSigner(secret)
	if err != nil {
		return "", err
	}
	return s.Sign(id, timestamp, body), nil
}
