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

	"github.com/ferrystream/ferry/libs/testutil"
)

func setPasswords(t *testing.T) {
	t.Helper()
	for _, u := range []string{"OPS", "MONITOR", "INGEST", "HEALTHPREDICT", "PLACEMENT", "NOTIFIER", "AGENT_1", "AGENT_2"} {
		t.Setenv("FERRY_NATS_PASSWORD_"+u, "pw-"+strings.ToLower(u))
	}
}

func TestRunChecksTheConfig(t *testing.T) {
	setPasswords(t)
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"-t", "-c", "../../single.conf"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "is valid") {
		t.Fatalf("output %q", out.String())
	}
	t.Setenv("FERRY_NATS_PASSWORD_OPS", "")
	os.Unsetenv("FERRY_NATS_PASSWORD_OPS")
	err := Run(context.Background(), []string{"-t", "-c", "../../single.conf"}, &out)
	if err == nil || !strings.Contains(err.Error(), "FERRY_NATS_PASSWORD_OPS") {
		t.Fatalf("a missing password: %v, want an error naming FERRY_NATS_PASSWORD_OPS", err)
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	setPasswords(t)
	port := testutil.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// auth.conf's users with a temporary store (an include is relative to
	// the including file, so auth.conf is copied beside it).
	auth, err := os.ReadFile("../../auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "test.conf")
	body := fmt.Sprintf("jetstream { store_dir: %q }\ninclude ./auth.conf\n", filepath.Join(dir, "js"))
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), auth, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		done <- Run(ctx, []string{"-c", conf, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-m", fmt.Sprint(testutil.FreePort(t))}, &bytes.Buffer{})
	}()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		nc, err := nats.Connect(url, nats.UserInfo("ops", "pw-ops"), nats.CustomInboxPrefix("_INBOX_ops"))
		if err != nil {
			return err
		}
		defer nc.Close()
		// JetStream answers ops.
		_, err = nc.Request("$JS.API.INFO", nil, 2*time.Second)
		return err
	})
	if _, err := nats.Connect(url, nats.UserInfo("ops", "wrong")); err == nil {
		t.Fatal("a wrong password was accepted")
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
