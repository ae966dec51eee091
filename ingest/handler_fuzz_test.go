package ingest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzHandler drives the whole handler with arbitrary method, path, headers
// and body, optionally signed correctly. Properties: it never panics; it
// answers only statuses from the contract, always with a JSON body; it
// publishes only verified deliveries, byte for byte; and it never answers
// 3xx or 410.
func FuzzHandler(f *testing.F) {
	f.Add("POST", "/webhooks/openai", "wh_1", "1790000000", "", []byte(testBody), true)
	f.Add("POST", "/webhooks/openai", "wh_1", "1790000000", "v1,AAAA", []byte(testBody), false)
	f.Add("GET", "/webhooks/openai", "", "", "", []byte(nil), false)
	f.Add("POST", "/webhooks/openai/../x", "wh_1", "1790000000", "", []byte("{}"), true)
	f.Add("POST", "/webhooks/openai", "wh_2", "+1790000000", "", []byte(`{"type":"a..b"}`), true)
	f.Add("POST", "/webhooks/openai", "wh_3", "1790000000", "", []byte("\xff\xfe not utf8"), true)
	f.Add("POST", "/webhooks/openai", "wh_4", "1790000000", "", []byte(strings.Repeat("[", 20000)), true)
	allowed := map[int]bool{200: true, 400: true, 401: true, 404: true, 405: true, 409: true, 413: true, 503: true}
	f.Fuzz(func(t *testing.T, method, path, id, ts, sig string, body []byte, signIt bool) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " ?#\x00\r\n") {
			t.Skip()
		}
		if _, err := url.ParseRequestURI(path); err != nil {
			t.Skip() // net/http's server answers 400 before any handler runs
		}
		pub := &fakePublisher{}
		h := newTestHandler(t, pub, &fakeDeduper{})
		r := httptest.NewRequest(method, "http://x"+path, bytes.NewReader(body))
		setRaw(r.Header, "webhook-id", id)
		setRaw(r.Header, "webhook-timestamp", ts)
		if signIt {
			sig = signRaw(t, strings.TrimSpace(id), strings.TrimSpace(ts), body)
		}
		setRaw(r.Header, "webhook-signature", sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if !allowed[w.Code] {
			t.Fatalf("status %d is not in the contract", w.Code)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("response is not JSON: %q", w.Body.String())
		}
		if w.Code == 200 {
			if pub.count() != 1 || !bytes.Equal(pub.got[0].Body, body) {
				t.Fatalf("200 without a byte-exact publish")
			}
			if err := h.cfg.Verifier.Verify(body, r.Header); err != nil {
				t.Fatalf("published an unverifiable delivery: %v", err)
			}
		} else if pub.count() != 0 {
			t.Fatalf("status %d but published", w.Code)
		}
	})
}

func validMethod(m string) bool {
	if m == "" || len(m) > 16 {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// setRaw sets a header the way net/http's server would have received it,
// skipping values that could not appear on the wire.
func setRaw(h http.Header, k, v string) {
	if v == "" || strings.ContainsAny(v, "\r\n\x00") {
		return
	}
	h.Set(k, strings.TrimSpace(v))
}
