// Package edge is the ingest node's edge role: it serves streams this node does
// not host by pulling them from the host the placements bucket names, follows
// the stream when its placement changes (make-before-break: the new upstream is
// opened while the old one still feeds the readers, and the stream's Splicer
// switches at sequence continuity or at a keyframe), re-pulls after an upstream
// dies, stops pulling a while after the last reader left, and reports every
// switch (metrics and events.EdgeSwitched).
//
// The old host of a handover uses the same follower to pull the stream back
// from its new host for its remaining readers (Follow).
//
// Locks, in the order they may be taken: Manager.mu, then follower.mu (follow
// updates an existing follower under both), then pull.mu. None of them is
// held while a stream is called, except pull.mu around Feed.Retire in stop
// (Retire takes only the feed's own leaf lock and starts OnRetire in a
// goroutine).
package edge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/media"
	"github.com/ferrystream/ferry/services/ingest/internal/clock"
	"github.com/ferrystream/ferry/services/ingest/internal/control"
	"github.com/ferrystream/ferry/services/ingest/internal/emit"
	"github.com/ferrystream/ferry/services/ingest/internal/metrics"
	"github.com/ferrystream/ferry/services/ingest/internal/origin"
	"github.com/ferrystream/ferry/services/ingest/internal/stream"
	"github.com/ferrystream/ferry/services/ingest/internal/tasks"
	"github.com/ferrystream/ferry/services/ingest/internal/upstream"
)

// Placements is what the edge needs from the placements bucket.
type Placements interface {
	Get(ctx context.Context, stream string) (events.Placement, error)
	Watch(ctx context.Context, stream string) (<-chan events.Placement, error)
}

// HostURLs resolves a host's registered base RTSP URL.
type HostURLs interface {
	URL(ctx context.Context, host string) string
}

// Config configures the edge manager.
type Config struct {
	// Self is this host's id.
	Self string
	// Linger keeps a pull after its last reader left.
	Linger time.Duration
	// UpstreamWait bounds how long a reader waits for the first upstream.
	UpstreamWait time.Duration
	// MaxTracks refuses an upstream describing more medias (INGEST_MAX_TRACKS;
	// 0 = no bound).
	MaxTracks int
	// Settle is how long after a switch frame losses are still attributed to it
	// (default 1s).
	Settle time.Duration
}

// Deps are the manager's collaborators.
type Deps struct {
	// Table holds the node's streams (origin.Node.Table).
	Table *stream.Table
	// Placements is the placements bucket (control.Hub).
	Placements Placements
	// Hosts resolves hosts' RTSP URLs (control.Hosts).
	Hosts   HostURLs
	Emit    *emit.Emitter
	Metrics *metrics.Metrics
	Log     zerolog.Logger
	// Dial opens an upstream pull (default upstream.DialSource).
	Dial upstream.DialFunc
	// Clock times retries and switch reports (default the wall clock).
	Clock clock.Clock
}

// Manager runs one follower per pulled stream.
type Manager struct {
	cfg     Config
	table   *stream.Table
	pl      Placements
	hosts   HostURLs
	emit    *emit.Emitter
	metrics *metrics.Metrics
	log     zerolog.Logger
	dial    upstream.DialFunc
	clock   clock.Clock

	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex // guards followers and gaps
	followers map[string]*follower
	gaps      map[string]float64
	// tasks runs the followers, their pulls and watchers, and the delayed
	// switch reports; Close waits for them and refuses new ones.
	tasks tasks.Group
}

// ErrClosed is a follower's failure once the manager is closed.
var ErrClosed = errors.New("edge manager closed")

var _ origin.Resolver = (*Manager)(nil)

// New returns a manager; it starts nothing (followers start on demand, Run
// must run for lingering pulls to stop).
func New(cfg Config, d Deps) *Manager {
	if cfg.Settle <= 0 {
		cfg.Settle = time.Second
	}
	if d.Dial == nil {
		d.Dial = upstream.DialSource
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{cfg: cfg, table: d.Table, pl: d.Placements, hosts: d.Hosts, emit: d.Emit, metrics: metrics.OrNop(d.Metrics),
		log: d.Log.With().Str("component", "edge").Logger(), dial: d.Dial, clock: clock.Or(d.Clock),
		ctx: ctx, cancel: cancel, followers: map[string]*follower{}, gaps: map[string]float64{}}
}

// Run stops followers whose stream lost its last reader Linger ago, until ctx
// ends; then it stops every follower and returns nil.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.Close()
			return nil
		case <-t.C:
		}
		m.mu.Lock()
		fs := make([]*follower, 0, len(m.followers))
		for _, f := range m.followers {
			fs = append(fs, f)
		}
		m.mu.Unlock()
		now := time.Now()
		for _, f := range fs {
			st := f.stream()
			if st == nil {
				continue
			}
			if st.Closed() {
				f.stop("stream closed")
				continue
			}
			if _, lonely := st.Idle(); !lonely.IsZero() && now.Sub(lonely) > m.cfg.Linger && !st.Hosted() {
				f.stop("no reader for " + m.cfg.Linger.String())
				if len(st.Feeds()) == 0 || allUpstream(st) {
					m.table.Remove(st, "edge: no reader")
				}
			}
		}
	}
}

