// Package app wires an ingest node together: NATS, the RTSP server (origin
// role), the edge follower, the handover, camera pulls, the registry, the
// command consumer, metrics, and the drain that ends a run.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/group"
	"github.com/ferrystream/ferry/libs/media"
	"github.com/ferrystream/ferry/libs/obs"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/services/ingest/internal/camera"
	"github.com/ferrystream/ferry/services/ingest/internal/config"
	"github.com/ferrystream/ferry/services/ingest/internal/control"
	"github.com/ferrystream/ferry/services/ingest/internal/edge"
	"github.com/ferrystream/ferry/services/ingest/internal/emit"
	"github.com/ferrystream/ferry/services/ingest/internal/handover"
	"github.com/ferrystream/ferry/services/ingest/internal/metrics"
	"github.com/ferrystream/ferry/services/ingest/internal/origin"
	"github.com/ferrystream/ferry/services/ingest/internal/registry"
	"github.com/ferrystream/ferry/services/ingest/internal/stream"
)

// Deps are optional collaborators; zero values are built from the config.
type Deps struct {
	Log zerolog.Logger
	// NC and JS, when set, are used instead of connecting (tests share one).
	NC *nats.Conn
	JS jetstream.JetStream
	// Registry receives the metrics (default obs.NewRegistry()).
	Registry *prometheus.Registry
	// OnOutput sees every packet a stream writes to its readers (tests).
	OnOutput func(s *stream.Stream, mediaIndex int, pkt *rtp.Packet, ntp time.Time)
	// OnEmit sees every event the node emits (tests).
	OnEmit func(events.Data)
}

// App is one ingest node.
type App struct {
	cfg config.Config
	d   Deps
	log zerolog.Logger

	reg     *prometheus.Registry
	metrics *metrics.Metrics

	started chan struct{}
	abortMu sync.Mutex
	abort   context.CancelFunc
	aborted bool
	drainCh chan drainReq
	ready   atomic.Bool
	done    chan struct{}

	// set in Run
	node     *origin.Node
	edge     *edge.Manager
	handover *handover.Manager
	camera   *camera.Manager
	emitter  *emit.Emitter
	registry *registry.Registry
	nc       *nats.Conn
	metrics0 string
}

type drainReq struct {
	grace  time.Duration
	reason string
}

// New validates cfg and returns a node; Run starts it.
func New(cfg config.Config, d Deps) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Registry == nil {
		d.Registry = obs.NewRegistry()
	}
	a := &App{cfg: cfg, d: d, log: d.Log.With().Str(obs.FieldHost, cfg.HostID).Logger(), reg: d.Registry,
		started: make(chan struct{}), drainCh: make(chan drainReq, 1), done: make(chan struct{})}
	a.metrics = metrics.New(d.Registry)
	return a, nil
}

// Started is closed once the node serves RTSP and is registered.
func (a *App) Started() <-chan struct{} { return a.started }

// Done is closed when Run has returned.
func (a *App) Done() <-chan struct{} { return a.done }

// Node returns the RTSP node (after Started).
func (a *App) Node() *origin.Node { return a.node }

// PublicURL returns the node's base RTSP URL (after Started).
func (a *App) PublicURL() string { return a.node.PublicURL() }

// MetricsAddr returns the bound metrics address (after Started; "" if off).
func (a *App) MetricsAddr() string { return a.metrics0 }

// Registry returns the metrics registry.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Drain starts a drain (as a drain command does). It returns at once.
func (a *App) Drain(grace time.Duration, reason string) {
	select {
	case a.drainCh <- drainReq{grace, reason}:
	default:
	}
}

// Abort stops the node at once without draining (a crash, seen from outside:
// every connection closes). Run returns.
func (a *App) Abort() {
	a.abortMu.Lock()
	defer a.abortMu.Unlock()
	a.aborted = true
	if a.abort != nil {
		a.abort()
	}
}

