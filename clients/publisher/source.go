package publisher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
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

	"github.com/ferrystream/ferry/libs/media"
)

// Source is what the agent publishes. Its packets are in ONE RTP
// sequence/timestamp space for the source's lifetime: the agent writes the
// same packets to every ingest connection it ever opens, so a host can switch
// between them at exact sequence continuity.
type Source interface {
	// Open prepares the source and returns its description; it blocks until
	// the description is known (e.g. until ffmpeg announced its stream).
	Open(ctx context.Context) (*description.Session, error)
	// Run emits packets until ctx ends. emit must not keep pkt.
	Run(ctx context.Context, emit func(mediaIndex int, pkt *rtp.Packet)) error
}

// NewSource builds the source named by cfg.Source.
func NewSource(cfg Config, log zerolog.Logger) (Source, error) {
	switch cfg.Source {
	case SourceSynthetic:
		src, err := media.NewFakeH264(media.FakeConfig{FPS: cfg.FPS, GOP: cfg.GOP, Bitrate: cfg.Bitrate})
		if err != nil {
			return nil, err
		}
		return NewPacedSource(src), nil
	case SourceMJPEG:
		src, err := media.NewMJPEGSource(media.FakeConfig{FPS: cfg.FPS}, 320, 240)
		if err != nil {
			return nil, err
		}
		return NewPacedSource(src), nil
	}
	u, err := url.Parse(cfg.Source)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", cfg.Source, err)
	}
	switch u.Scheme {
	case "rtsp", "rtsps":
		return NewPullSource(cfg.Source, cfg.RetryMin, cfg.RetryMax, log), nil
	case "listen":
		return NewListenSource(u.Host, "/"+strings.Trim(u.Path, "/"), log), nil
	}
	return nil, fmt.Errorf("source %q: unknown kind", cfg.Source)
}

// PacedSource emits a synthetic media.Source in real time (media.Run).
type PacedSource struct {
	src media.Source
}

var _ Source = (*PacedSource)(nil)

// NewPacedSource wraps a synthetic source (media.FakeH264, media.MJPEGSource, ...).
func NewPacedSource(src media.Source) *PacedSource { return &PacedSource{src: src} }

// Open returns the synthetic source's description.
func (s *PacedSource) Open(context.Context) (*description.Session, error) {
	return s.src.Description(), nil
}

// Run paces the source until ctx ends.
func (s *PacedSource) Run(ctx context.Context, emit func(int, *rtp.Packet)) error {
	idx := map[*description.Media]int{}
	for i, m := range s.src.Description().Medias {
		idx[m] = i
	}
	return media.Run(ctx, s.src, func(medi *description.Media, pkt *rtp.Packet) error {
		emit(idx[medi], pkt)
		return nil
	})
}

// upstream is the part shared by the sources fed by an RTSP connection that
// comes and goes (a camera we pull, ffmpeg pushing to us): each connection is
// a feed of a media.Splicer, so the agent's output keeps one
// sequence/timestamp space across upstream reconnects (rewritten once, here;
// a new upstream is spliced in at its first keyframe).
type upstream struct {
	log  zerolog.Logger
	mu   sync.Mutex // guards sp and desc
	sp   *media.Splicer
	desc *description.Session
	emit atomic.Pointer[func(int, *rtp.Packet)]
}

func (u *upstream) setup(desc *description.Session) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sp != nil {
		return
	}
	u.desc = desc
	u.sp = media.NewSplicer(desc, func(i int, pkt *rtp.Packet, _ time.Time) {
		if f := u.emit.Load(); f != nil {
			(*f)(i, pkt)
		}
	}, media.SplicerOptions{OnSwitch: func(si media.SwitchInfo) {
		u.log.Info().Str("from", si.From).Str("to", si.To).Str("mode", si.Mode).Bool("break", si.Break).
			Dur("gap", si.Gap).Msg("upstream switched")
	}})
}

func (u *upstream) splicer() *media.Splicer {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sp
}

// PullSource pulls a camera's RTSP URL (TCP) and reconnects with backoff.
type PullSource struct {
	upstream
	url                string
	retryMin, retryMax time.Duration
	first              *gortsplib.Client
	firstDesc          *description.Session
}

var _ Source = (*PullSource)(nil)

// NewPullSource returns a source pulling rawURL.
func NewPullSource(rawURL string, retryMin, retryMax time.Duration, log zerolog.Logger) *PullSource {
	return &PullSource{
		upstream: upstream{log: log.With().Str("component", "source").Str("source_url", redact(rawURL)).Logger()},
		url:      rawURL, retryMin: retryMin, retryMax: retryMax,
	}
}

func (s *PullSource) connect() (*gortsplib.Client, *description.Session, error) {
	u, err := base.ParseURL(s.url)
	if err != nil {
		return nil, nil, err
	}
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
	if err := c.Start(); err != nil {
		return nil, nil, err
	}
	desc, _, err := c.Describe(u)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, desc, nil
}

// Open connects to the camera (retrying until ctx ends) and returns its description.
func (s *PullSource) Open(ctx context.Context) (*description.Session, error) {
	wait := s.retryMin
	for {
		c, desc, err := s.connect()
		if err == nil {
			s.first, s.firstDesc = c, desc
			s.setup(desc)
			return desc, nil
		}
		s.log.Warn().Err(err).Dur("retry_in", wait).Msg("camera not reachable")
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, s.retryMax)
	}
}

