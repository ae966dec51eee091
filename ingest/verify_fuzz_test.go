package ingest

import (
	"bytes"
	"encoding/base64"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/webhooks"
)

// Secret generators for FuzzVerifyDifferential (secretMode % 5).
const (
	secValid       = iota // whsec_ of 24..64 bytes
	secShort              // whsec_ of < 24 bytes
	secNonCanon           // a valid whsec_ made non-canonical in one of several ways
	secRaw                // the bytes as an unprefixed secret
	secWhsecGarble        // "whsec_" + arbitrary text
)

// Delivery generators (mode % 3).
const (
	modeAsGiven    = iota // the fuzzed signature header as is
	modeSigned            // a correct "v1," signature
	modeSignMutate        // a correct signature, then one mutation (mut)
)

// fuzzSecret turns fuzz input into secret text, covering every ParseSecret
// branch except whpk_ (beyond openai-go).
func fuzzSecret(mode uint8, b []byte) string {
	key := b
	switch mode % 5 {
	case secValid, secNonCanon:
		key = append(bytes.Repeat([]byte{0x5a}, max(0, 24-len(b))), b...)
		key = key[:min(len(key), 64)]
	case secShort:
		key = b[:min(len(b), 23)]
	case secRaw:
		return string(b)
	case secWhsecGarble:
		return "whsec_" + string(b)
	}
	enc := base64.StdEncoding.EncodeToString(key)
	if mode%5 == secNonCanon {
		switch len(b) % 6 {
		case 0:
			enc = strings.TrimRight(enc, "=")
		case 1:
			enc = base64.URLEncoding.EncodeToString(key)
		case 2:
			enc = enc[:len(enc)/2] + "\n" + enc[len(enc)/2:]
		case 3:
			enc += "\r\n"
		case 4:
			enc = " " + enc
		case 5: // set trailing bits that canonical encoding leaves zero
			i := strings.IndexByte(enc, '=') - 1
			if i < 0 {
				enc += "=" // no padding to play with: add a stray one
				break
			}
			enc = enc[:i] + string("BCDEFGHIJKLMNOPQRSTUVWXYZabcdefg"[strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", enc[i])%32]) + enc[i+1:]
		}
	}
	return "whsec_" + enc
}

// delivery is the three header values and how they are placed in the map.
type delivery struct {
	id, ts, sig   string
	noID, noTS    bool
	noSig         bool
	lowerKeys     bool   // raw non-canonical map keys: invisible to Get
	firstSigValue string // if set, an earlier webhook-signature value
	body          []byte
	now           int64
	tolerance     time.Duration
}

func (d *delivery) header() http.Header {
	h := http.Header{}
	put := func(name, v string, skip bool) {
		if skip {
			return
		}
		if d.lowerKeys {
			h[strings.ToLower(name)] = append(h[strings.ToLower(name)], v)
		} else {
			h.Add(name, v)
		}
	}
	if d.firstSigValue != "" {
		put(HeaderSignature, d.firstSigValue, false)
	}
	put(HeaderSignature, d.sig, d.noSig)
	put(HeaderTimestamp, d.ts, d.noTS)
	put(HeaderID, d.id, d.noID)
	return h
}

func (d *delivery) pairs() Headers {
	var kv []string
	if d.firstSigValue != "" {
		kv = append(kv, "webhook-signature", d.firstSigValue)
	}
	if !d.noSig {
		kv = append(kv, "WEBHOOK-SIGNATURE", d.sig)
	}
	if !d.noTS {
		kv = append(kv, "webhook-timestamp", d.ts)
	}
	if !d.noID {
		kv = append(kv, "Webhook-Id", d.id)
	}
	return HeaderPairs(kv...)
}

var separators = []string{" ", "\t", "\n", "\r\n", "  ", "\u00a0", "\u0085", "\u2003", "\u3000", ",", "\u200b", "\xa0", "\xc2"}

// mutate changes one thing about a correctly signed delivery.
func (d *delivery) mutate(mut uint8, pos uint16) {
	flip := func(s []byte) []byte {
		if len(s) == 0 {
			return append(s, 'x')
		}
		s = bytes.Clone(s)
		s[int(pos)%len(s)] ^= byte(1 + pos>>8%255)
		return s
	}
	tol := int64(d.tolerance.Seconds())
	switch mut % mutations {
	case 0:
		d.body = flip(d.body)
	case 1:
		d.id = string(flip([]byte(d.id)))
	case 2:
		d.ts = string(flip([]byte(d.ts)))
	case 3:
		d.sig = "v1," + string(flip([]byte(d.sig[3:])))
	case 4:
		d.body = append(bytes.Clone(d.body), '\n')
	case 5:
		d.sig = "v1a," + d.sig[3:]
	case 6:
		d.sig = "v2," + d.sig[3:]
	case 7:
		d.sig = d.sig[3:] // bare: still valid
	case 8:
		d.sig = "v1,AAAA" + separators[int(pos)%len(separators)] + d.sig
	case 9:
		d.ts = "+" + d.ts
	case 10:
		d.ts = "0" + d.ts
	case 11:
		d.now += tol + 1
	case 12:
		d.now -= tol + 1
	case 13:
		d.now += tol
	case 14:
		d.now -= tol
	case 15:
		d.noSig = true
	case 16:
		d.ts = ""
	case 17:
		d.id = ""
	case 18:
		d.lowerKeys = true
	case 19:
		d.sig = strings.TrimRight(d.sig, "=")
	case 20:
		d.sig = strings.NewReplacer("+", "-", "/", "_").Replace(d.sig)
	case 21:
		d.firstSigValue = "v1,AAAA" // Get returns only the first value
	case 22:
		d.sig += separators[int(pos)%len(separators)] + "v1,AAAA"
	case 23: // the signature after 8 to 11 others: beyond the candidate bound
		d.sig = strings.Repeat("v1,AAAA"+separators[int(pos)%len(separators)], MaxSignatureCandidates+int(pos)%4) + d.sig
	case 24: // padding that moves the signature across the byte bound
		d.sig = strings.Repeat(" ", MaxSignatureHeaderBytes-len(d.sig)-2+int(pos)%5) + d.sig
	}
}

// mutations is the number of cases in mutate.
const mutations = 25

// FuzzVerifyDifferential checks that Verify's verdict and message equal
// openai-go v3.98.0's on every input, and that ParseSecret rejects exactly the
// secrets openai-go rejects. Divergences by design, skipped: whpk_ secrets
// (ed25519, beyond OpenAI) and negative tolerances (NewVerifier refuses them).
// One more, checked rather than skipped: only the first
// MaxSignatureCandidates tokens within MaxSignatureHeaderBytes of the
// signature header are candidates, so where openai-go accepts and Verify
// rejects, openai-go must reject the header cut to those candidates.
func FuzzVerifyDifferential(f *testing.F) {
	vk := []byte(strings.TrimPrefix(vecSecret, "whsec_"))
	fiveMin := int64(DefaultTolerance)
	add := func(secretMode uint8, secret []byte, id, ts string, nowOffset, tol int64, sig string, body []byte, mode, mut uint8, pos uint16) {
		f.Add(secretMode, secret, id, ts, nowOffset, tol, sig, body, mode, mut, pos)
	}
	// The real vector, at its time, at ±300 s and at ±301 s.
	for _, off := range []int64{0, 300, -300, 301, -301} {
		add(secWhsecGarble, vk, vecID, vecTS, off, fiveMin, vecSig, []byte(vecBody), modeAsGiven, 0, 0)
	}
	// Every mutation, on every kind of secret.
	for sm := uint8(0); sm < 5; sm++ {
		for mut := uint8(0); mut < mutations; mut++ {
			add(sm, []byte("0123456789abcdef0123456789abcdef"[:int(mut)+int(sm)]), vecID, vecTS, 0, fiveMin, "", []byte(vecBody), modeSignMutate, mut, uint16(mut)*37)
		}
	}
	// Timestamps and tolerances.
	for _, ts := range []string{"+1750861210", "01750861210", "-1", "0", "1750861210 ", " 1750861210", "1750861210.5", "1_750_861_210",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808", "1e9", "0x1", "１７５０８６１２１０", ""} {
		add(secValid, vk, vecID, ts, 0, fiveMin, "", []byte(vecBody), modeSigned, 0, 0)
	}
	for _, tol := range []int64{0, int64(999 * time.Millisecond), int64(1900 * time.Millisecond), math.MaxInt64, -1} {
		for _, off := range []int64{-2, -1, 0, 1, 2} {
			add(secValid, vk, vecID, vecTS, off, tol, "", []byte(vecBody), modeSigned, 0, 0)
		}
	}
	add(secValid, vk, vecID, vecTS, math.MinInt64, fiveMin, "", nil, modeSigned, 0, 0)
	add(secValid, vk, vecID, vecTS, math.MaxInt64, math.MaxInt64, "", nil, modeSigned, 0, 0)
	// Secrets openai-go rejects or reads as raw bytes.
	for _, s := range []string{"", "YQ==", "RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40d=", "RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24-Aj40c=", "RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c"} {
		add(secWhsecGarble, []byte(s), vecID, vecTS, 0, fiveMin, vecSig, []byte(vecBody), modeAsGiven, 0, 0)
		add(secRaw, []byte(s), vecID, vecTS, 0, fiveMin, "", []byte(vecBody), modeSigned, 0, 0)
	}
	add(secRaw, []byte("whpk_AAAA"), vecID, vecTS, 0, fiveMin, "", []byte(vecBody), modeSigned, 0, 0)
	// Odd headers as given.
	for _, sig := range []string{"", " ", "v1,", "v1a," + vecSig[3:], vecSig[3:], "v1,x\tv1,y " + vecSig, "\xff" + vecSig, vecSig + "\u0085"} {
		add(secWhsecGarble, vk, vecID, vecTS, 0, fiveMin, sig, []byte(vecBody), modeAsGiven, 0, 0)
	}
	add(secValid, vk, "", vecTS, 0, fiveMin, vecSig, []byte(vecBody), modeAsGiven, 0, 0)
	add(secValid, vk, "wh_\x00\xff.", "1", 0, 0, "", []byte("\x00"), modeSigned, 0, 0)

	f.Fuzz(func(t *testing.T, secretMode uint8, secretBytes []byte, id, ts string, nowOffset, tolNs int64, sig string, body []byte, mode, mut uint8, pos uint16) {
		secret := fuzzSecret(secretMode, secretBytes)
		if strings.HasPrefix(secret, publicKeyPrefix) {
			t.Skip("whpk_ is beyond openai-go")
		}
		svc := webhooks.NewWebhookService(option.WithWebhookSecret(secret))

		// Secrets: same accept/reject, same words.
		s, perr := ParseSecret(secret)
		refSecretErr := openaiSecretErr(secret)
		if (perr == nil) != (refSecretErr == nil) {
			t.Fatalf("secret %q: ParseSecret error %v, openai-go %v", secret, perr, refSecretErr)
		}
		if perr != nil {
			if secret != "" && strings.TrimPrefix(perr.Error(), "ingest: ") != refSecretErr.Error() {
				t.Fatalf("secret %q: message %q, openai-go %q", secret, perr, refSecretErr)
			}
			return
		}

		d := delivery{id: id, ts: ts, sig: sig, body: body, tolerance: time.Duration(tolNs)}
		d.now = nowOffset
		if t, err := strconv.ParseInt(ts, 10, 64); err == nil {
			d.now = t + nowOffset // wraps, and that is fine: both sides see the same now
		}
		if mode%3 != modeAsGiven {
			d.sig = "v1," + mac([]byte(s.key), d.id, d.ts, string(d.body))
			if mode%3 == modeSignMutate {
				d.mutate(mut, pos)
			}
		}

		v, err := NewVerifier([]Secret{s}, WithTolerance(d.tolerance), WithClock(fixedClock(d.now)))
		if d.tolerance < 0 {
			if err != ErrNegativeTolerance {
				t.Fatalf("NewVerifier(tolerance %v) = %v", d.tolerance, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}

		h := d.header()
		got := v.Verify(d.body, h)
		ref := svc.VerifySignatureWithToleranceAndTime(d.body, h, d.tolerance, time.Unix(d.now, 0))
		if got == ErrNoMatch && ref == nil {
			// The documented divergence, and only it: openai-go must reject
			// the same header cut to its candidates, with the same words.
			bh := h.Clone()
			sig := bh[HeaderSignature][0]
			bh[HeaderSignature][0] = candidates(sig)
			if bh[HeaderSignature][0] == sig {
				t.Fatalf("disagreement within the candidate bounds: we say %v, openai-go accepts\nheaders %q body %q now %d tol %v", got, h, d.body, d.now, d.tolerance)
			}
			// The verdict, not the words: a header cut to nothing is
			// "missing" to openai-go, while ours had tokens, none matching.
			if svc.VerifySignatureWithToleranceAndTime(d.body, bh, d.tolerance, time.Unix(d.now, 0)) == nil {
				t.Fatalf("openai-go accepts the header cut to its candidates, we reject it\nheaders %q", bh)
			}
			ref = got
		}
		switch {
		case (got == nil) != (ref == nil):
			t.Fatalf("disagreement: we say %v, openai-go says %v\nheaders %q body %q now %d tol %v", got, ref, h, d.body, d.now, d.tolerance)
		case got != nil && ref != got && got.(*VerifyError).Message != ref.Error():
			t.Fatalf("we say %q, openai-go says %q\nheaders %q", got.(*VerifyError).Message, ref, h)
		}
		// HeaderPairs sees names in any case, so it agrees whenever the map
		// had canonical keys.
		if !d.lowerKeys {
			if p := v.Verify(d.body, d.pairs()); p != got {
				t.Fatalf("HeaderPairs: %v, http.Header: %v", p, got)
			}
		}
	})
}

// FuzzVerify checks properties rather than a reference: nothing panics, a
// correctly signed delivery verifies, and changing any one byte of the id,
// timestamp or body makes it fail.
func FuzzVerify(f *testing.F) {
	f.Add([]byte("k"), vecID, vecTS, []byte(vecBody), "v1,x", uint8(0), uint16(0))
	f.Add([]byte{}, "i", "+0", []byte{}, "", uint8(1), uint16(1))
	f.Add([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"), "\xff", "-9223372036854775808", []byte("\x00\n"), "v1a,\xa0 v1,", uint8(2), uint16(999))
	f.Fuzz(func(t *testing.T, key []byte, id, ts string, body []byte, sig string, where uint8, pos uint16) {
		key = append(bytes.Repeat([]byte{1}, max(0, 24-len(key))), key...)
		s, err := ParseSecret("whsec_" + base64.StdEncoding.EncodeToString(key))
		if err != nil {
			t.Fatal(err)
		}
		now, perr := strconv.ParseInt(ts, 10, 64)
		v, err := NewVerifier([]Secret{s}, WithClock(fixedClock(now)), WithTolerance(0))
		if err != nil {
			t.Fatal(err)
		}
		// Arbitrary headers never panic.
		_, _ = v.VerifyIndex(body, HeaderPairs("webhook-id", id, "webhook-timestamp", ts, "webhook-signature", sig))

		good := "v1," + mac(key, id, ts, string(body))
		// First, so that the fuzzed tokens after it cannot push it beyond the
		// candidate bounds.
		h := HeaderPairs("webhook-id", id, "webhook-timestamp", ts, "webhook-signature", good+" "+sig)
		err = v.Verify(body, h)
		var want error
		switch {
		case ts == "":
			want = ErrMissingTimestamp
		case id == "":
			want = ErrMissingID
		case perr != nil:
			want = ErrBadTimestamp
		}
		if err != want {
			t.Fatalf("signed delivery: Verify = %v, want %v", err, want)
		}
		if want != nil {
			return
		}
		fields := [][]byte{[]byte(id), []byte(ts), bytes.Clone(body)}
		f := fields[int(where)%3]
		if len(f) == 0 {
			return // an empty body has no byte to change
		}
		f[int(pos)%len(f)] ^= byte(1 + int(pos>>8)%255)
		h = HeaderPairs("webhook-id", string(fields[0]), "webhook-timestamp", string(fields[1]), "webhook-signature", good)
		if err := v.Verify(fields[2], h); err == nil {
			t.Fatalf("a one-byte change to field %d still verifies", int(where)%3)
		}
	})
}

// FuzzNextField checks the allocation-free splitter against strings.Fields.
func FuzzNextField(f *testing.F) {
	for _, s := range separators {
		f.Add("v1,a" + s + "v1,b" + s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := strings.Fields(s)
		rest := s
		for i := 0; ; i++ {
			var got string
			got, rest = nextField(rest)
			if got == "" {
				if i != len(want) {
					t.Fatalf("%q: %d fields, strings.Fields has %d", s, i, len(want))
				}
				return
			}
			if i >= len(want) || got != want[i] {
				t.Fatalf("%q: field %d = %q, strings.Fields %q", s, i, got, want)
			}
		}
	})
}
