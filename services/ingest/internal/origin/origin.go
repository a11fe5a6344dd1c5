// Package origin is the ingest node's RTSP server: publishers ANNOUNCE and
// RECORD (with a publish token checked against the placement), readers
// DESCRIBE, SETUP and PLAY (streams this node does not host are handed to the
// edge resolver), and a drain gate refuses new publishers.
package origin

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/media"
	"github.com/ferrystream/ferry/libs/token"
	"github.com/ferrystream/ferry/services/ingest/internal/config"
	"github.com/ferrystream/ferry/services/ingest/internal/control"
	"github.com/ferrystream/ferry/services/ingest/internal/emit"
	"github.com/ferrystream/ferry/services/ingest/internal/guard"
	"github.com/ferrystream/ferry/services/ingest/internal/metrics"
	"github.com/ferrystream/ferry/services/ingest/internal/stream"
	"github.com/ferrystream/ferry/services/ingest/internal/tasks"
	"github.com/ferrystream/ferry/services/ingest/internal/upstream"
)

// Errors a resolver returns so the handler can answer with the right status.
var (
	// ErrUnknownStream: no placement and no local stream (404).
	ErrUnknownStream = errors.New("unknown stream")
	// ErrNotPublished: the stream is placed on this host but nobody publishes it (404).
	ErrNotPublished = errors.New("stream is placed here but not published")
	// ErrRefused marks a request the handler refused; the connection is closed.
	ErrRefused = errors.New("request refused")
)

// Resolver serves streams this node does not host (the edge role).
type Resolver interface {
	// Serve returns a live stream for name, pulling it from its host if needed.
	Serve(ctx context.Context, name string) (*stream.Stream, error)
}

// Placements is what the handler needs from the placements bucket.
type Placements interface {
	Get(ctx context.Context, stream string) (events.Placement, error)
}

// Sessions is what the handler needs from the sessions bucket.
type Sessions interface {
	Get(ctx context.Context, id string) (events.Session, bool)
}

// Deps are the node's collaborators.
type Deps struct {
	Log zerolog.Logger
	// Metrics receives the node's figures (nil: collectors registered nowhere).
	Metrics    *metrics.Metrics
	Placements Placements
	Sessions   Sessions
	Emit       *emit.Emitter
	// Resolver serves non-hosted streams; nil disables the edge role.
	Resolver Resolver
	// OnHosted is called when a stream gets a local source (handover tracking).
	OnHosted func(*stream.Stream)
	// StreamOptions are passed to every stream (switch and output hooks).
	StreamOptions stream.Options
	// Now returns the time (tests); default time.Now.
	Now func() time.Time
}

// Node is the RTSP server of an ingest host and its stream table.
type Node struct {
	cfg    config.Config
	d      Deps
	log    zerolog.Logger
	srv    *gortsplib.Server
	table  *stream.Table
	secret []byte

	ctx    context.Context
	cancel context.CancelFunc
	// tasks runs the supersede watchers and the feeds' retire callbacks;
	// Close waits for them.
	tasks tasks.Group

	addr      string
	publicURL string

	drainMu       sync.Mutex
	draining      bool
	drainDeadline time.Time

	connErrs connErrLog

	publishers atomic.Int64
	readers    atomic.Int64
	conns      atomic.Int64
	lost       atomic.Uint64
	writeErrs  atomic.Uint64
}

// New builds a node; Start opens its listeners.
func New(cfg config.Config, d Deps) (*Node, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	d.Metrics = metrics.OrNop(d.Metrics)
	n := &Node{cfg: cfg, d: d, log: d.Log.With().Str("component", "origin").Logger(),
		secret: []byte(cfg.TokenSecret)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.srv = &gortsplib.Server{
		Handler:        n,
		RTSPAddress:    cfg.RTSPAddr,
		UDPRTPAddress:  cfg.UDPRTPAddr,
		UDPRTCPAddress: cfg.UDPRTCPAddr,
		WriteQueueSize: 512,
		ReadTimeout:    cfg.ReadTimeout,
		// the guard sits between the socket and gortsplib (with TLS, below
		// the TLS layer, so a stalled TLS handshake is timed too)
		Listen: func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			n.addr = ln.Addr().String()
			return guard.New(ln, guard.Config{
				HandshakeTimeout: cfg.HandshakeTimeout,
				MaxPendingPerIP:  cfg.MaxPendingPerIP,
				Log:              n.log,
				OnClose: func(reason string) {
					n.d.Metrics.Refused.WithLabelValues("CONN", reason).Inc()
				},
			}), nil
		},
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("INGEST_TLS_CERT: %w", err)
		}
		n.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	so := d.StreamOptions
	so.Log = d.Log
	so.Tasks = &n.tasks
	prev := so.OnWriteError
	so.OnWriteError = func(err error) {
		n.writeErrs.Add(1)
		d.Metrics.WriteErrors.Inc()
		if prev != nil {
			prev(err)
		}
	}
	n.table = stream.NewTable(n.srv, so)
	n.table.OnChange = func() {
		d.Metrics.Streams.Set(float64(n.table.Len()))
	}
	return n, nil
}

