// Package stream is one RTSP path on an ingest node: a gortsplib ServerStream
// that readers attach to, fed through a libs/media Splicer by one or more
// feeds (publisher sessions, upstream pulls from other hosts, camera pulls).
//
// The ServerStream is never closed while readers remain and the stream is
// alive: sources come and go underneath it, and the Splicer keeps the output
// in one sequence/timestamp space with one SSRC and one wall clock.
//
// Locks: Table.mu, Stream.mu and Feed.mu are leaves: none is held while
// another lock is taken, and none while the Splicer is called. The Splicer
// holds its own lock while it calls Stream.write (which takes no lock of this
// package) and calls OnSwitch (Stream.switched) with no lock held.
package stream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/pion/rtp"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/media"
	"github.com/ferrystream/ferry/services/ingest/internal/tasks"
)

// Kind says where a feed's packets come from.
type Kind string

// Feed kinds.
const (
	// KindPublisher is an RTSP publisher session on this host (ANNOUNCE/RECORD).
	KindPublisher Kind = "publisher"
	// KindCamera is a camera this host pulls (pull mode).
	KindCamera Kind = "camera"
	// KindUpstream is a pull of the same stream from another Ferry host (edge or
	// handover relay).
	KindUpstream Kind = "upstream"
)

// Local reports whether the kind makes this host the stream's origin.
func (k Kind) Local() bool { return k == KindPublisher || k == KindCamera }

// Errors.
var (
	// ErrClosed is returned for operations on a closed stream.
	ErrClosed = errors.New("stream closed")
	// ErrIncompatible wraps a description that cannot feed the stream.
	ErrIncompatible = media.ErrIncompatible
)

// SwitchFunc is told about every completed switch; from or to may be nil when
// the feed is already gone.
type SwitchFunc func(s *Stream, info media.SwitchInfo, from, to *Feed)

// Options configure a Stream.
type Options struct {
	Log zerolog.Logger
	// OnSwitch is called after every completed switch (never with a lock held).
	OnSwitch SwitchFunc
	// OnOutput, if set, sees every packet written to the readers (tests).
	OnOutput func(s *Stream, mediaIndex int, pkt *rtp.Packet, ntp time.Time)
	// OnWriteError counts write errors.
	OnWriteError func(error)
	// RetireAfter and FeedTimeout tune the Splicer (zero: its defaults).
	RetireAfter int
	FeedTimeout time.Duration
	// Tasks runs the feeds' OnRetire callbacks, so that whoever closes it
	// waits for them (nil, or once it is closed: they run untracked).
	Tasks *tasks.Group
}

// Stream is one path: its ServerStream, Splicer, feeds and readers.
type Stream struct {
	// Name is the stream name (the path without its slash).
	Name string
	// Desc is the description readers get (the first source's).
	Desc *description.Session

	opts Options
	ss   *gortsplib.ServerStream
	sp   *media.Splicer
	lead int

	framesMissing atomic.Uint64
	framesDup     atomic.Uint64
	lastFrame     uint64 // guarded by the Splicer's lock (out is called under it)
	haveFrame     bool
	bytesIn       atomic.Uint64
	packetsIn     atomic.Uint64
	lastLead      time.Time    // wall time of the last lead-media output packet (Splicer's lock)
	leadGap       atomic.Int64 // longest lead-media output gap since ResetGap, ns

	mu       sync.Mutex // guards everything below
	feeds    map[string]*Feed
	history  []*Feed // recently removed feeds, for switch reports
	readers  map[*gortsplib.ServerSession]*gortsplib.ServerConn
	closed   bool
	created  time.Time
	idleFrom time.Time // since when there is no feed (zero: has feeds)
	lonely   time.Time // since when there is no reader (zero: has readers)
	nextID   int
}

