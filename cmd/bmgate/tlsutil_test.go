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
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a fresh self-signed certificate for cn and its key, with
// the files' modification time set to mod.
func writePair(t *testing.T, certFile, keyFile, cn string, mod time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
}

func servedName(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	cert, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

func TestTLSConfigReloads(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.TLSCert, cfg.TLSKey = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := cfg.TLSConfig(); err == nil {
		t.Fatal("missing certificate files accepted")
	}
	t0 := time.Now().Add(-time.Hour)
	writePair(t, cfg.TLSCert, cfg.TLSKey, "one.example", t0)
	tc, err := cfg.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got := servedName(t, tc); got != "one.example" {
		t.Fatalf("served %s", got)
	}
	// A renewal is picked up on the next handshake.
	writePair(t, cfg.TLSCert, cfg.TLSKey, "two.example", t0.Add(time.Minute))
	if got := servedName(t, tc); got != "two.example" {
		t.Fatalf("after renewal served %s", got)
	}
	// A broken file keeps the last good certificate in service.
	if err := os.WriteFile(cfg.TLSCert, []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := servedName(t, tc); got != "two.example" {
		t.Fatalf("with a broken file served %s", got)
	}
}

func TestTLSConfigSelfSigned(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.Hostname = "mail.example"
	tc, err := cfg.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Certificates) != 1 {
		t.Fatalf("%d certificates", len(tc.Certificates))
	}
	leaf, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("mail.example"); err != nil {
		t.Errorf("self-signed certificate: %v", err)
	}
	// The same certificate comes back on the next start.
	again, err := cfg.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if string(again.Certificates[0].Certificate[0]) != string(tc.Certificates[0].Certificate[0]) {
		t.Error("self-signed certificate not kept in the data directory")
	}
}
