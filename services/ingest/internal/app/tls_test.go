package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/ferrystream/ferry/libs/media"
	"github.com/ferrystream/ferry/libs/testutil"
)

// selfSigned writes a certificate and key for 127.0.0.1 and returns their paths.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ferry-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// TestRTSPS: with a certificate configured the node speaks RTSPS; a publisher
// and a reader use it (TCP, SRTP inside the TLS connection as gortsplib does).
func TestRTSPS(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t)
	h := newHarness(t)
	a := h.node("ingest-1", withEnv("INGEST_TLS_CERT", cert), withEnv("INGEST_TLS_KEY", key))
	if !strings.HasPrefix(a.PublicURL(), "rtsps://") {
		t.Fatalf("public URL %s", a.PublicURL())
	}
	h.place("cam-1", a, "s-1", "", "", time.Time{})
	insecure := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // self-signed test certificate
	src := fakeH264(t)
	tcp := gortsplib.ProtocolTCP
	pub := &gortsplib.Client{TLSConfig: insecure, Protocol: &tcp}
	if err := pub.StartRecording(publishURL(a, "cam-1", h.token("cam-1", "ingest-1", "s-1", "", time.Minute)), src.Description()); err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_, pkts, _ := src.NextFrame()
				for _, p := range pkts {
					_ = pub.WritePacketRTP(src.Description().Medias[0], p)
				}
			}
		}
	}()
	u, _ := base.ParseURL(a.PublicURL() + "/cam-1")
	rd := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, TLSConfig: insecure, Protocol: &tcp}
	if err := rd.Start(); err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	desc, _, err := rd.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := rd.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	var frames atomic.Int64
	rd.OnPacketRTPAny(func(_ *description.Media, _ format.Format, p *rtp.Packet) {
		if _, ok := media.FrameCounter(p.Payload); ok {
			frames.Add(1)
		}
	})
	if _, err := rd.Play(nil); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		if frames.Load() < 20 {
			return fmt.Errorf("%d frames over RTSPS", frames.Load())
		}
		return nil
	})
}

// TestMetricsAndReady: /metrics and /readyz.
func TestMetricsAndReady(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.node("ingest-1", withEnv("INGEST_METRICS_ADDR", "127.0.0.1:0"))
	get := func(path string) (int, string) {
		res, err := http.Get("http://" + a.MetricsAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz %d", code)
	}
	code, body := get("/metrics")
	for _, name := range []string{"ferry_ingest_streams", "ferry_ingest_readers", "ferry_ingest_rtp_bytes_in_total", "go_goroutines"} {
		if code != 200 || !strings.Contains(body, name) {
			t.Fatalf("/metrics (%d) lacks %s", code, name)
		}
	}
	a.Drain(time.Minute, "test")
	testutil.CheckFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		res, err := http.Get("http://" + a.MetricsAddr() + "/readyz")
		if err != nil {
			return nil // already stopped: also not ready
		}
		res.Body.Close()
		if res.StatusCode == 200 {
			return fmt.Errorf("/readyz still 200 while draining")
		}
		return nil
	})
}