// New creates a stream on srv (which must be started) for desc.
func New(srv *gortsplib.Server, name string, desc *description.Session, opts Options) (*Stream, error) {
	if err := checkDesc(desc); err != nil {
		return nil, err
	}
	ss := &gortsplib.ServerStream{Server: srv, Desc: desc}
	if err := ss.Initialize(); err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	now := time.Now()
	s := &Stream{
		Name: name, Desc: desc, opts: opts,
		ss:      ss,
		feeds:   map[string]*Feed{},
		readers: map[*gortsplib.ServerSession]*gortsplib.ServerConn{},
		created: now, idleFrom: now, lonely: now,
		lead: -1,
	}
	for i, m := range desc.Medias {
		if s.lead < 0 && media.KeyframeFunc(m.Formats[0]) != nil {
			s.lead = i
		}
	}
	if s.lead < 0 {
		s.lead = 0
	}
	s.sp = media.NewSplicer(desc, s.write, media.SplicerOptions{
		RetireAfter: opts.RetireAfter, FeedTimeout: opts.FeedTimeout, OnSwitch: s.switched,
	})
	return s, nil
}

// checkDesc refuses descriptions the relay cannot carry.
func checkDesc(desc *description.Session) error {
	if desc == nil || len(desc.Medias) == 0 {
		return fmt.Errorf("%w: no medias", ErrIncompatible)
	}
	for i, m := range desc.Medias {
		if len(m.Formats) == 0 {
			return fmt.Errorf("%w: media %d has no format", ErrIncompatible, i)
		}
	}
	return nil
}

// Compatible checks that desc can feed a stream described by ref; it is
// libs/media's check (the one Splicer.AddFeed makes), here so that the RTSP
// handler can refuse a publisher at ANNOUNCE, before it records.
func Compatible(ref, desc *description.Session) error { return media.Compatible(ref, desc) }

// event starts a log line about the stream. The stream field is added per
// line rather than kept in a derived logger: the few lines a stream logs do
// not pay for a context buffer every stream would hold.
func (s *Stream) event(level zerolog.Level) *zerolog.Event {
	return s.opts.Log.WithLevel(level).Str("stream", s.Name)
}

// ServerStream returns the gortsplib stream readers attach to.
func (s *Stream) ServerStream() *gortsplib.ServerStream { return s.ss }

// write is the Splicer's output: called under the Splicer's lock, one packet
// at a time, in output order.
func (s *Stream) write(mi int, pkt *rtp.Packet, ntp time.Time) {
	if mi == s.lead {
		now := time.Now()
		if !s.lastLead.IsZero() {
			if g := int64(now.Sub(s.lastLead)); g > s.leadGap.Load() {
				s.leadGap.Store(g)
			}
		}
		s.lastLead = now
		if n, ok := media.FrameCounter(pkt.Payload); ok {
			switch {
			case !s.haveFrame:
				s.haveFrame = true
				s.lastFrame = n
			case n == s.lastFrame: // another packet of the same frame
			case n > s.lastFrame:
				if n > s.lastFrame+1 {
					s.framesMissing.Add(n - s.lastFrame - 1)
				}
				s.lastFrame = n
			case s.lastFrame-n > counterReset:
				s.lastFrame = n // the source restarted its counter
			default:
				s.framesDup.Add(1)
			}
		}
	}
	if err := s.ss.WritePacketRTPWithNTP(s.Desc.Medias[mi], pkt, ntp); err != nil && s.opts.OnWriteError != nil {
		s.opts.OnWriteError(err)
	}
	if s.opts.OnOutput != nil {
		s.opts.OnOutput(s, mi, pkt, ntp)
	}
}

// FrameCounts returns the frames missing and duplicated in the output of the
// lead media so far (only sources with frame counters produce them).
func (s *Stream) FrameCounts() (missing, duplicated uint64) {
	return s.framesMissing.Load(), s.framesDup.Load()
}

// ResetGap starts a new measurement of the longest output gap.
func (s *Stream) ResetGap() { s.leadGap.Store(0) }

// Gap returns the longest interval between two consecutive output packets of
// the lead media (the first H.264/H.265 media) since ResetGap.
func (s *Stream) Gap() time.Duration { return time.Duration(s.leadGap.Load()) }

