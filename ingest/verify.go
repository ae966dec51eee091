package ingest

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hookbridge/hookbridge/schema"
)

// DefaultTolerance is how far webhook-timestamp may be from the clock, either
// way; it is openai-go's default.
const DefaultTolerance = 5 * time.Minute

// Header names in canonical form: http.Header.Get canonicalizes its argument
// anyway (as openai-go relies on), and an already-canonical key costs no
// allocation.
const (
	HeaderID        = "Webhook-Id"
	HeaderTimestamp = "Webhook-Timestamp"
	HeaderSignature = "Webhook-Signature"
)

// Headers is what Verify reads the three webhook headers from. http.Header
// satisfies it; its Get canonicalizes the key, so a map built by net/http or
// with Header.Set is found whatever the case on the wire, while a map literal
// with non-canonical keys (http.Header{"webhook-id": …}) is not, exactly as in
// openai-go. Get is called with the canonical names above.
type Headers interface {
	Get(key string) string
}

// HeaderPairs returns Headers holding name/value pairs, e.g.
// HeaderPairs("webhook-id", id, "webhook-timestamp", ts). Names match
// case-insensitively and the first pair with a name wins, even when its value
// is empty (as http.Header.Get returns the first value). A trailing name
// without a value is ignored.
func HeaderPairs(kv ...string) Headers {
	return headerPairs(append([]string(nil), kv...))
}

type headerPairs []string

func (p headerPairs) Get(key string) string {
	for i := 0; i+1 < len(p); i += 2 {
		if strings.EqualFold(p[i], key) {
			return p[i+1]
		}
	}
	return ""
}

// VerifyError is a verification failure. Reason is a short stable code for
// logs and metric labels; Message is openai-go's wording. Neither ever holds
// header values, so it is safe to log and to return to the sender.
type VerifyError struct {
	Reason  string
	Message string
}

func (e *VerifyError) Error() string { return "ingest: " + e.Message }

// The failures Verify returns, as these exact pointers, so errors.Is and ==
// work. Missing headers and a malformed timestamp are the sender's bad request;
// the others mean the request is not authentic (or not fresh).
var (
	ErrMissingSignature = &VerifyError{"missing_signature", "missing required webhook-signature header"}
	ErrMissingTimestamp = &VerifyError{"missing_timestamp", "missing required webhook-timestamp header"}
	ErrMissingID        = &VerifyError{"missing_id", "missing required webhook-id header"}
	ErrBadTimestamp     = &VerifyError{"bad_timestamp", "invalid webhook timestamp format"}
	ErrTooOld           = &VerifyError{"too_old", "webhook timestamp is too old"}
	ErrTooNew           = &VerifyError{"too_new", "webhook timestamp is too new"}
	ErrNoMatch          = &VerifyError{"no_match", "webhook signature verification failed"}
)

// ErrNegativeTolerance is returned by NewVerifier: a negative tolerance would
// reject every delivery, which is never what an operator meant.
var ErrNegativeTolerance = errors.New("ingest: verification tolerance must not be negative")

// Verifier checks webhook signatures exactly as openai-go v3.98.0's
// VerifySignatureWithToleranceAndTime does, against one or more secrets. It is
// safe for concurrent use, including concurrently with SetSecrets.
type Verifier struct {
	tolerance time.Duration
	tol       int64 // whole seconds, truncated as openai-go does
	now       func() time.Time
	keys      atomic.Pointer[keySet]
}

// VerifierOption configures a Verifier.
type VerifierOption func(*Verifier)

// WithTolerance sets how far webhook-timestamp may be from the clock, either
// way (default DefaultTolerance). It is truncated to whole seconds, as in
// openai-go, so anything under 1s means "the same second".
func WithTolerance(d time.Duration) VerifierOption {
	return func(v *Verifier) { v.tolerance = d }
}

// WithClock replaces time.Now, for tests and for checking captured deliveries.
// A nil clock keeps time.Now.
func WithClock(now func() time.Time) VerifierOption {
	return func(v *Verifier) {
		if now != nil {
			v.now = now
		}
	}
}

