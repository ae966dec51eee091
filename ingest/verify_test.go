package ingest

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/webhooks"

	"github.com/hookbridge/hookbridge/schema"
)

// The vector from openai-go's webhooks/webhook_test.go (shared with openai-node).
const (
	vecSecret = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="
	vecID     = "wh_685c059ae39c8190af8c71ed1022a24d"
	vecTime   = 1750861210
	vecTS     = "1750861210"
	vecSig    = "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY="
	vecBody   = `{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": 1750861210, "type": "response.completed", "data": {"id": "resp_123"}}`
)

var (
	vecKey, _ = base64.StdEncoding.DecodeString(strings.TrimPrefix(vecSecret, "whsec_"))
	keyB      = []byte("second-secret-for-rotation-0123456789")
	secB      = "whsec_" + base64.StdEncoding.EncodeToString(keyB)
	edPriv    = ed25519.NewKeyFromSeed([]byte("hookbridge-test-ed25519-seed-32b"))
	edPub     = "whpk_" + base64.StdEncoding.EncodeToString(edPriv.Public().(ed25519.PublicKey))
)

// mac is the HMAC text a correct sender puts after "v1,".
func mac(key []byte, id, ts, body string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id + "." + ts + "." + body))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func edSig(id, ts, body string) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(edPriv, []byte(id+"."+ts+"."+body)))
}

// hdr builds an http.Header with Set (canonical keys, as net/http does), from
// name/value pairs; a header left out is missing.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func vecHeaders(sig string) http.Header {
	return hdr("webhook-signature", sig, "webhook-timestamp", vecTS, "webhook-id", vecID)
}

func mustSecrets(t testing.TB, ss ...string) []Secret {
	t.Helper()
	out := make([]Secret, len(ss))
	for i, s := range ss {
		sec, err := ParseSecret(s)
		if err != nil {
			t.Fatalf("ParseSecret #%d: %v", i+1, err)
		}
		out[i] = sec
	}
	return out
}

func fixedClock(unix int64) func() time.Time {
	return func() time.Time { return time.Unix(unix, 0) }
}

// openaiVerify is the reference verdict. openai-go takes one secret, so a list
// is accepted when any of its secrets is accepted.
func openaiVerify(secrets []string, body []byte, h http.Header, tol time.Duration, now int64) error {
	var err error
	for _, s := range secrets {
		svc := webhooks.NewWebhookService(option.WithWebhookSecret(s))
		if err = svc.VerifySignatureWithToleranceAndTime(body, h, tol, time.Unix(now, 0)); err == nil {
			return nil
		}
	}
	return err
}