func allUpstream(st *stream.Stream) bool {
	for _, f := range st.Feeds() {
		if f.Kind != stream.KindUpstream {
			return false
		}
	}
	return true
}

// Close stops every follower and waits for their pulls to end.
func (m *Manager) Close() {
	m.cancel()
	m.mu.Lock()
	fs := make([]*follower, 0, len(m.followers))
	for _, f := range m.followers {
		fs = append(fs, f)
	}
	m.mu.Unlock()
	for _, f := range fs {
		f.stop("shutting down")
	}
	m.tasks.Close()
}

// Serve implements origin.Resolver: it returns the stream once a first
// upstream pull delivers its description, starting a follower if needed.
func (m *Manager) Serve(ctx context.Context, name string) (*stream.Stream, error) {
	if st := m.table.Get(name); st != nil && !st.Closed() {
		return st, nil
	}
	pl, err := m.pl.Get(ctx, name)
	switch {
	case errors.Is(err, control.ErrNotPlaced):
		return nil, fmt.Errorf("%w: %s has no placement", origin.ErrUnknownStream, name)
	case err != nil:
		return nil, err
	case pl.Host == m.cfg.Self:
		return nil, fmt.Errorf("%w: %s", origin.ErrNotPublished, name)
	}
	f := m.follow(name, nil, false)
	wait, cancel := context.WithTimeout(ctx, m.cfg.UpstreamWait)
	defer cancel()
	select {
	case <-f.ready:
		return f.stream(), nil
	case <-f.dead:
		return nil, f.failure()
	case <-wait.Done():
		if err := f.failure(); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", pl.Host, err)
		}
		return nil, fmt.Errorf("upstream %s: no answer within %s", pl.Host, m.cfg.UpstreamWait)
	}
}

// Follower is the handle Follow returns.
type Follower interface {
	// Ready returns a channel closed once a pull from host carries the stream
	// alone (see stream.Feed.Ready).
	Ready(host string) <-chan struct{}
}

// Follow makes the node pull st from wherever its placement names, even while
// st still has a local source (the old host of a handover relaying for its
// remaining readers).
func (m *Manager) Follow(st *stream.Stream) Follower {
	return m.follow(st.Name, st, true)
}

func (m *Manager) follow(name string, st *stream.Stream, relay bool) *follower {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.followers[name]; ok && !f.stopped() {
		f.mu.Lock()
		if relay {
			f.relay = true
		}
		if f.st == nil && st != nil {
			f.st = st
			f.readyOnce.Do(func() { close(f.ready) })
		}
		f.mu.Unlock()
		f.poke()
		return f
	}
	ctx, cancel := context.WithCancel(m.ctx)
	f := &follower{m: m, name: name, ctx: ctx, cancel: cancel, relay: relay, st: st,
		ready: make(chan struct{}), dead: make(chan struct{}), pokeCh: make(chan struct{}, 1),
		pulls: map[string]*pull{},
		log:   m.log.With().Str("stream", name).Logger()}
	if st != nil {
		close(f.ready)
		f.readyOnce.Do(func() {})
	}
	if !m.tasks.Go(f.run) {
		// closed (or closing): a follower that failed at once, never registered
		f.cancel()
		f.deadErr = ErrClosed
		f.deadOnce.Do(func() { close(f.dead) })
		return f
	}
	m.followers[name] = f
	return f
}

func (m *Manager) forget(f *follower) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.followers[f.name] == f {
		delete(m.followers, f.name)
	}
}

// follower keeps one stream pulled from its placed host.
type follower struct {
	m      *Manager
	name   string
	ctx    context.Context
	cancel context.CancelFunc
	log    zerolog.Logger
	pokeCh chan struct{}

	mu        sync.Mutex // guards the fields below
	st        *stream.Stream
	relay     bool
	pl        events.Placement
	havePl    bool
	pulls     map[string]*pull // by host
	lastErr   error
	readyOnce sync.Once
	ready     chan struct{}
	deadOnce  sync.Once
	dead      chan struct{}
	deadErr   error
	nextPull  int
}

