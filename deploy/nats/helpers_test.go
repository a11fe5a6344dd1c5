package nats_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/testutil"
)

// devEnv is the committed, dev-only credentials file the compose stack uses.
const devEnv = "../compose/dev.env"

func TestMain(m *testing.M) {
	// The configuration files read passwords from the environment, as the
	// NATS containers do with dev.env.
	if err := loadEnvFile(devEnv); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// loadEnvFile sets every KEY=VALUE of path that is not already set.
func loadEnvFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s: bad line %q", path, line)
		}
		if _, set := os.LookupEnv(k); !set {
			os.Setenv(k, v)
		}
	}
	return sc.Err()
}

// password returns the dev password of a user (FERRY_NATS_PASSWORD_<USER>).
func password(user string) string {
	return os.Getenv("FERRY_NATS_PASSWORD_" + strings.ToUpper(strings.ReplaceAll(user, "-", "_")))
}

// loadConfig parses a configuration file and makes it runnable in a test:
// loopback, random client port, no monitoring port, a temporary store.
func loadConfig(t *testing.T, file string) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	opts.Host = "127.0.0.1"
	opts.Port = -1
	opts.HTTPHost, opts.HTTPPort = "", 0
	opts.StoreDir = t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	return opts
}

// start runs a server from opts until the test ends.
func start(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("FERRY_TEST_LOG") != "" {
		opts.NoLog = false
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// conn is one user's connection, recording the errors the server reports.
type conn struct {
	user string
	nc   *nats.Conn
	js   jetstream.JetStream
	mu   sync.Mutex // guards errs
	errs []error
}

// dial connects as user with its dev password and its own inbox prefix,
// through libs/bus's options (cfg adjusts the bus.Config first).
func dial(t *testing.T, url, user string, cfg ...func(*bus.Config)) *conn {
	t.Helper()
	c, err := tryDial(url, user, cfg...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(c.nc.Close)
	return c
}

func tryDial(url, user string, cfg ...func(*bus.Config)) (*conn, error) {
	bc := bus.Config{URL: url, Name: "access-test-" + user, User: user, Password: password(user), Replicas: 1}
	for _, f := range cfg {
		f(&bc)
	}
	opts, err := bc.Options(zerolog.Nop())
	if err != nil {
		return nil, err
	}
	c := &conn{user: user}
	opts = append(opts,
		nats.CustomInboxPrefix("_INBOX_"+user),
		nats.Timeout(3*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.errs = append(c.errs, err)
			c.mu.Unlock()
		}))
	c.nc, err = nats.Connect(url, opts...)
	if err != nil {
		return nil, err
	}
	c.js, err = jetstream.New(c.nc)
	if err != nil {
		c.nc.Close()
		return nil, err
	}
	return c, nil
}

// violationsSince returns the permission violations reported after the first n errors.
func (c *conn) violationsSince(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, err := range c.errs[n:] {
		if errors.Is(err, nats.ErrPermissionViolation) {
			out = append(out, err.Error())
		}
	}
	return out
}

func (c *conn) errCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.errs)
}

// refused runs op and waits until the server reports a permissions
// violation naming subj (the exact subject, quoted as the server quotes it).
func (c *conn) refused(t *testing.T, subj string, op func(ctx context.Context) error) {
	t.Helper()
	n := c.errCount()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	testutil.CheckFor(t, 4*time.Second, 5*time.Millisecond, func() error {
		for _, v := range c.violationsSince(n) {
			if strings.Contains(v, `"`+subj+`"`) {
				return nil
			}
		}
		return fmt.Errorf("%s: no permissions violation for %q (violations: %v)", c.user, subj, c.violationsSince(n))
	})
	cancel()
	<-done
}

// permitted runs op, which must succeed without any permissions violation.
func (c *conn) permitted(t *testing.T, what string, op func(ctx context.Context) error) {
	t.Helper()
	n := c.errCount()
	before := c.nc.LastError()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	// A refused request is never answered: stop at the first violation
	// rather than wait for op's deadline.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %s: %v (violations: %v)", c.user, what, err, c.violationsSince(n))
			}
			waiting = false
		case <-tick.C:
			if v := c.violationsSince(n); len(v) > 0 {
				cancel()
				<-done
				t.Fatalf("%s: %s: permissions violations: %v", c.user, what, v)
			}
		}
	}
	// The server answers a PING after it has handled everything sent before
	// it, and the client records an -ERR (LastError) before it reads the
	// PONG, so a violation caused by op is visible once Flush returns.
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if last := c.nc.LastError(); last != before && errors.Is(last, nats.ErrPermissionViolation) {
		t.Fatalf("%s: %s: %v", c.user, what, last)
	}
	if v := c.violationsSince(n); len(v) > 0 {
		t.Fatalf("%s: %s: permissions violations: %v", c.user, what, v)
	}
}
