package placement

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/cli"
	"github.com/ferrystream/ferry/libs/env"
	"github.com/ferrystream/ferry/services/placement/internal/engine"
	"github.com/ferrystream/ferry/services/placement/internal/fleet"
)

// Config is the service configuration: defaults, then environment
// (PLACEMENT_*, FERRY_NATS_*, FERRY_TOKEN_SECRET), then flags.
type Config struct {
	// NATS is how to reach NATS (FERRY_NATS_*, --nats).
	NATS bus.Config
	// ID names this replica (PLACEMENT_ID, --id); unique per replica.
	ID string
	// MetricsAddr serves /metrics /healthz /readyz (PLACEMENT_METRICS_ADDR, --metrics-addr; "" disables).
	MetricsAddr string
	// TokenSecret signs publish tokens (FERRY_TOKEN_SECRET, --token-secret).
	TokenSecret string
	// TokenTTL is the lifetime of a publish token (PLACEMENT_TOKEN_TTL, --token-ttl).
	TokenTTL time.Duration
	// MinDeadline is the least time an evacuation gives a stream (PLACEMENT_MIN_DEADLINE, --min-deadline).
	MinDeadline time.Duration
	// Pace is the spacing of moves onto one target host (PLACEMENT_PACE, --pace; 0 = unpaced).
	Pace time.Duration
	// StaleAfter: a registry record older than this is not heartbeating (PLACEMENT_STALE_AFTER, --stale-after).
	StaleAfter time.Duration
	// StepGrace and FallbackGrace extend step deadlines past the offline time
	// (PLACEMENT_STEP_GRACE, PLACEMENT_FALLBACK_GRACE).
	StepGrace     time.Duration
	FallbackGrace time.Duration
	// EvacuationLead: how long before a predicted outage its evacuation starts (PLACEMENT_EVACUATION_LEAD).
	EvacuationLead time.Duration
	// DefaultCapacity is the stream capacity of a host that declares none (PLACEMENT_DEFAULT_CAPACITY).
	DefaultCapacity int
	// MaxCapacity: a host declaring more streams is refused as absurd (PLACEMENT_MAX_CAPACITY).
	MaxCapacity int
	// StreamBitrate estimates one stream's bitrate in bit/s (PLACEMENT_STREAM_BITRATE).
	StreamBitrate int64
	// Workers bounds concurrent move writes across all evacuations (PLACEMENT_WORKERS, --workers).
	Workers int
	// ReleaseAfter: a push placement without a publisher for this long is
	// released (deleted, event released) and no longer moved
	// (PLACEMENT_RELEASE_AFTER, --release-after; 0 = never).
	ReleaseAfter time.Duration

	parseErrs []error
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	e := engine.DefaultConfig()
	return Config{
		NATS:            bus.Config{Name: "ferry-placement"},
		MetricsAddr:     "127.0.0.1:9313",
		TokenTTL:        e.TokenTTL,
		MinDeadline:     e.MinDeadline,
		Pace:            e.Pace,
		StaleAfter:      e.Fleet.StaleAfter,
		StepGrace:       e.Timing.StepGrace,
		FallbackGrace:   e.Timing.FallbackGrace,
		EvacuationLead:  e.Fleet.EvacuationLead,
		DefaultCapacity: e.Fleet.DefaultCapacityStreams,
		MaxCapacity:     e.Fleet.MaxCapacityStreams,
		StreamBitrate:   e.StreamBitrate,
		Workers:         e.Workers,
		ReleaseAfter:    e.ReleaseAfter,
	}
}

// Description is the paragraph that opens `ferry-placement -h`.
const Description = `ferry-placement decides where every stream lives: it answers publishers'
placement.v1.choose requests with a host and a signed publish token, and when
health-prediction announces an outage (or a host drains) it moves the host's
streams elsewhere and drives each migration to its end. Replicas elect a
leader through a NATS Key-Value lease. Settings come from the environment
(PLACEMENT_*, FERRY_*) and then from these flags.`

// ErrHelp is returned by Load for -h/--help or --version (the text was printed).
var ErrHelp = flag.ErrHelp