func TestVerify(t *testing.T) {
	good := mac(vecKey, vecID, vecTS, vecBody)
	rawKey := "my raw secret, not base64"
	urlSafe := strings.NewReplacer("+", "-", "/", "_").Replace(vecSig)
	maxInt := strconv.FormatInt(math.MaxInt64, 10)
	minInt := strconv.FormatInt(math.MinInt64, 10)

	type tc struct {
		name    string
		secrets []string // default {vecSecret}
		tol     time.Duration
		now     int64 // default vecTime
		body    string
		h       Headers
		want    *VerifyError
		wantIdx int
	}
	// c fills in the defaults so each case states only what it is about.
	c := func(name string, h Headers, want *VerifyError, mod ...func(*tc)) tc {
		x := tc{name: name, secrets: []string{vecSecret}, tol: DefaultTolerance, now: vecTime, body: vecBody, h: h, want: want}
		for _, m := range mod {
			m(&x)
		}
		return x
	}
	at := func(now int64) func(*tc) { return func(x *tc) { x.now = now } }
	tol := func(d time.Duration) func(*tc) { return func(x *tc) { x.tol = d } }
	body := func(b string) func(*tc) { return func(x *tc) { x.body = b } }
	secrets := func(s ...string) func(*tc) { return func(x *tc) { x.secrets = s } }
	idx := func(i int) func(*tc) { return func(x *tc) { x.wantIdx = i } }
	signedTS := func(ts string) http.Header {
		return hdr("webhook-signature", "v1,"+mac(vecKey, vecID, ts, vecBody), "webhook-timestamp", ts, "webhook-id", vecID)
	}

	cases := []tc{
		// The real vector.
		c("openai vector", vecHeaders(vecSig), nil),
		c("openai vector 300s later", vecHeaders(vecSig), nil, at(vecTime+300)),
		c("openai vector 301s later", vecHeaders(vecSig), ErrTooOld, at(vecTime+301)),
		c("openai vector 300s early", vecHeaders(vecSig), nil, at(vecTime-300)),
		c("openai vector 301s early", vecHeaders(vecSig), ErrTooNew, at(vecTime-301)),

		// Tolerance boundaries and truncation to whole seconds.
		c("tol 0 same second", vecHeaders(vecSig), nil, tol(0)),
		c("tol 0 one late", vecHeaders(vecSig), ErrTooOld, tol(0), at(vecTime+1)),
		c("tol 0 one early", vecHeaders(vecSig), ErrTooNew, tol(0), at(vecTime-1)),
		c("tol 10s at +10", vecHeaders(vecSig), nil, tol(10*time.Second), at(vecTime+10)),
		c("tol 10s at +11", vecHeaders(vecSig), ErrTooOld, tol(10*time.Second), at(vecTime+11)),
		c("tol 10s at -10", vecHeaders(vecSig), nil, tol(10*time.Second), at(vecTime-10)),
		c("tol 10s at -11", vecHeaders(vecSig), ErrTooNew, tol(10*time.Second), at(vecTime-11)),
		c("tol 1.9s truncates to 1 at +1", vecHeaders(vecSig), nil, tol(1900*time.Millisecond), at(vecTime+1)),
		c("tol 1.9s truncates to 1 at +2", vecHeaders(vecSig), ErrTooOld, tol(1900*time.Millisecond), at(vecTime+2)),
		c("tol 999ms truncates to 0 at -1", vecHeaders(vecSig), ErrTooNew, tol(999*time.Millisecond), at(vecTime-1)),
		c("freshness before signature (old)", vecHeaders("v1,bad"), ErrTooOld, at(vecTime+301)),
		c("freshness before signature (new)", vecHeaders("v1,bad"), ErrTooNew, at(vecTime-301)),
		c("max tolerance", vecHeaders(vecSig), nil, tol(math.MaxInt64), at(vecTime+1<<33)),

		// Missing and empty headers, in openai-go's order.
		c("no headers", http.Header{}, ErrMissingSignature),
		c("nil http.Header", http.Header(nil), ErrMissingSignature),
		c("missing signature", hdr("webhook-timestamp", vecTS, "webhook-id", vecID), ErrMissingSignature),
		c("empty signature", hdr("webhook-signature", "", "webhook-timestamp", vecTS, "webhook-id", vecID), ErrMissingSignature),
		c("missing timestamp", hdr("webhook-signature", vecSig, "webhook-id", vecID), ErrMissingTimestamp),
		c("empty timestamp", hdr("webhook-signature", vecSig, "webhook-timestamp", "", "webhook-id", vecID), ErrMissingTimestamp),
		c("missing id", hdr("webhook-signature", vecSig, "webhook-timestamp", vecTS), ErrMissingID),
		c("empty id", hdr("webhook-signature", vecSig, "webhook-timestamp", vecTS, "webhook-id", ""), ErrMissingID),
		c("id checked before timestamp format", hdr("webhook-signature", vecSig, "webhook-timestamp", "x"), ErrMissingID),
		c("whitespace signature is present", hdr("webhook-signature", " ", "webhook-timestamp", vecTS, "webhook-id", vecID), ErrNoMatch),

		// Header name case.
		c("http.Header Set with odd case", hdr("WEBHOOK-SIGNATURE", vecSig, "Webhook-TIMESTAMP", vecTS, "wEbHoOk-Id", vecID), nil),
		c("http.Header literal canonical keys", http.Header{"Webhook-Signature": {vecSig}, "Webhook-Timestamp": {vecTS}, "Webhook-Id": {vecID}}, nil),
		// A raw map literal with non-canonical keys is not found: http.Header.Get
		// looks up the canonical key only, exactly as openai-go does.
		c("http.Header literal lowercase keys", http.Header{"webhook-signature": {vecSig}, "webhook-timestamp": {vecTS}, "webhook-id": {vecID}}, ErrMissingSignature),
		c("http.Header first value wins", http.Header{"Webhook-Signature": {vecSig, "v1,x"}, "Webhook-Timestamp": {vecTS, "1"}, "Webhook-Id": {vecID, "y"}}, nil),
		c("http.Header empty first value", http.Header{"Webhook-Signature": {"", vecSig}, "Webhook-Timestamp": {vecTS}, "Webhook-Id": {vecID}}, ErrMissingSignature),
		c("HeaderPairs lowercase", HeaderPairs("webhook-signature", vecSig, "webhook-timestamp", vecTS, "webhook-id", vecID), nil),
		c("HeaderPairs odd case", HeaderPairs("WebHook-ID", vecID, "WEBHOOK-timestamp", vecTS, "Webhook-Signature", vecSig), nil),
		c("HeaderPairs first wins", HeaderPairs("webhook-signature", "v1,x", "webhook-signature", vecSig, "webhook-timestamp", vecTS, "webhook-id", vecID), ErrNoMatch),
		c("HeaderPairs empty value", HeaderPairs("webhook-signature", vecSig, "webhook-timestamp", vecTS, "webhook-id", ""), ErrMissingID),
		c("HeaderPairs dangling name", HeaderPairs("webhook-signature", vecSig, "webhook-timestamp", vecTS, "webhook-id"), ErrMissingID),

		// Candidates.
		c("second of two, space", vecHeaders("v1,AAAA "+vecSig), nil),
		c("tab separated", vecHeaders("v1,AAAA\t"+vecSig), nil),
		c("newline separated", vecHeaders("v1,AAAA\n"+vecSig), nil),
		c("many spaces and edges", vecHeaders("  v1,AAAA  \r\n "+vecSig+"  "), nil),
		c("NBSP separated (unicode space)", vecHeaders("v1,AAAA\u00a0"+vecSig), nil),
		c("NEL separated (unicode space)", vecHeaders("v1,AAAA\u0085"+vecSig), nil),
		c("invalid utf-8 is not a separator", vecHeaders("v1,AAAA\xa0"+vecSig), ErrNoMatch),
		c("comma is not a separator", vecHeaders("v1,AAAA,"+vecSig), ErrNoMatch),
		c("bare token without version", vecHeaders(good), nil),
		c("v1a token without public key", vecHeaders("v1a,"+good), ErrNoMatch),
		c("v2 token", vecHeaders("v2,"+good), ErrNoMatch),
		c("V1 uppercase", vecHeaders("V1,"+good), ErrNoMatch),
		c("v1 stripped once only", vecHeaders("v1,v1,"+good), ErrNoMatch),
		c("unpadded signature", vecHeaders("v1,"+strings.TrimRight(good, "=")), ErrNoMatch),
		c("url-safe signature", vecHeaders(urlSafe), ErrNoMatch),
		c("signature with trailing junk", vecHeaders(vecSig+"x"), ErrNoMatch),
		c("raw HMAC bytes are not base64", vecHeaders("v1,"+string(must(base64.StdEncoding.DecodeString(good)))), ErrNoMatch),

		// Secrets.
		c("unprefixed secret is raw bytes", hdr("webhook-signature", "v1,"+mac([]byte(rawKey), vecID, vecTS, vecBody), "webhook-timestamp", vecTS, "webhook-id", vecID), nil, secrets(rawKey)),
		c("unprefixed base64 text is not decoded", vecHeaders(vecSig), ErrNoMatch, secrets(strings.TrimPrefix(vecSecret, "whsec_"))),
		c("rotation: second secret matches", hdr("webhook-signature", "v1,"+mac(keyB, vecID, vecTS, vecBody), "webhook-timestamp", vecTS, "webhook-id", vecID), nil, secrets(vecSecret, secB), idx(1)),
		c("rotation: first secret matches", vecHeaders(vecSig), nil, secrets(vecSecret, secB), idx(0)),
		c("rotation: both signatures sent", vecHeaders("v1,"+mac(keyB, vecID, vecTS, vecBody)+" "+vecSig), nil, secrets(secB, vecSecret), idx(0)),
		c("rotation: neither matches", vecHeaders(vecSig), ErrNoMatch, secrets(secB, rawKey)),

		// Signed content.
		c("body differs by one byte", vecHeaders(vecSig), ErrNoMatch, body(strings.Replace(vecBody, "resp_123", "resp_124", 1))),
		c("body with trailing newline", vecHeaders(vecSig), ErrNoMatch, body(vecBody+"\n")),
		c("signed with trailing newline", vecHeaders("v1,"+mac(vecKey, vecID, vecTS, vecBody+"\n")), nil, body(vecBody+"\n")),
		c("empty body signed", vecHeaders("v1,"+mac(vecKey, vecID, vecTS, "")), nil, body("")),
		c("invalid utf-8 body signed", vecHeaders("v1,"+mac(vecKey, vecID, vecTS, "\xff\xfe")), nil, body("\xff\xfe")),
		c("id differs", hdr("webhook-signature", vecSig, "webhook-timestamp", vecTS, "webhook-id", vecID+"x"), ErrNoMatch),
		c("timestamp +ts signed as sent", signedTS("+"+vecTS), nil),
		c("timestamp 0ts signed as sent", signedTS("0"+vecTS), nil),
		c("timestamp +ts signed canonical", hdr("webhook-signature", vecSig, "webhook-timestamp", "+"+vecTS, "webhook-id", vecID), ErrNoMatch),

		// Timestamp format.
		c("timestamp trailing space", signedTS(vecTS+" "), ErrBadTimestamp),
		c("timestamp leading space", signedTS(" "+vecTS), ErrBadTimestamp),
		c("timestamp fractional", signedTS(vecTS+".5"), ErrBadTimestamp),
		c("timestamp overflow", signedTS("9223372036854775808"), ErrBadTimestamp),
		c("timestamp underscores", signedTS("1_750_861_210"), ErrBadTimestamp),
		c("timestamp hex", signedTS("0x68"), ErrBadTimestamp),
		c("timestamp milliseconds", signedTS(vecTS+"000"), ErrTooNew),
		c("timestamp negative", signedTS("-1"), ErrTooOld),
		c("timestamp max int64", signedTS(maxInt), ErrTooNew),
		// now-MinInt64 wraps to a negative number in openai-go's int64
		// arithmetic, so a correctly signed absurd timestamp passes there; we
		// must agree (only a holder of the secret can produce it).
		c("timestamp min int64 wraps like openai-go", signedTS(minInt), nil),

		// ed25519 (beyond OpenAI).
		c("whpk valid v1a", vecHeaders("v1a,"+edSig(vecID, vecTS, vecBody)), nil, secrets(edPub)),
		c("whpk after hmac secret", vecHeaders("v1,AAAA v1a,"+edSig(vecID, vecTS, vecBody)), nil, secrets(vecSecret, edPub), idx(1)),
		c("whpk wrong body", vecHeaders("v1a,"+edSig(vecID, vecTS, vecBody+" ")), ErrNoMatch, secrets(edPub)),
		c("whpk malformed signature", vecHeaders("v1a,"+edSig(vecID, vecTS, vecBody)+"x"), ErrNoMatch, secrets(edPub)),
		c("whpk unpadded signature", vecHeaders("v1a,"+strings.TrimRight(edSig(vecID, vecTS, vecBody), "=")), ErrNoMatch, secrets(edPub)),
		c("whpk bare signature", vecHeaders(edSig(vecID, vecTS, vecBody)), ErrNoMatch, secrets(edPub)),
		c("whpk does not verify v1", vecHeaders(vecSig), ErrNoMatch, secrets(edPub)),
		c("whpk too old", vecHeaders("v1a,"+edSig(vecID, vecTS, vecBody)), ErrTooOld, secrets(edPub), at(vecTime+301)),
	}

	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(mustSecrets(t, tt.secrets...), WithTolerance(tt.tol), WithClock(fixedClock(tt.now)))
			if err != nil {
				t.Fatal(err)
			}
			var want error // not a typed nil
			if tt.want != nil {
				want = tt.want
			}
			i, err := v.VerifyIndex([]byte(tt.body), tt.h)
			if err != want { // pointer identity is the contract
				t.Fatalf("VerifyIndex error = %v, want %v", err, want)
			}
			wantIdx := tt.wantIdx
			if tt.want != nil {
				wantIdx = -1
			}
			if i != wantIdx {
				t.Errorf("VerifyIndex index = %d, want %d", i, wantIdx)
			}
			if err != nil {
				if !errors.Is(v.Verify([]byte(tt.body), tt.h), tt.want) {
					t.Errorf("errors.Is(Verify(...), %v) = false", tt.want)
				}
				if tt.h != nil {
					if sig := tt.h.Get(HeaderSignature); len(sig) > 3 && strings.Contains(err.Error(), sig) {
						t.Errorf("error %q contains the signature", err)
					}
				}
			}

			// The reference agrees wherever it applies (http.Header, no whpk_).
			h, ok := tt.h.(http.Header)
			if !ok || strings.Contains(strings.Join(tt.secrets, " "), "whpk_") {
				return
			}
			ref := openaiVerify(tt.secrets, []byte(tt.body), h, tt.tol, tt.now)
			if (ref == nil) != (err == nil) {
				t.Errorf("openai-go says %v, we say %v", ref, err)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestVerifyErrorReasons(t *testing.T) {
	all := []*VerifyError{ErrMissingSignature, ErrMissingTimestamp, ErrMissingID, ErrBadTimestamp, ErrTooOld, ErrTooNew, ErrNoMatch}
	want := []string{"missing_signature", "missing_timestamp", "missing_id", "bad_timestamp", "too_old", "too_new", "no_match"}
	for i, e := range all {
		t.Run(want[i], func(t *testing.T) {
			if e.Reason != want[i] {
				t.Errorf("Reason = %q, want %q", e.Reason, want[i])
			}
			if !strings.HasPrefix(e.Error(), "ingest: ") || !strings.HasSuffix(e.Error(), e.Message) {
				t.Errorf("Error() = %q", e.Error())
			}
			for j, other := range all {
				if j != i && errors.Is(e, other) {
					t.Errorf("errors.Is(%s, %s)", e.Reason, other.Reason)
				}
			}
		})
	}
}

func TestVerifierDefaultsToFiveMinutesAndTheClock(t *testing.T) {
	now := time.Now().Unix()
	v, err := NewVerifier(mustSecrets(t, vecSecret))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ts   int64
		want error
	}{
		{"now", now, nil},
		{"four minutes ago", now - 240, nil},
		{"ten minutes ago", now - 600, ErrTooOld},
		{"ten minutes ahead", now + 600, ErrTooNew},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := strconv.FormatInt(tc.ts, 10)
			h := hdr("webhook-signature", "v1,"+mac(vecKey, vecID, ts, vecBody), "webhook-timestamp", ts, "webhook-id", vecID)
			if err := v.Verify([]byte(vecBody), h); err != tc.want {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestNewVerifierErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets []Secret
		opts    []VerifierOption
		want    error
	}{
		{"nil secrets", nil, nil, ErrNoSecrets},
		{"zero secret", []Secret{{}}, nil, ErrSecretEmpty},
		{"negative tolerance", mustSecrets(t, vecSecret), []VerifierOption{WithTolerance(-time.Second)}, ErrNegativeTolerance},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(tc.secrets, tc.opts...)
			if !errors.Is(err, tc.want) || v != nil {
				t.Fatalf("NewVerifier = %v, %v; want nil, %v", v, err, tc.want)
			}
		})
	}
	t.Run("nil clock keeps time.Now", func(t *testing.T) {
		v, err := NewVerifier(mustSecrets(t, vecSecret), WithClock(nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify([]byte(vecBody), vecHeaders(vecSig)); err != ErrTooOld {
			t.Fatalf("Verify of a 2025 vector = %v, want too old", err)
		}
	})
}

func TestSetSecrets(t *testing.T) {
	v, err := NewVerifier(mustSecrets(t, secB), WithClock(fixedClock(vecTime)))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify([]byte(vecBody), vecHeaders(vecSig)); err != ErrNoMatch {
		t.Fatalf("before rotation: %v", err)
	}
	if err := v.SetSecrets(mustSecrets(t, secB, vecSecret)); err != nil {
		t.Fatal(err)
	}
	if i, err := v.VerifyIndex([]byte(vecBody), vecHeaders(vecSig)); err != nil || i != 1 {
		t.Fatalf("after rotation: %d, %v", i, err)
	}
	if err := v.SetSecrets(nil); !errors.Is(err, ErrNoSecrets) {
		t.Fatalf("SetSecrets(nil) = %v", err)
	}
	if err := v.Verify([]byte(vecBody), vecHeaders(vecSig)); err != nil {
		t.Fatalf("a failed SetSecrets changed the secrets: %v", err)
	}
}

// The last-match ordering must never change a verdict or an index.
func TestVerifyIndexAcrossRotationTraffic(t *testing.T) {
	raw := "raw-third-secret"
	v, err := NewVerifier(mustSecrets(t, vecSecret, secB, edPub, raw), WithClock(fixedClock(vecTime)))
	if err != nil {
		t.Fatal(err)
	}
	sigs := map[string]int{
		vecSig:                                          0,
		"v1," + mac(keyB, vecID, vecTS, vecBody):        1,
		"v1a," + edSig(vecID, vecTS, vecBody):           2,
		"v1," + mac([]byte(raw), vecID, vecTS, vecBody): 3,
		"v1,AAAA": -1,
	}
	order := []string{vecSig, "v1,AAAA", "v1," + mac(keyB, vecID, vecTS, vecBody), "v1," + mac(keyB, vecID, vecTS, vecBody), "v1a," + edSig(vecID, vecTS, vecBody), vecSig, "v1," + mac([]byte(raw), vecID, vecTS, vecBody), "v1,AAAA", vecSig}
	for n, sig := range order {
		i, err := v.VerifyIndex([]byte(vecBody), vecHeaders(sig))
		if want := sigs[sig]; i != want || (err == nil) != (want >= 0) {
			t.Fatalf("delivery %d: VerifyIndex = %d, %v; want %d", n, i, err, want)
		}
	}
}

// Run with -race: verifications racing with rotations must never fail for a
// secret present in every set, nor race.
func TestSetSecretsConcurrent(t *testing.T) {
	a, b := mustSecrets(t, vecSecret), mustSecrets(t, secB, vecSecret)
	v, err := NewVerifier(a, WithClock(fixedClock(vecTime)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			set := a
			if i%2 == 1 {
				set = b
			}
			if err := v.SetSecrets(set); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var failures sync.Map
	var vw sync.WaitGroup
	for g := 0; g < 4; g++ {
		vw.Add(1)
		go func() {
			defer vw.Done()
			h := vecHeaders(vecSig)
			for range 2000 {
				if err := v.Verify([]byte(vecBody), h); err != nil {
					failures.Store(err, true)
				}
			}
		}()
	}
	vw.Wait()
	close(stop)
	wg.Wait()
	failures.Range(func(k, _ any) bool {
		t.Errorf("Verify failed during rotation: %v", k)
		return true
	})
}

func TestUnwrap(t *testing.T) {
	v, err := NewVerifier(mustSecrets(t, vecSecret), WithClock(fixedClock(vecTime)))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("event", func(t *testing.T) {
		ev, err := v.Unwrap([]byte(vecBody), vecHeaders(vecSig))
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != "response.completed" || ev.ID != "evt_685c059ae3a481909bdc86819b066fb6" || ev.ObjectID() != "resp_123" {
			t.Fatalf("event = %+v", ev)
		}
	})
	t.Run("verified but not an event", func(t *testing.T) {
		body := `["not an object"]`
		ev, err := v.Unwrap([]byte(body), vecHeaders("v1,"+mac(vecKey, vecID, vecTS, body)))
		var pe *schema.ParseError
		if ev != nil || !errors.As(err, &pe) || pe.Reason != schema.ReasonNotObject {
			t.Fatalf("Unwrap = %v, %v; want a not_object ParseError", ev, err)
		}
		var ve *VerifyError
		if errors.As(err, &ve) {
			t.Fatal("a parse failure must not look like a verification failure")
		}
	})
	t.Run("not verified", func(t *testing.T) {
		ev, err := v.Unwrap([]byte(vecBody+" "), vecHeaders(vecSig))
		if ev != nil || err != ErrNoMatch {
			t.Fatalf("Unwrap = %v, %v; want nil, ErrNoMatch", ev, err)
		}
	})
}

func TestNextFieldMatchesStringsFields(t *testing.T) {
	for _, s := range []string{
		"", " ", "a", " a ", "a b", "a\tb\nc\rd\ve\ff", "a  \t b",
		"a\u00a0b", "a\u0085b", "a\u2003b", "a\u3000b", "a\u200bb", // U+200B is not a space
		"a\xa0b", "a\xc2b", "\xc2\x85", "\xff \xfe", "v1,x\u2028v1,y",
	} {
		t.Run(strconv.Quote(s), func(t *testing.T) {
			var got []string
			for rest := s; ; {
				var f string
				f, rest = nextField(rest)
				if f == "" {
					break
				}
				got = append(got, f)
			}
			want := strings.Fields(s)
			if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
				t.Fatalf("nextField split %q into %q, strings.Fields into %q", s, got, want)
			}
		})
	}
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func TestVerifyDoesNotAllocate(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector makes sync.Pool drop items on purpose")
	}
	v, err := NewVerifier(mustSecrets(t, secB, vecSecret), WithClock(fixedClock(vecTime)))
	if err != nil {
		t.Fatal(err)
	}
	body, h := []byte(vecBody), vecHeaders(vecSig)
	allocs := testing.AllocsPerRun(100, func() {
		if err := v.Verify(body, h); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("Verify allocates %.1f times per call, want 0", allocs)
	}
}