// NewVerifier returns a Verifier for the given secrets; at least one is
// required. A delivery is accepted if any signature matches any secret.
func NewVerifier(secrets []Secret, opts ...VerifierOption) (*Verifier, error) {
	v := &Verifier{tolerance: DefaultTolerance, now: time.Now}
	for _, o := range opts {
		o(v)
	}
	if v.tolerance < 0 {
		return nil, ErrNegativeTolerance
	}
	// Exactly openai-go's expression: a float round trip that may differ from
	// integer division by one second for absurd tolerances, and we must agree.
	v.tol = int64(v.tolerance.Seconds())
	if err := v.SetSecrets(secrets); err != nil {
		return nil, err
	}
	return v, nil
}

// SetSecrets atomically replaces the secrets, for rotation without a restart.
// Verifications already running finish with the old set. On error the current
// secrets stay in place.
func (v *Verifier) SetSecrets(secrets []Secret) error {
	ks, err := newKeySet(secrets)
	if err != nil {
		return err
	}
	v.keys.Store(ks)
	return nil
}

// Verify reports whether body with headers h is an authentic, fresh delivery.
// It returns nil or one of the Err* *VerifyError values above.
func (v *Verifier) Verify(body []byte, h Headers) error {
	_, err := v.VerifyIndex(body, h)
	return err
}

// Unwrap verifies the delivery and then parses its envelope with schema.Parse.
// A verification failure is a *VerifyError; a verified body that is not a
// routable event returns a *schema.ParseError (and a nil event), so callers
// can dead-letter it rather than reject it.
func (v *Verifier) Unwrap(body []byte, h Headers) (*schema.Event, error) {
	if err := v.Verify(body, h); err != nil {
		return nil, err
	}
	return schema.Parse(body)
}

// VerifyIndex is Verify that also returns the position, in the slice given to
// NewVerifier or SetSecrets, of the secret that matched (-1 on error), so
// rotation can be watched: once nothing matches the old secret, drop it.
func (v *Verifier) VerifyIndex(body []byte, h Headers) (int, error) {
	id, ts, sig, err := v.checkHeaders(h)
	if err != nil {
		return -1, err
	}
	return v.match(body, id, ts, sig)
}

// match is the signature check of VerifyIndex, for header values that
// passed checkHeaders.
func (v *Verifier) match(body []byte, id, ts, sig string) (int, error) {
	sig = candidates(sig)
	ks := v.keys.Load()
	if i := ks.matchHMAC(id, ts, body, sig); i >= 0 {
		return i, nil
	}
	if len(ks.pubs) > 0 {
		if i := ks.matchEd25519(id, ts, body, sig); i >= 0 {
			return i, nil
		}
	}
	return -1, ErrNoMatch
}

// CheckHeaders runs every check of Verify that does not need the body: the
// three headers are present and the timestamp parses and is within the
// tolerance. It returns exactly the error Verify would return for any body
// (same order, same *VerifyError), or nil when only the signature is left to
// check. A handler calls it before reading the body, so that a stale or
// incomplete request costs no body buffer.
func (v *Verifier) CheckHeaders(h Headers) error {
	_, _, _, err := v.checkHeaders(h)
	return err
}

// checkHeaders returns the header values once they pass every check that
// does not need the body, in openai-go's order: signature, timestamp, id
// present ("" = missing), then the timestamp's format and age.
func (v *Verifier) checkHeaders(h Headers) (id, ts, sig string, err error) {
	if h == nil {
		return "", "", "", ErrMissingSignature
	}
	sig = header(h, HeaderSignature)
	if sig == "" {
		return "", "", "", ErrMissingSignature
	}
	ts = header(h, HeaderTimestamp)
	if ts == "" {
		return "", "", "", ErrMissingTimestamp
	}
	id = header(h, HeaderID)
	if id == "" {
		return "", "", "", ErrMissingID
	}
	t, perr := strconv.ParseInt(ts, 10, 64)
	if perr != nil {
		return "", "", "", ErrBadTimestamp
	}
	// Same int64 expressions as openai-go, wrap-around included, so that even
	// absurd timestamps get the same verdict.
	now := v.now().Unix()
	if now-t > v.tol {
		return "", "", "", ErrTooOld
	}
	if t > now+v.tol {
		return "", "", "", ErrTooNew
	}
	return id, ts, sig, nil
}

