package main

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
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// writeSelfSigned writes a fresh self-signed certificate for 127.0.0.1 and
// its key to dir/tls.crt and dir/tls.key (atomically, as a Secret mount
// would), returning the certificate.
func writeSelfSigned(t testing.TB, dir string, serial int64, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "hookbridge test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeAtomic(t, filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func writeAtomic(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// serveTLS serves 200 on a loopback TLS listener using r's configuration.
func serveTLS(t *testing.T, r *certReloader) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
		TLSConfig: r.tlsConfig(),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// handshake connects trusting only want and returns the served certificate.
func handshake(t *testing.T, addr string, want *x509.Certificate, maxVersion uint16) (*x509.Certificate, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(want)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		RootCAs: pool, ServerName: "127.0.0.1", MaxVersion: maxVersion,
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func TestTLSHandshakeAndReload(t *testing.T) {
	dir := t.TempDir()
	first := writeSelfSigned(t, dir, 1, time.Now().Add(24*time.Hour))
	m := newMetrics("test", "nats")
	m.enableTLS()
	r, err := newCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), m, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, r)

	got, err := handshake(t, addr, first, 0)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if got.SerialNumber.Int64() != 1 {
		t.Fatalf("served serial %v, want 1", got.SerialNumber)
	}
	if _, err := handshake(t, addr, first, tls.VersionTLS11); err == nil {
		t.Errorf("TLS 1.1 handshake succeeded; the minimum is 1.2")
	}
	if v := gather(t, m)["hookbridge_tls_cert_not_after_timestamp_seconds"]; v != float64(first.NotAfter.Unix()) {
		t.Errorf("not_after gauge = %v, want %v", v, first.NotAfter.Unix())
	}

	// Nothing changed: the poll does nothing.
	if r.watch.check(false) {
		t.Errorf("poll without a change reloaded")
	}

	// Rotate: the next poll serves the new certificate to new connections.
	second := writeSelfSigned(t, dir, 2, time.Now().Add(48*time.Hour))
	if !r.watch.check(false) {
		t.Fatalf("poll after rotation did not reload")
	}
	if got, err = handshake(t, addr, second, 0); err != nil || got.SerialNumber.Int64() != 2 {
		t.Fatalf("after rotation: %v, serial %v", err, got)
	}

	// A broken key keeps the last good certificate and counts an error once.
	writeAtomic(t, filepath.Join(dir, "tls.key"), []byte("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"))
	r.watch.check(false)
	r.watch.check(false)
	if got, err = handshake(t, addr, second, 0); err != nil || got.SerialNumber.Int64() != 2 {
		t.Fatalf("after a bad key: %v, serial %v", err, got)
	}
	if v := gather(t, m)["hookbridge_tls_reload_errors_total"]; v != 1 {
		t.Errorf("tls reload errors = %v, want 1", v)
	}
}

func TestTLSExpiredRejected(t *testing.T) {
	dir := t.TempDir()
	writeSelfSigned(t, dir, 1, time.Now().Add(-time.Minute))
	if _, err := loadKeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err == nil {
		t.Fatal("expired certificate accepted")
	}
}
