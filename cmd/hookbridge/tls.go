package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// certReloader serves the public listener's certificate from memory and
// replaces it when HOOKBRIDGE_TLS_CERT_FILE or _KEY_FILE change (the same
// poller as the secrets file, see fileWatch). A pair that does not load keeps
// the previous certificate in use.
type certReloader struct {
	cert  atomic.Pointer[tls.Certificate]
	watch *fileWatch
}

func newCertReloader(certFile, keyFile string, m *metrics, log zerolog.Logger) (*certReloader, error) {
	c, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r := &certReloader{}
	r.store(c, m)
	r.watch = newFileWatch("TLS certificate", []string{certFile, keyFile}, func(b [][]byte) error {
		c, err := parseKeyPair(b[0], b[1])
		if err != nil {
			return err
		}
		r.store(c, m)
		log.Info().Time("not_after", c.Leaf.NotAfter).Msg("TLS certificate reloaded")
		return nil
	}, func(error) {
		if m != nil {
			m.tlsReloadErrors.Inc()
		}
	}, log)
	return r, nil
}

func (r *certReloader) store(c *tls.Certificate, m *metrics) {
	r.cert.Store(c)
	if m != nil && c.Leaf != nil {
		m.tlsNotAfter.Set(float64(c.Leaf.NotAfter.Unix()))
	}
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// tlsConfig is the public listener's TLS configuration: TLS 1.2 at least, Go's
// default cipher suites (all AEAD with forward secrecy for TLS 1.2).
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS key: %w", err)
	}
	return parseKeyPair(certPEM, keyPEM)
}

func parseKeyPair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate and key: %w", err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("TLS certificate: %w", err)
		}
	}
	if time.Now().After(c.Leaf.NotAfter) {
		return nil, errors.New("TLS certificate expired on " + c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &c, nil
}
