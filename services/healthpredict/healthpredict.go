// Package healthpredict is Ferry's health-prediction service
// (ferry-healthpredict): it knows that an ingest host is going offline
// before it does, and says so with outage_predicted events (when, why, how
// sure, and the evidence), withdraws them with outage_cleared when the cause
// goes away, and reports host_down when a host vanishes unannounced.
//
// Inputs: maintenance windows (ferry.evt.ops.maintenance_scheduled /
// _cancelled), drain notices (ferry.evt.ingest.draining), per-host telemetry
// (ferry.telemetry.ingest.<host>) and heartbeat delete markers
// (ferry.hb.ingest.<host>). Predictors (package internal/predict): scheduled
// maintenance (offline at the window's start, confidence 1), drain (offline
// at the deadline), resource exhaustion (a robust trend of the memory,
// descriptor or disk envelope reaching its limit within the horizon), and a
// surge of errors or lost packets against the host's own baseline. They run
// on event time, so `ferry-healthpredict eval` replays a recorded trace
// faster than real time with the same predictions.
//
// Subcommands: run (the default) runs the service; eval scores a telemetry
// trace against labels; gen writes a synthetic trace and its labels.
package healthpredict

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/cli"
	"github.com/ferrystream/ferry/libs/group"
	"github.com/ferrystream/ferry/libs/obs"
	"github.com/ferrystream/ferry/services/healthpredict/internal/evaltrace"
	"github.com/ferrystream/ferry/services/healthpredict/internal/service"
)

// Run runs the subcommand in args[0] (run, eval, gen; default run) until ctx
// ends. getenv reads the environment; usage and results go to stdout, logs
// to stderr as JSON lines.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "run":
			args = args[1:]
		case "eval":
			return Eval(args[1:], getenv, stdout)
		case "gen":
			return Gen(args[1:], stdout)
		}
	}
	return RunWithLog(ctx, args, getenv, stdout, os.Stderr)
}

