package ingest_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/hookbridge/hookbridge/ingest"
)

// A delivery recorded from OpenAI (the vector in openai-go's tests).
const (
	secret    = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="
	webhookID = "wh_685c059ae39c8190af8c71ed1022a24d"
	timestamp = "1750861210"
	signature = "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY="
	payload   = `{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": 1750861210, "type": "response.completed", "data": {"id": "resp_123"}}`
)

// recorded pins the clock to the delivery's time so the example stays valid;
// a real handler leaves the clock alone.
var recorded = ingest.WithClock(func() time.Time { return time.Unix(1750861210, 0) })

// Verifying inside your own net/http handler: read the raw body (bounded),
// verify it with r.Header, and only then trust it.
func ExampleVerifier_Verify() {
	secrets, err := ingest.ParseSecrets(secret) // e.g. os.Getenv("OPENAI_WEBHOOK_SECRET")
	if err != nil {
		panic(err) // fail at start-up, not on every delivery
	}
	v, err := ingest.NewVerifier(secrets, recorded)
	if err != nil {
		panic(err)
	}

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "too_large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := v.Verify(body, r.Header); err != nil {
			var ve *ingest.VerifyError
			errors.As(err, &ve)
			status := http.StatusUnauthorized
			if errors.Is(err, ingest.ErrBadTimestamp) || strings.HasPrefix(ve.Reason, "missing_") {
				status = http.StatusBadRequest
			}
			http.Error(w, ve.Reason, status)
			return
		}
		fmt.Fprintln(w, "ok")
	})

	for _, body := range []string{payload, strings.Replace(payload, "resp_123", "resp_999", 1)} {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/openai", strings.NewReader(body))
		req.Header.Set("webhook-id", webhookID)
		req.Header.Set("webhook-timestamp", timestamp)
		req.Header.Set("webhook-signature", signature)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	// Output:
	// 200 ok
	// 401 no_match
}

// Unwrap verifies and then parses the envelope. Headers that do not come from
// net/http can be given as name/value pairs, in any case.
func ExampleVerifier_Unwrap() {
	secrets, err := ingest.ParseSecrets(secret)
	if err != nil {
		panic(err)
	}
	v, err := ingest.NewVerifier(secrets, recorded)
	if err != nil {
		panic(err)
	}

	h := ingest.HeaderPairs(
		"Webhook-Id", webhookID,
		"webhook-timestamp", timestamp,
		"WEBHOOK-SIGNATURE", signature,
	)
	ev, err := v.Unwrap([]byte(payload), h)
	if err != nil {
		panic(err)
	}
	fmt.Println(ev.Type, ev.ID, ev.ObjectID())

	_, err = v.Unwrap([]byte(payload), ingest.HeaderPairs("webhook-id", webhookID, "webhook-signature", signature))
	fmt.Println(err, errors.Is(err, ingest.ErrMissingTimestamp))
	// Output:
	// response.completed evt_685c059ae3a481909bdc86819b066fb6 resp_123
	// ingest: missing required webhook-timestamp header true
}

// During a rotation, configure both secrets; VerifyIndex says which matched,
// so you know when the old one can go.
func ExampleVerifier_VerifyIndex() {
	secrets, err := ingest.ParseSecrets("whsec_bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQ=, " + secret)
	if err != nil {
		panic(err)
	}
	v, err := ingest.NewVerifier(secrets, recorded)
	if err != nil {
		panic(err)
	}
	i, err := v.VerifyIndex([]byte(payload), http.Header{
		"Webhook-Id":        {webhookID},
		"Webhook-Timestamp": {timestamp},
		"Webhook-Signature": {signature},
	})
	fmt.Println(i, err, secrets[i])
	// Output: 1 <nil> whsec_[REDACTED]
}

// Signing a delivery as OpenAI does, for a test of your handler or a load
// generator: Sign for one, a Signer (one per goroutine) for many.
func ExampleSign() {
	s, err := ingest.ParseSecret(secret)
	if err != nil {
		panic(err)
	}
	sig, err := ingest.Sign(s, webhookID, timestamp, []byte(payload))
	if err != nil {
		panic(err) // a whpk_ public key cannot sign
	}
	fmt.Println(sig == signature)
	// Output: true
}