// Load builds the configuration from defaults, getenv and args. Usage and
// flag errors are written to out.
func Load(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	c := DefaultConfig()
	c.NATS = bus.ConfigFromEnv(getenv, c.NATS)
	r := env.New(getenv)
	r.Str(&c.ID, "PLACEMENT_ID")
	r.Str(&c.MetricsAddr, "PLACEMENT_METRICS_ADDR")
	r.Str(&c.TokenSecret, "FERRY_TOKEN_SECRET")
	r.Dur(&c.TokenTTL, "PLACEMENT_TOKEN_TTL")
	r.Dur(&c.MinDeadline, "PLACEMENT_MIN_DEADLINE")
	r.Dur(&c.Pace, "PLACEMENT_PACE")
	r.Dur(&c.StaleAfter, "PLACEMENT_STALE_AFTER")
	r.Dur(&c.StepGrace, "PLACEMENT_STEP_GRACE")
	r.Dur(&c.FallbackGrace, "PLACEMENT_FALLBACK_GRACE")
	r.Dur(&c.EvacuationLead, "PLACEMENT_EVACUATION_LEAD")
	r.Int(&c.DefaultCapacity, "PLACEMENT_DEFAULT_CAPACITY")
	r.Int(&c.MaxCapacity, "PLACEMENT_MAX_CAPACITY")
	r.Int64(&c.StreamBitrate, "PLACEMENT_STREAM_BITRATE")
	r.Int(&c.Workers, "PLACEMENT_WORKERS")
	r.Dur(&c.ReleaseAfter, "PLACEMENT_RELEASE_AFTER")
	if err := r.Err(); err != nil {
		c.parseErrs = append(c.parseErrs, err)
	}

	fs := flag.NewFlagSet("ferry-placement", flag.ContinueOnError)
	cli.SetUsage(fs, out, "ferry-placement [flags]", Description)
	fs.StringVar(&c.NATS.URL, "nats", c.NATS.URL, "NATS server URL(s), comma-separated (FERRY_NATS_URL)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "address for /metrics /healthz /readyz, empty to disable (PLACEMENT_METRICS_ADDR)")
	fs.StringVar(&c.ID, "id", c.ID, "replica id, unique per replica (PLACEMENT_ID; default placement-<random>)")
	fs.StringVar(&c.TokenSecret, "token-secret", c.TokenSecret, "publish token signing secret (FERRY_TOKEN_SECRET)")
	fs.DurationVar(&c.TokenTTL, "token-ttl", c.TokenTTL, "publish token lifetime (PLACEMENT_TOKEN_TTL)")
	fs.DurationVar(&c.MinDeadline, "min-deadline", c.MinDeadline, "least time an evacuation gives a stream (PLACEMENT_MIN_DEADLINE)")
	fs.DurationVar(&c.Pace, "pace", c.Pace, "spacing of moves onto one target host, 0 = unpaced (PLACEMENT_PACE)")
	fs.DurationVar(&c.StaleAfter, "stale-after", c.StaleAfter, "registry record age after which a host is not heartbeating (PLACEMENT_STALE_AFTER)")
	fs.DurationVar(&c.StepGrace, "step-grace", c.StepGrace, "time past the offline deadline for attach and cease (PLACEMENT_STEP_GRACE)")
	fs.DurationVar(&c.FallbackGrace, "fallback-grace", c.FallbackGrace, "time past the deadline for a fallback publisher to reconnect (PLACEMENT_FALLBACK_GRACE)")
	fs.DurationVar(&c.EvacuationLead, "evacuation-lead", c.EvacuationLead, "how long before a predicted outage its evacuation starts (PLACEMENT_EVACUATION_LEAD)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "concurrent decision writes (PLACEMENT_WORKERS)")
	fs.DurationVar(&c.ReleaseAfter, "release-after", c.ReleaseAfter, "release a push placement without a publisher for this long, 0 = never (PLACEMENT_RELEASE_AFTER)")
	if err := cli.Parse(fs, args, out); err != nil {
		return c, err
	}
	if err := cli.CheckSet(fs, "nats", bus.CheckURL); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if c.ID == "" {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		c.ID = "placement-" + hex.EncodeToString(b)
	}
	return c, nil
}

// Validate checks the configuration; each error names its key.
func (c Config) Validate() error {
	errs := append([]error{}, c.parseErrs...)
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	if !fleet.NamePattern.MatchString(c.ID) {
		errs = append(errs, fmt.Errorf("PLACEMENT_ID: %q must match %s", c.ID, fleet.NamePattern))
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("PLACEMENT_METRICS_ADDR: %q must be host:port", c.MetricsAddr))
		}
	}
	switch {
	case c.TokenSecret == "":
		errs = append(errs, errors.New("FERRY_TOKEN_SECRET: required (the secret shared with ingest and notifier)"))
	case len(c.TokenSecret) < 16:
		errs = append(errs, fmt.Errorf("FERRY_TOKEN_SECRET: must be at least 16 bytes, got %d", len(c.TokenSecret)))
	}
	between := func(key string, v, lo, hi time.Duration) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("%s: must be between %v and %v, got %v", key, lo, hi, v))
		}
	}
	between("PLACEMENT_TOKEN_TTL", c.TokenTTL, 10*time.Second, 24*time.Hour)
	between("PLACEMENT_MIN_DEADLINE", c.MinDeadline, time.Second, time.Hour)
	between("PLACEMENT_PACE", c.Pace, 0, 10*time.Second)
	between("PLACEMENT_STALE_AFTER", c.StaleAfter, time.Second, 5*time.Minute)
	between("PLACEMENT_STEP_GRACE", c.StepGrace, time.Second, time.Hour)
	between("PLACEMENT_FALLBACK_GRACE", c.FallbackGrace, time.Second, time.Hour)
	between("PLACEMENT_EVACUATION_LEAD", c.EvacuationLead, 0, 7*24*time.Hour)
	if c.ReleaseAfter != 0 {
		between("PLACEMENT_RELEASE_AFTER", c.ReleaseAfter, 10*time.Second, 30*24*time.Hour)
	}
	if c.MaxCapacity < 1 {
		errs = append(errs, fmt.Errorf("PLACEMENT_MAX_CAPACITY: must be at least 1, got %d", c.MaxCapacity))
	}
	if c.DefaultCapacity < 1 || c.DefaultCapacity > c.MaxCapacity {
		errs = append(errs, fmt.Errorf("PLACEMENT_DEFAULT_CAPACITY: must be 1..PLACEMENT_MAX_CAPACITY (%d), got %d", c.MaxCapacity, c.DefaultCapacity))
	}
	if c.StreamBitrate < 1 || c.StreamBitrate > 1_000_000_000 {
		errs = append(errs, fmt.Errorf("PLACEMENT_STREAM_BITRATE: must be 1..1000000000 bit/s, got %d", c.StreamBitrate))
	}
	if c.Workers < 1 || c.Workers > 256 {
		errs = append(errs, fmt.Errorf("PLACEMENT_WORKERS: must be 1..256, got %d", c.Workers))
	}
	return errors.Join(errs...)
}

// Engine returns the engine configuration.
func (c Config) Engine() engine.Config {
	e := engine.DefaultConfig()
	e.ID = c.ID
	e.TokenSecret = []byte(c.TokenSecret)
	e.TokenTTL = c.TokenTTL
	e.MinDeadline = c.MinDeadline
	e.Pace = c.Pace
	e.Workers = c.Workers
	e.ReleaseAfter = c.ReleaseAfter
	e.Fleet.StaleAfter = c.StaleAfter
	e.Fleet.EvacuationLead = c.EvacuationLead
	e.Fleet.DefaultCapacityStreams = c.DefaultCapacity
	e.Fleet.MaxCapacityStreams = c.MaxCapacity
	e.StreamBitrate = c.StreamBitrate
	e.Timing.StepGrace = c.StepGrace
	e.Timing.FallbackGrace = c.FallbackGrace
	return e
}
