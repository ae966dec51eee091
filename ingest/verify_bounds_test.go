package ingest

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// refCandidates is the rule candidates implements, written plainly: the
// tokens of the whole header (strings.Fields), those that end within the
// first MaxSignatureHeaderBytes bytes, the first MaxSignatureCandidates of
// them.
func refCandidates(sig string) []string {
	var out []string
	for rest := sig; len(out) < MaxSignatureCandidates; {
		tok, after := nextField(rest)
		if tok == "" || len(sig)-len(after) > MaxSignatureHeaderBytes {
			break
		}
		out = append(out, tok)
		rest = after
	}
	return out
}

func checkCandidates(t *testing.T, sig string) {
	t.Helper()
	got := candidates(sig)
	if !strings.HasPrefix(sig, got) {
		t.Fatalf("candidates(%q) = %q is not a prefix of the header", sig, got)
	}
	want := refCandidates(sig)
	if f := strings.Fields(got); strings.Join(f, "\x00") != strings.Join(want, "\x00") || len(f) != len(want) {
		t.Fatalf("candidates of a %d-byte header: %d tokens %.80q…, want %d %.80q…", len(sig), len(f), f, len(want), want)
	}
}

func TestCandidates(t *testing.T) {
	tok := "v1," + strings.Repeat("A", 43) + "="
	v1a := "v1a," + strings.Repeat("B", 86) + "=="
	long := strings.Repeat("x", MaxSignatureHeaderBytes-3)
	for _, sig := range []string{
		"", " ", tok, tok + " " + tok,
		strings.Repeat(tok+" ", 7) + tok, // 8: all kept
		strings.Repeat(tok+" ", 8) + tok, // 9: the last one dropped
		strings.Repeat(v1a+"\t", 600),    // the flood
		strings.Repeat(" ", 5000) + tok,  // the token ends beyond the bound
		long + " " + tok,                 // ends at 4096+44: dropped
		long + " ab",                     // ends exactly at the bound: kept
		long + " abc",                    // one byte beyond: dropped
		long + "  ",                      // separators only after the token
		long + "\u3000" + tok,            // a 3-byte space straddling the bound
		strings.Repeat("x", MaxSignatureHeaderBytes-1) + "é" + " b", // a 2-byte rune straddling it
		strings.Repeat("a\u0085", 20),                               // non-ASCII separators count
		strings.Repeat("a\u00a0", 20),                               // U+00A0 is a space to strings.Fields
		strings.Repeat("a\xff ", 10),                                // invalid UTF-8 is part of a token
	} {
		checkCandidates(t, sig)
	}
}

func FuzzCandidates(f *testing.F) {
	for _, s := range separators {
		f.Add(strings.Repeat("v1,a"+s, 9), uint16(0))
	}
	f.Add("v1,x \u3000y", uint16(MaxSignatureHeaderBytes-4))
	f.Fuzz(func(t *testing.T, s string, pad uint16) {
		// pad moves the tail of s across the byte bound.
		checkCandidates(t, strings.Repeat("p", int(pad)%(MaxSignatureHeaderBytes+64))+s)
	})
}

// Beyond the bounds a correct signature is not looked at: the documented
// divergence from openai-go, which would accept these.
func TestVerifyIgnoresCandidatesBeyondTheBounds(t *testing.T) {
	v, err := NewVerifier(mustSecrets(t, vecSecret, edPub), WithClock(fixedClock(vecTime)))
	if err != nil {
		t.Fatal(err)
	}
	junk := "v1,AAAA"
	ed := "v1a," + edSig(vecID, vecTS, vecBody)
	for _, c := range []struct {
		name string
		sig  string
		want error
	}{
		{"v1 as the 8th", strings.Repeat(junk+" ", 7) + vecSig, nil},
		{"v1 as the 9th", strings.Repeat(junk+" ", 8) + vecSig, ErrNoMatch},
		{"v1a as the 8th", strings.Repeat(junk+" ", 7) + ed, nil},
		{"v1a as the 9th", strings.Repeat(junk+" ", 8) + ed, ErrNoMatch},
		{"v1 ending at the byte bound", strings.Repeat(" ", MaxSignatureHeaderBytes-len(vecSig)) + vecSig, nil},
		{"v1 one byte beyond it", strings.Repeat(" ", MaxSignatureHeaderBytes-len(vecSig)+1) + vecSig, ErrNoMatch},
	} {
		h := vecHeaders(c.sig)
		if got := v.Verify([]byte(vecBody), h); got != c.want {
			t.Errorf("%s: Verify = %v, want %v", c.name, got, c.want)
		}
		// openai-go has no bound; with only the v1 scheme it accepts both.
		if !strings.Contains(c.sig, "v1a,") {
			if ref := openaiVerify([]string{vecSecret}, []byte(vecBody), h, DefaultTolerance, vecTime); ref != nil {
				t.Errorf("%s: openai-go rejects it too (%v): the case shows no divergence", c.name, ref)
			}
		}
	}
}

// The v1a flood: hundreds of well-formed candidates cost what 8 cost.
func TestVerifyEd25519WorkIsBounded(t *testing.T) {
	v, err := NewVerifier(mustSecrets(t, edPub), WithClock(fixedClock(vecTime)))
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	orig := ed25519Verify
	ed25519Verify = func(pk ed25519.PublicKey, msg, sig []byte) bool {
		count++
		return orig(pk, msg, sig)
	}
	defer func() { ed25519Verify = orig }()
	fake := "v1a," + base64.StdEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))
	if err := v.Verify([]byte(vecBody), vecHeaders(strings.Repeat(fake+" ", 600))); err != ErrNoMatch {
		t.Fatalf("Verify = %v, want ErrNoMatch", err)
	}
	if count != MaxSignatureCandidates {
		t.Fatalf("600 v1a candidates cost %d ed25519 verifications, want %d", count, MaxSignatureCandidates)
	}
}

// CheckHeaders agrees with Verify on every verdict that needs no body.
func TestCheckHeaders(t *testing.T) {
	v, err := NewVerifier(mustSecrets(t, vecSecret), WithClock(fixedClock(vecTime)), WithTolerance(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []Headers{
		nil,
		vecHeaders(vecSig),
		vecHeaders("v1,AAAA"),
		hdr("webhook-timestamp", vecTS, "webhook-id", vecID),
		hdr("webhook-signature", vecSig, "webhook-id", vecID),
		hdr("webhook-signature", vecSig, "webhook-timestamp", vecTS),
		hdr("webhook-id", vecID),
		hdr("webhook-signature", vecSig, "webhook-timestamp", "12x", "webhook-id", vecID),
		hdr("webhook-signature", vecSig, "webhook-timestamp", "1750860909", "webhook-id", vecID),
		hdr("webhook-signature", vecSig, "webhook-timestamp", "1750861511", "webhook-id", vecID),
		hdr("webhook-signature", vecSig, "webhook-timestamp", "1750860910", "webhook-id", vecID),
	} {
		pre := v.CheckHeaders(h)
		full := v.Verify([]byte(vecBody), h)
		if full == ErrNoMatch || full == nil {
			if pre != nil {
				t.Errorf("%v: CheckHeaders = %v, Verify = %v", h, pre, full)
			}
		} else if pre != full {
			t.Errorf("%v: CheckHeaders = %v, Verify = %v", h, pre, full)
		}
	}
}
