// Package handover is the old host's side of a stream's move (docs/design.md §1 step
// 7): when the placements bucket says a stream this host publishes now lives
// elsewhere, it waits until the new host reports the publisher attached,
// pulls the stream back from the new host for this host's remaining readers
// (the stream's Splicer switches to that relay at sequence continuity), then
// closes the old publisher session — the signal Ferry's agent waits for —
// and reports stream_ceased. At the placement's deadline it sends the readers
// still here an RTSP REDIRECT to the new host and closes them.
//
// Locks: the placements hub calls placed with its follower's lock
// (control.hubSub.mu) held, and placed takes Manager.mu: the order is
// hubSub.mu, then Manager.mu. Manager.mu is never held while the hub is
// called back into except in Track, which registers a follower (Hub.Follow
// takes only the hub's own map lock, not a follower's).
package handover

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/services/ingest/internal/control"
	"github.com/ferrystream/ferry/services/ingest/internal/edge"
	"github.com/ferrystream/ferry/services/ingest/internal/emit"
	"github.com/ferrystream/ferry/services/ingest/internal/metrics"
	"github.com/ferrystream/ferry/services/ingest/internal/stream"
)

// Placements follows the placements bucket (see control.Hub.Follow).
type Placements interface {
	Follow(ctx context.Context, stream string, fn func(events.Placement))
}

// Attachments waits for a publisher_attached event.
type Attachments interface {
	Wait(ctx context.Context, stream, host, migrationID string, since time.Time) error
}

// Relay pulls a stream back from wherever it is placed.
type Relay interface {
	Follow(st *stream.Stream) edge.Follower
}

// HostURLs resolves a host's base RTSP URL.
type HostURLs interface {
	URL(ctx context.Context, host string) string
}

// Config configures the manager.
type Config struct {
	// Self is this host's id.
	Self string
	// DefaultDeadline bounds a handover whose placement has no deadline (default 2m).
	DefaultDeadline time.Duration
}

// Deps are the manager's collaborators.
type Deps struct {
	// Table holds the node's streams (origin.Node.Table).
	Table *stream.Table
	// Placements is the placements hub (control.Hub).
	Placements Placements
	// Attachments waits for publisher_attached (control.Attachments).
	Attachments Attachments
	// Relay pulls a stream back from its new host (edge.Manager).
	Relay   Relay
	Hosts   HostURLs
	Emit    *emit.Emitter
	Metrics *metrics.Metrics
	Log     zerolog.Logger
}

// Manager watches the placement of every stream this host publishes.
type Manager struct {
	cfg     Config
	table   *stream.Table
	pl      Placements
	att     Attachments
	relay   Relay
	hosts   HostURLs
	emit    *emit.Emitter
	metrics *metrics.Metrics
	log     zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards tracked and the cancelling of ctx against wg.Add
	tracked map[string]*watch
}

type watch struct {
	st     *stream.Stream
	cancel context.CancelFunc
	// used only by placed, which the hub calls one at a time per follower
	last    string               // the last handover started (migration id + new host)
	running []context.CancelFunc // handovers started since the stream was last placed here
}

// New returns a manager; it starts nothing (Track follows streams, Run
// forgets the closed ones).
func New(cfg Config, d Deps) *Manager {
	if cfg.DefaultDeadline <= 0 {
		cfg.DefaultDeadline = 2 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{cfg: cfg, table: d.Table, pl: d.Placements, att: d.Attachments, relay: d.Relay, hosts: d.Hosts,
		emit: d.Emit, metrics: metrics.OrNop(d.Metrics), log: d.Log.With().Str("component", "handover").Logger(),
		ctx: ctx, cancel: cancel, tracked: map[string]*watch{}}
}

// Close stops every watch and handover.
func (m *Manager) Close() {
	m.mu.Lock()
	m.cancel()
	m.mu.Unlock()
	m.wg.Wait()
}

// Track follows the placement of st, a stream that just got a local source.
// Following costs no goroutine; a handover runs in one while it lasts.
func (m *Manager) Track(st *stream.Stream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.tracked[st.Name]; ok && w.st == st {
		return
	}
	if w, ok := m.tracked[st.Name]; ok {
		w.cancel()
	}
	ctx, cancel := context.WithCancel(m.ctx)
	w := &watch{st: st, cancel: cancel}
	m.tracked[st.Name] = w
	m.pl.Follow(ctx, st.Name, func(pl events.Placement) { m.placed(ctx, w, pl) })
}

func (m *Manager) untrack(w *watch) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tracked[w.st.Name] == w {
		delete(m.tracked, w.st.Name)
	}
	w.cancel()
}

// Run stops following streams that closed, until ctx ends or Close; then it
// returns nil (Close stops the handovers).
func (m *Manager) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.ctx.Done():
			return nil
		case <-tick.C:
		}
		m.mu.Lock()
		var closed []*watch
		for _, w := range m.tracked {
			if w.st.Closed() {
				closed = append(closed, w)
			}
		}
		m.mu.Unlock()
		for _, w := range closed {
			m.untrack(w)
		}
	}
}

