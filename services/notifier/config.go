package notifier

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/cli"
	fenv "github.com/ferrystream/ferry/libs/env"
	"github.com/ferrystream/ferry/libs/obs"
)

// Description is the paragraph that opens `ferry-notifier -h`.
const Description = `ferry-notifier delivers move notices: for every migration placement decides,
it tells the stream's publisher where to go, over the channels the publisher
declared (NATS, webhook, server-sent events), with a fresh publish token for
the new host, retries until the notice is acknowledged or its deadline passes,
and reports the outcome as events. Settings come from the environment
(NOTIFIER_*, FERRY_*) and then from these flags.`

// ErrHelp is returned by Load when -h, --help or --version was given; the text went to the writer.
var ErrHelp = flag.ErrHelp

// namePattern is the pattern of instance names used in event sources.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Config is the notifier's configuration.
type Config struct {
	// HTTPAddr serves the server-sent-events streams and HTTP acks; "" disables
	// them (webhook and NATS delivery need no listener) (NOTIFIER_HTTP_ADDR).
	HTTPAddr string
	// MetricsAddr serves /metrics, /healthz and /readyz; "" disables (NOTIFIER_METRICS_ADDR).
	MetricsAddr string
	// Pprof serves /debug/pprof/ on the metrics server (FERRY_PPROF=1).
	Pprof bool
	// TokenSecret signs the publish tokens of new URLs (FERRY_TOKEN_SECRET).
	TokenSecret string
	// Instance names this replica in event sources (NOTIFIER_INSTANCE, default hostname-pid).
	Instance string
	// RetryMin and RetryMax bound the exponential backoff between delivery
	// attempts on one channel (NOTIFIER_RETRY_MIN, NOTIFIER_RETRY_MAX).
	RetryMin, RetryMax time.Duration
	// Lease is how long a replica holds a notice without renewing it before
	// another replica takes it over (NOTIFIER_LEASE); also the consumer's AckWait.
	Lease time.Duration
	// TokenGrace is added to the deadline for the new URL's token expiry (NOTIFIER_TOKEN_GRACE).
	TokenGrace time.Duration
	// WebhookTimeout bounds one webhook POST (NOTIFIER_WEBHOOK_TIMEOUT).
	WebhookTimeout time.Duration
	// Lookback is how far back a newly created consumer starts reading
	// reassigned events (NOTIFIER_LOOKBACK).
	Lookback time.Duration
	// UrgentWindow is the offline time given to a notice whose deadline had
	// already passed when it was decided (host down, host cut off from NATS):
	// such a client is told to move now (NOTIFIER_URGENT_WINDOW; 0 = fail it
	// with reason "deadline" instead).
	UrgentWindow time.Duration
	// NATS says how to reach NATS (FERRY_NATS_*, flag --nats).
	NATS bus.Config
}

// Default returns the defaults.
func Default() Config {
	host, _ := os.Hostname()
	inst := fmt.Sprintf("%s-%d", host, os.Getpid())
	if !namePattern.MatchString(inst) {
		inst = fmt.Sprintf("notifier-%d", os.Getpid())
	}
	return Config{
		Instance:       inst,
		RetryMin:       100 * time.Millisecond,
		RetryMax:       5 * time.Second,
		Lease:          10 * time.Second,
		TokenGrace:     5 * time.Minute,
		WebhookTimeout: 5 * time.Second,
		Lookback:       10 * time.Minute,
		UrgentWindow:   10 * time.Second,
	}
}

