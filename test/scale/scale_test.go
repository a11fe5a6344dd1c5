package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the NATS child the simulation starts
// (it re-executes itself with -nats-child).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-nats-child" {
		if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"hosts", []string{"-hosts", "1"}, "-hosts: at least 2, got 1"},
		{"streams", []string{"-streams", "0"}, "-streams: at least 1, got 0"},
		{"nats nodes", []string{"-nats-nodes", "2"}, "-nats-nodes: 1 or 3, got 2"},
		{"watch", []string{"-watch", "some"}, `-watch: notice, host or all, got "some"`},
		{"lost", []string{"-hosts", "10", "-lost", "10"}, "-lost: must be below -hosts (10), got 10"},
		{"capacity", []string{"-hosts", "30", "-streams", "1000", "-capacity", "40"}, "-capacity: 40 x 0 hosts left after the losses cannot hold 1000 streams"},
		{"arguments", []string{"extra"}, "unexpected arguments: [extra]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	c, err := parseConfig([]string{"-hosts", "20", "-streams", "500", "-lost", "4", "-rolling-batch", "2"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.capacity != 38 || c.replicas != 1 {
		t.Fatalf("capacity %d replicas %d, want 38 and 1", c.capacity, c.replicas)
	}
}

// TestSmoke runs every scenario at a tiny size against the real service
// binaries and requires no broken invariant and every target figure present.
// The default size runs with `make scale`, not here.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the control-plane binaries")
	}
	bin := t.TempDir()
	root, _ := filepath.Abs("../..")
	cmd := exec.Command("go", "build", "-o", bin+"/",
		"github.com/ferrystream/ferry/services/healthpredict/cmd/ferry-healthpredict",
		"github.com/ferrystream/ferry/services/placement/cmd/ferry-placement",
		"github.com/ferrystream/ferry/services/notifier/cmd/ferry-notifier")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"-bin", bin, "-hosts", "8", "-streams", "80", "-lost", "2", "-rolling", "25", "-rolling-batch", "1",
		"-capacity", "40", "-settle", "60s", "-dir", t.TempDir(), "-log-level", "warn"}, &out, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var rep struct {
		Result     string                    `json:"result"`
		Violations int                       `json:"violations"`
		Scenarios  map[string]map[string]any `json:"scenarios"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("last line is not the JSON report: %v\n%s", err, out.String())
	}
	if rep.Result != "ok" || rep.Violations != 0 {
		t.Fatalf("result %s, %d violations\n%s", rep.Result, rep.Violations, out.String())
	}
	for _, sc := range []string{"initial", "maintenance", "rolling", "lost"} {
		r, ok := rep.Scenarios[sc]
		if !ok {
			t.Fatalf("no scenario %s in the report", sc)
		}
		if sc != "initial" && sc != "rolling" && r["completed"].(float64) != r["streams"].(float64) {
			t.Errorf("%s: %v of %v streams completed", sc, r["completed"], r["streams"])
		}
	}
	if r := rep.Scenarios["rolling"]; r["batches"] == nil {
		t.Error("rolling: no batches")
	}
	t.Logf("\n%s", out.String())
}