// BytesIn returns the RTP bytes received from feeds.
func (s *Stream) BytesIn() uint64 { return s.bytesIn.Load() }

// PacketsIn returns the RTP packets received from feeds.
func (s *Stream) PacketsIn() uint64 { return s.packetsIn.Load() }

// BytesOut returns the bytes sent to readers.
func (s *Stream) BytesOut() uint64 { return s.ss.Stats().BytesSent }

// SplicerStats returns the Splicer's counters.
func (s *Stream) SplicerStats() media.SplicerStats { return s.sp.Stats() }

// switched handles a completed switch: the replaced feed is retired (its
// owner closes it) and the new one is ready.
func (s *Stream) switched(info media.SwitchInfo) {
	from, to := s.lookup(info.From), s.lookup(info.To)
	if from != nil && !info.Break {
		from.retire("replaced by " + info.To)
	}
	if to != nil {
		to.markReady()
	}
	s.event(zerolog.InfoLevel).Str("from", info.From).Str("to", info.To).Str("mode", info.Mode).Bool("break", info.Break).
		Dur("gap", info.Gap).Bool("params_sent", info.ParamsSent).Msg("source switched")
	if s.opts.OnSwitch != nil {
		s.opts.OnSwitch(s, info, from, to)
	}
}

func (s *Stream) lookup(id string) *Feed {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.feeds[id]; ok {
		return f
	}
	for _, f := range s.history {
		if f.ID == id {
			return f
		}
	}
	return nil
}

// FeedSpec describes a feed to add.
type FeedSpec struct {
	// Kind is where the packets come from.
	Kind Kind
	// Space identifies the sequence/timestamp space the feed carries: feeds with
	// equal non-empty spaces are switched at sequence continuity, others at a
	// keyframe with offsets.
	Space string
	// Host is the upstream host of a KindUpstream feed.
	Host string
	// Label is a human-readable id part (session id, host).
	Label string
	// Desc is the feed's own description (nil: the stream's).
	Desc *description.Session
	// OnRetire is called once, in its own goroutine (under Options.Tasks), when the feed must stop:
	// another feed replaced it, the stream closed, or Retire was called.
	OnRetire func(reason string)
}

// AddFeed registers a feed. A feed whose Space equals the active feed's is
// added as media.SameSeqSpace, any other as media.IndependentSeqSpace.
func (s *Stream) AddFeed(spec FeedSpec) (*Feed, error) {
	desc := spec.Desc
	if desc == nil {
		desc = s.Desc
	} else if err := Compatible(s.Desc, desc); err != nil {
		return nil, err
	}
	active := s.sp.Active() // asked before s.mu: the Splicer's lock is never taken under it
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.nextID++
	f := &Feed{
		ID:    fmt.Sprintf("%s-%d", spec.Kind, s.nextID),
		Kind:  spec.Kind,
		Space: spec.Space,
		Host:  spec.Host,
		Label: spec.Label,
		s:     s, desc: desc, onRetire: spec.OnRetire,
		ready: make(chan struct{}),
		done:  make(chan struct{}),
		added: time.Now(),
	}
	if spec.Label != "" {
		f.ID += "-" + spec.Label
	}
	f.missingAtAdd, f.dupAtAdd = s.FrameCounts()
	f.mode = media.IndependentSeqSpace
	if act := s.feeds[active]; act != nil && spec.Space != "" && act.Space == spec.Space {
		f.mode = media.SameSeqSpace
		f.judging.Store(true)
	}
	first := len(s.feeds) == 0
	s.feeds[f.ID] = f
	s.idleFrom = time.Time{}
	s.mu.Unlock()
	if err := s.sp.AddFeed(f.ID, f.mode, desc); err != nil {
		s.mu.Lock()
		delete(s.feeds, f.ID)
		if len(s.feeds) == 0 {
			s.idleFrom = time.Now()
		}
		s.mu.Unlock()
		return nil, err
	}
	if first && s.sp.Active() == f.ID {
		f.markReady()
	}
	s.event(zerolog.InfoLevel).Str("feed", f.ID).Str("kind", string(f.Kind)).Str("mode", f.mode.String()).
		Str("upstream", f.Host).Msg("feed added")
	return f, nil
}

