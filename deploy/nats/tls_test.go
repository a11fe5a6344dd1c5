package nats_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
)

// testPKI writes a CA and a server certificate for 127.0.0.1/localhost
// signed by it into dir and returns the file paths.
type testPKI struct{ CA, Cert, Key string }

func newPKI(t *testing.T, dir, name string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "nats"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "nats-1", "nats-2", "nats-3"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{CA: filepath.Join(dir, name+"-ca.pem"), Cert: filepath.Join(dir, name+"-cert.pem"), Key: filepath.Join(dir, name+"-key.pem")}
	for path, block := range map[string]*pem.Block{
		p.CA:   {Type: "CERTIFICATE", Bytes: caDER},
		p.Cert: {Type: "CERTIFICATE", Bytes: der},
		p.Key:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	pki := newPKI(t, dir, "ferry")
	other := newPKI(t, dir, "other")
	t.Setenv("FERRY_NATS_TLS_CERT", pki.Cert)
	t.Setenv("FERRY_NATS_TLS_KEY", pki.Key)
	stranger := newFleet(t) // a fleet whose operator the server does not trust
	opts := loadConfig(t, "single-tls.conf")
	if opts.TLSConfig == nil {
		t.Fatal("single-tls.conf does not enable TLS")
	}
	s := start(t, opts)
	url := s.ClientURL()

	t.Run("libs/bus with the CA connects over TLS", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cfg := bus.Config{URL: url, CredsFile: fleet.CredsPath("ops"), TLSCA: pki.CA, Replicas: 1}
		nc, _, err := bus.Connect(ctx, cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		st, err := nc.TLSConnectionState()
		if err != nil || !st.HandshakeComplete {
			t.Fatalf("connection is not TLS: %v", err)
		}
		if err := nc.Publish("ferry.evt.ops.maintenance_scheduled.ingest-1", nil); err != nil {
			t.Fatal(err)
		}
		if err := nc.FlushWithContext(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the access rules hold over TLS", func(t *testing.T) {
		ops := dial(t, url, "ops", func(c *bus.Config) { c.TLSCA = pki.CA })
		ops.permitted(t, "bootstrap", func(ctx context.Context) error { return bus.Bootstrap(ctx, ops.js, 1) })
		agent := dial(t, url, "agent-1", func(c *bus.Config) { c.TLSCA = pki.CA })
		agent.refused(t, "ferry.evt.ops.maintenance_scheduled.ingest-1", publish(agent, maintenance("ingest-1")))
	})
	for _, tc := range []struct {
		name string
		cfg  func(*bus.Config)
	}{
		{"refused without a CA (unknown authority)", func(c *bus.Config) {}},
		{"refused with another CA", func(c *bus.Config) { c.TLSCA = other.CA }},
		{"refused with another fleet's credential", func(c *bus.Config) { c.TLSCA = pki.CA; c.CredsFile = stranger.CredsPath("ops") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tryDial(fleet, url, "ops", tc.cfg)
			if err == nil {
				c.nc.Close()
				t.Fatal("connected")
			}
			t.Logf("refused: %v", err)
		})
	}
}
