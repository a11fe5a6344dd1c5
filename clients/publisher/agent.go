package publisher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/services/placement/client"
)

// Errors a notice can be refused with.
var (
	// ErrNoticeNotOurs: the notice names another stream or session.
	ErrNoticeNotOurs = errors.New("notice is for a session this agent does not own")
	// ErrNoticeExpired: the notice's offline time has passed.
	ErrNoticeExpired = errors.New("notice arrived after its deadline")
)

// Deps are the agent's collaborators. Only NC is required.
type Deps struct {
	// NC is the NATS connection (placement requests, notices, acks).
	NC *nats.Conn
	// Source overrides the source named by Config.Source.
	Source Source
	// Stdout receives the plain (or JSON) lines; nil prints nothing.
	Stdout io.Writer
	// Log receives diagnostics.
	Log zerolog.Logger
	// Registry receives the agent's metrics (nil: a private registry).
	Registry *prometheus.Registry
	// Now defaults to time.Now.
	Now func() time.Time
}

// Stats is a snapshot of what the agent did.
type Stats struct {
	// Host is the ingest host the stream is published to now ("" in a gap).
	Host      string
	SessionID string
	// Moves counts completed moves; Gaps counts connection losses without notice.
	Moves, Gaps int
	// FramesSent, FramesDropped and PacketsSent count video frames written to at
	// least one host, frames no host took, and packets written.
	FramesSent, FramesDropped, PacketsSent uint64
	// Uplinks is the number of open ingest connections (2 during a move).
	Uplinks int
	// LastOverlap is how long the last move wrote to both hosts.
	LastOverlap time.Duration
}

type session struct{ id, secret string }

// Agent publishes one stream to the host placement chooses and moves it
// make-before-break when told to. One goroutine (Run's loop) owns the move
// state; the other goroutines (notice receivers, connection watchers,
// dialers, REDIRECT callbacks) talk to it through inbox.
type Agent struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	place *client.Client
	src   Source
	out   *printer
	log   zerolog.Logger
	reg   *prometheus.Registry
	now   func() time.Time
	http  *http.Client

	ctx     context.Context
	inbox   chan any
	sess    atomic.Pointer[session]
	hookLn  net.Listener
	hookURL string
	replays replayCache
	ready   atomic.Bool

	// set in Run before the loop starts
	desc *description.Session
	fan  *fanout
	m    *metrics
	fanP atomic.Pointer[fanout] // fan, for Stats from other goroutines

	// owned by the loop goroutine
	primary      *uplink
	mv           *move
	seen         map[string]struct{}
	reconnecting bool
	stopRepub    context.CancelFunc // ends the republish loop when a move got there first
	published    bool
	gapStart     time.Time
	gapDrops     uint64

	statsMu sync.Mutex // guards stats
	stats   Stats
}

// move is a make-before-break move in progress.
type move struct {
	id, trigger, channel string
	from, to             string
	url                  string // "" when the new URL must come from placement
	offlineAt            time.Time
	started, connectedAt time.Time
	old, new             *uplink
	dropsAtStart         uint64
	waiters              []chan struct{} // REDIRECT callbacks, released once new records
	cancel               context.CancelFunc
	timer                *time.Timer
}

// Loop messages.
type (
	noticeReq struct {
		n       events.MoveNotice
		channel string
		res     chan error
	}
	uplinkEnded struct{ u *uplink }
	redirectReq struct {
		u        *uplink
		location string
		done     chan struct{}
	}
	moveDialed struct {
		mv  *move
		u   *uplink
		err error
	}
	moveTimeout struct{ mv *move }
	republished struct {
		u    *uplink
		host string
	}
)