// The stream is the one authority over its feeds' life: they are added
// (AddFeed), made ready (by the Splicer's judgement: Feed.Ready), retired and
// removed here. Who asks decides when (a placement changed, a feed became
// ready); which feeds go is decided by the methods below, each named after
// the step of a move that calls it (docs/move.md).

// Retire retires f, a feed of s: its owner is told to stop it (OnRetire
// runs once, in its own goroutine under Options.Tasks).
func (s *Stream) Retire(f *Feed, reason string) {
	if f == nil || f.s != s {
		return
	}
	f.retire(reason)
}

// retireWhere retires every current feed that match selects and returns them.
func (s *Stream) retireWhere(match func(*Feed) bool, reason string) []*Feed {
	var out []*Feed
	for _, f := range s.Feeds() {
		if match(f) && !f.Retired() {
			f.retire(reason)
			out = append(out, f)
		}
	}
	return out
}

// Supersede retires the older publisher connections of by's session (same
// Space) now that by, a publisher that reconnected to this host, is ready:
// the new host's takeover of a session's earlier connection (origin).
func (s *Stream) Supersede(by *Feed) []*Feed {
	return s.retireWhere(func(f *Feed) bool {
		return f != by && f.Kind == KindPublisher && f.Space == by.Space
	}, "superseded by "+by.ID)
}

// ReplaceUpstreams retires every upstream pull but keep (nil: all of them):
// a newer pull carries the stream (an edge that followed it to its new
// host), or a local source took over from the pulls (the stream was placed
// here).
func (s *Stream) ReplaceUpstreams(keep *Feed, reason string) []*Feed {
	return s.retireWhere(func(f *Feed) bool { return f != keep && f.Kind == KindUpstream }, reason)
}

// Cease retires every local source (publisher or camera): the stream moved
// to another host (the old host of a handover).
func (s *Stream) Cease(reason string) []*Feed {
	return s.retireWhere(func(f *Feed) bool { return f.Kind.Local() }, reason)
}

// Active returns the active feed, or nil.
func (s *Stream) Active() *Feed {
	id := s.sp.Active()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.feeds[id]
}

// RemoveFeed unregisters a feed (its source is gone). Readers stay attached.
func (s *Stream) RemoveFeed(f *Feed) {
	s.mu.Lock()
	if _, ok := s.feeds[f.ID]; !ok {
		s.mu.Unlock()
		return
	}
	delete(s.feeds, f.ID)
	s.history = append(s.history, f)
	if len(s.history) > 16 {
		s.history = s.history[1:]
	}
	if len(s.feeds) == 0 {
		s.idleFrom = time.Now()
	}
	s.mu.Unlock()
	f.closeDone()
	_ = s.sp.RemoveFeed(f.ID)
	s.event(zerolog.InfoLevel).Str("feed", f.ID).Str("reason", f.Reason()).Msg("feed removed")
}

// Feeds returns the current feeds.
func (s *Stream) Feeds() []*Feed {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Feed, 0, len(s.feeds))
	for _, f := range s.feeds {
		out = append(out, f)
	}
	return out
}

// LocalFeeds returns the feeds that make this host the stream's origin.
func (s *Stream) LocalFeeds() []*Feed {
	var out []*Feed
	for _, f := range s.Feeds() {
		if f.Kind.Local() {
			out = append(out, f)
		}
	}
	return out
}

// Hosted reports whether the stream has a local source (publisher or camera).
func (s *Stream) Hosted() bool { return len(s.LocalFeeds()) > 0 }

