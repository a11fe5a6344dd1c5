// Package e2e runs the whole Ferry chain on loopback with real processes: the
// binaries are built once into a temporary directory, an embedded NATS runs
// in the test process, and everything else is a child process.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binDir holds the binaries built by TestMain.
var binDir string

var commands = []string{
	"github.com/ferrystream/ferry/services/ingest/cmd/ferry-ingest",
	"github.com/ferrystream/ferry/services/healthpredict/cmd/ferry-healthpredict",
	"github.com/ferrystream/ferry/services/placement/cmd/ferry-placement",
	"github.com/ferrystream/ferry/services/notifier/cmd/ferry-notifier",
	"github.com/ferrystream/ferry/clients/publisher/cmd/ferry-publish",
	"github.com/ferrystream/ferry/clients/ferryctl/cmd/ferryctl",
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// The repository root is two levels up; build there so go.work applies.
	root, _ := filepath.Abs("../..")
	args := append([]string{"build", "-o", dir + "/"}, commands...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the binaries failed:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