// New returns an agent for cfg (which must be valid).
func New(cfg Config, d Deps) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.NC == nil {
		return nil, errors.New("publisher: a NATS connection is required")
	}
	js, err := jetstream.New(d.NC)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	log := d.Log.With().Str("stream", cfg.Stream).Str("client_id", cfg.ClientID).Logger()
	src := d.Source
	if src == nil {
		if src, err = NewSource(cfg, log); err != nil {
			return nil, err
		}
	}
	reg := d.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	a := &Agent{
		cfg: cfg, nc: d.NC, js: js, place: client.New(d.NC), src: src, log: log, reg: reg, now: d.Now,
		out:   &printer{w: d.Stdout, json: cfg.JSON, now: d.Now},
		http:  &http.Client{Timeout: 5 * time.Second},
		inbox: make(chan any, 64),
		seen:  map[string]struct{}{},
	}
	if slices.Contains(cfg.Channels, ChannelWebhook) {
		ln, err := net.Listen("tcp", cfg.WebhookListen)
		if err != nil {
			return nil, fmt.Errorf("PUBLISH_WEBHOOK_LISTEN: %w", err)
		}
		a.hookLn = ln
		a.hookURL = cfg.WebhookURL
		if a.hookURL == "" {
			a.hookURL = "http://" + ln.Addr().String() + "/v1/notices"
		}
	}
	return a, nil
}

// WebhookURL returns the webhook URL the agent declares ("" without the channel).
func (a *Agent) WebhookURL() string { return a.hookURL }

// Ready reports whether the stream is published somewhere.
func (a *Agent) Ready() error {
	if !a.ready.Load() {
		return errors.New("not published yet")
	}
	return nil
}

// Stats returns a snapshot of the agent's counters.
func (a *Agent) Stats() Stats {
	a.statsMu.Lock()
	s := a.stats
	a.statsMu.Unlock()
	if f := a.fanP.Load(); f != nil {
		s.FramesSent, s.FramesDropped, s.PacketsSent, s.Uplinks = f.frames.Load(), f.dropped.Load(), f.packets.Load(), f.count()
	}
	if ss := a.sess.Load(); ss != nil {
		s.SessionID = ss.id
	}
	return s
}

func (a *Agent) setStats(f func(*Stats)) {
	a.statsMu.Lock()
	f(&a.stats)
	a.statsMu.Unlock()
}

// Run publishes until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.ctx = ctx
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()

	desc, err := a.src.Open(ctx)
	if err != nil {
		if a.hookLn != nil {
			_ = a.hookLn.Close()
		}
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("open source: %w", err)
	}
	a.desc = desc
	a.fan = newFanout(desc)
	a.fanP.Store(a.fan)
	a.m = newMetrics(a.reg, a.fan, a.cfg.Stream)

	if a.hookLn != nil {
		srv := &http.Server{Handler: a.webhookHandler(), ReadHeaderTimeout: 5 * time.Second}
		bg.Go(func() { _ = srv.Serve(a.hookLn) })
		bg.Go(func() {
			<-ctx.Done()
			_ = srv.Close()
		})
		a.log.Info().Str("url", a.hookURL).Msg("webhook receiver listening")
	}
	bg.Go(func() {
		if err := a.src.Run(ctx, a.fan.write); err != nil && ctx.Err() == nil {
			a.log.Error().Err(err).Msg("source stopped")
			cancel()
		}
	})

	a.startRepublish()
	for {
		select {
		case <-ctx.Done():
			a.shutdown()
			return nil
		case msg := <-a.inbox:
			switch m := msg.(type) {
			case noticeReq:
				a.onNotice(m)
			case uplinkEnded:
				a.onUplinkEnded(m.u)
			case redirectReq:
				a.onRedirect(m)
			case moveDialed:
				a.onMoveDialed(m)
			case moveTimeout:
				a.onMoveTimeout(m.mv)
			case republished:
				a.onRepublished(m, &bg)
			}
		}
	}
}

// post hands msg to the loop (dropped once the agent stops).
func (a *Agent) post(msg any) {
	select {
	case a.inbox <- msg:
	case <-a.ctx.Done():
	}
}