// Start opens the RTSP (and UDP) listeners.
func (n *Node) Start() error {
	if err := n.srv.Start(); err != nil {
		return fmt.Errorf("start RTSP server on %s: %w", n.cfg.RTSPAddr, err)
	}
	n.publicURL = n.cfg.PublicURL
	if _, p, err := net.SplitHostPort(n.cfg.RTSPAddr); err == nil && p == "0" {
		// a random port: publish the bound one
		if u, err := url.Parse(n.publicURL); err == nil && strings.HasSuffix(u.Host, ":0") {
			_, bp, _ := net.SplitHostPort(n.addr)
			u.Host = strings.TrimSuffix(u.Host, "0") + bp
			n.publicURL = u.String()
		}
	}
	n.publicURL = strings.TrimSuffix(n.publicURL, "/")
	n.log.Info().Str("addr", n.addr).Str("public_url", n.publicURL).Str("role", n.cfg.Role).
		Bool("udp", n.cfg.UDP()).Bool("tls", n.srv.TLSConfig != nil).Bool("open_publish", n.cfg.AllowOpenPublish).
		Msg("RTSP server listening")
	if n.cfg.AllowOpenPublish {
		n.log.Warn().Msg("INGEST_ALLOW_OPEN_PUBLISH is on: publishers need no token (development only)")
	}
	return nil
}

// Close closes every stream and the server, and waits for the goroutines the
// node started (supersede watchers, retire callbacks).
func (n *Node) Close() {
	n.cancel()
	for _, s := range n.table.All() {
		n.table.Remove(s, "server closing")
	}
	n.srv.Close()
	n.tasks.Close()
}

// Addr returns the bound RTSP address.
func (n *Node) Addr() string { return n.addr }

// PublicURL returns the base RTSP URL of this host (no trailing slash).
func (n *Node) PublicURL() string { return n.publicURL }

// StreamURL returns this host's URL of a stream.
func (n *Node) StreamURL(name string) string { return n.publicURL + "/" + name }

// Table returns the stream table.
func (n *Node) Table() *stream.Table { return n.table }

// Server returns the gortsplib server (to create streams on it).
func (n *Node) Server() *gortsplib.Server { return n.srv }

// SetDraining makes the node refuse new publishers until deadline.
func (n *Node) SetDraining(deadline time.Time) {
	n.drainMu.Lock()
	defer n.drainMu.Unlock()
	n.draining, n.drainDeadline = true, deadline
	n.d.Metrics.Draining.Set(1)
}

// Draining reports whether the node drains, and until when.
func (n *Node) Draining() (bool, time.Time) {
	n.drainMu.Lock()
	defer n.drainMu.Unlock()
	return n.draining, n.drainDeadline
}

// Stats are the node's live counters.
type Stats struct {
	Publishers, Readers, Conns int64
	RTPLost, WriteErrors       uint64
}

// Stats returns the node's live counters.
func (n *Node) Stats() Stats {
	return Stats{Publishers: n.publishers.Load(), Readers: n.readers.Load(), Conns: n.conns.Load(),
		RTPLost: n.lost.Load(), WriteErrors: n.writeErrs.Load()}
}

// HostedStreams returns the streams with a local source.
func (n *Node) HostedStreams() []*stream.Stream {
	var out []*stream.Stream
	for _, s := range n.table.All() {
		if s.Hosted() {
			out = append(out, s)
		}
	}
	return out
}

// sessionKind tells publisher and reader sessions apart.
type sessionKind int

const (
	kindPublisher sessionKind = iota + 1
	kindReader
)

