package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferrystream/ferry/libs/natscreds"
	"github.com/ferrystream/ferry/libs/testutil"
)

// mainArgsEnv, set in a child's environment, makes the test binary run
// main with these arguments (one a line) instead of the tests: the real
// process, signals included, without building another binary.
const mainArgsEnv = "FERRY_NATS_SERVER_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(mainArgsEnv); args != "" {
		os.Args = append([]string{"nats-server"}, strings.Split(args, "\n")...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSIGHUPReloadsTheConfig runs the command as a process and does what
// deploy/README tells an operator: revoke a host in operator.conf, send the
// server SIGHUP. The revoked host is cut off and refused, the server is
// still up; a SIGHUP with a broken configuration is logged and changes
// nothing; SIGTERM stops it cleanly.
func TestSIGHUPReloadsTheConfig(t *testing.T) {
	conf, d := fleetConf(t)
	port := testutil.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainArgsEnv+"="+strings.Join([]string{"-c", conf, "-a", "127.0.0.1",
		"-p", fmt.Sprint(port), "-m", fmt.Sprint(testutil.FreePort(t))}, "\n"))
	logs := &testutil.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once the process ended; then waitErr is its exit
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // a no-op once it exited
		<-exited
	})
	running := func() error {
		select {
		case <-exited:
			return fmt.Errorf("the server exited (%v); log:\n%s", waitErr, logs.String())
		default:
			return nil
		}
	}
	connectWith := func(user, creds string) (*nats.Conn, error) {
		return nats.Connect(url, nats.UserCredentials(creds), nats.CustomInboxPrefix(natscreds.InboxPrefix(user)),
			nats.NoReconnect(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	}
	connect := func(user string) (*nats.Conn, error) { return connectWith(user, d.CredsPath(user)) }
	var ops *nats.Conn
	testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		if err := running(); err != nil {
			t.Fatal(err)
		}
		var err error
		ops, err = connect("ops")
		return err
	})
	defer ops.Close()
	host, err := connect("ingest-1")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	// What an attacker who took ingest-1 keeps: a copy of its credential.
	stolen := filepath.Join(t.TempDir(), "ingest-1.creds")
	if b, err := os.ReadFile(d.CredsPath("ingest-1")); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(stolen, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// hup sends SIGHUP and waits until done holds, the server running meanwhile
	hup := func(done func() error) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if err := running(); err != nil {
				t.Fatal(err)
			}
			return done()
		})
	}

	if err := d.Revoke("ingest-1"); err != nil {
		t.Fatal(err)
	}
	hup(func() error {
		if host.IsConnected() {
			return errors.New("ingest-1 still connected after its revocation and SIGHUP")
		}
		return nil
	})
	if _, err := connectWith("ingest-1", stolen); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("connect with ingest-1's revoked credential after SIGHUP: %v, want an authorization error", err)
	} else {
		t.Logf("SIGHUP after revoking ingest-1: its connection closed, its credential refused (%v)", err)
	}
	if !strings.Contains(logs.String(), "Reloaded server configuration") {
		t.Errorf("no reload logged:\n%s", logs.String())
	}
	if err := running(); err != nil || !ops.IsConnected() {
		t.Fatalf("after the reload: ops connected %v, %v", ops.IsConnected(), err)
	}
	t.Log("SIGHUP: server still up, ops still connected")

	// A broken file: the reload fails, is logged, and the server runs on.
	if err := os.WriteFile(d.ConfPath(), []byte("operator: {{{ not a config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup(func() error {
		if !strings.Contains(logs.String(), "Failed to reload server configuration") {
			return errors.New("the failed reload is not logged yet")
		}
		return nil
	})
	if nc, err := connect("ops"); err != nil || !ops.IsConnected() {
		t.Fatalf("after a failed reload: ops connected %v, new connection %v", ops.IsConnected(), err)
	} else {
		nc.Close()
	}
	t.Log("SIGHUP with a broken operator.conf: reload failure logged, server still up and serving")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", waitErr, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
}
