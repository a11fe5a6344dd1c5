package nats_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/natscreds"
)

// authMode is one way of setting up Ferry's NATS users.
type authMode interface {
	name() string
	// options is a runnable single-server configuration.
	options(t *testing.T) *server.Options
	// dial connects as one of Ferry's users (see accessEnv.dial).
	dial(t *testing.T, url, user string, cfg ...func(*bus.Config)) *conn
}

func authModes(t *testing.T) []authMode {
	return []authMode{passwordAuth{}, newJWTAuth(t)}
}

// passwordAuth is auth.conf with the dev passwords of dev.env.
type passwordAuth struct{}

func (passwordAuth) name() string                         { return "passwords" }
func (passwordAuth) options(t *testing.T) *server.Options { return loadConfig(t, "single.conf") }
func (passwordAuth) dial(t *testing.T, url, user string, cfg ...func(*bus.Config)) *conn {
	t.Helper()
	return dial(t, url, user, cfg...)
}

// jwtAuth is a fleet minted by natscreds (what `ferryctl creds init` writes):
// hosts ingest-1..3 and edge-1, agents agent-1 and agent-2.
type jwtAuth struct{ dir *natscreds.Dir }

var (
	testHosts  = []string{"ingest-1", "ingest-2", "ingest-3", "edge-1"}
	testAgents = []string{"agent-1", "agent-2"}
)

func newJWTAuth(t *testing.T) jwtAuth {
	t.Helper()
	d, err := natscreds.Init(filepath.Join(t.TempDir(), "creds"), testHosts, testAgents, 0)
	if err != nil {
		t.Fatal(err)
	}
	return jwtAuth{dir: d}
}

func (jwtAuth) name() string { return "jwt" }

func (a jwtAuth) options(t *testing.T) *server.Options {
	t.Helper()
	// include is relative to the including file: write it beside operator.conf.
	conf := filepath.Join(filepath.Dir(a.dir.ConfPath()), "server-test.conf")
	store := t.TempDir()
	body := fmt.Sprintf("listen: 127.0.0.1:-1\njetstream { store_dir: %q }\ninclude %q\n", store, filepath.Base(a.dir.ConfPath()))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := loadConfig(t, conf)
	opts.StoreDir = store // as in the file, so that a configuration reload keeps it
	return opts
}

// user maps the shared password users onto per-host identities.
func (jwtAuth) user(u string) string {
	if u == "ingest" {
		return "ingest-1"
	}
	return u
}

func (a jwtAuth) dial(t *testing.T, url, user string, cfg ...func(*bus.Config)) *conn {
	t.Helper()
	u := a.user(user)
	creds := func(c *bus.Config) { c.User, c.Password, c.CredsFile = "", "", a.dir.CredsPath(u) }
	return dial(t, url, u, append([]func(*bus.Config){creds}, cfg...)...)
}
