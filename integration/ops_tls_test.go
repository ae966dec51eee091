package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/schema"
)

// opsSelfSigned writes a self-signed certificate for 127.0.0.1 to dir and
// returns it with the paths of the PEM files.
func opsSelfSigned(t *testing.T, dir string, serial int64) (*x509.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "hookbridge it"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	crt, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	opsWriteFile(t, kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	opsWriteFile(t, crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	cert, _ := x509.ParseCertificate(der)
	return cert, crt, kf
}

// TestOps_TLSAndRateLimit runs the binary with TLS on the public listener and
// a per-source rate limit: webhooks are published over HTTPS, a rotated
// certificate is served without a restart, and a burst beyond the limit gets
// 429 with Retry-After before verification.
func TestOps_TLSAndRateLimit(t *testing.T) {
	p := startNATS(t)
	env, _, _ := natsEnv(t, p.URL())
	dir := t.TempDir()
	first, crt, key := opsSelfSigned(t, dir, 1)
	env["HOOKBRIDGE_TLS_CERT_FILE"] = crt
	env["HOOKBRIDGE_TLS_KEY_FILE"] = key
	env["HOOKBRIDGE_RELOAD_INTERVAL"] = "200ms"
	env["HOOKBRIDGE_RATE_LIMIT"] = "0.5" // one request every 2s per source…
	env["HOOKBRIDGE_RATE_BURST"] = "3"   // …after a burst of 3
	b := startBridge(t, env)
	url := strings.Replace(b.URL, "http://", "https://", 1)
	if !strings.Contains(b.logs.String(), `"webhook_url":"https://`) {
		t.Errorf("start-up log does not announce an https URL:\n%s", b.logs)
	}

	client := func(trust *x509.Certificate) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(trust)
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true, // a handshake per request, to see rotation
		}}
	}
	s := opsSecret{Text: itSecret}
	body := mustSample(t, schema.ResponseCompleted)

	if r := opsPost(client(first), url, s, delivery{ID: newID(), Body: body}, nil); r.Status != 200 || r.Code != "published" {
		t.Fatalf("HTTPS delivery: %d %q %v\n%s", r.Status, r.Code, r.Err, b.logs)
	}
	if r := opsPost(httpClient, b.URL, s, delivery{ID: newID(), Body: body}, nil); r.Err == nil && r.Status == 200 {
		t.Errorf("plain HTTP accepted on the TLS listener")
	}

	second, _, _ := opsSelfSigned(t, dir, 2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := opsPost(client(second), url, s, delivery{ID: newID(), Body: body}, nil)
		if r.Err == nil {
			if r.Status != 200 {
				t.Fatalf("after rotation: %d %q", r.Status, r.Code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated certificate not served within 10s: %v\n%s", r.Err, b.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The burst of 3 is spent by now (at most one token refilled meanwhile),
	// so a quick series from the same address runs into the limit.
	var limited *http.Response
	for range 5 {
		resp, err := client(second).Post(url, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = resp
			break
		}
	}
	if limited == nil {
		t.Fatalf("no 429 after the burst")
	}
	if limited.Header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	if v := opsMetric(t, b.AdminURL, `hookbridge_webhook_requests_total{outcome="rate_limited"}`); v < 1 {
		t.Errorf("rate_limited outcome = %v, want ≥ 1", v)
	}
	if v := opsMetric(t, b.AdminURL, `hookbridge_tls_reload_errors_total`); v != 0 {
		t.Errorf("tls reload errors = %v, want 0", v)
	}
}