func (a *Agent) shutdown() {
	a.ready.Store(false)
	var ups []*uplink
	if a.primary != nil {
		ups = append(ups, a.primary)
	}
	if mv := a.mv; mv != nil {
		mv.cancel()
		mv.timer.Stop()
		for _, w := range mv.waiters {
			close(w)
		}
		if mv.old != nil && mv.old != a.primary {
			ups = append(ups, mv.old)
		}
		if mv.new != nil {
			ups = append(ups, mv.new)
		}
	}
	for _, u := range ups {
		a.fan.remove(u)
		u.close()
	}
	a.out.say("stopped", map[string]any{"stream": a.cfg.Stream}, "stopped publishing %s", a.cfg.Stream)
}

func (a *Agent) watch(u *uplink) {
	go func() {
		<-u.done
		a.post(uplinkEnded{u})
	}()
}

func (a *Agent) onServerRequest(u *uplink, req *base.Request) {
	if req.Method != "REDIRECT" {
		return
	}
	loc := ""
	if v := req.Header["Location"]; len(v) > 0 {
		loc = v[0]
	}
	done := make(chan struct{})
	a.post(redirectReq{u: u, location: loc, done: done})
	// block until the new session records: when this returns, gortsplib closes
	// the old connection
	t := time.NewTimer(a.cfg.RedirectOverlap)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-a.ctx.Done():
	}
}

// uplinkIDs numbers connections for the logs.
var uplinkIDs atomic.Int64

func (a *Agent) nextIDFor() int { return int(uplinkIDs.Add(1)) }

// choose asks placement where to publish, declaring that the agent can move.
func (a *Agent) choose(ctx context.Context) (client.ChooseResponse, error) {
	sid := ""
	if s := a.sess.Load(); s != nil {
		sid = s.id
	}
	resp, err := a.place.Choose(ctx, client.ChooseRequest{
		Stream:    a.cfg.Stream,
		ClientID:  a.cfg.ClientID,
		SessionID: sid,
		Capabilities: events.Capabilities{
			CanMove:    true,
			Channels:   a.cfg.Channels,
			WebhookURL: a.hookURL,
		},
		Mode: client.ModePush,
	})
	if err != nil {
		return resp, err
	}
	cur := a.sess.Load()
	switch {
	case cur == nil || cur.id != resp.SessionID:
		secret := resp.NoticeSecret
		if secret == "" && cur != nil && cur.id == resp.SessionID {
			secret = cur.secret
		}
		if secret == "" && needsSecret(a.cfg.Channels) {
			a.log.Warn().Str("session_id", resp.SessionID).Msg("placement returned no notice secret: webhook and SSE notices cannot be authenticated")
		}
		a.sess.Store(&session{id: resp.SessionID, secret: secret})
	case resp.NoticeSecret != "" && resp.NoticeSecret != cur.secret:
		a.sess.Store(&session{id: resp.SessionID, secret: resp.NoticeSecret})
	}
	return resp, nil
}

func needsSecret(chs []string) bool {
	return slices.Contains(chs, ChannelWebhook) || slices.Contains(chs, ChannelSSE)
}

// startRepublish asks placement again and reconnects, backing off, until it
// publishes somewhere (also the first publish).
func (a *Agent) startRepublish() {
	if a.reconnecting {
		return
	}
	a.reconnecting = true
	if a.published {
		a.gapStart, a.gapDrops = a.now(), a.fan.dropped.Load()
	}
	ctx, cancel := context.WithCancel(a.ctx)
	a.stopRepub = cancel
	go func() {
		defer cancel()
		wait := a.cfg.RetryMin
		for ctx.Err() == nil {
			resp, err := a.choose(ctx)
			if err == nil {
				u, derr := dial(ctx, a.nextIDFor(), resp.URL, resp.Host, a.desc, a.onServerRequest)
				if derr == nil {
					a.post(republished{u: u, host: resp.Host})
					return
				}
				err = derr
			}
			if ctx.Err() != nil {
				return
			}
			a.log.Warn().Err(err).Dur("retry_in", wait).Msg("publish failed")
			a.out.say("retry", map[string]any{"stream": a.cfg.Stream, "error": err.Error(), "retry_in_ms": wait.Milliseconds()},
				"cannot publish %s yet: %v (retry in %s)", a.cfg.Stream, err, wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, a.cfg.RetryMax)
		}
	}()
}

