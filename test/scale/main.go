// Command scale is Ferry's fleet-scale simulation: the real control-plane
// binaries (ferry-healthpredict, two ferry-placement replicas,
// ferry-notifier) on a real NATS JetStream (embedded, in a child process:
// one node or a 3-node cluster), driven by N simulated ingest hosts and M
// simulated publisher agents that speak Ferry's real events, subjects and
// buckets (libs/events, libs/subject, libs/bus, the placement client) but
// carry no media. It runs the scenarios (initial placement, one host under
// maintenance, a rolling maintenance with a placement replica killed, 20
// hosts lost), checks the invariants throughout, and prints the figures as
// text and one JSON line. `make scale` runs it at the default size.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// config is the simulation's size and shape (flags).
type config struct {
	hosts, streams int
	capacity       int
	natsNodes      int
	replicas       int
	watch          string
	rewatch        time.Duration
	binDir         string
	workDir        string
	keep           bool
	chooseWorkers  int
	agentConns     int
	rollingPct     float64
	rollingBatch   int
	lost           int
	logLevel       string
	settle         time.Duration
	scenarios      string
	serviceEnv     []string
}

func parseConfig(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.IntVar(&c.hosts, "hosts", 1000, "simulated ingest hosts")
	fs.IntVar(&c.streams, "streams", 100000, "simulated streams (one agent each)")
	fs.IntVar(&c.capacity, "capacity", 0, "streams each host declares it can take (0: 1.5 x streams/hosts, at least 10)")
	fs.IntVar(&c.natsNodes, "nats-nodes", 1, "1 (single embedded server) or 3 (embedded 3-node cluster, R3 streams and buckets)")
	fs.StringVar(&c.watch, "watch", watchNotice, "hosts' placement watch: notice (placement's notices for the host, one subscription: what ferry-ingest does), host (a KV watch of the host's streams' keys, re-made as streams arrive) or all (a KV watch of every key: every host receives every change; see docs/scale.md)")
	fs.DurationVar(&c.rewatch, "rewatch", 5*time.Second, "with -watch host: how often a host re-makes its watch when streams arrived")
	fs.StringVar(&c.binDir, "bin", "../bin", "directory holding ferry-healthpredict, ferry-placement and ferry-notifier (make build)")
	fs.StringVar(&c.workDir, "dir", "", "work directory for NATS data and logs (default: a temporary one, removed unless -keep)")
	fs.BoolVar(&c.keep, "keep", false, "keep the work directory")
	fs.IntVar(&c.chooseWorkers, "choose-workers", 32, "agents asking placement at once during the initial placement")
	fs.IntVar(&c.agentConns, "agent-conns", 16, "NATS connections the agents share")
	fs.Float64Var(&c.rollingPct, "rolling", 10, "percent of the fleet in the rolling maintenance")
	fs.IntVar(&c.rollingBatch, "rolling-batch", 10, "hosts under maintenance at once in the rolling maintenance")
	fs.IntVar(&c.lost, "lost", 20, "hosts lost at once (host_down)")
	fs.StringVar(&c.logLevel, "log-level", "info", "FERRY_LOG_LEVEL of the services")
	fs.DurationVar(&c.settle, "settle", 90*time.Second, "longest wait for a scenario's migrations to close and homes to settle")
	fs.StringVar(&c.scenarios, "scenarios", "all", "comma-separated: initial,steady,maintenance,rolling,lost (initial always runs)")
	fs.Func("service-env", "KEY=VALUE added to every service's environment, e.g. PLACEMENT_WORKERS=64 (repeatable)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		c.serviceEnv = append(c.serviceEnv, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var errs []error
	if c.hosts < 2 {
		errs = append(errs, fmt.Errorf("-hosts: at least 2, got %d", c.hosts))
	}
	if c.streams < 1 {
		errs = append(errs, fmt.Errorf("-streams: at least 1, got %d", c.streams))
	}
	if c.natsNodes != 1 && c.natsNodes != 3 {
		errs = append(errs, fmt.Errorf("-nats-nodes: 1 or 3, got %d", c.natsNodes))
	}
	if c.watch != watchNotice && c.watch != watchAll && c.watch != watchHost {
		errs = append(errs, fmt.Errorf("-watch: notice, host or all, got %q", c.watch))
	}
	if c.lost >= c.hosts {
		errs = append(errs, fmt.Errorf("-lost: must be below -hosts (%d), got %d", c.hosts, c.lost))
	}
	if c.rollingBatch < 1 {
		errs = append(errs, fmt.Errorf("-rolling-batch: at least 1, got %d", c.rollingBatch))
	}
	if c.chooseWorkers < 1 || c.agentConns < 1 {
		errs = append(errs, errors.New("-choose-workers, -agent-conns: at least 1"))
	}
	if c.capacity == 0 {
		c.capacity = max(10, (c.streams*3/2+c.hosts-1)/c.hosts)
	}
	if c.capacity*(c.hosts-c.lost-c.rollingBatch) < c.streams {
		errs = append(errs, fmt.Errorf("-capacity: %d x %d hosts left after the losses cannot hold %d streams", c.capacity, c.hosts-c.lost-c.rollingBatch, c.streams))
	}
	c.replicas = 1
	if c.natsNodes == 3 {
		c.replicas = 3
	}
	return c, errors.Join(errs...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "-nats-child" {
		// the NATS server process this program starts for itself
		fs := flag.NewFlagSet("scale -nats-child", flag.ContinueOnError)
		nodes := fs.Int("nodes", 1, "1 or 3")
		dir := fs.String("dir", "", "store directory")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return runNATSChild(ctx, *nodes, *dir, stdout)
	}
	c, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	bin, err := filepath.Abs(c.binDir)
	if err != nil {
		return err
	}
	c.binDir = bin
	for _, b := range []string{"ferry-healthpredict", "ferry-placement", "ferry-notifier"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("-bin: %w (run `make build` first)", err)
		}
	}
	if c.workDir == "" {
		d, err := os.MkdirTemp("", "ferry-scale-")
		if err != nil {
			return err
		}
		c.workDir = d
		if !c.keep {
			defer os.RemoveAll(d)
		}
	}
	fmt.Fprintf(stdout, "ferry scale: %d hosts x %d streams (capacity %d each), NATS %d node(s), watch=%s, %d CPUs; work dir %s\n",
		c.hosts, c.streams, c.capacity, c.natsNodes, c.watch, runtime.NumCPU(), c.workDir)
	s, err := newSim(ctx, c, stdout)
	if err != nil {
		return err
	}
	defer s.close()
	return s.runScenarios()
}
