package ingest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/webhooks"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// openaiSecretErr returns openai-go's verdict on a secret alone: it decodes
// the secret before looking at headers, so any error with empty headers that
// is not about headers is about the secret.
func openaiSecretErr(secret string) error {
	svc := webhooks.NewWebhookService(option.WithWebhookSecret(secret))
	err := svc.VerifySignatureWithToleranceAndTime(nil, http.Header{}, time.Minute, time.Unix(0, 0))
	if err != nil && strings.Contains(err.Error(), "missing required webhook-signature header") {
		return nil
	}
	return err
}

func TestParseSecret(t *testing.T) {
	k32 := bytes.Repeat([]byte{0xfb}, 32) // encodes with + and /
	std := b64(k32)
	for _, tc := range []struct {
		name   string
		secret string
		want   error // nil, or the sentinel it must wrap
		kind   secretKind
		key    []byte
	}{
		{"openai test secret", vecSecret, nil, kindWhsec, vecKey},
		{"32 bytes", "whsec_" + std, nil, kindWhsec, k32},
		{"24 bytes (minimum)", "whsec_" + b64(k32[:24]), nil, kindWhsec, k32[:24]},
		{"64 bytes", "whsec_" + b64(bytes.Repeat(k32, 2)), nil, kindWhsec, bytes.Repeat(k32, 2)},
		{"23 bytes", "whsec_" + b64(k32[:23]), ErrSecretTooShort, 0, nil},
		{"16 bytes", "whsec_" + b64(k32[:16]), ErrSecretTooShort, 0, nil},
		{"prefix only", "whsec_", ErrSecretTooShort, 0, nil},
		{"unpadded", "whsec_" + strings.TrimRight(b64(k32[:31]), "="), ErrSecretFormat, 0, nil},
		{"url-safe alphabet", "whsec_" + base64.URLEncoding.EncodeToString(k32), ErrSecretFormat, 0, nil},
		{"non-zero trailing bits", strings.TrimSuffix(vecSecret, "c=") + "d=", ErrSecretFormat, 0, nil},
		{"line break (non-canonical)", strings.Replace(vecSecret, "+", "+\n", 1), ErrSecretFormat, 0, nil},
		{"trailing newline (non-canonical)", vecSecret + "\n", ErrSecretFormat, 0, nil},
		{"trailing space", vecSecret + " ", ErrSecretFormat, 0, nil},
		{"garbage", "whsec_!!!!", ErrSecretFormat, 0, nil},
		{"empty", "", ErrSecretEmpty, 0, nil},
		{"raw", "plain text secret", nil, kindRaw, []byte("plain text secret")},
		{"raw with the prefix stripped is not decoded", std, nil, kindRaw, []byte(std)},
		{"raw WHSEC_ is not a prefix", "WHSEC_" + std, nil, kindRaw, []byte("WHSEC_" + std)},
		{"raw one byte", "x", nil, kindRaw, []byte("x")},
		{"whpk 32 bytes", "whpk_" + std, nil, kindPublicKey, k32},
		{"whpk 31 bytes", "whpk_" + b64(k32[:31]), ErrPublicKeyFormat, 0, nil},
		{"whpk 33 bytes", "whpk_" + b64(append(k32, 1)), ErrPublicKeyFormat, 0, nil},
		{"whpk unpadded", "whpk_" + strings.TrimRight(b64(k32[:31]), "="), ErrPublicKeyFormat, 0, nil},
		{"whpk non-canonical", "whpk_" + std[:20] + "\n" + std[20:], ErrPublicKeyFormat, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSecret(tc.secret)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("ParseSecret: %v", err)
				}
				if s.kind != tc.kind || s.key != string(tc.key) {
					t.Fatalf("ParseSecret = kind %d key %x, want kind %d key %x", s.kind, s.key, tc.kind, tc.key)
				}
			} else {
				var se *SecretError
				if !errors.Is(err, tc.want) || !errors.As(err, &se) || s != (Secret{}) {
					t.Fatalf("ParseSecret = %v, %v; want a *SecretError wrapping %v", s, err, tc.want)
				}
				if enc := strings.TrimPrefix(strings.TrimPrefix(tc.secret, "whsec_"), "whpk_"); len(enc) > 3 && strings.Contains(err.Error(), enc) {
					t.Fatalf("error %q contains the secret", err)
				}
			}
			if strings.HasPrefix(tc.secret, "whpk_") {
				return // beyond openai-go, which would take it as a raw key
			}
			// Same verdict and, minus our prefix, the same words as openai-go.
			ref := openaiSecretErr(tc.secret)
			if (ref == nil) != (err == nil) {
				t.Fatalf("openai-go says %v, we say %v", ref, err)
			}
			if err != nil && tc.secret != "" && strings.TrimPrefix(err.Error(), "ingest: ") != ref.Error() {
				t.Errorf("message %q, openai-go %q", err, ref)
			}
		})
	}
}

