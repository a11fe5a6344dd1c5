// Package placement is Ferry's placement service: it gives every stream a
// home on an ingest host, moves streams off a host before the host goes
// away, and never gives a stream two homes.
//
// It serves two NATS micro endpoints (service "placement", group
// "placement.v1"; wire types and error codes in package client):
//
//   - placement.v1.choose: the stream, the client id and the client's
//     declared capabilities in; the chosen host, a publish URL with a
//     signed expiring token, and a session id out. Declaring can_move is the
//     client's confirmation that it reconnects mid-stream; only such
//     clients are told to move, the others are moved break-before-make.
//   - placement.v1.get: the stream's placement record.
//
// Errors are micro errors with codes: "400" (bad request; the description
// starts with the field: stream, client_id, session_id, mode, source_url,
// capabilities.<name>), "404" (get: no placement), "503" (no healthy host
// with headroom; the description lists why each host was refused), "500".
//
// Decisions are compare-and-set writes to the placements bucket (Create for
// a new stream, Update on the read revision for a move, epoch + 1 and a
// migration id), followed by a reassigned event; migrations are tracked in
// the migrations bucket through decided → notified → attached → ceased →
// completed, closing with migration_completed or migration_failed. Several
// replicas run; any of them answers choose and get, and the one holding the
// lease "placement.leader" decides evacuations and drives migrations (see
// package internal/engine for how leadership, views and replay work).
package placement

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/group"
	"github.com/ferrystream/ferry/libs/obs"
	"github.com/ferrystream/ferry/services/placement/internal/engine"
)

// Run runs the service until ctx ends; args are the command-line flags
// (without the program name), getenv reads the environment, and usage goes
// to stdout. Logs go to stderr as JSON lines.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return RunWithLog(ctx, args, getenv, stdout, os.Stderr)
}

// RunWithLog is Run with the log destination given.
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
	base := obs.NewLogger(logw, getenv, "placement")
	log := base.With().Str("replica", cfg.ID).Logger()
	cfg.NATS.Name = "ferry-placement-" + cfg.ID
	nc, js, err := bus.Connect(ctx, cfg.NATS, log)
	if err != nil {
		return err
	}
	defer func() { _ = nc.Drain() }()
	if err := bus.Bootstrap(ctx, js, cfg.NATS.Replicas); err != nil {
		return err
	}
	reg := obs.NewRegistry()
	// the engine adds the replica to its lines itself
	eng, err := engine.New(cfg.Engine(), engine.Deps{NC: nc, JS: js, Log: base, Registry: reg})
	if err != nil {
		return err
	}
	srv := &obs.Server{Addr: cfg.MetricsAddr, Registry: reg, Log: log, Pprof: obs.PprofEnabled(getenv), Ready: func() error {
		if !nc.IsConnected() {
			return errors.New("NATS not connected")
		}
		return eng.Ready()
	}}
	if addr, err := srv.Listen(); err != nil {
		return fmt.Errorf("PLACEMENT_METRICS_ADDR: %w", err)
	} else if addr != nil {
		log.Info().Str("addr", addr.String()).Msg("metrics listening")
	}
	err = group.Run(ctx,
		group.Task{Name: "metrics", Run: srv.Run},
		group.Task{Name: "engine", Run: eng.Run},
		group.Task{Name: "dead letters", Run: func(ctx context.Context) error { return bus.RunDeadLetters(ctx, js, log, bus.DeadLetters) }})
	log.Info().Msg("stopped")
	return err
}