// Run serves until ctx ends (then it drains for the configured grace) or a
// drain command arrives, or Abort.
func (a *App) Run(ctx context.Context) error {
	defer close(a.done)
	a.abortMu.Lock()
	if a.aborted {
		a.abortMu.Unlock()
		return nil
	}
	rctx, abort := context.WithCancel(context.Background())
	a.abort = abort
	a.abortMu.Unlock()
	defer abort()

	log := a.log
	js, nc := a.d.JS, a.d.NC
	if js == nil {
		var err error
		nc, js, err = bus.Connect(ctx, a.cfg.NATS, log)
		if err != nil {
			return err
		}
		a.nc = nc
		defer nc.Close()
	}
	bctx, bcancel := context.WithTimeout(ctx, 15*time.Second)
	err := bus.Bootstrap(bctx, js, a.cfg.NATS.Replicas)
	var stores *bus.Stores
	if err == nil {
		stores, err = bus.OpenStores(bctx, js)
	}
	bcancel()
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	// Dead letters (this host's command consumer's included) are copied to
	// FERRY_DLQ by the control-plane services (placement, health-prediction,
	// notifier), which share one durable forwarder; the advisories wait in
	// FERRY_DLQ_ADVISORIES until one runs. A media host does not run it.

	placements := control.Placements{KV: stores.Placements}
	// one subscription to placement's notices for this host (docs/design.md §3)
	hub := control.NewHostHub(placements, nc, a.cfg.HostID)
	hosts := control.Hosts{KV: stores.Hosts}
	a.emitter = emit.New(js, "ferry/ingest/"+a.cfg.HostID, log)
	a.emitter.OnEmit = a.d.OnEmit
	ectx, ecancel := context.WithCancel(context.Background())
	emitDone := make(chan struct{})
	go func() { a.emitter.Run(ectx); close(emitDone) }()

	// The edge and the handover work on the node's stream table, and the node
	// asks them back (a stream it does not host, a stream that got a local
	// source): it reaches them through these functions, which run only once
	// the node started, after both are built.
	var (
		edgeMgr *edge.Manager
		hand    *handover.Manager
	)
	node, err := origin.New(a.cfg, origin.Deps{
		Log: log, Metrics: a.metrics, Placements: placements, Sessions: control.Sessions{KV: stores.Sessions},
		Emit: a.emitter,
		Resolver: serveFunc(func(ctx context.Context, name string) (*stream.Stream, error) {
			return edgeMgr.Serve(ctx, name)
		}),
		OnHosted: func(st *stream.Stream) { hand.Track(st) },
		StreamOptions: stream.Options{
			OnSwitch: func(s *stream.Stream, info media.SwitchInfo, from, to *stream.Feed) {
				a.onSwitch(edgeMgr, s, info, from, to)
			},
			OnOutput: a.d.OnOutput,
		},
	})
	if err != nil {
		ecancel()
		return err
	}
	a.node = node
	metrics.RegisterTraffic(a.reg,
		func() float64 { b, _ := node.Table().In(); return float64(b) },
		func() float64 { _, o := node.Table().Bytes(); return float64(o) },
		func() float64 { _, p := node.Table().In(); return float64(p) })
	edgeMgr = edge.New(edge.Config{Self: a.cfg.HostID, Linger: a.cfg.EdgeLinger, UpstreamWait: a.cfg.UpstreamWait,
		MaxTracks: a.cfg.MaxTracks},
		edge.Deps{Table: node.Table(), Placements: hub, Hosts: hosts, Emit: a.emitter, Metrics: a.metrics, Log: log})
	a.edge = edgeMgr
	hand = handover.New(handover.Config{Self: a.cfg.HostID}, handover.Deps{Table: node.Table(), Placements: hub,
		Attachments: control.Attachments{JS: js}, Relay: edgeMgr, Hosts: hosts, Emit: a.emitter, Metrics: a.metrics, Log: log})
	a.handover = hand
	a.camera = camera.New(camera.Config{Self: a.cfg.HostID, MaxTracks: a.cfg.MaxTracks}, camera.Deps{Table: node.Table(), Emit: a.emitter,
		Metrics: a.metrics, Log: log, OnHosted: hand.Track,
		Placement: func(ctx context.Context, name string) (events.Placement, bool) {
			pl, err := placements.Get(ctx, name)
			return pl, err == nil || errors.Is(err, control.ErrNotPlaced)
		}})
	if err := node.Start(); err != nil {
		ecancel()
		return err
	}

	a.registry = registry.New(registry.Config{
		Host: a.cfg.HostID, RTSPURL: node.PublicURL(), Zone: a.cfg.Zone, Role: a.cfg.Role,
		CapacityStreams: a.cfg.CapacityStreams, CapacityBitrate: a.cfg.CapacityBitrate, MemLimit: a.cfg.MemLimit,
	}, stores.Hosts, js, a.load, log)
	if err := a.registry.PutRecord(ctx); err != nil {
		log.Warn().Err(err).Msg("first registration failed; retrying in the background")
	}

	// The node's parts run side by side under one group until abort (the
	// end of the shutdown below). None fails the others: the command
	// consumer's end starts a drain, a metrics server that cannot listen is
	// logged and left out.
	cctx, ccancel := context.WithCancel(rctx)
	consuming := make(chan error, 1)
	tasks := []group.Task{
		{Name: "placements hub", Run: func(ctx context.Context) error { hub.Run(ctx); return nil }},
		{Name: "registry", Run: func(ctx context.Context) error { a.registry.Run(ctx); return nil }},
		{Name: "stream janitor", Run: func(ctx context.Context) error { node.RunJanitor(ctx); return nil }},
		{Name: "edge", Run: edgeMgr.Run},
		{Name: "handover", Run: hand.Run},
		{Name: "camera", Run: a.camera.Run},
		{Name: "commands", Run: func(context.Context) error {
			consuming <- bus.Consume(cctx, js, log, bus.ConsumerSpec{
				Stream: bus.StreamCommands, Durable: "ingest-" + a.cfg.HostID,
				Filters: []string{subject.IngestCommands(a.cfg.HostID)},
			}, a.handleCommand)
			return nil
		}},
	}
	srv := &obs.Server{Addr: a.cfg.MetricsAddr, Registry: a.reg, Log: log, Pprof: a.cfg.Pprof, Ready: func() error {
		if !a.ready.Load() {
			return errors.New("starting")
		}
		if nc != nil && !nc.IsConnected() {
			return errors.New("NATS disconnected")
		}
		if dr, _ := node.Draining(); dr {
			return errors.New("draining")
		}
		return nil
	}}
	if addr, err := srv.Listen(); err != nil {
		log.Error().Err(err).Str("addr", a.cfg.MetricsAddr).Msg("metrics server")
	} else if addr != nil {
		a.metrics0 = addr.String()
	}
	tasks = append(tasks, group.Task{Name: "metrics", Run: func(ctx context.Context) error {
		_ = srv.Run(ctx) // a failure to listen is logged above
		return nil
	}})
	ran := make(chan struct{})
	go func() { _ = group.Run(rctx, tasks...); close(ran) }()

	a.ready.Store(true)
	close(a.started)
	log.Info().Str("role", a.cfg.Role).Str("rtsp", node.PublicURL()).Str("metrics", a.metrics0).Msg("ingest node started")

	drained, left, why := false, 0, ""
	select {
	case <-ctx.Done():
		why = "signal"
		drained, left = a.drain(rctx, a.cfg.DrainGrace, why)
	case req := <-a.drainCh:
		why = req.reason
		if why == "" {
			why = "drain"
		}
		drained, left = a.drain(rctx, req.grace, why)
	case err := <-consuming:
		if err != nil {
			log.Error().Err(err).Msg("command consumer failed")
		}
		why = "command consumer failed"
		drained, left = a.drain(rctx, a.cfg.DrainGrace, why)
	case <-rctx.Done():
	}

	// stop in reverse: commands, sources, relays, the server, then the record
	ccancel()
	a.camera.Close()
	a.handover.Close()
	edgeMgr.Close()
	if drained {
		a.farewell()
	}
	node.Close()
	abort()
	<-ran
	if drained {
		// Leave on purpose: without the record and with host_left, the
		// heartbeat silence that follows is not taken for a failure.
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		a.registry.Deregister(dctx)
		if err := a.emitter.Publish(dctx, events.HostLeft{Host: a.cfg.HostID, Reason: why, StreamsLeft: left,
			StartedAt: a.registry.StartedAt(), At: time.Now().UTC()}); err != nil {
			log.Error().Err(err).Msg("publish host_left")
		}
		cancel()
	}
	ecancel()
	<-emitDone
	log.Info().Bool("drained", drained).Msg("ingest node stopped")
	return nil
}