// sessionInfo is the user data of an accepted session.
type sessionInfo struct {
	kind   sessionKind
	name   string
	stream *stream.Stream

	// publishers
	desc        *description.Session
	sessionID   string
	clientID    string
	migrationID string
	space       string
	feed        *stream.Feed
	reason      atomic.Pointer[string]
	recording   bool
}

// refuse builds a refusal: the status line carries the reason, the error
// closes the connection after the response.
func (n *Node) refuse(method, reason string, code base.StatusCode, msg string, ev *zerolog.Event) (*base.Response, error) {
	n.d.Metrics.Refused.WithLabelValues(method, reason).Inc()
	ev.Int("status", int(code)).Str("reason", reason).Msg(method + " refused: " + msg)
	return &base.Response{StatusCode: code, StatusMessage: statusMessage(code, msg)}, fmt.Errorf("%w: %s", ErrRefused, msg)
}

// statusMessage is "<standard text>: <detail>", one short line.
func statusMessage(code base.StatusCode, detail string) string {
	m := base.StatusMessages[code]
	if detail != "" {
		m += ": " + detail
	}
	m = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return ' '
		}
		return r
	}, m)
	if len(m) > 200 {
		m = m[:200]
	}
	return m
}

// OnRequest implements gortsplib.ServerHandlerOnRequest: a complete request
// stops the connection's handshake timer while it is handled.
func (n *Node) OnRequest(sc *gortsplib.ServerConn, _ *base.Request) {
	if g := guard.Of(sc.NetConn()); g != nil {
		g.RequestStarted()
	}
}

// OnResponse implements gortsplib.ServerHandlerOnResponse: once answered, a
// connection with a session is left to gortsplib's timeouts, one without
// gets the handshake timer again (restarted only by a success).
func (n *Node) OnResponse(sc *gortsplib.ServerConn, res *base.Response) {
	if g := guard.Of(sc.NetConn()); g != nil {
		g.RequestDone(holdsSession(sc), res.StatusCode < 400)
	}
}

// holdsSession reports whether sc's session has left the initial state,
// i.e. a SETUP or ANNOUNCE succeeded: gortsplib creates the session of a
// SETUP before the handler answers, and keeps it when the answer is a 461
// or 404, so sc.Session() alone would let refused SETUPs past the per-IP
// cap and the handshake timeout.
func holdsSession(sc *gortsplib.ServerConn) bool {
	s := sc.Session()
	return s != nil && s.State() != gortsplib.ServerSessionStateInitial
}

// OnConnOpen implements gortsplib.ServerHandlerOnConnOpen.
func (n *Node) OnConnOpen(*gortsplib.ServerHandlerOnConnOpenCtx) {
	n.conns.Add(1)
	n.d.Metrics.Conns.Inc()
}

// OnConnClose implements gortsplib.ServerHandlerOnConnClose; a connection
// that never held a session and ended on an error of its own (a request
// gortsplib could not parse, a stray frame) is logged and counted.
func (n *Node) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	n.conns.Add(-1)
	n.d.Metrics.Conns.Dec()
	n.connClosedOnError(ctx.Conn, ctx.Error)
}

// OnSessionClose implements gortsplib.ServerHandlerOnSessionClose.
func (n *Node) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	info, _ := ctx.Session.UserData().(*sessionInfo)
	if info == nil {
		return
	}
	switch info.kind {
	case kindReader:
		if info.stream != nil && info.stream.RemoveReader(ctx.Session) {
			n.readers.Add(-1)
			n.d.Metrics.Readers.Dec()
		}
	case kindPublisher:
		if info.feed == nil {
			return
		}
		info.stream.RemoveFeed(info.feed)
		n.publishers.Add(-1)
		n.d.Metrics.Publishers.Dec()
		reason := "closed"
		if r := info.reason.Load(); r != nil {
			reason = *r
		} else if r := info.feed.Reason(); r != "" {
			reason = r
		} else if ctx.Error != nil {
			reason = ctx.Error.Error()
		}
		mig := n.detachMigration(info)
		n.log.Info().Str("stream", info.name).Str("session_id", info.sessionID).Str("migration_id", mig).
			Str("reason", reason).Msg("publisher detached")
		n.d.Emit.Emit(events.PublisherDetached{
			Stream: info.name, Host: n.cfg.HostID, SessionID: info.sessionID, ClientID: info.clientID,
			MigrationID: mig, Reason: reason, At: n.d.Now().UTC(),
		})
	}
}

