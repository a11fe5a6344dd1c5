// Package camera is pull mode: the ingest host pulls a camera's RTSP URL as a
// stream's source, reconnecting with backoff, until the pull is stopped or its
// feed is retired (the stream moved to another host, or closed).
package camera

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/services/ingest/internal/clock"
	"github.com/ferrystream/ferry/services/ingest/internal/config"
	"github.com/ferrystream/ferry/services/ingest/internal/emit"
	"github.com/ferrystream/ferry/services/ingest/internal/metrics"
	"github.com/ferrystream/ferry/services/ingest/internal/stream"
	"github.com/ferrystream/ferry/services/ingest/internal/upstream"
)

// ErrBadCommand is returned for an invalid pull command.
var ErrBadCommand = errors.New("invalid pull command")

// Config configures the camera pulls.
type Config struct {
	// Self is this host's id.
	Self string
	// MaxBackoff caps the reconnect delay (default 5s).
	MaxBackoff time.Duration
	// MaxTracks refuses a camera describing more medias (INGEST_MAX_TRACKS;
	// 0 = no bound).
	MaxTracks int
}

// Deps are the manager's collaborators.
type Deps struct {
	// Table holds the node's streams (origin.Node.Table).
	Table   *stream.Table
	Emit    *emit.Emitter
	Metrics *metrics.Metrics
	Log     zerolog.Logger
	// OnHosted is told when a stream gets its camera feed (handover.Manager.Track).
	OnHosted func(*stream.Stream)
	// Placement reads a stream's placement (ok false: not readable), to say
	// which migration a detach belongs to (emit.DetachMigration); nil: none
	// can be read, the pull's own migration is kept.
	Placement func(ctx context.Context, stream string) (pl events.Placement, ok bool)
	// Dial opens a camera connection (default upstream.DialSource).
	Dial upstream.DialFunc
	// Clock times the reconnect backoff (default the wall clock).
	Clock clock.Clock
}

// Manager runs the camera pulls of a host.
type Manager struct {
	self       string
	table      *stream.Table
	emit       *emit.Emitter
	metrics    *metrics.Metrics
	log        zerolog.Logger
	onHosted   func(*stream.Stream)
	placement  func(context.Context, string) (events.Placement, bool)
	dial       upstream.DialFunc
	clock      clock.Clock
	maxBackoff time.Duration
	maxTracks  int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex // guards pulls
	pulls map[string]*pull
	seq   int
}

type pull struct {
	name, url, migrationID string
	cancel                 context.CancelFunc
}

// New returns a camera manager; it starts nothing (pulls start on Handle).
func New(cfg Config, d Deps) *Manager {
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if d.Dial == nil {
		d.Dial = upstream.DialSource
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{self: cfg.Self, table: d.Table, emit: d.Emit, metrics: metrics.OrNop(d.Metrics), onHosted: d.OnHosted,
		placement: d.Placement, log: d.Log.With().Str("component", "camera").Logger(), dial: d.Dial, clock: clock.Or(d.Clock),
		ctx: ctx, cancel: cancel, pulls: map[string]*pull{}, maxBackoff: cfg.MaxBackoff,
		maxTracks: cfg.MaxTracks}
}

// Run returns nil once ctx ends, having stopped every pull (Close).
func (m *Manager) Run(ctx context.Context) error {
	<-ctx.Done()
	m.Close()
	return nil
}

// Validate checks a pull command.
func Validate(cmd events.PullCommand) error {
	if !config.NamePattern.MatchString(cmd.Stream) {
		return fmt.Errorf("%w: stream %q", ErrBadCommand, cmd.Stream)
	}
	if cmd.Stop {
		return nil
	}
	u, err := url.Parse(cmd.SourceURL)
	if err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
		return fmt.Errorf("%w: source_url %q must be rtsp://host/path", ErrBadCommand, cmd.SourceURL)
	}
	return nil
}

// Handle starts or stops a pull as the command says.
func (m *Manager) Handle(cmd events.PullCommand) error {
	if err := Validate(cmd); err != nil {
		return err
	}
	if cmd.Stop {
		m.Stop(cmd.Stream)
		return nil
	}
	m.Start(cmd.Stream, cmd.SourceURL, cmd.MigrationID)
	return nil
}