// Load builds the configuration from defaults, then getenv, then args. It
// does not validate; call Validate.
func Load(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c := Default()
	e := fenv.New(getenv)
	str, dur := e.Str, e.Dur
	str(&c.HTTPAddr, "NOTIFIER_HTTP_ADDR")
	str(&c.MetricsAddr, "NOTIFIER_METRICS_ADDR")
	c.Pprof = obs.PprofEnabled(getenv)
	str(&c.TokenSecret, "FERRY_TOKEN_SECRET")
	str(&c.Instance, "NOTIFIER_INSTANCE")
	dur(&c.RetryMin, "NOTIFIER_RETRY_MIN")
	dur(&c.RetryMax, "NOTIFIER_RETRY_MAX")
	dur(&c.Lease, "NOTIFIER_LEASE")
	dur(&c.TokenGrace, "NOTIFIER_TOKEN_GRACE")
	dur(&c.WebhookTimeout, "NOTIFIER_WEBHOOK_TIMEOUT")
	dur(&c.Lookback, "NOTIFIER_LOOKBACK")
	dur(&c.UrgentWindow, "NOTIFIER_URGENT_WINDOW")
	c.NATS = bus.ConfigFromEnv(getenv, bus.Config{Name: "ferry-notifier"})
	if err := e.Err(); err != nil {
		return c, err
	}

	fs := flag.NewFlagSet("ferry-notifier", flag.ContinueOnError)
	cli.SetUsage(fs, usage, "ferry-notifier [flags]", Description)
	fs.StringVar(&c.NATS.URL, "nats", c.NATS.URL, "NATS server URL(s) (FERRY_NATS_URL)")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "listen address for SSE streams and HTTP acks, host:port (NOTIFIER_HTTP_ADDR)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "listen address for /metrics /healthz /readyz (NOTIFIER_METRICS_ADDR)")
	fs.StringVar(&c.TokenSecret, "token-secret", c.TokenSecret, "publish token secret (FERRY_TOKEN_SECRET)")
	fs.StringVar(&c.Instance, "instance", c.Instance, "replica name in event sources (NOTIFIER_INSTANCE)")
	fs.DurationVar(&c.RetryMin, "retry-min", c.RetryMin, "first retry delay per channel (NOTIFIER_RETRY_MIN)")
	fs.DurationVar(&c.RetryMax, "retry-max", c.RetryMax, "longest retry delay per channel (NOTIFIER_RETRY_MAX)")
	fs.DurationVar(&c.Lease, "lease", c.Lease, "how long a replica may hold a notice without renewing it (NOTIFIER_LEASE)")
	fs.DurationVar(&c.TokenGrace, "token-grace", c.TokenGrace, "token expiry after the deadline (NOTIFIER_TOKEN_GRACE)")
	fs.DurationVar(&c.WebhookTimeout, "webhook-timeout", c.WebhookTimeout, "timeout of one webhook POST (NOTIFIER_WEBHOOK_TIMEOUT)")
	fs.DurationVar(&c.Lookback, "lookback", c.Lookback, "how far back a new consumer starts (NOTIFIER_LOOKBACK)")
	fs.DurationVar(&c.UrgentWindow, "urgent-window", c.UrgentWindow, "offline time given to a move decided after its deadline (NOTIFIER_URGENT_WINDOW)")
	if err := cli.Parse(fs, args, usage); err != nil {
		return c, err
	}
	if err := cli.CheckSet(fs, "nats", bus.CheckURL); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return c, nil
}

// Validate checks the configuration; every error names its key.
func (c Config) Validate() error {
	var errs []error
	for _, a := range []struct{ key, v string }{{"NOTIFIER_HTTP_ADDR", c.HTTPAddr}, {"NOTIFIER_METRICS_ADDR", c.MetricsAddr}} {
		if a.v == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("%s: must be host:port, got %q", a.key, a.v))
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			errs = append(errs, fmt.Errorf("%s: bad port in %q", a.key, a.v))
		}
	}
	if c.TokenSecret == "" {
		errs = append(errs, errors.New("FERRY_TOKEN_SECRET: required (the new URL carries a signed publish token)"))
	}
	if !namePattern.MatchString(c.Instance) {
		errs = append(errs, fmt.Errorf("NOTIFIER_INSTANCE: must match %s, got %q", namePattern, c.Instance))
	}
	if c.RetryMin <= 0 {
		errs = append(errs, fmt.Errorf("NOTIFIER_RETRY_MIN: must be > 0, got %s", c.RetryMin))
	}
	if c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("NOTIFIER_RETRY_MAX: must be >= NOTIFIER_RETRY_MIN (%s), got %s", c.RetryMin, c.RetryMax))
	}
	if c.Lease < time.Second {
		errs = append(errs, fmt.Errorf("NOTIFIER_LEASE: must be >= 1s, got %s", c.Lease))
	}
	if c.TokenGrace < 0 {
		errs = append(errs, fmt.Errorf("NOTIFIER_TOKEN_GRACE: must be >= 0, got %s", c.TokenGrace))
	}
	if c.WebhookTimeout <= 0 {
		errs = append(errs, fmt.Errorf("NOTIFIER_WEBHOOK_TIMEOUT: must be > 0, got %s", c.WebhookTimeout))
	}
	if c.UrgentWindow < 0 {
		errs = append(errs, fmt.Errorf("NOTIFIER_URGENT_WINDOW: must be >= 0, got %s", c.UrgentWindow))
	}
	if c.Lookback < 0 {
		errs = append(errs, fmt.Errorf("NOTIFIER_LOOKBACK: must be >= 0, got %s", c.Lookback))
	}
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