// RelayOnly reports whether the stream's packets come from another Ferry host
// only: it has an upstream feed and no local source that is ready (see
// Feed.Ready). Such a stream must not be relayed on to another Ferry host: that
// host may be the one it pulls from (a relay loop that carries nothing new).
func (s *Stream) RelayOnly() bool {
	upstream := false
	for _, f := range s.Feeds() {
		switch {
		case f.Kind == KindUpstream:
			upstream = true
		case f.Kind.Local() && !f.Retired():
			select {
			case <-f.Ready():
				return false
			default:
			}
		}
	}
	return upstream
}

// AddReader records a playing reader session and its control connection.
func (s *Stream) AddReader(ss *gortsplib.ServerSession, sc *gortsplib.ServerConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readers[ss] = sc
	s.lonely = time.Time{}
}

// RemoveReader forgets a reader session; it reports whether it was known.
func (s *Stream) RemoveReader(ss *gortsplib.ServerSession) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.readers[ss]; !ok {
		return false
	}
	delete(s.readers, ss)
	if len(s.readers) == 0 {
		s.lonely = time.Now()
	}
	return true
}

// Readers returns the number of playing readers.
func (s *Stream) Readers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.readers)
}

// Idle returns since when the stream has had no feed and since when no reader
// (zero times mean "has some").
func (s *Stream) Idle() (noFeedSince, noReaderSince time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idleFrom, s.lonely
}

// Closed reports whether Close was called.
func (s *Stream) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Redirect sends every reader a raw RTSP REDIRECT (RTSP 1.0 §10.10) with
// Location set to location, then closes its session. gortsplib has no API for
// server-to-client requests, so the request is written as one Write on the
// connection (the library writes each message with a single Write too). It
// returns the number of readers redirected.
func (s *Stream) Redirect(location string) int {
	s.mu.Lock()
	readers := make(map[*gortsplib.ServerSession]*gortsplib.ServerConn, len(s.readers))
	for ss, sc := range s.readers {
		readers[ss] = sc
	}
	s.mu.Unlock()
	u, err := base.ParseURL(location)
	n := 0
	for ss, sc := range readers {
		if err == nil && sc != nil {
			if werr := WriteRedirect(sc.NetConn(), u, location); werr != nil {
				s.event(zerolog.DebugLevel).Err(werr).Msg("write REDIRECT")
			} else {
				n++
			}
		}
		ss.Close()
	}
	return n
}

// WriteRedirect writes one REDIRECT request for u with a Location header.
func WriteRedirect(w io.Writer, u *base.URL, location string) error {
	req := base.Request{
		Method: base.Method("REDIRECT"),
		URL:    u,
		Header: base.Header{"CSeq": base.HeaderValue{"1"}, "Location": base.HeaderValue{location}},
	}
	buf, err := req.Marshal()
	if err != nil {
		return err
	}
	if c, ok := w.(net.Conn); ok {
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	}
	_, err = w.Write(buf)
	return err
}

// Close closes the stream: every feed is retired and every reader disconnected.
func (s *Stream) Close(reason string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	feeds := make([]*Feed, 0, len(s.feeds))
	for _, f := range s.feeds {
		feeds = append(feeds, f)
	}
	s.mu.Unlock()
	for _, f := range feeds {
		f.retire("stream closed: " + reason)
	}
	s.ss.Close()
	s.event(zerolog.InfoLevel).Str("reason", reason).Msg("stream closed")
}

// Feed is one source of a stream.
type Feed struct {
	// ID is unique within the stream ("publisher-3-s-1234").
	ID string
	// Kind, Space, Host and Label are from the FeedSpec.
	Kind  Kind
	Space string
	Host  string
	Label string

	s        *Stream
	desc     *description.Session
	onRetire func(string)

	mu     sync.Mutex // guards mode and reason
	mode   media.Mode
	reason string
	// judging: a SameSeqSpace feed not ready yet; each write asks the Splicer
	judging atomic.Bool

	added                  time.Time
	missingAtAdd, dupAtAdd uint64

	retired   atomic.Bool
	readyOnce sync.Once
	ready     chan struct{}
	doneOnce  sync.Once
	done      chan struct{}
	packets   atomic.Uint64
}