// Start pulls sourceURL as stream's source (a no-op when that pull runs already).
func (m *Manager) Start(name, sourceURL, migrationID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.pulls[name]; ok {
		if p.url == sourceURL {
			return
		}
		p.cancel()
	}
	ctx, cancel := context.WithCancel(m.ctx)
	p := &pull{name: name, url: sourceURL, migrationID: migrationID, cancel: cancel}
	m.pulls[name] = p
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.run(ctx, p)
		m.mu.Lock()
		if m.pulls[name] == p {
			delete(m.pulls, name)
		}
		m.mu.Unlock()
	}()
}

// Stop ends the pull of a stream.
func (m *Manager) Stop(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.pulls[name]; ok {
		p.cancel()
		delete(m.pulls, name)
	}
}

// Running returns the streams pulled now.
func (m *Manager) Running() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.pulls))
	for n := range m.pulls {
		out = append(out, n)
	}
	return out
}

// Close stops every pull.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

func (m *Manager) run(ctx context.Context, p *pull) {
	log := m.log.With().Str("stream", p.name).Str("source", redact(p.url)).Str("migration_id", p.migrationID).Logger()
	backoff := 200 * time.Millisecond
	attached := false
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return
			case <-m.clock.After(backoff):
			}
			backoff = min(backoff*2, m.maxBackoff)
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := m.dial(dctx, p.url, upstream.Options{MaxTracks: m.maxTracks})
		cancel()
		if err != nil {
			m.metrics.UpstreamErrors.WithLabelValues("camera").Inc()
			log.Warn().Err(err).Int("attempt", attempt+1).Dur("retry_in", backoff).Msg("camera unreachable")
			continue
		}
		st, _, err := m.table.GetOrCreate(p.name, conn.Description())
		if err != nil {
			conn.Close()
			log.Error().Err(err).Msg("create stream")
			continue
		}
		m.mu.Lock()
		m.seq++
		n := m.seq
		m.mu.Unlock()
		retired := make(chan struct{})
		feed, err := st.AddFeed(stream.FeedSpec{
			Kind: stream.KindCamera, Space: "cam:" + m.self + ":" + strconv.Itoa(n), Label: "cam", Desc: conn.Description(),
			OnRetire: func(string) { close(retired); conn.Close() },
		})
		if err != nil {
			conn.Close()
			log.Error().Err(err).Msg("camera cannot feed the stream")
			continue
		}
		if err := conn.Play(func(mi int, pkt *rtp.Packet) { _ = feed.Write(mi, pkt) }); err != nil {
			st.RemoveFeed(feed)
			log.Warn().Err(err).Msg("camera play")
			continue
		}
		backoff = 200 * time.Millisecond
		log.Info().Str("feed", feed.ID).Msg("pulling camera")
		if !attached {
			attached = true
			m.emit.Emit(events.PublisherAttached{Stream: p.name, Host: m.self, SessionID: "pull-" + p.name,
				Capabilities: events.Capabilities{CanMove: true}, MigrationID: p.migrationID, Mode: "pull", At: time.Now().UTC()})
		}
		if m.onHosted != nil {
			m.onHosted(st)
		}
		stop := context.AfterFunc(ctx, conn.Close)
		werr := conn.Wait()
		stop()
		st.RemoveFeed(feed)
		select {
		case <-retired:
			log.Info().Str("reason", feed.Reason()).Msg("camera pull ended")
			m.detached(p, feed.Reason())
			return
		default:
		}
		if ctx.Err() != nil {
			m.detached(p, "pull stopped")
			return
		}
		log.Warn().Err(werr).Msg("camera connection lost: reconnecting")
	}
}

// detached says the pull of p ended, naming the migration it belongs to
// (emit.DetachMigration): the move that took the stream away, not the one the
// pull started with.
func (m *Manager) detached(p *pull, reason string) {
	mig := p.migrationID
	if m.placement != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), 2*time.Second)
		pl, ok := m.placement(ctx, p.name)
		cancel()
		mig = emit.DetachMigration(pl, ok, m.self, p.migrationID, time.Now())
	}
	m.emit.Emit(events.PublisherDetached{Stream: p.name, Host: m.self, SessionID: "pull-" + p.name,
		MigrationID: mig, Reason: reason, At: time.Now().UTC()})
}

// redact drops credentials from a URL for logs.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable url)"
	}
	if u.User != nil {
		u.User = url.User("***")
	}
	return u.String()
}
