package publisher

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/cli"
	fenv "github.com/ferrystream/ferry/libs/env"
)

// Description is the paragraph that opens `ferry-publish -h`.
const Description = `ferry-publish is Ferry's camera-side agent: it asks placement where a stream
should live, publishes a source there over RTSP (a synthetic test pattern with
frame counters, a camera it pulls, or what a local encoder pushes to it), and
when a move notice arrives it connects to the new host and switches
make-before-break, so viewers see one continuous stream. Settings come from
the environment (PUBLISH_*, FERRY_*) and then from these flags.`

// ErrHelp is returned by Load when -h, --help or --version was given; the text went to the writer.
var ErrHelp = flag.ErrHelp

// namePattern is the pattern of stream and client names (they are subject tokens).
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Source kinds accepted by Config.Source besides URLs.
const (
	// SourceSynthetic is fake H.264 whose NAL units carry frame counters.
	SourceSynthetic = "synthetic"
	// SourceMJPEG is a decodable M-JPEG test pattern.
	SourceMJPEG = "mjpeg"
)

// Notice channels.
const (
	ChannelNATS    = "nats"
	ChannelSSE     = "sse"
	ChannelWebhook = "webhook"
)

// Config is the agent's configuration.
type Config struct {
	// Stream is the stream name (PUBLISH_STREAM, --stream).
	Stream string
	// ClientID names this publisher; notices are addressed to it (PUBLISH_CLIENT_ID, --client-id).
	ClientID string
	// Source is "synthetic", "mjpeg", a camera's rtsp:// URL to pull, or
	// listen://host:port/path for a local RTSP endpoint that ffmpeg or a camera
	// pushes into (PUBLISH_SOURCE, --source).
	Source string
	// FPS, GOP and Bitrate shape the synthetic sources (PUBLISH_FPS, PUBLISH_GOP, PUBLISH_BITRATE).
	FPS, GOP, Bitrate int
	// Channels are the notice channels declared to placement (PUBLISH_CHANNELS, --channels).
	Channels []string
	// WebhookListen is where the agent receives webhook notices (PUBLISH_WEBHOOK_LISTEN).
	WebhookListen string
	// WebhookURL is the URL declared to placement; default http://<listen addr>/v1/notices
	// (PUBLISH_WEBHOOK_URL).
	WebhookURL string
	// NotifierURL is the notifier's HTTP API, for SSE and HTTP acks (PUBLISH_NOTIFIER_URL).
	NotifierURL string
	// JSON prints JSON lines instead of plain lines (PUBLISH_JSON, --json).
	JSON bool
	// MetricsAddr serves /metrics /healthz /readyz; "" disables (PUBLISH_METRICS_ADDR).
	MetricsAddr string
	// RetryMin and RetryMax bound the reconnect backoff (PUBLISH_RETRY_MIN, PUBLISH_RETRY_MAX).
	RetryMin, RetryMax time.Duration
	// RedirectOverlap bounds a move started by an in-band REDIRECT, which carries
	// no offline time (PUBLISH_REDIRECT_OVERLAP).
	RedirectOverlap time.Duration
	// NATS says how to reach NATS (FERRY_NATS_*, --nats).
	NATS bus.Config
}

// Default returns the defaults.
func Default() Config {
	return Config{
		Source:          SourceSynthetic,
		FPS:             25,
		GOP:             25,
		Channels:        []string{ChannelNATS},
		WebhookListen:   "127.0.0.1:0",
		RetryMin:        100 * time.Millisecond,
		RetryMax:        5 * time.Second,
		RedirectOverlap: 30 * time.Second,
	}
}