// detachMigration is the migration a publisher's detach belongs to
// (emit.DetachMigration, judged from the placement as it is now).
func (n *Node) detachMigration(info *sessionInfo) string {
	ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
	defer cancel()
	pl, err := n.d.Placements.Get(ctx, info.name)
	return emit.DetachMigration(pl, err == nil || errors.Is(err, control.ErrNotPlaced), n.cfg.HostID, info.migrationID, n.d.Now())
}

// OnPacketsLost implements gortsplib.ServerHandlerOnPacketsLost.
func (n *Node) OnPacketsLost(ctx *gortsplib.ServerHandlerOnPacketsLostCtx) {
	n.lost.Add(ctx.Lost)
	n.d.Metrics.RTPLost.Add(float64(ctx.Lost))
}

// OnDecodeError implements gortsplib.ServerHandlerOnDecodeError.
func (n *Node) OnDecodeError(*gortsplib.ServerHandlerOnDecodeErrorCtx) {
	n.d.Metrics.DecodeErrors.Inc()
}

// OnStreamWriteError implements gortsplib.ServerHandlerOnStreamWriteError.
func (n *Node) OnStreamWriteError(*gortsplib.ServerHandlerOnStreamWriteErrorCtx) {
	n.writeErrs.Add(1)
	n.d.Metrics.WriteErrors.Inc()
}

// resolve finds the stream a reader asks for: a local one, or one the edge
// resolver pulls.
func (n *Node) resolve(method, path string, conn *gortsplib.ServerConn) (*stream.Stream, *base.Response, error) {
	name, reason, msg := checkPath(path)
	log := n.log.With().Str("stream", name).Str("remote", remote(conn)).Logger()
	if reason != "" {
		res, err := n.refuse(method, reason, base.StatusBadRequest, msg, log.Warn().Str("path", safePath(path)))
		return nil, res, err
	}
	if s := n.table.Get(name); s != nil && !s.Closed() {
		return s, nil, nil
	}
	if n.d.Resolver == nil || !n.cfg.Edge() {
		return nil, &base.Response{StatusCode: base.StatusNotFound, StatusMessage: statusMessage(base.StatusNotFound, "stream not found")}, nil
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.UpstreamWait+2*time.Second)
	defer cancel()
	s, err := n.d.Resolver.Serve(ctx, name)
	switch {
	case err == nil:
		return s, nil, nil
	case errors.Is(err, ErrUnknownStream), errors.Is(err, ErrNotPublished):
		log.Info().Err(err).Msg(method + ": not found")
		return nil, &base.Response{StatusCode: base.StatusNotFound, StatusMessage: statusMessage(base.StatusNotFound, err.Error())}, nil
	default:
		log.Warn().Err(err).Msg(method + ": upstream unavailable")
		return nil, &base.Response{StatusCode: base.StatusServiceUnavailable,
			StatusMessage: statusMessage(base.StatusServiceUnavailable, "upstream unavailable: "+err.Error()),
			Header:        base.Header{"Retry-After": base.HeaderValue{"2"}}}, nil
	}
}