// serveFunc is an origin.Resolver made of a function.
type serveFunc func(ctx context.Context, name string) (*stream.Stream, error)

// Serve implements origin.Resolver.
func (f serveFunc) Serve(ctx context.Context, name string) (*stream.Stream, error) {
	return f(ctx, name)
}

// onSwitch dispatches a stream's switch: a switch from one upstream to
// another (or to an upstream after an outage) is the edge's and is reported
// as events.EdgeSwitched; every other one (publisher takeover, the old host of
// a handover moving onto its relay, a local publisher replacing a pull) is
// counted as an origin switch.
func (a *App) onSwitch(em *edge.Manager, s *stream.Stream, info media.SwitchInfo, from, to *stream.Feed) {
	if to != nil && to.Kind == stream.KindUpstream && (from == nil || from.Kind == stream.KindUpstream) {
		if em != nil {
			em.OnSwitch(s, info, from, to)
		}
		return
	}
	a.metrics.Switches.WithLabelValues(s.Name, "origin", info.Mode).Inc()
	a.metrics.SwitchGap.WithLabelValues("origin").Observe(info.Gap.Seconds())
}

// load samples the node for the registry.
func (a *App) load() registry.Load {
	st := a.node.Stats()
	in, out := a.node.Table().Bytes()
	dr, deadline := a.node.Draining()
	return registry.Load{
		Streams: int64(a.node.Table().Len()), Hosted: int64(len(a.node.HostedStreams())),
		Readers: st.Readers, Publishers: st.Publishers, BytesIn: in, BytesOut: out,
		RTPLost: st.RTPLost, WriteErrors: st.WriteErrors, Draining: dr, Deadline: deadline,
	}
}

