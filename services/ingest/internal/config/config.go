// Package config reads the ingest service's configuration: defaults, then
// INGEST_* environment variables, then command-line flags, and validates it
// with errors that name the offending key.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/cli"
	fenv "github.com/ferrystream/ferry/libs/env"
	"github.com/ferrystream/ferry/libs/obs"
)

// Description is the paragraph that opens `ferry-ingest -h`.
const Description = `ferry-ingest is a Ferry ingest node: an RTSP server that takes streams from
publishers (origin role) and serves them to viewers, pulling each from its
current origin (edge role), registering itself in NATS with a heartbeat and
telemetry. When it is told to drain (a command, or SIGTERM) it refuses new
publishers and exits once its streams have moved, or at the drain grace.
Settings come from the environment (INGEST_*, FERRY_*) and then from these flags.`

// Roles of an ingest node.
const (
	// RoleOrigin accepts publishers and camera pulls only.
	RoleOrigin = "origin"
	// RoleEdge serves viewers by pulling streams from their origins only.
	RoleEdge = "edge"
	// RoleBoth is origin and edge at once (the default).
	RoleBoth = "both"
)

// NamePattern is the pattern of stream and host names (they are subject tokens).
var NamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ErrHelp is returned by Load when -h or --help was given; usage went to stdout.
var ErrHelp = flag.ErrHelp

// Config is the ingest service's configuration.
type Config struct {
	// HostID names this host in the registry, subjects and placements (INGEST_HOST_ID).
	HostID string
	// RTSPAddr is the RTSP listen address, host:port (INGEST_RTSP_ADDR).
	RTSPAddr string
	// PublicURL is the base RTSP URL others use to reach this host (INGEST_PUBLIC_URL).
	PublicURL string
	// UDPRTPAddr and UDPRTCPAddr enable RTP over UDP (INGEST_UDP_RTP_ADDR, INGEST_UDP_RTCP_ADDR).
	UDPRTPAddr, UDPRTCPAddr string
	// Zone is the failure zone of this host (INGEST_ZONE).
	Zone string
	// Role is origin, edge or both (INGEST_ROLE).
	Role string
	// CapacityStreams is the declared stream capacity (INGEST_CAPACITY_STREAMS).
	CapacityStreams int
	// CapacityBitrate is the declared inbound bitrate capacity in bit/s, 0 = none (INGEST_CAPACITY_BITRATE).
	CapacityBitrate int64
	// DrainGrace is how long a drain keeps hosting before exiting (INGEST_DRAIN_GRACE).
	DrainGrace time.Duration
	// StreamGrace keeps a stream (and its readers) after its last source left (INGEST_STREAM_GRACE).
	StreamGrace time.Duration
	// EdgeLinger keeps an upstream pull after its last reader left (INGEST_EDGE_LINGER).
	EdgeLinger time.Duration
	// UpstreamWait is how long a reader waits for an upstream to answer (INGEST_UPSTREAM_WAIT).
	UpstreamWait time.Duration
	// ReadTimeout ends an RTSP session that sent nothing for this long: a
	// publisher whose packets stopped (TCP or UDP) or a silent client (INGEST_READ_TIMEOUT).
	ReadTimeout time.Duration
	// HandshakeTimeout closes an RTSP connection that has not completed a
	// request this long after it opened or after its last request, while it
	// holds no session: a half-sent request, a stray interleaved frame, a
	// stalled TLS handshake (INGEST_HANDSHAKE_TIMEOUT).
	HandshakeTimeout time.Duration
	// MaxPendingPerIP caps the connections one remote IP may hold without a
	// session; 0 = no cap (INGEST_MAX_PENDING_PER_IP).
	MaxPendingPerIP int
	// MaxTracks bounds the medias of an announced or pulled (camera, edge
	// upstream) stream (INGEST_MAX_TRACKS).
	MaxTracks int
	// AllowOpenPublish lets publishers in without a token (dev only; INGEST_ALLOW_OPEN_PUBLISH).
	AllowOpenPublish bool
	// TLSCert and TLSKey enable RTSPS (INGEST_TLS_CERT, INGEST_TLS_KEY).
	TLSCert, TLSKey string
	// TokenSecret verifies publish tokens (FERRY_TOKEN_SECRET).
	TokenSecret string
	// MetricsAddr serves /metrics, /healthz and /readyz; "" disables (INGEST_METRICS_ADDR).
	MetricsAddr string
	// Pprof serves /debug/pprof/ on the metrics server (FERRY_PPROF=1).
	Pprof bool
	// MemLimit overrides the memory limit reported in telemetry, bytes; 0 = the cgroup limit, else the machine memory (INGEST_MEM_LIMIT).
	MemLimit int64
	// NATS says how to reach NATS (FERRY_NATS_*, flag --nats).
	NATS bus.Config
}

