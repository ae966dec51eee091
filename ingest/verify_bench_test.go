package ingest

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/webhooks"
)

// benchDelivery is a 500-byte body signed with vecSecret at vecTime, with
// headers as net/http builds them.
func benchDelivery(b *testing.B) ([]byte, http.Header) {
	b.Helper()
	prefix := `{"id":"evt_685c059ae3a481909bdc86819b066fb6","object":"event","created_at":1750861210,"type":"batch.completed","data":{"id":"batch_abc123","note":"`
	body := prefix + strings.Repeat("x", 500-len(prefix)-3) + `"}}`
	if len(body) != 500 {
		b.Fatalf("body is %d bytes", len(body))
	}
	ts := strconv.FormatInt(vecTime, 10)
	return []byte(body), hdr("webhook-id", vecID, "webhook-timestamp", ts, "webhook-signature", "v1,"+mac(vecKey, vecID, ts, body))
}

func BenchmarkVerify(b *testing.B) {
	body, h := benchDelivery(b)
	for _, bc := range []struct {
		name    string
		secrets []string
		h       Headers
		want    error
	}{
		{"1secret", []string{vecSecret}, h, nil},
		{"2secrets_second_matches", []string{secB, vecSecret}, h, nil},
		{"1secret_HeaderPairs", []string{vecSecret}, HeaderPairs("webhook-id", h.Get(HeaderID), "webhook-timestamp", h.Get(HeaderTimestamp), "webhook-signature", h.Get(HeaderSignature)), nil},
		{"1secret_no_match", []string{secB}, h, ErrNoMatch},
		{"1secret_too_old", []string{vecSecret}, hdr("webhook-id", vecID, "webhook-timestamp", "1", "webhook-signature", vecSig), ErrTooOld},
		{"whpk", []string{edPub}, hdr("webhook-id", vecID, "webhook-timestamp", vecTS, "webhook-signature", "v1a,"+edSig(vecID, vecTS, string(body))), nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			v, err := NewVerifier(mustSecrets(b, bc.secrets...), WithClock(fixedClock(vecTime)))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := v.Verify(body, bc.h); err != bc.want {
					b.Fatalf("Verify = %v, want %v", err, bc.want)
				}
			}
		})
	}
	// Worst cases for two secrets, where both HMACs are computed: deliveries
	// alternately signed with each secret defeat the last-match ordering.
	b.Run("2secrets_alternating", func(b *testing.B) {
		v, err := NewVerifier(mustSecrets(b, secB, vecSecret), WithClock(fixedClock(vecTime)))
		if err != nil {
			b.Fatal(err)
		}
		hb := hdr("webhook-id", vecID, "webhook-timestamp", vecTS, "webhook-signature", "v1,"+mac(keyB, vecID, vecTS, string(body)))
		hs := [2]http.Header{h, hb}
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if err := v.Verify(body, hs[i&1]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("2secrets_no_match", func(b *testing.B) {
		v, err := NewVerifier(mustSecrets(b, secB, "raw-other-secret"), WithClock(fixedClock(vecTime)))
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if err := v.Verify(body, h); err != ErrNoMatch {
				b.Fatal(err)
			}
		}
	})
	b.Run("2secrets_parallel", func(b *testing.B) {
		v, err := NewVerifier(mustSecrets(b, secB, vecSecret), WithClock(fixedClock(vecTime)))
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := v.Verify(body, h); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	// The reference, for scale: what a handler calling openai-go pays.
	b.Run("openai-go_reference", func(b *testing.B) {
		svc := webhooks.NewWebhookService(option.WithWebhookSecret(vecSecret))
		now := time.Unix(vecTime, 0)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if err := svc.VerifySignatureWithToleranceAndTime(body, h, DefaultTolerance, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