func remote(c *gortsplib.ServerConn) string {
	if c == nil || c.NetConn() == nil {
		return ""
	}
	return c.NetConn().RemoteAddr().String()
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (n *Node) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	s, res, err := n.resolve("DESCRIBE", ctx.Path, ctx.Conn)
	if s == nil {
		return res, nil, err
	}
	if isFerryPull(ctx.Request) && s.RelayOnly() {
		// Another Ferry host pulls the stream (an edge, or the old host of a
		// move relaying for its readers) but this host only relays it itself,
		// typically from that very host while a new publisher is on its way
		// here. Serving it would make a loop that looks caught up while it
		// carries nothing new: the old host would close its publisher before
		// this host has the new one. The puller retries shortly.
		n.log.Debug().Str("stream", s.Name).Str("remote", remote(ctx.Conn)).
			Msg("DESCRIBE from a Ferry host refused: the stream is only relayed here")
		return &base.Response{StatusCode: base.StatusServiceUnavailable,
			StatusMessage: statusMessage(base.StatusServiceUnavailable, "stream not published here yet"),
			Header:        base.Header{"Retry-After": base.HeaderValue{"1"}}}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, s.ServerStream(), nil
}

// isFerryPull reports whether a request comes from another Ferry host's pull.
func isFerryPull(req *base.Request) bool {
	if req == nil {
		return false
	}
	ua := req.Header["User-Agent"]
	return len(ua) > 0 && ua[0] == upstream.UserAgent
}

// OnSetup implements gortsplib.ServerHandlerOnSetup.
func (n *Node) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if msg := checkTransport(ctx.Request, ctx.Transport); msg != "" {
		// 461 without closing: the client may offer another transport
		n.d.Metrics.Refused.WithLabelValues("SETUP", "bad_transport").Inc()
		n.log.Warn().Str("remote", remote(ctx.Conn)).Int("status", int(base.StatusUnsupportedTransport)).
			Str("reason", "bad_transport").Msg("SETUP refused: " + msg)
		return &base.Response{StatusCode: base.StatusUnsupportedTransport,
			StatusMessage: statusMessage(base.StatusUnsupportedTransport, msg)}, nil, nil
	}
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		info, _ := ctx.Session.UserData().(*sessionInfo)
		if info == nil || info.kind != kindPublisher {
			return &base.Response{StatusCode: base.StatusBadRequest}, nil, fmt.Errorf("%w: SETUP without ANNOUNCE", ErrRefused)
		}
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	if info, _ := ctx.Session.UserData().(*sessionInfo); info != nil && info.stream != nil {
		// further medias of the same reader session
		if info.stream.Closed() {
			return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
		}
		return &base.Response{StatusCode: base.StatusOK}, info.stream.ServerStream(), nil
	}
	s, res, err := n.resolve("SETUP", ctx.Path, ctx.Conn)
	if s == nil {
		return res, nil, err
	}
	ctx.Session.SetUserData(&sessionInfo{kind: kindReader, name: s.Name, stream: s})
	return &base.Response{StatusCode: base.StatusOK}, s.ServerStream(), nil
}

