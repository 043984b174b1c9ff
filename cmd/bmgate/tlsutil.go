package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/bmgate/bmgate/cmd/bmgate/internal/tlscert"
)

// TLSConfig returns the server TLS configuration SMTP and IMAP share:
// tls_cert/tls_key, re-read when either file changes (a renewed certificate
// needs no restart), or else the self-signed certificate kept in the data
// directory. A bad certificate fails here, at start.
func (c *Config) TLSConfig() (*tls.Config, error) {
	if c.TLSCert == "" {
		cert, err := tlscert.LoadOrCreate(c.Data, c.Hostname)
		if err != nil {
			return nil, fmt.Errorf("self-signed TLS certificate: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	}
	r := &certReloader{certFile: c.TLSCert, keyFile: c.TLSKey}
	if _, err := r.certificate(); err != nil {
		return nil, err
	}
	return &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.certificate() },
		MinVersion:     tls.VersionTLS12,
	}, nil
}

// certReloader serves a certificate from files and loads them again when
// their modification times change. While a renewal is half written (the
// new pair does not load), the last good certificate stays in use.
type certReloader struct {
	certFile, keyFile string

	mu              sync.Mutex
	cert            *tls.Certificate
	certMod, keyMod time.Time
	lastFail        time.Time // of the last load that failed; zero after a success
}

// retryInterval spaces reload attempts after a failed one.
const retryInterval = 10 * time.Second

func (r *certReloader) certificate() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cm, km, err := r.modTimes()
	if err != nil {
		return r.keepOr(err)
	}
	if r.cert != nil && cm.Equal(r.certMod) && km.Equal(r.keyMod) {
		return r.cert, nil
	}
	if r.cert != nil && time.Since(r.lastFail) < retryInterval {
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.lastFail = time.Now()
		return r.keepOr(fmt.Errorf("load TLS certificate %s: %w", r.certFile, err))
	}
	r.cert, r.certMod, r.keyMod, r.lastFail = &cert, cm, km, time.Time{}
	return r.cert, nil
}

func (r *certReloader) modTimes() (time.Time, time.Time, error) {
	cs, err := os.Stat(r.certFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("TLS certificate: %w", err)
	}
	ks, err := os.Stat(r.keyFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("TLS key: %w", err)
	}
	return cs.ModTime(), ks.ModTime(), nil
}

// keepOr returns the last good certificate, or err when there is none.
func (r *certReloader) keepOr(err error) (*tls.Certificate, error) {
	if r.cert != nil {
		return r.cert, nil
	}
	return nil, err
}