// Bounds on the signature work one request can ask for. Each "v1a,"
// candidate costs an ed25519 verification, which hashes the whole body, so an
// unbounded list would let an unauthenticated sender buy hundreds of body
// hashes with one request. OpenAI sends one signature, two during a secret
// rotation.
const (
	// MaxSignatureCandidates is how many whitespace-separated tokens of
	// webhook-signature are compared, whatever their scheme ("v1,", "v1a,"
	// or anything else); later tokens are ignored.
	MaxSignatureCandidates = 8
	// MaxSignatureHeaderBytes is how much of webhook-signature is read: a
	// token that does not end within it is ignored.
	MaxSignatureHeaderBytes = 4096
)

// candidates returns the prefix of the signature header that holds its
// candidates: the first MaxSignatureCandidates tokens that end within the
// first MaxSignatureHeaderBytes bytes, split exactly as nextField (and
// strings.Fields) splits. This is the only place where Verify's verdict can
// differ from openai-go's: a header whose matching signature is not among
// those tokens is rejected here and accepted there.
func candidates(sig string) string {
	// Fast path, every real header: short, ASCII, fewer separators than
	// candidates, so nothing can be cut.
	if len(sig) <= MaxSignatureHeaderBytes {
		seps := 0
		ascii := true
		for i := 0; i < len(sig); i++ {
			c := sig[i]
			if c >= utf8.RuneSelf {
				ascii = false
				break
			}
			seps += int(asciiSpace[c])
		}
		if ascii && seps < MaxSignatureCandidates {
			return sig
		}
	}
	s := sig
	cutToken := false // the last token of s continues beyond it
	if len(s) > MaxSignatureHeaderBytes {
		cut := MaxSignatureHeaderBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		r, _ := utf8.DecodeRuneInString(s[cut:])
		cutToken = !isSpace(r)
		s = s[:cut]
	}
	end, n := 0, 0
	for rest := s; n < MaxSignatureCandidates; {
		tok, after := nextField(rest)
		if tok == "" {
			break
		}
		if len(after) == 0 && cutToken {
			break // the token runs past the bound
		}
		n++
		end = len(s) - len(after)
		rest = after
	}
	return s[:end]
}

func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return asciiSpace[r] != 0
	}
	return unicode.IsSpace(r)
}