// OnPlay implements gortsplib.ServerHandlerOnPlay.
func (n *Node) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	info, _ := ctx.Session.UserData().(*sessionInfo)
	if info == nil || info.kind != kindReader || info.stream == nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, fmt.Errorf("%w: PLAY without SETUP", ErrRefused)
	}
	if info.stream.Closed() {
		return &base.Response{StatusCode: base.StatusNotFound, StatusMessage: statusMessage(base.StatusNotFound, "stream ended")}, nil
	}
	info.stream.AddReader(ctx.Session, ctx.Conn)
	n.readers.Add(1)
	n.d.Metrics.Readers.Inc()
	n.log.Debug().Str("stream", info.name).Str("remote", remote(ctx.Conn)).Msg("reader attached")
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnAnnounce implements gortsplib.ServerHandlerOnAnnounce: the publish gate.
func (n *Node) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	name, reason, msg := checkPath(ctx.Path)
	log := n.log.With().Str("stream", name).Str("remote", remote(ctx.Conn)).Logger()
	if reason != "" {
		return n.refuse("ANNOUNCE", reason, base.StatusBadRequest, msg, log.Warn().Str("path", safePath(ctx.Path)))
	}
	if !n.cfg.Origin() {
		return n.refuse("ANNOUNCE", "edge_only", base.StatusMethodNotAllowed, "this host only serves viewers (edge role)", log.Warn())
	}
	if dr, deadline := n.Draining(); dr {
		res, err := n.refuse("ANNOUNCE", "draining", base.StatusServiceUnavailable, "host is draining", log.Warn())
		retry := int(time.Until(deadline).Seconds())
		if retry < 1 {
			retry = 1
		}
		res.Header = base.Header{"Retry-After": base.HeaderValue{strconv.Itoa(retry)}}
		return res, err
	}
	if ctx.Description == nil || len(ctx.Description.Medias) == 0 {
		return n.refuse("ANNOUNCE", "no_medias", base.StatusBadRequest, "description has no medias", log.Warn())
	}
	if len(ctx.Description.Medias) > n.cfg.MaxTracks {
		return n.refuse("ANNOUNCE", "too_many_tracks", base.StatusBadRequest,
			fmt.Sprintf("description has %d medias, at most %d allowed", len(ctx.Description.Medias), n.cfg.MaxTracks), log.Warn())
	}
	for i, m := range ctx.Description.Medias {
		if len(m.Formats) == 0 {
			return n.refuse("ANNOUNCE", "no_formats", base.StatusBadRequest, fmt.Sprintf("media %d has no format", i), log.Warn())
		}
	}

	info := &sessionInfo{kind: kindPublisher, name: name, desc: ctx.Description}
	q, _ := url.ParseQuery(ctx.Query)
	tok := q.Get(token.QueryParam)
	if tok == "" && n.cfg.AllowOpenPublish {
		info.sessionID = "open-" + randHex(8)
		info.space = info.sessionID
		if pl, err := n.d.Placements.Get(n.ctx, name); err == nil && pl.Host != n.cfg.HostID {
			return n.refuse("ANNOUNCE", "not_placed_here", base.StatusForbidden,
				fmt.Sprintf("stream is placed on %s", pl.Host), log.Warn())
		}
		log.Warn().Str("session_id", info.sessionID).Msg("open publish (no token): allowed by INGEST_ALLOW_OPEN_PUBLISH")
	} else {
		claims, err := token.Verify(n.secret, tok, n.d.Now())
		if err == nil {
			err = claims.Check(name, n.cfg.HostID)
		}
		if err != nil {
			reason, code := tokenReason(err)
			return n.refuse("ANNOUNCE", reason, code, err.Error(), log.Warn().Str("session_id", claims.Session).
				Str("migration_id", claims.MigrationID))
		}
		pl, perr := n.d.Placements.Get(n.ctx, name)
		switch {
		case errors.Is(perr, control.ErrNotPlaced):
			return n.refuse("ANNOUNCE", "not_placed", base.StatusForbidden, "stream has no placement", log.Warn().Str("session_id", claims.Session))
		case perr != nil:
			res, err := n.refuse("ANNOUNCE", "placement_unavailable", base.StatusServiceUnavailable, "placement lookup failed", log.Error().Err(perr))
			res.Header = base.Header{"Retry-After": base.HeaderValue{"1"}}
			return res, err
		case pl.Host != n.cfg.HostID:
			return n.refuse("ANNOUNCE", "not_placed_here", base.StatusForbidden,
				fmt.Sprintf("stream is placed on %s, not here", pl.Host), log.Warn().Str("session_id", claims.Session))
		}
		info.sessionID = claims.Session
		if info.sessionID == "" {
			info.sessionID = "tok-" + randHex(8)
		}
		info.space = "sess:" + claims.Session
		if claims.Session == "" {
			info.space = info.sessionID
		}
		info.clientID = claims.ClientID
		if info.clientID == "" && pl.SessionID == claims.Session {
			info.clientID = pl.ClientID
		}
		info.migrationID = claims.MigrationID
		if info.migrationID == "" {
			info.migrationID = pl.MigrationID
		}
	}
	if !config.NamePattern.MatchString(info.clientID) {
		info.clientID = ""
	}
	if s := n.table.Get(name); s != nil {
		if err := stream.Compatible(s.Desc, ctx.Description); err != nil {
			return n.refuse("ANNOUNCE", "codec_mismatch", base.StatusUnsupportedMediaType, err.Error(),
				log.Warn().Str("session_id", info.sessionID))
		}
	} else if len(n.HostedStreams()) >= n.cfg.CapacityStreams {
		res, err := n.refuse("ANNOUNCE", "capacity", base.StatusServiceUnavailable, "host is at capacity", log.Warn())
		res.Header = base.Header{"Retry-After": base.HeaderValue{"5"}}
		return res, err
	}
	ctx.Session.SetUserData(info)
	log.Info().Str("session_id", info.sessionID).Str("migration_id", info.migrationID).Msg("publisher announced")
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// tokenReason maps a token error to a metrics reason and an RTSP status:
// 401 for a missing, malformed, forged or expired token, 403 for a token
// that is valid but for another stream or host.
func tokenReason(err error) (string, base.StatusCode) {
	switch {
	case errors.Is(err, token.ErrMissing):
		return "token_missing", base.StatusUnauthorized
	case errors.Is(err, token.ErrMalformed):
		return "token_malformed", base.StatusUnauthorized
	case errors.Is(err, token.ErrBadSignature):
		return "token_forged", base.StatusUnauthorized
	case errors.Is(err, token.ErrExpired):
		return "token_expired", base.StatusUnauthorized
	case errors.Is(err, token.ErrWrongHost):
		return "token_wrong_host", base.StatusForbidden
	case errors.Is(err, token.ErrWrongStream):
		return "token_wrong_stream", base.StatusForbidden
	}
	return "token_invalid", base.StatusUnauthorized
}