func (a *Agent) onRepublished(m republished, bg *sync.WaitGroup) {
	a.reconnecting = false
	a.stopRepub()
	if a.primary != nil { // a move put us somewhere meanwhile
		m.u.close()
		return
	}
	a.primary = m.u
	a.fan.add(m.u)
	a.watch(m.u)
	a.ready.Store(true)
	a.setStats(func(s *Stats) { s.Host = m.host })
	sid := a.sess.Load().id
	if !a.published {
		a.published = true
		a.out.say("published", map[string]any{"stream": a.cfg.Stream, "host": m.host, "session_id": sid},
			"published %s to %s (session %s)", a.cfg.Stream, m.host, sid)
		a.startNoticeReceivers(bg)
		return
	}
	gap := a.now().Sub(a.gapStart)
	drops := a.fan.dropped.Load() - a.gapDrops
	a.m.gaps.Inc()
	a.m.gapSeconds.Observe(gap.Seconds())
	a.setStats(func(s *Stats) { s.Gaps++ })
	a.out.say("republished", map[string]any{"stream": a.cfg.Stream, "host": m.host, "session_id": sid,
		"gap_ms": gap.Milliseconds(), "frames_dropped": drops},
		"republished %s to %s after a gap of %s (%d frames dropped)", a.cfg.Stream, m.host, gap.Round(time.Millisecond), drops)
}

func (a *Agent) host() string {
	a.statsMu.Lock()
	defer a.statsMu.Unlock()
	return a.stats.Host
}

func (a *Agent) onNotice(r noticeReq) {
	n := r.n
	fields := map[string]any{"stream": n.Stream, "notice_id": n.NoticeID, "migration_id": n.MigrationID,
		"session_id": n.SessionID, "channel": r.channel}
	s := a.sess.Load()
	switch {
	case n.Stream != a.cfg.Stream || s == nil || n.SessionID != s.id:
		our := ""
		if s != nil {
			our = s.id
		}
		a.m.notices.WithLabelValues(r.channel, "ignored").Inc()
		a.out.say("notice_ignored", fields, "ignored notice %s (%s): stream %s session %s is not ours (we publish %s in session %s)",
			n.NoticeID, r.channel, n.Stream, n.SessionID, a.cfg.Stream, our)
		r.res <- ErrNoticeNotOurs
		return
	}
	if _, dup := a.seen[n.NoticeID]; dup {
		a.m.notices.WithLabelValues(r.channel, "duplicate").Inc()
		a.log.Debug().Str("notice_id", n.NoticeID).Str("channel", r.channel).Msg("notice already received on another channel")
		r.res <- nil
		return
	}
	if !a.now().Before(n.OfflineAt) {
		a.m.notices.WithLabelValues(r.channel, "ignored").Inc()
		a.out.say("notice_ignored", fields, "ignored notice %s (%s): it arrived after its deadline %s",
			n.NoticeID, r.channel, n.OfflineAt.Local().Format("15:04:05"))
		r.res <- ErrNoticeExpired
		return
	}
	a.seen[n.NoticeID] = struct{}{}
	a.m.notices.WithLabelValues(r.channel, "accepted").Inc()
	r.res <- nil
	go a.ack(n, r.channel)

	if mv := a.mv; mv != nil {
		if mv.id == n.MigrationID {
			return
		}
		a.abortMove(fmt.Sprintf("superseded by migration %s", n.MigrationID))
	}
	if a.primary != nil && a.host() == n.ToHost {
		a.out.say("moved", fields, "%s is already on %s (migration %s)", a.cfg.Stream, n.ToHost, n.MigrationID)
		return
	}
	a.startMove(&move{id: n.MigrationID, trigger: "notice", channel: r.channel, from: n.FromHost, to: n.ToHost,
		url: n.NewURL, offlineAt: n.OfflineAt})
}

