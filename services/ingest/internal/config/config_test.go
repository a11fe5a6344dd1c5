package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadOrder(t *testing.T) {
	t.Parallel()
	cfg, err := Load([]string{"--zone", "zone-c", "--drain-grace", "5s"}, env(map[string]string{
		"INGEST_HOST_ID": "ingest-7", "INGEST_ZONE": "zone-b", "INGEST_ROLE": "edge", "FERRY_TOKEN_SECRET": "s",
		"INGEST_RTSP_ADDR": "127.0.0.1:9554", "INGEST_DRAIN_GRACE": "1m",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HostID != "ingest-7" || cfg.Zone != "zone-c" || cfg.Role != RoleEdge || cfg.DrainGrace != 5*time.Second ||
		cfg.PublicURL != "rtsp://127.0.0.1:9554" || cfg.CapacityStreams != 100 || cfg.NATS.URL == "" {
		t.Fatalf("config %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Origin() || !cfg.Edge() {
		t.Fatal("edge role")
	}
}

// TestHelpAndVersion checks that -h opens with the description paragraph and
// spells flags with two dashes, and that --version prints one line.
func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if _, err := Load([]string{"-h"}, env(nil), &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if !strings.HasPrefix(out.String(), "ferry-ingest is a Ferry ingest node: ") || !strings.Contains(out.String(), "\n  --drain-grace duration\n") {
		t.Errorf("usage:\n%s", out.String())
	}
	out.Reset()
	if _, err := Load([]string{"--version"}, env(nil), &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("--version: %v", err)
	}
	if !strings.HasPrefix(out.String(), "ferry-ingest ") || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("version: %q", out.String())
	}
}

func TestConfErrors(t *testing.T) {
	t.Parallel()
	base := map[string]string{"INGEST_HOST_ID": "ingest-1", "FERRY_TOKEN_SECRET": "s"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"host id missing", map[string]string{"INGEST_HOST_ID": "", "FERRY_TOKEN_SECRET": "s"}, nil, "INGEST_HOST_ID: required"},
		{"host id invalid", map[string]string{"INGEST_HOST_ID": "a.b"}, nil, `INGEST_HOST_ID: "a.b" must match`},
		{"rtsp addr", map[string]string{"INGEST_RTSP_ADDR": "nope"}, nil, `INGEST_RTSP_ADDR: "nope" must be host:port`},
		{"public url", map[string]string{"INGEST_PUBLIC_URL": "http://x"}, nil, `INGEST_PUBLIC_URL: "http://x" must be rtsp://host:port`},
		{"udp half", map[string]string{"INGEST_UDP_RTP_ADDR": "127.0.0.1:8000"}, nil, "INGEST_UDP_RTP_ADDR, INGEST_UDP_RTCP_ADDR: set both or neither"},
		{"udp odd", map[string]string{"INGEST_UDP_RTP_ADDR": "127.0.0.1:8001", "INGEST_UDP_RTCP_ADDR": "127.0.0.1:8002"}, nil, "INGEST_UDP_RTP_ADDR: port 8001 must be even"},
		{"udp pair", map[string]string{"INGEST_UDP_RTP_ADDR": "127.0.0.1:8000", "INGEST_UDP_RTCP_ADDR": "127.0.0.1:8003"}, nil, "INGEST_UDP_RTCP_ADDR: port must be INGEST_UDP_RTP_ADDR's port + 1 (8001)"},
		{"role", map[string]string{"INGEST_ROLE": "relay"}, nil, `INGEST_ROLE: "relay" must be origin, edge or both`},
		{"zone", map[string]string{"INGEST_ZONE": "zone a"}, nil, `INGEST_ZONE: "zone a" must match`},
		{"capacity", map[string]string{"INGEST_CAPACITY_STREAMS": "0"}, nil, "INGEST_CAPACITY_STREAMS: must be at least 1, got 0"},
		{"capacity not int", map[string]string{"INGEST_CAPACITY_STREAMS": "many"}, nil, `INGEST_CAPACITY_STREAMS: "many" is not an integer`},
		{"grace", map[string]string{"INGEST_DRAIN_GRACE": "soon"}, nil, `INGEST_DRAIN_GRACE: "soon" is not a duration (e.g. 10s)`},
		{"grace zero", nil, []string{"--drain-grace", "0s"}, "INGEST_DRAIN_GRACE: must be positive, got 0s"},
		{"handshake timeout zero", map[string]string{"INGEST_HANDSHAKE_TIMEOUT": "0s"}, nil, "INGEST_HANDSHAKE_TIMEOUT: must be positive, got 0s"},
		{"handshake timeout", map[string]string{"INGEST_HANDSHAKE_TIMEOUT": "soon"}, nil, `INGEST_HANDSHAKE_TIMEOUT: "soon" is not a duration (e.g. 10s)`},
		{"pending per ip", map[string]string{"INGEST_MAX_PENDING_PER_IP": "-1"}, nil, "INGEST_MAX_PENDING_PER_IP: must not be negative, got -1"},
		{"max tracks", map[string]string{"INGEST_MAX_TRACKS": "0"}, nil, "INGEST_MAX_TRACKS: must be between 1 and 64, got 0"},
		{"tls half", map[string]string{"INGEST_TLS_CERT": "c.pem"}, nil, "INGEST_TLS_CERT, INGEST_TLS_KEY: set both or neither"},
		{"secret", map[string]string{"FERRY_TOKEN_SECRET": ""}, nil, "FERRY_TOKEN_SECRET: required unless INGEST_ALLOW_OPEN_PUBLISH=true"},
		{"open publish bool", map[string]string{"INGEST_ALLOW_OPEN_PUBLISH": "maybe"}, nil, `INGEST_ALLOW_OPEN_PUBLISH: "maybe" is not a boolean`},
		{"metrics addr", map[string]string{"INGEST_METRICS_ADDR": "9090"}, nil, `INGEST_METRICS_ADDR: "9090" must be host:port`},
		{"nats url", map[string]string{"FERRY_NATS_URL": "localhost:4222"}, nil, "FERRY_NATS_URL"},
		{"nats flag scheme", nil, []string{"--nats", "http://127.0.0.1:4222"}, `--nats: "http://127.0.0.1:4222": scheme "http" is not a NATS scheme`},
		{"flag parse error", nil, []string{"--drain-grace", "10x"}, `--drain-grace: "10x" is not a duration like 30s or 2m`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := map[string]string{}
			for k, v := range base {
				m[k] = v
			}
			for k, v := range tc.env {
				m[k] = v
			}
			cfg, err := Load(tc.args, env(m), nil)
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEdgeOnlyNeedsNoSecret(t *testing.T) {
	t.Parallel()
	cfg, err := Load(nil, env(map[string]string{"INGEST_HOST_ID": "edge-1", "INGEST_ROLE": "edge"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