// Run plays the camera until ctx ends, reconnecting when it drops.
func (s *PullSource) Run(ctx context.Context, emit func(int, *rtp.Packet)) error {
	s.emit.Store(&emit)
	sp := s.splicer()
	c, desc := s.first, s.firstDesc
	wait := s.retryMin
	for n := 1; ; n++ {
		if c == nil {
			var err error
			c, desc, err = s.connect()
			if err != nil {
				s.log.Warn().Err(err).Dur("retry_in", wait).Msg("camera not reachable")
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
				wait = min(2*wait, s.retryMax)
				continue
			}
		}
		id := fmt.Sprintf("camera-%d", n)
		if err := sp.AddFeed(id, media.IndependentSeqSpace, desc); err != nil {
			c.Close()
			c = nil
			s.log.Error().Err(err).Msg("camera changed its stream: cannot continue it")
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(s.retryMax):
			}
			continue
		}
		idx := map[*description.Media]int{}
		for i, m := range desc.Medias {
			idx[m] = i
		}
		c.OnPacketRTPAny(func(medi *description.Media, _ format.Format, pkt *rtp.Packet) {
			_ = sp.Write(id, idx[medi], pkt)
		})
		if _, err := c.Play(nil); err != nil {
			s.log.Warn().Err(err).Msg("camera play")
		} else {
			wait = s.retryMin
			done := make(chan struct{})
			go func() {
				select {
				case <-ctx.Done():
					c.Close()
				case <-done:
				}
			}()
			err = c.Wait()
			close(done)
			if ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("camera connection lost: reconnecting")
			}
		}
		c.Close()
		c = nil
		_ = sp.RemoveFeed(id)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// ListenSource is a local RTSP endpoint that ffmpeg or a camera pushes into
// (ANNOUNCE/RECORD on its path). Each push session is a feed; a restarted
// pusher is spliced in at its first keyframe.
type ListenSource struct {
	upstream
	addr, path string
	srv        *gortsplib.Server
	ln         atomic.Pointer[net.Listener]
	ready      chan struct{}
	readyOnce  sync.Once
	n          atomic.Int64
}

var _ Source = (*ListenSource)(nil)

// NewListenSource returns a source listening on addr for pushes to path.
func NewListenSource(addr, path string, log zerolog.Logger) *ListenSource {
	return &ListenSource{
		upstream: upstream{log: log.With().Str("component", "source").Str("listen", addr+path).Logger()},
		addr:     addr, path: path, ready: make(chan struct{}),
	}
}

// Addr returns the address the endpoint listens on (after Open started it).
func (s *ListenSource) Addr() string {
	if ln := s.ln.Load(); ln != nil {
		return (*ln).Addr().String()
	}
	return s.addr
}

// Open starts the RTSP endpoint and waits for the first push.
func (s *ListenSource) Open(ctx context.Context) (*description.Session, error) {
	s.srv = &gortsplib.Server{Handler: (*listenHandler)(s), RTSPAddress: s.addr,
		Listen: func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err == nil {
				s.ln.Store(&ln)
			}
			return ln, err
		}}
	if err := s.srv.Start(); err != nil {
		return nil, fmt.Errorf("listen %s: %w", s.addr, err)
	}
	s.log.Info().Str("addr", s.Addr()).Str("path", s.path).Msg("waiting for a push")
	select {
	case <-ctx.Done():
		s.srv.Close()
		return nil, ctx.Err()
	case <-s.ready:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.desc, nil
}

// Run forwards pushes until ctx ends.
func (s *ListenSource) Run(ctx context.Context, emit func(int, *rtp.Packet)) error {
	s.emit.Store(&emit)
	<-ctx.Done()
	s.srv.Close()
	return nil
}

type listenHandler ListenSource

type listenFeed struct{ id string }

// OnAnnounce accepts a push on the configured path whose medias match the first push's.
func (h *listenHandler) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	if ctx.Path != h.path {
		return &base.Response{StatusCode: base.StatusNotFound}, fmt.Errorf("push to %s: only %s is served", ctx.Path, h.path)
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSetup accepts the pusher's medias.
func (h *listenHandler) OnSetup(*gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil, nil
}

// OnRecord adds the push as a feed and forwards its packets.
func (h *listenHandler) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	s := (*ListenSource)(h)
	desc := ctx.Session.AnnouncedDescription()
	s.setup(desc)
	id := fmt.Sprintf("push-%d", s.n.Add(1))
	sp := s.splicer()
	if err := sp.AddFeed(id, media.IndependentSeqSpace, desc); err != nil {
		s.log.Warn().Err(err).Msg("push refused: its medias differ from the first push's")
		return &base.Response{StatusCode: base.StatusBadRequest}, err
	}
	ctx.Session.SetUserData(&listenFeed{id: id})
	for i, medi := range desc.Medias {
		for _, forma := range medi.Formats {
			ctx.Session.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) {
				if errors.Is(sp.Write(id, i, pkt), media.ErrFeedRetired) {
					ctx.Session.Close()
				}
			})
		}
	}
	s.log.Info().Str("feed", id).Msg("push started")
	s.readyOnce.Do(func() { close(s.ready) })
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSessionClose removes the push's feed.
func (h *listenHandler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	s := (*ListenSource)(h)
	if f, ok := ctx.Session.UserData().(*listenFeed); ok {
		if sp := s.splicer(); sp != nil {
			_ = sp.RemoveFeed(f.id)
		}
		s.log.Info().Str("feed", f.id).Err(ctx.Error).Msg("push ended")
	}
}

// redact hides a URL's token and password for printing.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<bad url>"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	if q := u.Query(); q.Has("token") {
		q.Set("token", "…")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