// drain refuses new publishers, announces the deadline, and waits until every
// hosted stream has moved and its readers have left, or the deadline passed. It returns false on Abort,
// and how many streams were still here at the deadline.
func (a *App) drain(rctx context.Context, grace time.Duration, reason string) (bool, int) {
	if grace <= 0 {
		grace = a.cfg.DrainGrace
	}
	deadline := time.Now().Add(grace)
	a.node.SetDraining(deadline)
	hosted := a.node.HostedStreams()
	log := a.log.With().Str("reason", reason).Time("deadline", deadline).Logger()
	log.Info().Int("streams", len(hosted)).Msg("draining: new publishers refused")
	pctx, cancel := context.WithTimeout(rctx, 5*time.Second)
	if err := a.registry.PutRecord(pctx); err != nil {
		log.Warn().Err(err).Msg("host record")
	}
	if err := a.emitter.Publish(pctx, events.Draining{Host: a.cfg.HostID, Deadline: deadline.UTC(),
		Reason: reason, Streams: len(hosted)}); err != nil {
		log.Error().Err(err).Msg("publish draining")
	}
	cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		// Done when nothing is published here any more and the readers the
		// old home relays to (edges, mostly) have switched to the new home:
		// leaving while an edge still pulls from here breaks its viewers'
		// stream. Readers that never leave get a REDIRECT at the deadline.
		n := len(a.node.HostedStreams())
		if n == 0 && a.readers() == 0 {
			log.Info().Msg("drained: every stream has moved and every reader has left")
			return true, 0
		}
		if time.Now().After(deadline) {
			log.Warn().Int("streams_left", n).Msg("drain deadline: closing the streams still here")
			return true, n
		}
		select {
		case <-rctx.Done():
			return false, n
		case <-t.C:
		}
	}
}