func (a *Agent) startMove(mv *move) {
	mv.started = a.now()
	mv.old = a.primary
	mv.dropsAtStart = a.fan.dropped.Load()
	if mv.from == "" {
		mv.from = a.host()
	}
	a.mv = mv
	var ctx context.Context
	ctx, mv.cancel = context.WithDeadline(a.ctx, mv.offlineAt)
	mv.timer = time.AfterFunc(time.Until(mv.offlineAt), func() { a.post(moveTimeout{mv}) })
	via := "migration " + mv.id
	if mv.trigger == "redirect" {
		via = "in-band REDIRECT"
	}
	a.out.say("moving", map[string]any{"stream": a.cfg.Stream, "from": mv.from, "to": mv.to, "migration_id": mv.id,
		"trigger": mv.trigger, "channel": mv.channel, "offline_at": mv.offlineAt},
		"moving %s %s -> %s (%s)", a.cfg.Stream, mv.from, mv.to, via)
	go a.dialMove(ctx, mv)
}

// dialMove connects to the move's new host, retrying until the old host's
// offline time.
func (a *Agent) dialMove(ctx context.Context, mv *move) {
	wait := a.cfg.RetryMin
	for {
		target, host := mv.url, mv.to
		var err error
		if target == "" {
			var resp client.ChooseResponse
			if resp, err = a.choose(ctx); err == nil {
				target, host = resp.URL, resp.Host
			}
		}
		if err == nil {
			var u *uplink
			if u, err = dial(ctx, a.nextIDFor(), target, host, a.desc, a.onServerRequest); err == nil {
				a.post(moveDialed{mv: mv, u: u})
				return
			}
		}
		if ctx.Err() != nil {
			a.post(moveDialed{mv: mv, err: fmt.Errorf("%w (last: %v)", ctx.Err(), err)})
			return
		}
		a.log.Warn().Err(err).Str("to", mv.to).Dur("retry_in", wait).Msg("move: new host not ready")
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, a.cfg.RetryMax)
	}
}

func (a *Agent) onMoveDialed(m moveDialed) {
	mv := m.mv
	if a.mv != mv {
		if m.u != nil {
			m.u.close()
		}
		return
	}
	if m.err != nil {
		a.failMove(m.err)
		return
	}
	mv.new, mv.connectedAt = m.u, a.now()
	a.fan.add(m.u)
	a.watch(m.u)
	for _, w := range mv.waiters {
		close(w)
	}
	mv.waiters = nil
	if mv.old == nil || a.primary == nil {
		a.completeMove("the old connection was already gone")
		return
	}
	a.log.Info().Str("to", mv.to).Msg("recording on the new host; writing to both until the old host ends the old session")
}

func (a *Agent) onMoveTimeout(mv *move) {
	if a.mv != mv || mv.new == nil {
		return // not connected yet: dialMove reports the failure
	}
	a.completeMove("the old host's offline time was reached")
}

func (a *Agent) completeMove(why string) {
	mv := a.mv
	a.mv = nil
	mv.cancel()
	mv.timer.Stop()
	if old := mv.old; old != nil {
		a.fan.remove(old)
		go old.close()
	}
	a.primary = mv.new
	if a.reconnecting { // the move reached a host before the republish loop did
		a.reconnecting = false
		a.stopRepub()
	}
	overlap := time.Duration(0)
	if mv.old != nil {
		overlap = a.now().Sub(mv.connectedAt)
	}
	drops := a.fan.dropped.Load() - mv.dropsAtStart
	a.m.moves.WithLabelValues(mv.trigger, "ok").Inc()
	a.setStats(func(s *Stats) { s.Moves++; s.Host = mv.new.host; s.LastOverlap = overlap })
	a.ready.Store(true)
	a.out.say("moved", map[string]any{"stream": a.cfg.Stream, "from": mv.from, "to": mv.new.host, "migration_id": mv.id,
		"overlap_ms": overlap.Milliseconds(), "frames_dropped": drops, "took_ms": a.now().Sub(mv.started).Milliseconds(), "why": why},
		"moved %s to %s: overlap %s, %d frames dropped (%s)", a.cfg.Stream, mv.new.host, overlap.Round(time.Millisecond), drops, why)
}