// header is h.Get(key) for a canonical key. For http.Header it skips Get's
// re-validation of the key, a quarter of the cost of a rejected delivery;
// the result is the same (first value, or "").
func header(h Headers, key string) string {
	if hh, ok := h.(http.Header); ok {
		if v := hh[key]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return h.Get(key)
}

type keySet struct {
	macs []*macKey
	pubs []pubKey
	// last is the position in macs of the secret that matched last. During a
	// rotation nearly every delivery is signed with the same one of the
	// configured secrets, so trying it first costs one HMAC instead of one per
	// secret. Which secret matched is not secret; the verdict is unchanged.
	last atomic.Int32
}

// matchHMAC returns the configured index of an HMAC secret that signed the
// delivery, or -1.
func (ks *keySet) matchHMAC(id, ts string, body []byte, sig string) int {
	if len(ks.macs) == 0 {
		return -1
	}
	first := int(ks.last.Load())
	if ks.macs[first].match(id, ts, body, sig) {
		return ks.macs[first].index
	}
	for j, k := range ks.macs {
		if j != first && k.match(id, ts, body, sig) {
			ks.last.Store(int32(j))
			return k.index
		}
	}
	return -1
}

type pubKey struct {
	index int
	key   ed25519.PublicKey
}

// macKey pools HMAC states: hmac.New hashes the key into ipad/opad states, and
// after the first Reset a Reset only restores them, so reuse is much cheaper
// than construction and allocates nothing.
type macKey struct {
	index int
	pool  sync.Pool // of *macState
}

// sigLen is the length of base64(HMAC-SHA256): only candidates this long can
// match (subtle.ConstantTimeCompare also fails fast on length).
const sigLen = 44

type macState struct {
	h   hash.Hash
	buf []byte // id "." ts ".", so the hash gets two writes, not a concatenation
	sum [sha256.Size]byte
	b64 [sigLen]byte
}

// maxPooledBuf keeps one delivery with a huge webhook-id from pinning memory.
const maxPooledBuf = 1 << 10

func newKeySet(secrets []Secret) (*keySet, error) {
	if len(secrets) == 0 {
		return nil, &SecretError{Err: ErrNoSecrets}
	}
	ks := &keySet{}
	for i, s := range secrets {
		switch s.kind {
		case kindRaw, kindWhsec:
			key := []byte(s.key)
			k := &macKey{index: i}
			k.pool.New = func() any { return &macState{h: hmac.New(sha256.New, key)} }
			ks.macs = append(ks.macs, k)
		case kindPublicKey:
			ks.pubs = append(ks.pubs, pubKey{index: i, key: ed25519.PublicKey(s.key)})
		default:
			return nil, &SecretError{Index: i + 1, Err: ErrSecretEmpty}
		}
	}
	return ks, nil
}

func (k *macKey) match(id, ts string, body []byte, sig string) bool {
	st := k.pool.Get().(*macState)
	st.h.Reset()
	st.buf = append(append(append(append(st.buf[:0], id...), '.'), ts...), '.')
	st.h.Write(st.buf)
	st.h.Write(body)
	st.h.Sum(st.sum[:0])
	base64.StdEncoding.Encode(st.b64[:], st.sum[:])

	ok := false
	for rest := sig; ; {
		var tok string
		tok, rest = nextField(rest)
		if tok == "" {
			break
		}
		tok = strings.TrimPrefix(tok, "v1,")
		if len(tok) != sigLen {
			continue
		}
		var cand [sigLen]byte // a stack copy: []byte(tok) would allocate
		copy(cand[:], tok)
		if subtle.ConstantTimeCompare(st.b64[:], cand[:]) == 1 {
			ok = true
			break
		}
	}
	if cap(st.buf) > maxPooledBuf {
		st.buf = nil
	}
	k.pool.Put(st)
	return ok
}

// matchEd25519 checks "v1a,<base64 signature>" candidates against the whpk_
// keys (Standard Webhooks' asymmetric scheme). Rare, so it may allocate.
func (ks *keySet) matchEd25519(id, ts string, body []byte, sig string) int {
	// msg is the signed content; the spare capacity after it receives each
	// decoded signature, so that both are one allocation.
	var msg []byte
	for rest := sig; ; {
		var tok string
		tok, rest = nextField(rest)
		if tok == "" {
			return -1
		}
		enc, ok := strings.CutPrefix(tok, "v1a,")
		if !ok || len(enc) != 88 {
			continue
		}
		if msg == nil {
			msg = make([]byte, 0, len(id)+len(ts)+2+len(body)+66)
			msg = append(append(append(append(append(msg, id...), '.'), ts...), '.'), body...)
		}
		raw := msg[len(msg):cap(msg)]
		n, err := strictB64.Decode(raw, []byte(enc))
		if err != nil || n != ed25519.SignatureSize {
			continue
		}
		for _, pk := range ks.pubs {
			if ed25519Verify(pk.key, msg, raw[:n]) {
				return pk.index
			}
		}
	}
}

// ed25519Verify is ed25519.Verify, replaceable so that a test can count the
// verifications a request costs.
var ed25519Verify = ed25519.Verify

// nextField returns the first field of s and what follows it, splitting
// exactly as strings.Fields does (unicode.IsSpace on each rune; an invalid
// UTF-8 byte is a one-byte non-space), without allocating. field is "" when s
// holds no more fields.
func nextField(s string) (field, rest string) {
	i := 0
	for i < len(s) {
		if c := s[i]; c < utf8.RuneSelf {
			if asciiSpace[c] == 0 {
				break
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += n
	}
	j := i
	for j < len(s) {
		if c := s[j]; c < utf8.RuneSelf {
			if asciiSpace[c] != 0 {
				break
			}
			j++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[j:])
		if unicode.IsSpace(r) {
			break
		}
		j += n
	}
	return s[i:j], s[j:]
}

// asciiSpace is strings.Fields' table: the ASCII runes unicode.IsSpace accepts.
var asciiSpace = [utf8.RuneSelf]uint8{'\t': 1, '\n': 1, '\v': 1, '\f': 1, '\r': 1, ' ': 1}