// Mode returns how the feed is being switched in.
func (f *Feed) Mode() media.Mode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mode
}

// Added returns when the feed was added and the stream's frame counts then.
func (f *Feed) Added() (at time.Time, missing, dup uint64) {
	return f.added, f.missingAtAdd, f.dupAtAdd
}

// Packets returns the number of packets the feed delivered.
func (f *Feed) Packets() uint64 { return f.packets.Load() }

// Ready is closed when the feed can carry the stream alone: a SameSeqSpace feed
// once it has caught up with the output on every started media (it delivered a
// packet at, behind or right after the output, so closing the old source loses
// nothing), any other feed once the Splicer made it active.
func (f *Feed) Ready() <-chan struct{} { return f.ready }

// Done is closed when the feed is removed from its stream.
func (f *Feed) Done() <-chan struct{} { return f.done }

func (f *Feed) markReady()      { f.readyOnce.Do(func() { close(f.ready) }) }
func (f *Feed) closeDone()      { f.doneOnce.Do(func() { close(f.done) }) }
func (f *Feed) Stream() *Stream { return f.s }

// Retired reports whether the feed was told to stop.
func (f *Feed) Retired() bool { return f.retired.Load() }

// Reason returns why the feed was retired ("" if it was not).
func (f *Feed) Reason() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reason
}

// Retire tells the feed's owner to stop it (OnRetire runs once, in its own
// goroutine under Options.Tasks); it is its stream's Retire.
func (f *Feed) Retire(reason string) { f.s.Retire(f, reason) }

func (f *Feed) retire(reason string) {
	if f.retired.Swap(true) {
		return
	}
	f.mu.Lock()
	f.reason = reason
	f.mu.Unlock()
	if f.onRetire == nil {
		return
	}
	g := f.s.opts.Tasks
	if g == nil {
		go f.onRetire(reason)
		return
	}
	if !g.Go(func() { f.onRetire(reason) }) {
		// after shutdown: nothing waits any more. Never run it here: the
		// caller may be the very connection's packet callback that OnRetire
		// closes (and waits for).
		go f.onRetire(reason)
	}
}

// counterReset is how far (in frames) a frame counter may go back before it
// counts as a restarted source rather than duplicates: one-sequence-space
// switches repeat at most a frame or two.
const counterReset = 25

// Write hands one RTP packet of media mi to the stream. It returns
// media.ErrFeedRetired when the feed was replaced; the caller closes its source.
func (f *Feed) Write(mi int, pkt *rtp.Packet) error {
	if f.retired.Load() {
		return media.ErrFeedRetired
	}
	if mi < 0 || mi >= len(f.s.Desc.Medias) {
		return media.ErrMediaIndex
	}
	f.packets.Add(1)
	f.s.bytesIn.Add(uint64(len(pkt.Payload) + 12))
	f.s.packetsIn.Add(1)
	err := f.s.sp.Write(f.ID, mi, pkt)
	if errors.Is(err, media.ErrFeedRetired) {
		f.retire("retired by the splicer")
	}
	if err == nil && f.judging.Load() {
		f.judge()
	}
	return err
}

// judge asks the Splicer, the one judge of "same sequence space", about a
// SameSeqSpace feed until it is ready: whether it still counts as the same
// space (else it is spliced at a keyframe, and ready once active), and
// whether it caught up with the output on every media (then it is ready:
// only now, since the Splicer has seen it write, it can take over by sequence
// the moment the old source is removed).
func (f *Feed) judge() {
	same, caught, err := f.s.sp.Continuity(f.ID)
	if err != nil {
		return
	}
	if !same {
		f.judging.Store(false)
		f.mu.Lock()
		f.mode = media.IndependentSeqSpace
		f.mu.Unlock()
		f.s.event(zerolog.WarnLevel).Str("feed", f.ID).
			Msg("feed does not continue the stream's sequence space: switching at a keyframe")
		return
	}
	if caught {
		f.judging.Store(false)
		f.markReady()
	}
}
