// Package publisher is Ferry's camera-side agent (ferry-publish) as an
// embeddable Go package.
//
// An Agent asks placement (placement.v1.choose) where to publish a stream,
// declaring that it can move mid-stream and on which channels it receives move
// notices, then publishes its Source there over RTSP/TCP. All packets the agent
// ever sends share ONE RTP sequence/timestamp space: synthetic sources have one
// by construction, and an upstream camera or ffmpeg push is rewritten into it
// once, in the agent (media.Splicer), whatever happens upstream.
//
// On a move notice (NATS, webhook or server-sent events) the agent acks it,
// opens the new host with the new URL (a fresh token bound to its session),
// writes the same packets to both hosts, and keeps both until the old host
// closes the old session (it does so once its readers are safe, DESIGN §1 step
// 7) or until the old host's expected offline time; then it drops the old
// connection. An in-band RTSP REDIRECT from the host does the same: the agent
// blocks inside gortsplib's OnServerRequest until the new session records. A
// connection that dies without notice makes the agent ask placement again at
// once and republish, backing off, and report the gap.
//
//	a, _ := publisher.New(cfg, publisher.Deps{NC: nc, Stdout: os.Stdout})
//	err := a.Run(ctx)
package publisher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/obs"
)

// Run is ferry-publish: it loads the configuration from args and getenv,
// connects to NATS, and publishes until ctx ends. What the agent does goes to
// stdout (plain lines, or JSON lines with --json); diagnostics go to stderr.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := Load(args, getenv, stdout)
	if errors.Is(err, ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		if strings.Contains(err.Error(), "\n") { // several: a heading, one per line below it
			return fmt.Errorf("invalid configuration:\n%w", err)
		}
		return err
	}
	log := obs.NewLogger(os.Stderr, getenv, "publish")
	nc, _, err := bus.Connect(ctx, cfg.NATS, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := obs.NewRegistry()
	a, err := New(cfg, Deps{NC: nc, Stdout: stdout, Log: log, Registry: reg})
	if err != nil {
		return err
	}
	ms := &obs.Server{Addr: cfg.MetricsAddr, Registry: reg, Log: log, Ready: a.Ready}
	if _, err := ms.Listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mdone := make(chan error, 1)
	go func() { mdone <- ms.Run(ctx) }()
	err = a.Run(ctx)
	cancel()
	<-mdone
	return err
}