type pull struct {
	host   string
	pl     events.Placement
	mu     sync.Mutex
	feed   *stream.Feed
	readyC chan struct{}
}

func (f *follower) stream() *stream.Stream {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *follower) stopped() bool { return f.ctx.Err() != nil }

func (f *follower) poke() {
	select {
	case f.pokeCh <- struct{}{}:
	default:
	}
}

func (f *follower) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deadErr != nil {
		return f.deadErr
	}
	return f.lastErr
}

func (f *follower) fail(err error) {
	f.mu.Lock()
	f.deadErr = err
	f.mu.Unlock()
	f.deadOnce.Do(func() { close(f.dead) })
	f.stop(err.Error())
}

func (f *follower) stop(reason string) {
	if f.ctx.Err() != nil {
		return
	}
	f.log.Info().Str("reason", reason).Msg("edge follower stopped")
	f.cancel()
	f.m.forget(f)
	f.mu.Lock()
	pulls := make([]*pull, 0, len(f.pulls))
	for _, p := range f.pulls {
		pulls = append(pulls, p)
	}
	f.mu.Unlock()
	for _, p := range pulls {
		p.mu.Lock()
		if p.feed != nil {
			p.feed.Stream().Retire(p.feed, "edge follower stopped: "+reason)
		}
		p.mu.Unlock()
	}
}

// Ready implements Follower.
func (f *follower) Ready(host string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pulls[host]
	if !ok {
		p = &pull{host: host, readyC: make(chan struct{})}
		f.pulls[host] = p // a placeholder the next apply starts
	}
	return p.readyC
}

func (f *follower) run() {
	defer f.deadOnce.Do(func() { close(f.dead) })
	defer f.m.forget(f) // also when the manager closed before it started
	ch, err := f.m.pl.Watch(f.ctx, f.name)
	if err != nil {
		f.fail(err)
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case pl, ok := <-ch:
			if !ok {
				if f.ctx.Err() == nil {
					f.fail(errors.New("placement watch ended"))
				}
				return
			}
			f.mu.Lock()
			f.pl, f.havePl = pl, true
			f.mu.Unlock()
			f.apply()
		case <-tick.C:
			f.apply()
		case <-f.pokeCh:
			f.apply()
		}
	}
}

// apply starts a pull from the placed host when the stream needs one.
func (f *follower) apply() {
	f.mu.Lock()
	if !f.havePl {
		f.mu.Unlock()
		return
	}
	pl, st, relay := f.pl, f.st, f.relay
	f.mu.Unlock()
	switch {
	case pl.Host == "":
		if st == nil {
			f.fail(fmt.Errorf("%w: placement of %s deleted", origin.ErrUnknownStream, f.name))
		}
		return
	case pl.Host == f.m.cfg.Self:
		if st == nil {
			f.fail(fmt.Errorf("%w: %s", origin.ErrNotPublished, f.name))
			return
		}
		// the local source takes over; the pulls keep feeding until it is ready
		for _, lf := range st.LocalFeeds() {
			select {
			case <-lf.Ready():
				st.ReplaceUpstreams(nil, "the stream is published here now")
				return
			default:
			}
		}
		return
	}
	if st != nil && st.Closed() {
		f.stop("stream closed")
		return
	}
	if st != nil && st.Hosted() && !relay {
		return // a local source feeds the stream; the handover decides when to relay
	}
	f.mu.Lock()
	p, ok := f.pulls[pl.Host]
	starting := !ok || p.pl.Host == "" // absent, or a placeholder from Ready
	if !ok {
		p = &pull{host: pl.Host, readyC: make(chan struct{})}
		f.pulls[pl.Host] = p
	}
	if starting {
		p.pl = pl
		f.nextPull++
	}
	f.mu.Unlock()
	if starting && !f.m.tasks.Go(func() { f.runPull(p) }) {
		f.mu.Lock()
		if f.pulls[p.host] == p {
			delete(f.pulls, p.host)
		}
		f.mu.Unlock()
	}
}

// desired reports whether host is still where the stream is placed.
func (f *follower) desired(host string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pl.Host == host
}

// space is the sequence space a pull from a placement carries: every host
// relaying a push stream carries its publisher session's space (Ferry's agent
// keeps one across hosts); each host pulling a camera has its own.
func space(pl events.Placement) string {
	if pl.Mode == "pull" || pl.SessionID == "" {
		return "host:" + pl.Host + "/" + strconv.FormatUint(pl.Epoch, 10)
	}
	return "sess:" + pl.SessionID
}