// readers counts the readers of every stream on this host.
func (a *App) readers() int {
	n := 0
	for _, s := range a.node.Table().All() {
		n += s.Readers()
	}
	return n
}

// farewell sends the readers still attached to the host their stream now
// lives on (when that is another host) before the server closes.
func (a *App) farewell() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, s := range a.node.Table().All() {
		if s.Readers() == 0 {
			continue
		}
		loc := a.placedURL(ctx, s.Name)
		if loc == "" {
			continue
		}
		n := s.Redirect(loc)
		a.log.Info().Str("stream", s.Name).Int("readers", n).Str("location", loc).Msg("exit: readers redirected")
	}
}

// placedURL returns the stream's URL on the host its placement names, when
// that is another host.
func (a *App) placedURL(ctx context.Context, name string) string {
	js := a.d.JS
	if js == nil && a.nc != nil {
		js, _ = jetstream.New(a.nc)
	}
	if js == nil {
		return ""
	}
	kv, err := js.KeyValue(ctx, bus.BucketPlacements)
	if err != nil {
		return ""
	}
	pl, err := control.Placements{KV: kv}.Get(ctx, name)
	if err != nil || pl.Host == a.cfg.HostID || pl.Host == "" {
		return ""
	}
	hk, _ := js.KeyValue(ctx, bus.BucketHosts)
	return control.StreamURL(pl, control.Hosts{KV: hk}.URL(ctx, pl.Host))
}

// handleCommand executes a command from ferry.cmd.ingest.<host>.>.
func (a *App) handleCommand(_ context.Context, m bus.Msg) error {
	switch m.Env.Type {
	case events.TypeDrainCommand:
		var c events.DrainCommand
		if err := json.Unmarshal(m.Env.Data, &c); err != nil {
			return bus.Permanent(err)
		}
		if c.Host != a.cfg.HostID {
			return bus.Permanent(fmt.Errorf("drain command for %s delivered to %s", c.Host, a.cfg.HostID))
		}
		grace := time.Duration(c.GraceSeconds * float64(time.Second))
		reason := c.Reason
		if reason == "" {
			reason = "drain command"
		}
		a.log.Info().Str("command_id", c.CommandID).Dur("grace", grace).Msg("drain command")
		a.Drain(grace, reason)
		return nil
	case events.TypePullCommand:
		var c events.PullCommand
		if err := json.Unmarshal(m.Env.Data, &c); err != nil {
			return bus.Permanent(err)
		}
		if c.Host != a.cfg.HostID {
			return bus.Permanent(fmt.Errorf("pull command for %s delivered to %s", c.Host, a.cfg.HostID))
		}
		if dr, _ := a.node.Draining(); dr && !c.Stop {
			return bus.Permanent(fmt.Errorf("pull command for %s refused: host is draining", c.Stream))
		}
		if !a.cfg.Origin() && !c.Stop {
			return bus.Permanent(fmt.Errorf("pull command for %s refused: edge-only host", c.Stream))
		}
		a.log.Info().Str("command_id", c.CommandID).Str("stream", c.Stream).Str("migration_id", c.MigrationID).
			Bool("stop", c.Stop).Msg("pull command")
		if err := a.camera.Handle(c); err != nil {
			return bus.Permanent(err)
		}
		return nil
	}
	return bus.Permanent(fmt.Errorf("unknown command type %s", m.Env.Type))
}

// HostID returns the node's host id.
func (a *App) HostID() string { return a.cfg.HostID }

// Config returns the node's configuration.
func (a *App) Config() config.Config { return a.cfg }