func TestParseSecrets(t *testing.T) {
	raw := "raw-secret"
	for _, tc := range []struct {
		name    string
		list    string
		n       int
		wantErr []error
		wantMsg []string
	}{
		{"one", vecSecret, 1, nil, nil},
		{"comma", vecSecret + "," + secB, 2, nil, nil},
		{"space", vecSecret + " " + secB, 2, nil, nil},
		{"comma space and newline", vecSecret + ", " + secB + ",\n" + raw + "\n", 3, nil, nil},
		{"empty fields skipped", ",,\t" + vecSecret + " ,, ", 1, nil, nil},
		{"empty", "", 0, []error{ErrNoSecrets}, []string{"ingest: no webhook secrets configured"}},
		{"only separators", " ,\n, ", 0, []error{ErrNoSecrets}, nil},
		{
			"every problem by position", "whsec_AAA," + vecSecret + " whsec_" + b64([]byte("short")) + " whpk_x",
			0, []error{ErrSecretFormat, ErrSecretTooShort, ErrPublicKeyFormat},
			[]string{"secret #1: invalid webhook secret format", "secret #3: invalid webhook secret: decoded", "secret #4: invalid webhook public key"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSecrets(tc.list)
			if tc.wantErr == nil {
				if err != nil || len(got) != tc.n {
					t.Fatalf("ParseSecrets = %d secrets, %v; want %d", len(got), err, tc.n)
				}
				return
			}
			if got != nil {
				t.Errorf("ParseSecrets returned secrets with an error")
			}
			for _, w := range tc.wantErr {
				if !errors.Is(err, w) {
					t.Errorf("error %v does not wrap %v", err, w)
				}
			}
			for _, m := range tc.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
			if strings.Contains(err.Error(), "AAA") || strings.Contains(err.Error(), vecSecret) {
				t.Errorf("error %q contains a secret", err)
			}
		})
	}
}

func TestSecretRedaction(t *testing.T) {
	ss := mustSecrets(t, vecSecret, "raw secret value", edPub)
	want := []string{"whsec_[REDACTED]", "[REDACTED]", "whpk_[REDACTED]"}
	leaks := func(t *testing.T, what, out string) {
		t.Helper()
		for _, s := range ss {
			for _, form := range []string{s.key, b64([]byte(s.key)), fmt.Sprintf("%x", s.key), fmt.Sprint([]byte(s.key))} {
				if strings.Contains(out, form) {
					t.Errorf("%s leaks a key: %s", what, out)
				}
			}
		}
		for _, f := range []string{"RdvaYFYU", "raw secret", "whsec_Rd"} {
			if strings.Contains(out, f) {
				t.Errorf("%s leaks %q: %s", what, f, out)
			}
		}
	}
	for i, s := range ss {
		if s.String() != want[i] {
			t.Errorf("String() = %q, want %q", s.String(), want[i])
		}
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%08.3f"} {
		t.Run(verb, func(t *testing.T) {
			out := fmt.Sprintf(verb, ss[0]) + fmt.Sprintf(verb, ss) + fmt.Sprintf(verb, &ss[1]) +
				fmt.Sprintf(verb, struct{ S Secret }{ss[2]})
			if !strings.Contains(out, "REDACTED") {
				t.Errorf("%s: %s", verb, out)
			}
			leaks(t, verb, out)
		})
	}
	t.Run("json", func(t *testing.T) {
		out, err := json.Marshal(map[string]any{"one": ss[0], "all": ss, "ptr": &ss[1]})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), `"whsec_[REDACTED]"`) {
			t.Errorf("json: %s", out)
		}
		leaks(t, "json", string(out))
	})
	t.Run("text", func(t *testing.T) {
		out, err := ss[0].MarshalText()
		if err != nil || string(out) != "whsec_[REDACTED]" {
			t.Errorf("MarshalText = %q, %v", out, err)
		}
	})
	t.Run("zero", func(t *testing.T) {
		if s := fmt.Sprint(Secret{}); s != "[INVALID SECRET]" {
			t.Errorf("zero Secret prints %q", s)
		}
	})
}

// HMACKey hands out exactly the key Verify uses, so a delivery signed with it
// verifies; a public key cannot sign.
func TestSecret_HMACKey(t *testing.T) {
	for _, tc := range []struct {
		name, secret string
		want         []byte
		ok           bool
	}{
		{"whsec", secB, keyB, true},
		{"raw", "plain-secret", []byte("plain-secret"), true},
		{"whpk", "whpk_" + base64.StdEncoding.EncodeToString(make([]byte, 32)), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSecret(tc.secret)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := s.HMACKey()
			if ok != tc.ok || !bytes.Equal(got, tc.want) {
				t.Fatalf("HMACKey() = %x, %v; want %x, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	if _, ok := (Secret{}).HMACKey(); ok {
		t.Error("the zero Secret has no key")
	}
}

func TestSecretShortRaw(t *testing.T) {
	for text, want := range map[string]bool{
		"short":                          true,
		"exactly-23-bytes-long!!":        true,
		"exactly-24-bytes-long!!!":       false,
		vecSecret:                        false,
		edPub:                            false,
		"a-raw-secret-longer-than-24-by": false,
	} {
		s, err := ParseSecret(text)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.ShortRaw(); got != want {
			t.Errorf("ParseSecret(%q).ShortRaw() = %v, want %v", text, got, want)
		}
	}
}