func (f *follower) url(pl events.Placement) string {
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Second)
	defer cancel()
	hostURL := ""
	if pl.RTSPURL == "" {
		hostURL = f.m.hosts.URL(ctx, pl.Host)
	}
	return control.StreamURL(pl, hostURL)
}

// runPull keeps one upstream host pulled while it is the placed host, until
// its feed is replaced or the follower stops.
func (f *follower) runPull(p *pull) {
	log := f.log.With().Str("upstream", p.host).Str("migration_id", p.pl.MigrationID).Logger()
	defer func() {
		f.mu.Lock()
		if f.pulls[p.host] == p {
			delete(f.pulls, p.host)
		}
		f.mu.Unlock()
	}()
	backoff := 100 * time.Millisecond
	notYet := 20 * time.Millisecond // retry interval while the host is not the origin yet
	for attempt := 0; ; attempt++ {
		if f.ctx.Err() != nil || (attempt > 0 && !f.desired(p.host)) {
			return
		}
		if attempt > 0 {
			if errors.Is(f.failure(), upstream.ErrUnavailable) {
				// Not the origin yet: it will be shortly (a move waits on
				// this pull), so the first retries come fast: 20, 40, 80 ms,
				// then every 100 ms.
				backoff, notYet = notYet, min(notYet*2, 100*time.Millisecond)
			} else if attempt > 1 {
				backoff = min(backoff*2, time.Second)
			}
			select {
			case <-f.ctx.Done():
				return
			case <-f.m.clock.After(backoff):
			}
			if !f.desired(p.host) {
				return
			}
		}
		u := f.url(p.pl)
		if u == "" {
			f.setErr(fmt.Errorf("no RTSP URL for host %s", p.host))
			continue
		}
		dctx, cancel := context.WithTimeout(f.ctx, f.m.cfg.UpstreamWait)
		conn, err := f.m.dial(dctx, u, upstream.Options{Timeout: f.m.cfg.UpstreamWait, MaxTracks: f.m.cfg.MaxTracks})
		cancel()
		if err != nil {
			f.setErr(err)
			f.m.metrics.UpstreamErrors.WithLabelValues("edge").Inc()
			if attempt%10 == 0 {
				log.Info().Err(err).Int("attempt", attempt+1).Msg("upstream not available yet")
			}
			continue
		}
		// The follower's end (a stop, the manager's Close) closes the
		// connection, whatever this loop is waiting for.
		unwatch := context.AfterFunc(f.ctx, conn.Close)
		st, err := f.ensureStream(conn)
		if err != nil {
			unwatch()
			conn.Close()
			f.setErr(err)
			continue
		}
		st.ResetGap() // the switch report covers the output from here
		feed, err := st.AddFeed(stream.FeedSpec{
			Kind: stream.KindUpstream, Space: space(p.pl), Host: p.host, Label: p.host, Desc: conn.Description(),
			OnRetire: func(string) { conn.Close() },
		})
		if err != nil {
			unwatch()
			conn.Close()
			f.setErr(err)
			log.Warn().Err(err).Msg("upstream cannot feed the stream")
			if errors.Is(err, stream.ErrClosed) {
				f.stop("stream closed")
				return
			}
			continue
		}
		p.mu.Lock()
		p.feed = feed
		p.mu.Unlock()
		f.m.tasks.Go(func() {
			select {
			case <-f.ctx.Done():
			case <-feed.Ready():
				p.mu.Lock()
				select {
				case <-p.readyC:
				default:
					close(p.readyC)
				}
				p.mu.Unlock()
				if f.desired(p.host) {
					// make-before-break: the new upstream carries the stream, the old ones go
					st.ReplaceUpstreams(feed, "replaced by the pull from "+p.host)
				}
			case <-feed.Done():
			}
		})
		if err := conn.Play(func(mi int, pkt *rtp.Packet) { _ = feed.Write(mi, pkt) }); err != nil {
			unwatch()
			st.RemoveFeed(feed)
			f.setErr(err)
			continue
		}
		log.Info().Str("url", u).Str("feed", feed.ID).Str("mode", feed.Mode().String()).Msg("pulling upstream")
		backoff = 100 * time.Millisecond
		werr := conn.Wait()
		unwatch()
		st.RemoveFeed(feed)
		if f.ctx.Err() != nil {
			log.Info().Str("feed", feed.ID).Msg("upstream pull closed: follower stopped")
			return
		}
		if feed.Retired() {
			log.Info().Str("feed", feed.ID).Str("reason", feed.Reason()).Msg("upstream pull closed")
			return
		}
		f.setErr(werr)
		f.m.metrics.UpstreamErrors.WithLabelValues("edge").Inc()
		log.Warn().Err(werr).Msg("upstream lost: re-resolving and re-pulling")
	}
}