// placed handles a placement of a tracked stream (called by the placements
// hub, one at a time per stream: it must not block).
func (m *Manager) placed(ctx context.Context, w *watch, pl events.Placement) {
	if ctx.Err() != nil {
		return
	}
	if w.st.Closed() {
		m.untrack(w)
		return
	}
	if pl.Host == m.cfg.Self {
		// The stream lives here again (moved back before an earlier
		// handover's deadline): that handover is over. Its deadline must not
		// redirect the readers and close the stream, which now has a
		// publisher here again.
		if len(w.running) > 0 {
			m.log.Info().Str("stream", w.st.Name).Str("migration_id", pl.MigrationID).Int("handovers", len(w.running)).
				Msg("stream placed here again: earlier handovers of it stop")
		}
		for _, c := range w.running {
			c()
		}
		w.running, w.last = nil, ""
		return
	}
	if pl.Host == "" || !w.st.Hosted() {
		return
	}
	key := pl.MigrationID + "/" + pl.Host
	if key == w.last {
		return // the same move, another revision of its record
	}
	w.last = key
	m.mu.Lock() // Close cancels under m.mu: no Add once its Wait may run
	if m.ctx.Err() != nil {
		m.mu.Unlock()
		return
	}
	m.wg.Add(1)
	m.mu.Unlock()
	hctx, hcancel := context.WithCancel(ctx)
	w.running = append(w.running, hcancel)
	go func() {
		defer m.wg.Done()
		defer hcancel()
		m.handover(hctx, w.st, pl)
	}()
}

// handover moves st's readers onto a relay from pl.Host and lets the local
// publisher go.
func (m *Manager) handover(ctx context.Context, st *stream.Stream, pl events.Placement) {
	log := m.log.With().Str("stream", st.Name).Str("migration_id", pl.MigrationID).Str("new_host", pl.Host).Logger()
	deadline := pl.Deadline
	if deadline.IsZero() {
		deadline = time.Now().Add(m.cfg.DefaultDeadline)
	}
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	started := time.Now()
	log.Info().Time("deadline", deadline).Msg("stream moved: waiting for the new host to report the publisher")

	since := pl.UpdatedAt
	if since.IsZero() {
		since = started
	}
	if err := m.att.Wait(hctx, st.Name, pl.Host, pl.MigrationID, since); err != nil {
		if ctx.Err() != nil {
			return
		}
		log.Warn().Err(err).Msg("the new host never reported the publisher: closing at the deadline")
		m.result("no_attach")
		m.closeout(st, pl, log, 0)
		return
	}
	readers := st.Readers()
	log.Info().Int("readers", readers).Dur("after", time.Since(started)).Msg("publisher attached on the new host")
	if readers > 0 {
		fl := m.relay.Follow(st)
		select {
		case <-fl.Ready(pl.Host):
			log.Info().Dur("after", time.Since(started)).Msg("relay from the new host overlaps the stream")
		case <-hctx.Done():
			if ctx.Err() != nil {
				return
			}
			log.Warn().Msg("relay from the new host not ready before the deadline")
			m.result("relay_timeout")
			m.closeout(st, pl, log, readers)
			return
		}
	}
	st.Cease("moved to " + pl.Host)
	m.emit.Emit(events.StreamCeased{Stream: st.Name, Host: m.cfg.Self, NewHost: pl.Host, MigrationID: pl.MigrationID,
		ReadersRelayed: readers, At: time.Now().UTC()})
	log.Info().Int("readers_relayed", readers).Dur("took", time.Since(started)).Msg("stream ceased: old publisher closed")
	if readers == 0 {
		m.result("ceased")
		m.table.Remove(st, "moved to "+pl.Host)
		return
	}
	m.result("relayed")
	if pl.Deadline.IsZero() {
		return // the relay serves the remaining readers until they leave
	}
	select {
	case <-ctx.Done():
		return
	case <-hctx.Done():
	}
	if publishedHere(st) {
		// a publisher came back before the placement said so: keep it
		log.Info().Msg("deadline: the stream is published here again; readers stay")
		return
	}
	m.redirect(st, pl, log)
}

// publishedHere reports whether st has a local source that no handover
// retired: a publisher (or camera) that arrived after this host let the
// stream go, because the stream was moved back here.
func publishedHere(st *stream.Stream) bool {
	for _, f := range st.LocalFeeds() {
		if !f.Retired() {
			return true
		}
	}
	return false
}

func (m *Manager) result(r string) {
	m.metrics.Handovers.WithLabelValues(r).Inc()
}

// closeout ends a handover that missed a step: the local sources close, the
// readers are redirected to the new host.
func (m *Manager) closeout(st *stream.Stream, pl events.Placement, log zerolog.Logger, readers int) {
	st.Cease("moved to " + pl.Host + " (deadline)")
	m.emit.Emit(events.StreamCeased{Stream: st.Name, Host: m.cfg.Self, NewHost: pl.Host, MigrationID: pl.MigrationID,
		ReadersRelayed: 0, At: time.Now().UTC()})
	m.redirect(st, pl, log)
}

// redirect sends the stream's readers to the new host and removes the stream.
func (m *Manager) redirect(st *stream.Stream, pl events.Placement, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	loc := control.StreamURL(pl, m.hosts.URL(ctx, pl.Host))
	n := st.Redirect(loc)
	log.Info().Int("readers", n).Str("location", loc).Msg("deadline: readers redirected to the new host")
	m.table.Remove(st, "deadline: readers redirected to "+pl.Host)
}