// Load builds the configuration from defaults, then getenv, then args. It
// does not validate; call Validate.
func Load(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c := Default()
	e := fenv.New(getenv)
	str, num, dur := e.Str, e.Int, e.Dur
	str(&c.Stream, "PUBLISH_STREAM")
	str(&c.ClientID, "PUBLISH_CLIENT_ID")
	str(&c.Source, "PUBLISH_SOURCE")
	num(&c.FPS, "PUBLISH_FPS")
	num(&c.GOP, "PUBLISH_GOP")
	num(&c.Bitrate, "PUBLISH_BITRATE")
	channels := strings.Join(c.Channels, ",")
	str(&channels, "PUBLISH_CHANNELS")
	str(&c.WebhookListen, "PUBLISH_WEBHOOK_LISTEN")
	str(&c.WebhookURL, "PUBLISH_WEBHOOK_URL")
	str(&c.NotifierURL, "PUBLISH_NOTIFIER_URL")
	e.Bool(&c.JSON, "PUBLISH_JSON")
	str(&c.MetricsAddr, "PUBLISH_METRICS_ADDR")
	dur(&c.RetryMin, "PUBLISH_RETRY_MIN")
	dur(&c.RetryMax, "PUBLISH_RETRY_MAX")
	dur(&c.RedirectOverlap, "PUBLISH_REDIRECT_OVERLAP")
	c.NATS = bus.ConfigFromEnv(getenv, bus.Config{Name: "ferry-publish"})
	if err := e.Err(); err != nil {
		return c, err
	}

	fs := flag.NewFlagSet("ferry-publish", flag.ContinueOnError)
	cli.SetUsage(fs, usage, "ferry-publish --stream NAME --client-id ID [--source synthetic|mjpeg|rtsp://camera/...|listen://127.0.0.1:8555/<path>] [flags]", Description)
	fs.StringVar(&c.Stream, "stream", c.Stream, "stream name (PUBLISH_STREAM)")
	fs.StringVar(&c.ClientID, "client-id", c.ClientID, "client id notices are addressed to (PUBLISH_CLIENT_ID)")
	fs.StringVar(&c.Source, "source", c.Source, "synthetic | mjpeg | rtsp://camera/... | listen://127.0.0.1:8555/<path> (PUBLISH_SOURCE)")
	fs.IntVar(&c.FPS, "fps", c.FPS, "frame rate of synthetic sources (PUBLISH_FPS)")
	fs.IntVar(&c.GOP, "gop", c.GOP, "keyframe interval of the synthetic H.264 source, frames (PUBLISH_GOP)")
	fs.IntVar(&c.Bitrate, "bitrate", c.Bitrate, "bitrate of the synthetic H.264 source, bit/s, 0 = minimal (PUBLISH_BITRATE)")
	fs.StringVar(&channels, "channels", channels, "notice channels to declare: nats,sse,webhook (PUBLISH_CHANNELS)")
	fs.StringVar(&c.WebhookListen, "webhook-listen", c.WebhookListen, "listen address of the webhook receiver (PUBLISH_WEBHOOK_LISTEN)")
	fs.StringVar(&c.WebhookURL, "webhook-url", c.WebhookURL, "webhook URL to declare (default: http://<listen addr>/v1/notices) (PUBLISH_WEBHOOK_URL)")
	fs.StringVar(&c.NotifierURL, "notifier-url", c.NotifierURL, "notifier HTTP API, for SSE and HTTP acks (PUBLISH_NOTIFIER_URL)")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print JSON lines (PUBLISH_JSON)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "listen address for /metrics /healthz /readyz (PUBLISH_METRICS_ADDR)")
	fs.StringVar(&c.NATS.URL, "nats", c.NATS.URL, "NATS server URL(s) (FERRY_NATS_URL)")
	fs.DurationVar(&c.RetryMin, "retry-min", c.RetryMin, "first reconnect delay (PUBLISH_RETRY_MIN)")
	fs.DurationVar(&c.RetryMax, "retry-max", c.RetryMax, "longest reconnect delay (PUBLISH_RETRY_MAX)")
	fs.DurationVar(&c.RedirectOverlap, "redirect-overlap", c.RedirectOverlap, "longest overlap after an in-band REDIRECT (PUBLISH_REDIRECT_OVERLAP)")
	if err := cli.Parse(fs, args, usage); err != nil {
		return c, err
	}
	if err := cli.CheckSet(fs, "nats", bus.CheckURL); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	c.Channels = splitList(channels)
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Validate checks the configuration; every error names its key.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Stream == "":
		errs = append(errs, errors.New("--stream is required (or set PUBLISH_STREAM)"))
	case !namePattern.MatchString(c.Stream):
		errs = append(errs, fmt.Errorf("PUBLISH_STREAM: must match %s, got %q", namePattern, c.Stream))
	}
	switch {
	case c.ClientID == "":
		errs = append(errs, errors.New("--client-id is required (or set PUBLISH_CLIENT_ID)"))
	case !namePattern.MatchString(c.ClientID):
		errs = append(errs, fmt.Errorf("PUBLISH_CLIENT_ID: must match %s, got %q", namePattern, c.ClientID))
	}
	if err := validateSource(c.Source); err != nil {
		errs = append(errs, fmt.Errorf("PUBLISH_SOURCE: %w", err))
	}
	if c.FPS < 1 || c.FPS > 120 {
		errs = append(errs, fmt.Errorf("PUBLISH_FPS: must be 1..120, got %d", c.FPS))
	}
	if c.GOP < 1 {
		errs = append(errs, fmt.Errorf("PUBLISH_GOP: must be >= 1, got %d", c.GOP))
	}
	if c.Bitrate < 0 {
		errs = append(errs, fmt.Errorf("PUBLISH_BITRATE: must be >= 0, got %d", c.Bitrate))
	}
	seen := map[string]bool{}
	for _, ch := range c.Channels {
		if ch != ChannelNATS && ch != ChannelSSE && ch != ChannelWebhook {
			errs = append(errs, fmt.Errorf("PUBLISH_CHANNELS: unknown channel %q (nats, sse, webhook)", ch))
		}
		if seen[ch] {
			errs = append(errs, fmt.Errorf("PUBLISH_CHANNELS: %q listed twice", ch))
		}
		seen[ch] = true
	}
	if slices.Contains(c.Channels, ChannelWebhook) {
		if _, _, err := net.SplitHostPort(c.WebhookListen); err != nil {
			errs = append(errs, fmt.Errorf("PUBLISH_WEBHOOK_LISTEN: must be host:port, got %q", c.WebhookListen))
		}
		if c.WebhookURL != "" && !isHTTPURL(c.WebhookURL) {
			errs = append(errs, fmt.Errorf("PUBLISH_WEBHOOK_URL: must be an http(s) URL, got %q", c.WebhookURL))
		}
	}
	if slices.Contains(c.Channels, ChannelSSE) && c.NotifierURL == "" {
		errs = append(errs, errors.New("PUBLISH_NOTIFIER_URL: required with the sse channel"))
	}
	if c.NotifierURL != "" && !isHTTPURL(c.NotifierURL) {
		errs = append(errs, fmt.Errorf("PUBLISH_NOTIFIER_URL: must be an http(s) URL, got %q", c.NotifierURL))
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("PUBLISH_METRICS_ADDR: must be host:port, got %q", c.MetricsAddr))
		}
	}
	if c.RetryMin <= 0 {
		errs = append(errs, fmt.Errorf("PUBLISH_RETRY_MIN: must be > 0, got %s", c.RetryMin))
	}
	if c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("PUBLISH_RETRY_MAX: must be >= PUBLISH_RETRY_MIN (%s), got %s", c.RetryMin, c.RetryMax))
	}
	if c.RedirectOverlap <= 0 {
		errs = append(errs, fmt.Errorf("PUBLISH_REDIRECT_OVERLAP: must be > 0, got %s", c.RedirectOverlap))
	}
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func validateSource(s string) error {
	switch s {
	case SourceSynthetic, SourceMJPEG:
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	switch u.Scheme {
	case "rtsp", "rtsps":
		if u.Host == "" {
			return fmt.Errorf("%q: no host", s)
		}
		return nil
	case "listen":
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return fmt.Errorf("%q: must be listen://host:port/path", s)
		}
		if strings.Trim(u.Path, "/") == "" {
			return fmt.Errorf("%q: must be listen://host:port/path (no path)", s)
		}
		return nil
	}
	return fmt.Errorf("%q: must be synthetic, mjpeg, rtsp://... or listen://host:port/path", s)
}
