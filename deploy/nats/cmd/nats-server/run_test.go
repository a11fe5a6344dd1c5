package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferrystream/ferry/libs/natscreds"
	"github.com/ferrystream/ferry/libs/testutil"
)

// fleetConf mints a fleet (as `ferryctl creds init` does) and returns
// single.conf copied beside its operator.conf, with a temporary store.
func fleetConf(t *testing.T) (conf string, d *natscreds.Dir) {
	t.Helper()
	d, err := natscreds.Init(filepath.Join(t.TempDir(), "creds"), []string{"ingest-1"}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../single.conf")
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "store_dir: /data/jetstream", fmt.Sprintf("store_dir: %q", t.TempDir()), 1))
	conf = filepath.Join(filepath.Dir(d.ConfPath()), "single.conf")
	if err := os.WriteFile(conf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return conf, d
}

func TestRunChecksTheConfig(t *testing.T) {
	conf, d := fleetConf(t)
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"-t", "-c", conf}, &out, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "is valid") {
		t.Fatalf("output %q", out.String())
	}
	if err := os.Remove(d.ConfPath()); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), []string{"-t", "-c", conf}, &out, nil)
	if err == nil || !strings.Contains(err.Error(), "operator.conf") {
		t.Fatalf("a missing operator.conf: %v, want an error naming it", err)
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	port := testutil.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	conf, d := fleetConf(t)
	go func() {
		done <- Run(ctx, []string{"-c", conf, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-m", fmt.Sprint(testutil.FreePort(t))}, &bytes.Buffer{}, nil)
	}()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		nc, err := nats.Connect(url, nats.UserCredentials(d.CredsPath("ops")), nats.CustomInboxPrefix(natscreds.InboxPrefix("ops")))
		if err != nil {
			return err
		}
		defer nc.Close()
		// JetStream answers ops.
		_, err = nc.Request("$JS.API.INFO", nil, 2*time.Second)
		return err
	})
	if _, err := nats.Connect(url, nats.UserInfo("ops", "a-password")); err == nil {
		t.Fatal("a password was accepted by a server that trusts only the fleet's operator")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
