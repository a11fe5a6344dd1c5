package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// errExit stops Run without an error message (help, version, -t).
var errExit = errors.New("exit")

// Run parses nats-server options from args (a -c config file is the usual
// way), starts the server and runs it until ctx ends, then shuts it down.
// With -t it only checks the configuration. Each receive on reload (main
// sends one per SIGHUP) reloads the configuration file; the result is
// logged, and a failed reload leaves the server running as it was.
func Run(ctx context.Context, args []string, stdout io.Writer, reload <-chan struct{}) error {
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var early error
	opts, err := server.ConfigureOptions(fs, args,
		func() { fmt.Fprintf(stdout, "nats-server: v%s\n", server.VERSION); early = errExit },
		func() { fs.Usage(); early = errExit },
		func() {
			fmt.Fprintln(stdout, "see https://docs.nats.io/running-a-nats-service/configuration/securing_nats/tls")
			early = errExit
		},
	)
	if err != nil {
		return fmt.Errorf("options: %w", err)
	}
	if early != nil {
		return nil
	}
	if opts.CheckConfig {
		fmt.Fprintf(stdout, "configuration file %s is valid (%s)\n", opts.ConfigFile, opts.ConfigDigest())
		return nil
	}
	// Signals are this process's business (main turns them into ctx and
	// reload), not the server's: ctx ending is the one way to stop.
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("new server: %w", err)
	}
	s.ConfigureLogger()
	if err := server.Run(s); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return errors.New("not ready for connections after 30s")
	}
	down := waitShutdown(s)
	for {
		select {
		case <-ctx.Done():
			s.Shutdown()
			s.WaitForShutdown()
			return nil
		case <-down:
			return nil
		case <-reload:
			reloadConfig(s)
		}
	}
}

// reloadConfig re-reads the configuration file (with the command-line
// options laid over it, as at start) and applies it, logging the outcome
// through the server's logger.
func reloadConfig(s *server.Server) {
	if err := s.Reload(); err != nil {
		s.Errorf("Failed to reload server configuration: %v (still running on the previous one)", err)
		return
	}
	s.Noticef("Reloaded server configuration")
}

func waitShutdown(s *server.Server) <-chan struct{} {
	done := make(chan struct{})
	go func() { s.WaitForShutdown(); close(done) }()
	return done
}
