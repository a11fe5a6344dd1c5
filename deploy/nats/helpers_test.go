package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/natscreds"
	"github.com/ferrystream/ferry/libs/testutil"
)

// fleet is the test fleet's credentials, minted once by natscreds as
// `ferryctl creds init` does: hosts ingest-1..3 and edge-1, agents agent-1
// and agent-2, one user per service.
var fleet *natscreds.Dir

var (
	testHosts  = []string{"ingest-1", "ingest-2", "ingest-3", "edge-1"}
	testAgents = []string{"agent-1", "agent-2"}
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "ferry-nats-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if fleet, err = natscreds.Init(filepath.Join(dir, "creds"), testHosts, testAgents, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// What scripts/compose-secrets.sh generates for the cluster's routes.
		pw := randomHex(12)
		os.Setenv("FERRY_NATS_ROUTE_PASSWORD", pw)
		os.Setenv("FERRY_NATS_ROUTES", fmt.Sprintf(`["nats-route://route:%[1]s@nats-1:6222","nats-route://route:%[1]s@nats-2:6222","nats-route://route:%[1]s@nats-3:6222"]`, pw))
		return m.Run()
	}())
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newFleet mints a fleet of the test's own (for tests that change it).
func newFleet(t *testing.T) *natscreds.Dir {
	t.Helper()
	d, err := natscreds.Init(filepath.Join(t.TempDir(), "creds"), testHosts, testAgents, 0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// loadConfig is loadFleetConfig with the test fleet.
func loadConfig(t *testing.T, file string) *server.Options {
	t.Helper()
	return loadFleetConfig(t, file, fleet)
}

// loadFleetConfig parses one of this folder's configuration files, with the
// fleet's operator.conf beside it (as the compose stack mounts it), and makes
// it runnable in a test: loopback, random client port, no monitoring port, a
// temporary store, all written in the copied files so a reload keeps them.
func loadFleetConfig(t *testing.T, file string, d *natscreds.Dir) *server.Options {
	t.Helper()
	dir, store := t.TempDir(), t.TempDir()
	confs, err := filepath.Glob("*.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append(confs, d.ConfPath()) {
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.NewReplacer("listen: 0.0.0.0:4222", "listen: 127.0.0.1:-1",
			"http: 127.0.0.1:8222", "", "store_dir: /data/jetstream", fmt.Sprintf("store_dir: %q", store)).Replace(string(b)))
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(c)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	opts.Host = "127.0.0.1"
	opts.Port = -1
	opts.HTTPHost, opts.HTTPPort = "", 0
	opts.StoreDir = store
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

// fleetUser maps the role names the tests use onto the fleet's users:
// "ingest" is the host ingest-1.
func fleetUser(u string) string {
	if u == "ingest" {
		return "ingest-1"
	}
	return u
}

// dial connects as a user of the test fleet.
func dial(t *testing.T, url, user string, cfg ...func(*bus.Config)) *conn {
	t.Helper()
	return dialFleet(t, fleet, url, user, cfg...)
}

// dialFleet connects as a user of fleet d with its credential and its own
// inbox prefix, through libs/bus's options (cfg adjusts the bus.Config first).
func dialFleet(t *testing.T, d *natscreds.Dir, url, user string, cfg ...func(*bus.Config)) *conn {
	t.Helper()
	c, err := tryDial(d, url, user, cfg...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(c.nc.Close)
	return c
}

func tryDial(d *natscreds.Dir, url, user string, cfg ...func(*bus.Config)) (*conn, error) {
	user = fleetUser(user)
	bc := bus.Config{URL: url, Name: "access-test-" + user, CredsFile: d.CredsPath(user), Replicas: 1}
	for _, f := range cfg {
		f(&bc)
	}
	opts, err := bc.Options(zerolog.Nop())
	if err != nil {
		return nil, err
	}
	c := &conn{user: user}
	opts = append(opts,
		nats.CustomInboxPrefix(natscreds.InboxPrefix(user)),
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