// OnRecord implements gortsplib.ServerHandlerOnRecord: the publisher becomes
// a feed of the path's stream (its source, or a pending newcomer).
func (n *Node) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	info, _ := ctx.Session.UserData().(*sessionInfo)
	if info == nil || info.kind != kindPublisher || info.recording {
		return &base.Response{StatusCode: base.StatusBadRequest}, fmt.Errorf("%w: RECORD without ANNOUNCE", ErrRefused)
	}
	log := n.log.With().Str("stream", info.name).Str("session_id", info.sessionID).Str("migration_id", info.migrationID).Logger()
	s, _, err := n.table.GetOrCreate(info.name, info.desc)
	if err != nil {
		return n.refuse("RECORD", "stream", base.StatusInternalServerError, err.Error(), log.Error())
	}
	sess := ctx.Session
	feed, err := s.AddFeed(stream.FeedSpec{
		Kind: stream.KindPublisher, Space: info.space, Label: info.sessionID, Desc: info.desc,
		OnRetire: func(reason string) {
			info.reason.CompareAndSwap(nil, &reason)
			sess.Close()
		},
	})
	if err != nil {
		if errors.Is(err, stream.ErrIncompatible) {
			return n.refuse("RECORD", "codec_mismatch", base.StatusUnsupportedMediaType, err.Error(), log.Warn())
		}
		return n.refuse("RECORD", "stream", base.StatusServiceUnavailable, err.Error(), log.Warn())
	}
	info.stream, info.feed, info.recording = s, feed, true
	index := make(map[*description.Media]int, len(info.desc.Medias))
	formas := make([]format.Format, len(info.desc.Medias))
	for i, m := range info.desc.Medias {
		index[m] = i
		formas[i] = m.Formats[0]
	}
	sess.OnPacketRTPAny(func(medi *description.Media, forma format.Format, pkt *rtp.Packet) {
		i, ok := index[medi]
		if !ok || forma != formas[i] {
			return
		}
		if err := feed.Write(i, pkt); errors.Is(err, media.ErrFeedRetired) {
			sess.Close()
		}
	})
	n.publishers.Add(1)
	n.d.Metrics.Publishers.Inc()
	caps := events.Capabilities{}
	if ds, ok := n.d.Sessions.Get(n.ctx, info.sessionID); ok {
		caps = ds.Capabilities
		if info.clientID == "" && config.NamePattern.MatchString(ds.ClientID) {
			info.clientID = ds.ClientID
		}
	}
	log.Info().Str("feed", feed.ID).Str("mode", feed.Mode().String()).Str("client_id", info.clientID).Msg("publisher attached")
	n.d.Emit.Emit(events.PublisherAttached{
		Stream: info.name, Host: n.cfg.HostID, SessionID: info.sessionID, ClientID: info.clientID,
		Capabilities: caps, MigrationID: info.migrationID, Mode: "push", At: n.d.Now().UTC(),
	})
	if feed.Mode() == media.SameSeqSpace {
		n.tasks.Go(func() { n.supersede(s, feed, log) })
	}
	if n.d.OnHosted != nil {
		n.d.OnHosted(s)
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// supersede retires the older publisher connections of the same session once
// the newcomer, which continues their sequence space, overlaps the stream: a
// publisher that reconnected to the same host (make-before-break) lets go of
// its old connection when this host closes it.
func (n *Node) supersede(s *stream.Stream, feed *stream.Feed, log zerolog.Logger) {
	select {
	case <-feed.Ready():
	case <-feed.Done():
		return
	case <-n.ctx.Done():
		return
	}
	for _, f := range s.Supersede(feed) {
		log.Info().Str("feed", f.ID).Str("by", feed.ID).Msg("older connection of the same session closed")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RunJanitor removes streams that have had no source for StreamGrace (their
// readers are disconnected), and streams with neither source nor reader,
// until ctx ends.
func (n *Node) RunJanitor(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for _, s := range n.table.All() {
			noFeed, noReader := s.Idle()
			switch {
			case noFeed.IsZero():
			case now.Sub(noFeed) > n.cfg.StreamGrace:
				n.table.Remove(s, "no source for "+n.cfg.StreamGrace.String())
			case !noReader.IsZero() && now.Sub(noFeed) > time.Second && now.Sub(noReader) > time.Second:
				n.table.Remove(s, "no source and no reader")
			}
		}
	}
}