func (f *follower) setErr(err error) {
	f.mu.Lock()
	f.lastErr = err
	f.mu.Unlock()
}

// ensureStream returns the follower's stream, creating it from the first
// upstream's description.
func (f *follower) ensureStream(conn upstream.Source) (*stream.Stream, error) {
	f.mu.Lock()
	st := f.st
	f.mu.Unlock()
	if st != nil && !st.Closed() {
		return st, nil
	}
	if st != nil {
		return nil, stream.ErrClosed
	}
	st, _, err := f.m.table.GetOrCreate(f.name, conn.Description())
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	f.readyOnce.Do(func() { close(f.ready) })
	return st, nil
}

// placement returns the follower's latest placement of a stream (for reports).
func (m *Manager) placement(name string) (events.Placement, bool) {
	m.mu.Lock()
	f, ok := m.followers[name]
	m.mu.Unlock()
	if !ok {
		return events.Placement{}, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pl, f.havePl
}

// gapAfter is how long after a switch output gaps still count as the switch's:
// a few frame intervals, so that a late first packet of the new upstream shows.
const gapAfter = 150 * time.Millisecond

// OnSwitch reports a switch of a stream's upstream: metrics, and after the
// settle time an events.EdgeSwitched with the frames lost and duplicated
// since the new feed was added.
func (m *Manager) OnSwitch(s *stream.Stream, info media.SwitchInfo, from, to *stream.Feed) {
	if to == nil || to.Kind != stream.KindUpstream {
		return
	}
	m.metrics.Switches.WithLabelValues(s.Name, "edge", info.Mode).Inc()
	ev := events.EdgeSwitched{Stream: s.Name, Edge: m.cfg.Self, Mode: info.Mode}
	if from != nil {
		ev.FromHost = from.Host
		if from.Kind != stream.KindUpstream {
			ev.FromHost = m.cfg.Self
		}
	}
	var missing0, dup0 uint64
	if to != nil {
		ev.ToHost = to.Host
		if to.Kind != stream.KindUpstream {
			ev.ToHost = m.cfg.Self
		}
		_, missing0, dup0 = to.Added()
	}
	if ev.ToHost == "" {
		return
	}
	if pl, ok := m.placement(s.Name); ok && pl.Host == ev.ToHost {
		ev.MigrationID = pl.MigrationID
	}
	// One tracked goroutine, not timers: a report still waiting when the
	// manager closes is dropped, never emitted after Close.
	m.tasks.Go(func() {
		if !m.sleep(gapAfter) {
			return
		}
		// the longest output gap from the new upstream's arrival to a few frames
		// after the switch (the Splicer's own figure ends at the switch)
		gap := max(info.Gap, s.Gap())
		if !m.sleep(max(m.cfg.Settle, gapAfter) - gapAfter) {
			return
		}
		ev.GapMS = float64(gap) / float64(time.Millisecond)
		missing, dup := s.FrameCounts()
		ev.FramesMissing = int64(missing - missing0)
		ev.Duplicates = int64(dup - dup0)
		ev.At = info.At.UTC()
		m.metrics.SwitchFramesMissing.WithLabelValues(s.Name, "edge").Add(float64(ev.FramesMissing))
		m.metrics.SwitchFramesDuplicated.WithLabelValues(s.Name, "edge").Add(float64(ev.Duplicates))
		m.metrics.SwitchGap.WithLabelValues("edge").Observe(gap.Seconds())
		m.mu.Lock()
		if g := gap.Seconds(); g > m.gaps[s.Name] {
			m.gaps[s.Name] = g
			m.metrics.LongestGap.WithLabelValues(s.Name, "edge").Set(g)
		}
		m.mu.Unlock()
		m.log.Info().Str("stream", s.Name).Str("from_host", ev.FromHost).Str("to_host", ev.ToHost).
			Str("migration_id", ev.MigrationID).Str("mode", ev.Mode).Bool("break", info.Break).
			Int64("frames_missing", ev.FramesMissing).Int64("duplicates", ev.Duplicates).Float64("gap_ms", ev.GapMS).
			Msg("edge switched upstream")
		m.emit.Emit(ev)
	})
}

// sleep waits d; it reports false when the manager closed first.
func (m *Manager) sleep(d time.Duration) bool {
	if d <= 0 {
		return m.ctx.Err() == nil
	}
	select {
	case <-m.ctx.Done():
		return false
	case <-m.clock.After(d):
		return true
	}
}