func (a *Agent) failMove(err error) {
	mv := a.mv
	a.mv = nil
	mv.cancel()
	mv.timer.Stop()
	for _, w := range mv.waiters {
		close(w)
	}
	a.m.moves.WithLabelValues(mv.trigger, "failed").Inc()
	a.out.say("move_failed", map[string]any{"stream": a.cfg.Stream, "to": mv.to, "migration_id": mv.id, "error": err.Error()},
		"move of %s to %s failed: %v", a.cfg.Stream, mv.to, err)
	if a.primary == nil {
		a.startRepublish()
	}
}

func (a *Agent) abortMove(why string) {
	mv := a.mv
	a.mv = nil
	mv.cancel()
	mv.timer.Stop()
	for _, w := range mv.waiters {
		close(w)
	}
	if mv.new != nil {
		a.fan.remove(mv.new)
		go mv.new.close()
	}
	a.log.Warn().Str("migration_id", mv.id).Msg("move aborted: " + why)
}

func (a *Agent) onUplinkEnded(u *uplink) {
	a.fan.remove(u)
	if u.closing.Load() {
		return
	}
	mv := a.mv
	switch {
	case mv != nil && u == mv.old:
		if u == a.primary {
			a.primary = nil
		}
		if mv.new != nil {
			why := u.host + " ended the old session"
			if mv.trigger == "redirect" {
				why = "the old connection closed after the REDIRECT"
			}
			a.completeMove(why)
			return
		}
		a.out.say("lost", map[string]any{"stream": a.cfg.Stream, "host": u.host, "error": errString(u.err)},
			"lost %s on %s before the move finished (%v); still connecting to %s", a.cfg.Stream, u.host, u.err, mv.to)
	case mv != nil && u == mv.new:
		mv.new = nil
		a.out.say("lost", map[string]any{"stream": a.cfg.Stream, "host": u.host, "error": errString(u.err)},
			"new connection to %s lost (%v); reconnecting", u.host, u.err)
		ctx, cancel := context.WithDeadline(a.ctx, mv.offlineAt)
		mv.cancel()
		mv.cancel = cancel
		go a.dialMove(ctx, mv)
	case u == a.primary:
		a.primary = nil
		a.ready.Store(false)
		a.setStats(func(s *Stats) { s.Host = "" })
		a.out.say("lost", map[string]any{"stream": a.cfg.Stream, "host": u.host, "error": errString(u.err)},
			"lost %s on %s without notice (%v); asking placement again", a.cfg.Stream, u.host, u.err)
		a.startRepublish()
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (a *Agent) onRedirect(r redirectReq) {
	mv := a.mv
	if mv != nil && (r.u == mv.old || r.u == a.primary) {
		if mv.new != nil {
			close(r.done)
		} else {
			mv.waiters = append(mv.waiters, r.done)
		}
		return
	}
	if r.u != a.primary {
		close(r.done)
		return
	}
	claims := claimsFromURL(r.location)
	to := claims.Host
	target := r.location
	if claims.Stream == "" { // no token: placement gives a URL with one
		target = ""
		if u, err := url.Parse(r.location); err == nil {
			to = u.Host
		}
	}
	id := claims.MigrationID
	if id == "" {
		id = "redirect"
	}
	a.out.say("redirect", map[string]any{"stream": a.cfg.Stream, "host": r.u.host, "location": redact(r.location)},
		"%s sent an in-band REDIRECT to %s", r.u.host, redact(r.location))
	a.startMove(&move{id: id, trigger: "redirect", to: to, url: target,
		offlineAt: a.now().Add(a.cfg.RedirectOverlap), waiters: []chan struct{}{r.done}})
}