// RunWithLog runs the service with the log destination given.
func RunWithLog(ctx context.Context, args []string, getenv func(string) string, stdout, logw io.Writer) error {
	cfg, err := Load(args, getenv, stdout)
	if errors.Is(err, ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	log := obs.NewLogger(logw, getenv, "healthpredict").With().Str("replica", cfg.Instance).Logger()
	cfg.NATS.Name = "ferry-healthpredict-" + cfg.Instance
	nc, js, err := bus.Connect(ctx, cfg.NATS, log)
	if err != nil {
		return err
	}
	defer func() { _ = nc.Drain() }()
	if err := bus.Bootstrap(ctx, js, cfg.NATS.Replicas); err != nil {
		return err
	}
	reg := obs.NewRegistry()
	svc, err := service.New(cfg.Service(), service.Deps{JS: js, Log: log, Registry: reg})
	if err != nil {
		return err
	}
	srv := &obs.Server{Addr: cfg.MetricsAddr, Registry: reg, Log: log, Pprof: obs.PprofEnabled(getenv), Ready: func() error {
		if !nc.IsConnected() {
			return errors.New("NATS not connected")
		}
		return svc.Ready()
	}}
	if addr, err := srv.Listen(); err != nil {
		return fmt.Errorf("HEALTHPREDICT_METRICS_ADDR: %w", err)
	} else if addr != nil {
		log.Info().Str("addr", addr.String()).Msg("metrics listening")
	}
	log.Info().Str("horizon", cfg.Predict.Horizon.String()).Msg("starting")
	err = group.Run(ctx,
		group.Task{Name: "metrics", Run: srv.Run},
		group.Task{Name: "predictor", Run: svc.Run},
		group.Task{Name: "dead letters", Run: func(ctx context.Context) error { return bus.RunDeadLetters(ctx, js, log, bus.DeadLetters) }})
	log.Info().Msg("stopped")
	return err
}

// ErrUsage is returned for missing or wrong subcommand arguments.
var ErrUsage = errors.New("usage")

// Eval replays a telemetry trace through the predictors (configured by
// HEALTHPREDICT_* like the service) and prints the evaluation against the
// labels: text, then one JSON line.
func Eval(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ferry-healthpredict eval", flag.ContinueOnError)
	cli.SetUsage(fs, stdout, "ferry-healthpredict eval --telemetry FILE --labels FILE [flags]",
		"Replays a telemetry trace through the predictors (configured by HEALTHPREDICT_* like the\nservice) and prints the evaluation against the labels: text, then one JSON line.")
	telemetry := fs.String("telemetry", "", "trace, JSON lines {host,t,mem_bytes,mem_limit,fds,fd_limit,errors,loss} (required)")
	labels := fs.String("labels", "", "labels, JSON lines {host,kind,crash_at} (required)")
	minLead := fs.Duration("min-lead", 30*time.Second, "a prediction counts this long before the crash at the least")
	targets := fs.String("target-kinds", strings.Join(evaltrace.LeakKinds, ","), "kinds the recall target is about")
	within := fs.Duration("target-within", 10*time.Minute, "the recall target counts hosts of those kinds that crash this soon after their onset (by the labels)")
	if err := cli.Parse(fs, args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *telemetry == "" || *labels == "" {
		return fmt.Errorf("%w: eval needs --telemetry and --labels", ErrUsage)
	}
	pc, err := LoadPredict(getenv)
	if err == nil {
		err = ValidatePredict(pc)
	}
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	lf, err := os.Open(*labels)
	if err != nil {
		return err
	}
	defer lf.Close()
	ls, err := evaltrace.ReadLabels(lf)
	if err != nil {
		return fmt.Errorf("%s: %w", *labels, err)
	}
	tf, err := os.Open(*telemetry)
	if err != nil {
		return err
	}
	defer tf.Close()
	e := evaltrace.NewEvaluator(evaltrace.Options{Predict: pc, MinLead: *minLead, TargetKinds: strings.Split(*targets, ","), TargetWithin: *within})
	skipped := 0
	err = evaltrace.ReadTrace(tf, e.Feed, func(line int, err error) {
		skipped++
		if skipped <= 10 {
			fmt.Fprintf(stdout, "skipped %s line %d: %v\n", *telemetry, line, err)
		}
	})
	if err != nil {
		return fmt.Errorf("%s: %w", *telemetry, err)
	}
	if skipped > 10 {
		fmt.Fprintf(stdout, "skipped %d lines in all\n", skipped)
	}
	rep := e.Report(ls)
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	return rep.WriteJSON(stdout)
}

// Gen writes a synthetic telemetry trace and its labels.
func Gen(args []string, stdout io.Writer) error {
	c := evaltrace.DefaultGen()
	fs := flag.NewFlagSet("ferry-healthpredict gen", flag.ContinueOnError)
	cli.SetUsage(fs, stdout, "ferry-healthpredict gen --telemetry FILE --labels FILE [--hosts N --duration D --interval D --seed N]",
		"Writes a synthetic telemetry trace of hosts that leak, storm or stay healthy, and its labels.")
	telemetry := fs.String("telemetry", "", "trace file to write (required)")
	labels := fs.String("labels", "", "labels file to write (required)")
	fs.IntVar(&c.Hosts, "hosts", c.Hosts, "hosts")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "length of the trace")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "time between samples")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed")
	if err := cli.Parse(fs, args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *telemetry == "" || *labels == "" || c.Hosts < 1 || c.Duration <= 0 || c.Interval <= 0 {
		return fmt.Errorf("%w: gen needs --telemetry and --labels, and positive --hosts, --duration and --interval", ErrUsage)
	}
	tf, err := os.Create(*telemetry)
	if err != nil {
		return err
	}
	lf, err := os.Create(*labels)
	if err != nil {
		_ = tf.Close()
		return err
	}
	err = c.Write(tf, lf)
	err = errors.Join(err, tf.Close(), lf.Close())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d hosts over %s to %s and %s\n", c.Hosts, c.Duration, *telemetry, *labels)
	return nil
}