// Default returns the defaults.
func Default() Config {
	return Config{
		RTSPAddr:        "127.0.0.1:8554",
		Zone:            "zone-a",
		Role:            RoleBoth,
		CapacityStreams: 100,
		DrainGrace:      30 * time.Second,
		StreamGrace:     30 * time.Second,
		EdgeLinger:      10 * time.Second,
		UpstreamWait:    5 * time.Second,
		ReadTimeout:     10 * time.Second,
		// a session-less connection needs only a few: OPTIONS, DESCRIBE,
		// the first SETUP or ANNOUNCE; 64 leaves room for an edge host that
		// opens many upstream pulls at once after a move.
		HandshakeTimeout: 10 * time.Second,
		MaxPendingPerIP:  64,
		MaxTracks:        16,
	}
}

// Load builds the configuration from defaults, then getenv, then args. It does
// not validate; call Validate.
func Load(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c := Default()
	e := fenv.New(getenv)
	str, dur := e.Str, e.Dur
	str(&c.HostID, "INGEST_HOST_ID")
	str(&c.RTSPAddr, "INGEST_RTSP_ADDR")
	str(&c.PublicURL, "INGEST_PUBLIC_URL")
	str(&c.UDPRTPAddr, "INGEST_UDP_RTP_ADDR")
	str(&c.UDPRTCPAddr, "INGEST_UDP_RTCP_ADDR")
	str(&c.Zone, "INGEST_ZONE")
	str(&c.Role, "INGEST_ROLE")
	e.Int(&c.CapacityStreams, "INGEST_CAPACITY_STREAMS")
	e.Int64(&c.CapacityBitrate, "INGEST_CAPACITY_BITRATE")
	e.Int64(&c.MemLimit, "INGEST_MEM_LIMIT")
	dur(&c.DrainGrace, "INGEST_DRAIN_GRACE")
	dur(&c.StreamGrace, "INGEST_STREAM_GRACE")
	dur(&c.EdgeLinger, "INGEST_EDGE_LINGER")
	dur(&c.UpstreamWait, "INGEST_UPSTREAM_WAIT")
	dur(&c.ReadTimeout, "INGEST_READ_TIMEOUT")
	dur(&c.HandshakeTimeout, "INGEST_HANDSHAKE_TIMEOUT")
	e.Int(&c.MaxPendingPerIP, "INGEST_MAX_PENDING_PER_IP")
	e.Int(&c.MaxTracks, "INGEST_MAX_TRACKS")
	e.Bool(&c.AllowOpenPublish, "INGEST_ALLOW_OPEN_PUBLISH")
	str(&c.TLSCert, "INGEST_TLS_CERT")
	str(&c.TLSKey, "INGEST_TLS_KEY")
	str(&c.TokenSecret, "FERRY_TOKEN_SECRET")
	str(&c.MetricsAddr, "INGEST_METRICS_ADDR")
	c.Pprof = obs.PprofEnabled(getenv)
	c.NATS = bus.ConfigFromEnv(getenv, bus.Config{Name: "ferry-ingest"})
	if err := e.Err(); err != nil {
		return c, err
	}

	fs := flag.NewFlagSet("ferry-ingest", flag.ContinueOnError)
	if usage == nil {
		usage = io.Discard
	}
	cli.SetUsage(fs, usage, "ferry-ingest [flags]", Description)
	fs.StringVar(&c.HostID, "host-id", c.HostID, "host id (INGEST_HOST_ID)")
	fs.StringVar(&c.RTSPAddr, "rtsp-addr", c.RTSPAddr, "RTSP listen address (INGEST_RTSP_ADDR)")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "base RTSP URL of this host (INGEST_PUBLIC_URL)")
	fs.StringVar(&c.UDPRTPAddr, "udp-rtp-addr", c.UDPRTPAddr, "RTP over UDP address, even port (INGEST_UDP_RTP_ADDR)")
	fs.StringVar(&c.UDPRTCPAddr, "udp-rtcp-addr", c.UDPRTCPAddr, "RTCP over UDP address, RTP port+1 (INGEST_UDP_RTCP_ADDR)")
	fs.StringVar(&c.Zone, "zone", c.Zone, "failure zone (INGEST_ZONE)")
	fs.StringVar(&c.Role, "role", c.Role, "origin, edge or both (INGEST_ROLE)")
	fs.IntVar(&c.CapacityStreams, "capacity-streams", c.CapacityStreams, "declared stream capacity (INGEST_CAPACITY_STREAMS)")
	fs.Int64Var(&c.CapacityBitrate, "capacity-bitrate", c.CapacityBitrate, "declared inbound bit/s capacity (INGEST_CAPACITY_BITRATE)")
	fs.DurationVar(&c.DrainGrace, "drain-grace", c.DrainGrace, "drain grace before exit (INGEST_DRAIN_GRACE)")
	fs.DurationVar(&c.StreamGrace, "stream-grace", c.StreamGrace, "keep a stream this long after its source left (INGEST_STREAM_GRACE)")
	fs.DurationVar(&c.EdgeLinger, "edge-linger", c.EdgeLinger, "keep an upstream pull this long after its last reader (INGEST_EDGE_LINGER)")
	fs.DurationVar(&c.UpstreamWait, "upstream-wait", c.UpstreamWait, "how long readers wait for an upstream (INGEST_UPSTREAM_WAIT)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "end an RTSP session silent this long, e.g. a publisher whose packets stopped (INGEST_READ_TIMEOUT)")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", c.HandshakeTimeout, "close an RTSP connection without a session that completes no request this long (INGEST_HANDSHAKE_TIMEOUT)")
	fs.IntVar(&c.MaxPendingPerIP, "max-pending-per-ip", c.MaxPendingPerIP, "connections without a session one remote IP may hold, 0 = no cap (INGEST_MAX_PENDING_PER_IP)")
	fs.IntVar(&c.MaxTracks, "max-tracks", c.MaxTracks, "most medias an announced or pulled stream may have (INGEST_MAX_TRACKS)")
	fs.BoolVar(&c.AllowOpenPublish, "allow-open-publish", c.AllowOpenPublish, "DEV ONLY: accept publishers without a token (INGEST_ALLOW_OPEN_PUBLISH)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "RTSPS certificate file (INGEST_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "RTSPS key file (INGEST_TLS_KEY)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "metrics/health address (INGEST_METRICS_ADDR)")
	fs.Int64Var(&c.MemLimit, "mem-limit", c.MemLimit, "memory limit in bytes reported in telemetry, 0 = cgroup limit, else machine memory (INGEST_MEM_LIMIT)")
	fs.StringVar(&c.NATS.URL, "nats", c.NATS.URL, "NATS URL(s) (FERRY_NATS_URL)")
	if err := cli.Parse(fs, args, usage); err != nil {
		return c, err
	}
	if err := cli.CheckSet(fs, "nats", bus.CheckURL); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.PublicURL == "" {
		c.PublicURL = "rtsp://" + c.RTSPAddr
		if c.TLSCert != "" {
			c.PublicURL = "rtsps://" + c.RTSPAddr
		}
	}
	return c, nil
}

// Origin reports whether the node accepts publishers.
func (c Config) Origin() bool { return c.Role == RoleOrigin || c.Role == RoleBoth }

// Edge reports whether the node serves streams it does not host.
func (c Config) Edge() bool { return c.Role == RoleEdge || c.Role == RoleBoth }

// UDP reports whether RTP over UDP is enabled.
func (c Config) UDP() bool { return c.UDPRTPAddr != "" }

func hostPort(key, v string) error {
	h, p, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%s: %q must be host:port", key, v)
	}
	_ = h
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s: %q has an invalid port", key, v)
	}
	return nil
}

