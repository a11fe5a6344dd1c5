// Package bus is Ferry's NATS layer: connecting, creating the JetStream
// streams and Key-Value buckets every service relies on, consuming events
// with validation, idempotency and dead-lettering (Consume), replaying a
// stream and following it live with a caught-up signal (Replay), and watching
// a Key-Value bucket through NATS failovers (WatchKV). Replay and WatchKV
// bound every request and retry it, so a request lost while a NATS node fails
// over costs an attempt, not the caller's deadline; use them instead of
// hand-written ordered-consumer or KV-watch loops. The embedded server
// (single node or a 3-node cluster) for development and tests is in
// libs/natsembed.
package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Config says how to reach NATS.
type Config struct {
	// URL is one or more comma-separated server URLs.
	URL string
	// Name is the connection name shown in monitoring.
	Name string
	// CredsFile is a NATS credentials file (JWT + nkey).
	CredsFile string
	// User and Password authenticate with user/password.
	User, Password string
	// TLSCA, TLSCert and TLSKey configure TLS (CA to verify the server; cert and key for mTLS).
	TLSCA, TLSCert, TLSKey string
	// Replicas for streams and buckets created at start (1 embedded, 3 on a cluster).
	Replicas int
	// InboxPrefix replaces _INBOX for this connection's replies, so that
	// permissions can give each user its own inboxes (_INBOX_<user>.>).
	// Empty: _INBOX_<User> when User is set, else _INBOX.
	InboxPrefix string
}

// ConfigFromEnv reads FERRY_NATS_URL, FERRY_NATS_CREDS, FERRY_NATS_USER,
// FERRY_NATS_PASSWORD, FERRY_NATS_CA, FERRY_NATS_CERT, FERRY_NATS_KEY,
// FERRY_NATS_INBOX_PREFIX and FERRY_NATS_REPLICAS over the given defaults.
func ConfigFromEnv(getenv func(string) string, def Config) Config {
	set := func(dst *string, key string) {
		if v := getenv(key); v != "" {
			*dst = v
		}
	}
	c := def
	set(&c.URL, "FERRY_NATS_URL")
	set(&c.CredsFile, "FERRY_NATS_CREDS")
	set(&c.User, "FERRY_NATS_USER")
	set(&c.Password, "FERRY_NATS_PASSWORD")
	set(&c.TLSCA, "FERRY_NATS_CA")
	set(&c.TLSCert, "FERRY_NATS_CERT")
	set(&c.TLSKey, "FERRY_NATS_KEY")
	set(&c.InboxPrefix, "FERRY_NATS_INBOX_PREFIX")
	if v := getenv("FERRY_NATS_REPLICAS"); v != "" {
		var n int
		if _, err := fmt.Sscanf(v, "%d", &n); err == nil {
			c.Replicas = n
		} else {
			c.Replicas = -1 // rejected by Validate
		}
	}
	if c.URL == "" {
		c.URL = nats.DefaultURL
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c
}

// natsSchemes are the URL schemes nats.go dials.
var natsSchemes = []string{"nats", "tls", "ws", "wss"}

// CheckURL checks a comma-separated list of NATS server URLs: each must be
// a URL with a scheme nats.go dials (nats, tls, ws, wss) and a host. The
// error does not name a key; callers blame the flag or variable it came from.
func CheckURL(list string) error {
	if strings.TrimSpace(list) == "" {
		return errors.New("must not be empty")
	}
	for _, u := range strings.Split(list, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		scheme, rest, ok := strings.Cut(u, "://")
		if !ok || rest == "" {
			return fmt.Errorf("%q must be a URL like nats://127.0.0.1:4222", u)
		}
		if !slices.Contains(natsSchemes, strings.ToLower(scheme)) {
			return fmt.Errorf("%q: scheme %q is not a NATS scheme (nats, tls, ws or wss), e.g. nats://127.0.0.1:4222", u, scheme)
		}
	}
	return nil
}

// Validate checks the configuration; errors name the environment key.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("FERRY_NATS_URL: must not be empty"))
	}
	if c.URL != "" {
		if err := CheckURL(c.URL); err != nil {
			errs = append(errs, fmt.Errorf("FERRY_NATS_URL: %w", err))
		}
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("FERRY_NATS_REPLICAS: must be 1..5, got %d", c.Replicas))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("FERRY_NATS_CERT, FERRY_NATS_KEY: set both or neither"))
	}
	if p := c.InboxPrefix; p != "" && (strings.ContainsAny(p, "*> \t") || strings.HasSuffix(p, ".")) {
		errs = append(errs, fmt.Errorf("FERRY_NATS_INBOX_PREFIX: %q must be a subject prefix without wildcards, spaces or a trailing dot", p))
	}
	if c.CredsFile != "" && c.User != "" {
		errs = append(errs, errors.New("FERRY_NATS_CREDS, FERRY_NATS_USER: use one way to authenticate"))
	}
	return errors.Join(errs...)
}

// Options returns the nats.go options for c: reconnect forever, log
// connection changes, authenticate, TLS.
func (c Config) Options(log zerolog.Logger) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(c.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// Find a dead connection (a partition: no RST, packets dropped) within
		// ~6 s instead of nats.go's default 2 min x 2 pings.
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn().Err(err).Msg("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info().Str("url", nc.ConnectedUrl()).Msg("nats reconnected") }),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			ev := log.Warn().Err(err)
			if s != nil {
				ev = ev.Str("subject", s.Subject)
			}
			ev.Msg("nats async error")
		}),
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if p := c.inboxPrefix(); p != "" {
		opts = append(opts, nats.CustomInboxPrefix(p))
	}
	if c.TLSCA != "" || c.TLSCert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.TLSCA != "" {
			pem, err := os.ReadFile(c.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("FERRY_NATS_CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("FERRY_NATS_CA: no certificate in %s", c.TLSCA)
			}
			tc.RootCAs = pool
		}
		if c.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("FERRY_NATS_CERT: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// inboxPrefix is InboxPrefix, or _INBOX_<User> when only User is set.
func (c Config) inboxPrefix() string {
	if c.InboxPrefix != "" {
		return c.InboxPrefix
	}
	if c.User != "" {
		return "_INBOX_" + c.User
	}
	return ""
}

// ErrUnreachable wraps a failure to reach NATS at start.
var ErrUnreachable = errors.New("NATS unreachable")

// Connect dials NATS and returns the connection and its JetStream context.
// A failed first connection returns ErrUnreachable naming the URL.
func Connect(ctx context.Context, c Config, log zerolog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	opts, err := c.Options(log)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, nats.Timeout(3*time.Second))
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}
