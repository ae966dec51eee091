package ingest

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

// Sign reproduces openai-go's test vector, and what it signs verifies.
func TestSign(t *testing.T) {
	s, err := ParseSecret(vecSecret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Sign(s, vecID, vecTS, []byte(vecBody))
	if err != nil || got != vecSig {
		t.Fatalf("Sign = %q, %v; want %q", got, err, vecSig)
	}

	sg, err := NewSigner(s)
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := strconv.ParseInt(vecTS, 10, 64)
	v, err := NewVerifier([]Secret{s}, WithClock(func() time.Time { return time.Unix(ts, 0) }))
	if err != nil {
		t.Fatal(err)
	}
	// A reused Signer gives each delivery its own signature.
	for _, body := range []string{vecBody, "", "not json", vecBody + " "} {
		sig := sg.Sign(vecID, vecTS, []byte(body))
		if err := v.Verify([]byte(body), hdr("webhook-id", vecID, "webhook-timestamp", vecTS, "webhook-signature", sig)); err != nil {
			t.Errorf("Verify(Sign(%q)): %v", body, err)
		}
		if want := "v1," + mac(vecKey, vecID, vecTS, body); sig != want {
			t.Errorf("Sign(%q) = %q, want %q", body, sig, want)
		}
	}

	raw, err := ParseSecret("a raw secret, used as bytes")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := Sign(raw, "id", "1", nil); got != "v1,"+mac([]byte("a raw secret, used as bytes"), "id", "1", "") {
		t.Errorf("raw secret: %q", got)
	}

	pk, err := ParseSecret(edPub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(pk, vecID, vecTS, nil); !errors.Is(err, ErrCannotSign) {
		t.Errorf("Sign with a public key: %v, want ErrCannotSign", err)
	}
}

func TestSignerAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector adds allocations of its own")
	}
	s, _ := ParseSecret(vecSecret)
	sg, _ := NewSigner(s)
	body := []byte(vecBody)
	if n := testing.AllocsPerRun(100, func() { _ = sg.Sign(vecID, vecTS, body) }); n > 1 {
		t.Errorf("Signer.Sign allocates %v times, want 1 (the returned string)", n)
	}
}

func BenchmarkSign(b *testing.B) {
	s, _ := ParseSecret(vecSecret)
	sg, _ := NewSigner(s)
	body := []byte(vecBody)
	b.ReportAllocs()
	for b.Loop() {
		_ = sg.Sign(vecID, vecTS, body)
	}
}