func port(v string) int {
	_, p, _ := net.SplitHostPort(v)
	n, _ := strconv.Atoi(p)
	return n
}

// Validate checks the configuration; every error names its key.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.HostID == "":
		errs = append(errs, errors.New("INGEST_HOST_ID: required"))
	case !NamePattern.MatchString(c.HostID):
		errs = append(errs, fmt.Errorf("INGEST_HOST_ID: %q must match %s", c.HostID, NamePattern))
	}
	if err := hostPort("INGEST_RTSP_ADDR", c.RTSPAddr); err != nil {
		errs = append(errs, err)
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
		errs = append(errs, fmt.Errorf("INGEST_PUBLIC_URL: %q must be rtsp://host:port", c.PublicURL))
	}
	switch {
	case (c.UDPRTPAddr == "") != (c.UDPRTCPAddr == ""):
		errs = append(errs, errors.New("INGEST_UDP_RTP_ADDR, INGEST_UDP_RTCP_ADDR: set both or neither"))
	case c.UDPRTPAddr != "":
		e1 := hostPort("INGEST_UDP_RTP_ADDR", c.UDPRTPAddr)
		e2 := hostPort("INGEST_UDP_RTCP_ADDR", c.UDPRTCPAddr)
		errs = append(errs, e1, e2)
		if e1 == nil && e2 == nil {
			if port(c.UDPRTPAddr)%2 != 0 {
				errs = append(errs, fmt.Errorf("INGEST_UDP_RTP_ADDR: port %d must be even", port(c.UDPRTPAddr)))
			} else if port(c.UDPRTCPAddr) != port(c.UDPRTPAddr)+1 {
				errs = append(errs, fmt.Errorf("INGEST_UDP_RTCP_ADDR: port must be INGEST_UDP_RTP_ADDR's port + 1 (%d)", port(c.UDPRTPAddr)+1))
			}
		}
	}
	if !NamePattern.MatchString(c.Zone) {
		errs = append(errs, fmt.Errorf("INGEST_ZONE: %q must match %s", c.Zone, NamePattern))
	}
	if c.Role != RoleOrigin && c.Role != RoleEdge && c.Role != RoleBoth {
		errs = append(errs, fmt.Errorf("INGEST_ROLE: %q must be origin, edge or both", c.Role))
	}
	if c.CapacityStreams < 1 {
		errs = append(errs, fmt.Errorf("INGEST_CAPACITY_STREAMS: must be at least 1, got %d", c.CapacityStreams))
	}
	if c.CapacityBitrate < 0 {
		errs = append(errs, fmt.Errorf("INGEST_CAPACITY_BITRATE: must not be negative, got %d", c.CapacityBitrate))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"INGEST_DRAIN_GRACE", c.DrainGrace}, {"INGEST_STREAM_GRACE", c.StreamGrace},
		{"INGEST_EDGE_LINGER", c.EdgeLinger}, {"INGEST_UPSTREAM_WAIT", c.UpstreamWait},
		{"INGEST_READ_TIMEOUT", c.ReadTimeout}, {"INGEST_HANDSHAKE_TIMEOUT", c.HandshakeTimeout},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %s", d.key, d.v))
		}
	}
	if c.MaxPendingPerIP < 0 {
		errs = append(errs, fmt.Errorf("INGEST_MAX_PENDING_PER_IP: must not be negative, got %d", c.MaxPendingPerIP))
	}
	if c.MaxTracks < 1 || c.MaxTracks > 64 {
		errs = append(errs, fmt.Errorf("INGEST_MAX_TRACKS: must be between 1 and 64, got %d", c.MaxTracks))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("INGEST_TLS_CERT, INGEST_TLS_KEY: set both or neither"))
	}
	if c.TokenSecret == "" && !c.AllowOpenPublish && c.Origin() {
		errs = append(errs, errors.New("FERRY_TOKEN_SECRET: required unless INGEST_ALLOW_OPEN_PUBLISH=true"))
	}
	if c.MetricsAddr != "" {
		if err := hostPort("INGEST_METRICS_ADDR", c.MetricsAddr); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MemLimit < 0 {
		errs = append(errs, fmt.Errorf("INGEST_MEM_LIMIT: must not be negative, got %d", c.MemLimit))
	}
	errs = append(errs, c.NATS.Validate())
	return errors.Join(errs...)
}
