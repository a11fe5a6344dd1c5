package media

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
)

// Mode says how a feed's RTP sequence numbers and timestamps relate to the stream's.
type Mode int

const (
	// SameSeqSpace marks a feed that shares the sequence/timestamp space of the
	// active feed: Ferry's publisher agent on a second connection, or a relay of the
	// same stream. Overlapping copies are deduplicated by sequence number.
	SameSeqSpace Mode = iota + 1
	// IndependentSeqSpace marks a feed with its own sequence/timestamp space (another
	// encoder, a restarted ffmpeg). It is spliced in at its first keyframe with offsets.
	IndependentSeqSpace
)

// String returns "same-seq" or "independent-seq".
func (m Mode) String() string {
	switch m {
	case SameSeqSpace:
		return "same-seq"
	case IndependentSeqSpace:
		return "independent-seq"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Switch modes reported in SwitchInfo.Mode.
const (
	// SwitchSequence: the new feed took over at exact sequence continuity.
	SwitchSequence = "sequence"
	// SwitchKeyframe: the new feed was spliced in at its first keyframe (or, in a
	// stream without H.264/H.265, at its first packet) with sequence/timestamp offsets.
	SwitchKeyframe = "keyframe"
)

// Splicer errors.
var (
	// ErrUnknownFeed is returned for a feed id that was never added or was removed.
	ErrUnknownFeed = errors.New("media: unknown feed")
	// ErrFeedExists is returned by AddFeed for an id already in use.
	ErrFeedExists = errors.New("media: feed already exists")
	// ErrFeedRetired is returned by Write for a feed that another feed replaced, or
	// that timed out; its owner should close it and call RemoveFeed.
	ErrFeedRetired = errors.New("media: feed retired")
	// ErrIncompatible is returned by AddFeed when the feed's description does not
	// match the stream's (media count, type, codec, payload type, clock rate).
	ErrIncompatible = errors.New("media: incompatible description")
	// ErrMediaIndex is returned by Write for a media index outside the description.
	ErrMediaIndex = errors.New("media: media index out of range")
)

// SwitchInfo describes one completed switch from one feed to another.
type SwitchInfo struct {
	// From is the replaced feed ("" when none was ever active).
	From string `json:"from"`
	// To is the new active feed.
	To string `json:"to"`
	// Mode is SwitchSequence or SwitchKeyframe.
	Mode string `json:"mode"`
	// Break is true when From was gone (removed or timed out) before To took over.
	Break bool `json:"break"`
	// At is when the switch completed.
	At time.Time `json:"at"`
	// Gap is the longest wall-clock interval between two consecutive output packets
	// of the lead media (the first H.264/H.265 media, else media 0) while the switch
	// was under way, including the interval across the splice point.
	Gap time.Duration `json:"gap_ns"`
	// ParamsSent is true when parameter sets were written before the first keyframe.
	ParamsSent bool `json:"params_sent"`
}

// SplicerOptions configures a Splicer. Zero values take the defaults.
type SplicerOptions struct {
	// RetireAfter is the number of consecutive output packets a SameSeqSpace feed
	// must have brought first before the active feed is retired (default 50).
	RetireAfter int
	// FeedTimeout is how long the active feed may stay silent, while another feed
	// writes, before it counts as gone (default 2s). It also bounds how long an old
	// feed keeps feeding medias that the new feed has not spliced yet.
	FeedTimeout time.Duration
	// OnSwitch, if set, is called after every completed switch, without the lock held.
	OnSwitch func(SwitchInfo)
	// Now returns the current time (default time.Now); for tests.
	Now func() time.Time
}

// SplicerStats are the Splicer's counters.
type SplicerStats struct {
	// Active is the active feed id ("" when none).
	Active string `json:"active"`
	// Switches counts completed switches.
	Switches uint64 `json:"switches"`
	// Recent holds up to the 16 most recent switches, oldest first.
	Recent []SwitchInfo `json:"recent"`
	// PacketsOut counts packets written to the output, injected parameter sets included.
	PacketsOut uint64 `json:"packets_out"`
	// Duplicates counts packets dropped because their sequence number was already written.
	Duplicates uint64 `json:"duplicates"`
	// Late counts packets dropped because the output had moved past their sequence
	// number without them (they are never written out of order).
	Late uint64 `json:"late"`
	// Waiting counts packets of feeds dropped while waiting for their splice point.
	Waiting uint64 `json:"waiting"`
	// Retired counts packets from retired feeds dropped.
	Retired uint64 `json:"retired"`
	// ParamsInjected counts parameter-set packets written before a spliced keyframe.
	ParamsInjected uint64 `json:"params_injected"`
}

const recentSwitches = 16

type feedState int

const (
	feedPending feedState = iota
	feedActive
	feedDraining // replaced; still feeds medias the new feed has not spliced
	feedRetired
)

// seqWindow is the number of recent output sequence numbers remembered per media
// to tell duplicates from late packets.
const seqWindow = 4096

// maxSameSeqJump is the largest distance between a pending SameSeqSpace feed's
// first packets and the output for the feed to count as the same sequence space.
const maxSameSeqJump = seqWindow / 2

// maxSameTSJumpSeconds is the largest distance, in seconds of the media's
// clock, between a pending SameSeqSpace feed's first timestamps and the
// output's for the feed to count as the same space.
const maxSameTSJumpSeconds = 10

type outMedia struct {
	clock    int64
	keyframe func([]byte) bool
	params   [][]byte // parameter sets now in force (H.264: SPS, PPS; H.265: VPS, SPS, PPS)

	started  bool
	hi       uint16 // highest sequence number written
	win      [seqWindow / 64]uint64
	lastTS   uint32
	lastWall time.Time

	ntpBase time.Time // wall time of the first output packet
	extTS   int64     // output timestamp ticks since the first output packet
}

func (m *outMedia) has(seq uint16) bool {
	i := seq % seqWindow
	return m.win[i/64]&(1<<(i%64)) != 0
}

func (m *outMedia) mark(seq uint16) {
	if !m.started {
		m.win = [seqWindow / 64]uint64{}
	} else if d := seq - m.hi; d >= seqWindow { // forward jump beyond the window
		m.win = [seqWindow / 64]uint64{}
	} else {
		for s := m.hi + 1; s != seq; s++ {
			i := s % seqWindow
			m.win[i/64] &^= 1 << (i % 64)
		}
	}
	i := seq % seqWindow
	m.win[i/64] |= 1 << (i % 64)
	m.hi = seq
}

type feedMedia struct {
	on     bool // packets of this media are candidates for the output
	caught bool // a SameSeqSpace feed delivered a packet at, behind or right after the output
	seqOff uint16
	tsOff  uint32

	anchored   bool // anchorWall/anchorTS map this media's timestamps to wall time
	anchorWall time.Time
	anchorTS   uint32
	params     [][]byte
}

type feed struct {
	id     string
	mode   Mode
	state  feedState
	medias []feedMedia
	splice bool // must be spliced at a keyframe with offsets (not sequence continuity)

	seen     bool
	lastSeen time.Time
	run      int  // consecutive output packets this feed brought first
	proven   bool // a SameSeqSpace feed whose packets matched the output's sequence space

	switchSet bool      // the lead media has spliced; switchAt is its feed time
	switchAt  time.Time // mapped wall time of the lead splice packet
	pending   SwitchInfo
	pendingAt time.Time
}

// Splicer writes one continuous RTP output per media from one or more feeds of the
// same stream. See the package documentation for the switching rules.
//
// A Splicer is safe for concurrent use. One mutex guards all of its state (feeds,
// per-media output state, stats) and is held while out runs, so out is called for
// one packet at a time, in output order. out must not call the Splicer and must not
// keep pkt (or modify its payload) after it returns: pkt is the Splicer's scratch
// packet, a copy of the input header with the output sequence number and timestamp.
type Splicer struct {
	out  func(mediaIndex int, pkt *rtp.Packet, ntp time.Time)
	opts SplicerOptions
	desc *description.Session
	lead int // index of the lead media

	mu        sync.Mutex
	medias    []outMedia
	feeds     []*feed
	active    *feed
	lastID    string // id of the last active feed, for break switches
	everOut   bool
	lastWrite *feed
	window    bool // a switch is under way: track Gap
	gapMax    time.Duration
	stats     SplicerStats
	scratch   rtp.Packet
}

// NewSplicer returns a Splicer for desc (the stream's description, whose medias
// index every Write) that writes its output to out, with the output sequence number,
// timestamp and an NTP time from one wall clock for sender reports (for example
// ServerStream.WritePacketRTPWithNTP).
func NewSplicer(desc *description.Session, out func(mediaIndex int, pkt *rtp.Packet, ntp time.Time), opts SplicerOptions) *Splicer {
	if opts.RetireAfter <= 0 {
		opts.RetireAfter = 50
	}
	if opts.FeedTimeout <= 0 {
		opts.FeedTimeout = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Splicer{out: out, opts: opts, desc: desc, lead: -1, medias: make([]outMedia, len(desc.Medias))}
	for i, m := range desc.Medias {
		forma := m.Formats[0]
		s.medias[i].clock = int64(forma.ClockRate())
		s.medias[i].keyframe = KeyframeFunc(forma)
		s.medias[i].params = paramSets(forma)
		if s.lead < 0 && s.medias[i].keyframe != nil {
			s.lead = i
		}
	}
	return s
}

// gapMedia is the media whose output gaps SwitchInfo.Gap reports.
func (s *Splicer) gapMedia() int {
	if s.lead >= 0 {
		return s.lead
	}
	return 0
}

// paramSets returns a format's out-of-band parameter sets, or nil.
func paramSets(f format.Format) [][]byte {
	switch f := f.(type) {
	case *format.H264:
		sps, pps := f.SafeParams()
		if len(sps) > 0 && len(pps) > 0 {
			return [][]byte{sps, pps}
		}
	case *format.H265:
		vps, sps, pps := f.SafeParams()
		if len(vps) > 0 && len(sps) > 0 && len(pps) > 0 {
			return [][]byte{vps, sps, pps}
		}
	}
	return nil
}

func sameParams(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// Compatible checks that desc can feed a stream described by ref (the check
// AddFeed makes): same number of medias, and per media the same type, codec,
// payload type and clock rate. The error wraps ErrIncompatible.
func Compatible(ref, desc *description.Session) error {
	if desc == nil || len(desc.Medias) == 0 {
		return fmt.Errorf("%w: no medias", ErrIncompatible)
	}
	refDesc := ref.Medias
	if len(desc.Medias) != len(refDesc) {
		return fmt.Errorf("%w: %d medias, stream has %d", ErrIncompatible, len(desc.Medias), len(refDesc))
	}
	for i, m := range desc.Medias {
		if len(m.Formats) == 0 {
			return fmt.Errorf("%w: media %d has no format", ErrIncompatible, i)
		}
		a, b := refDesc[i].Formats[0], m.Formats[0]
		switch {
		case refDesc[i].Type != m.Type:
			return fmt.Errorf("%w: media %d is %s, stream has %s", ErrIncompatible, i, m.Type, refDesc[i].Type)
		case a.Codec() != b.Codec():
			return fmt.Errorf("%w: media %d codec %s, stream has %s", ErrIncompatible, i, b.Codec(), a.Codec())
		case a.PayloadType() != b.PayloadType():
			return fmt.Errorf("%w: media %d payload type %d, stream has %d", ErrIncompatible, i, b.PayloadType(), a.PayloadType())
		case a.ClockRate() != b.ClockRate():
			return fmt.Errorf("%w: media %d clock rate %d, stream has %d", ErrIncompatible, i, b.ClockRate(), a.ClockRate())
		}
	}
	return nil
}

// AddFeed registers a feed. desc is the feed's own description (nil: the stream's);
// it must match the stream's medias by index (ErrIncompatible otherwise), and its
// H.264/H.265 parameter sets are written before the feed's first keyframe when they
// differ from the output's. The first feed of a Splicer becomes active at once and
// passes through unchanged. A SameSeqSpace feed added while a feed is active takes
// over by sequence continuity; any other feed, and every feed added while none is
// active (after a break), is spliced in at its first keyframe with offsets.
func (s *Splicer) AddFeed(id string, mode Mode, desc *description.Session) error {
	if mode != SameSeqSpace && mode != IndependentSeqSpace {
		return fmt.Errorf("add feed %q: invalid mode %d", id, int(mode))
	}
	if desc == nil {
		desc = s.desc
	} else if err := Compatible(s.desc, desc); err != nil {
		return fmt.Errorf("add feed %q: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.find(id) != nil {
		return fmt.Errorf("add feed %q: %w", id, ErrFeedExists)
	}
	// lastSeen starts now: a feed that never sends times out like one that stops
	f := &feed{id: id, mode: mode, medias: make([]feedMedia, len(s.medias)), lastSeen: s.opts.Now()}
	for i := range f.medias {
		f.medias[i].params = paramSets(desc.Medias[i].Formats[0])
	}
	switch {
	case s.active == nil && !s.everOut && len(s.feeds) == 0:
		// the first feed: pass through unchanged
		f.state, f.proven = feedActive, true
		for i := range f.medias {
			f.medias[i].on = true
			s.medias[i].params = f.medias[i].params
		}
		s.active = f
	case s.active != nil && mode == SameSeqSpace:
		for i := range f.medias {
			am := &s.active.medias[i]
			f.medias[i].on, f.medias[i].seqOff, f.medias[i].tsOff = am.on, am.seqOff, am.tsOff
		}
	default:
		f.splice = true
	}
	s.feeds = append(s.feeds, f)
	return nil
}

// RemoveFeed unregisters a feed. Removing the active feed hands the stream to a
// SameSeqSpace feed that is already writing (a sequence switch), or else leaves the
// stream without an active feed: readers stay attached and the next feed is spliced
// in at its first keyframe (a break, reported with Break set).
func (s *Splicer) RemoveFeed(id string) error {
	s.mu.Lock()
	f := s.find(id)
	if f == nil {
		s.mu.Unlock()
		return fmt.Errorf("remove feed %q: %w", id, ErrUnknownFeed)
	}
	for i, g := range s.feeds {
		if g == f {
			s.feeds = append(s.feeds[:i], s.feeds[i+1:]...)
			break
		}
	}
	var fire []SwitchInfo
	now := s.opts.Now()
	switch f.state {
	case feedActive:
		fire = s.dropActive(now, fire)
	case feedDraining:
		if s.active != nil {
			fire = s.complete(s.active, now, fire)
		}
	}
	f.state = feedRetired
	if s.lastWrite == f {
		s.lastWrite = nil
	}
	s.mu.Unlock()
	s.fire(fire)
	return nil
}

// Continuity reports how the Splicer judges a feed, the one judge of "same
// sequence space": same is true for a SameSeqSpace feed switched in by
// sequence continuity, false for any other feed and for a SameSeqSpace feed
// whose packets turned out to be nowhere near the output (more than half the
// duplicate window in sequence numbers, or ten seconds in timestamps, from it:
// it is spliced at a keyframe instead). caughtUp is true for such a "same"
// feed once, on every media with output, it delivered a packet at, behind or
// right after the output: closing the feed it replaces loses nothing.
func (s *Splicer) Continuity(id string) (same, caughtUp bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.find(id)
	if f == nil {
		return false, false, ErrUnknownFeed
	}
	if f.mode != SameSeqSpace || f.splice {
		return false, false, nil
	}
	for i := range s.medias {
		if s.medias[i].started && f.medias[i].on && !f.medias[i].caught {
			return true, false, nil
		}
	}
	return true, true, nil
}

// Active returns the id of the active feed, or "" when there is none.
func (s *Splicer) Active() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		return ""
	}
	return s.active.id
}

// Stats returns a copy of the Splicer's counters.
func (s *Splicer) Stats() SplicerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Recent = append([]SwitchInfo(nil), s.stats.Recent...)
	if s.active != nil {
		st.Active = s.active.id
	}
	return st
}

// fire reports completed switches. It is never inlined: Write calls it on
// every packet, and inlined its loop over SwitchInfo values would put them
// in Write's stack frame, on the packet path of every publisher's goroutine.
//
//go:noinline
func (s *Splicer) fire(infos []SwitchInfo) {
	if len(infos) == 0 || s.opts.OnSwitch == nil {
		return
	}
	for _, in := range infos {
		s.opts.OnSwitch(in)
	}
}

// Write hands the splicer one packet of a feed's media. It returns nil when the
// packet was written or dropped by the rules (a duplicate, a late packet, a feed
// waiting for its splice point), ErrFeedRetired when the feed was replaced, and
// ErrUnknownFeed or ErrMediaIndex for bad arguments. pkt is not modified or kept.
func (s *Splicer) Write(feedID string, mediaIndex int, pkt *rtp.Packet) error {
	now := s.opts.Now()
	s.mu.Lock()
	f := s.find(feedID)
	if f == nil {
		s.mu.Unlock()
		return ErrUnknownFeed
	}
	if mediaIndex < 0 || mediaIndex >= len(s.medias) {
		s.mu.Unlock()
		return ErrMediaIndex
	}
	if f.state == feedRetired {
		s.stats.Retired++
		s.mu.Unlock()
		return ErrFeedRetired
	}
	var fire []SwitchInfo
	f.lastSeen = now
	fm := &f.medias[mediaIndex]
	if !fm.anchored {
		fm.anchored, fm.anchorWall, fm.anchorTS = true, now, pkt.Timestamp
	}
	if !f.seen {
		f.seen = true
		if f != s.active && !s.window {
			s.window, s.gapMax = true, 0
		}
	}
	if a := s.active; a != nil && a != f && now.Sub(a.lastSeen) > s.opts.FeedTimeout {
		fire = s.dropActive(now, fire)
		a.state = feedRetired
	}
	if a := s.active; a == f && a.pending.To != "" && now.Sub(a.pendingAt) > s.opts.FeedTimeout {
		fire = s.complete(a, now, fire) // the old feed never delivered the rest
	}

	if !fm.on {
		if f.splice || f.state == feedActive {
			fire = s.trySplice(f, mediaIndex, pkt, now, fire)
		}
		if !fm.on {
			if f.state == feedDraining {
				s.stats.Retired++
			} else {
				s.stats.Waiting++
			}
			s.mu.Unlock()
			s.fire(fire)
			return nil
		}
	} else {
		s.writeSeq(f, mediaIndex, pkt, now)
	}

	if f.state == feedPending && !f.splice && f.run >= s.opts.RetireAfter {
		fire = s.sequenceSwitch(f, now, false, fire)
	}
	s.mu.Unlock()
	s.fire(fire)
	return nil
}

// writeSeq writes pkt through the feed's offsets unless its output sequence number
// was already written (a duplicate) or lies behind the output (late).
func (s *Splicer) writeSeq(f *feed, mi int, pkt *rtp.Packet, now time.Time) {
	fm := &f.medias[mi]
	om := &s.medias[mi]
	seq := pkt.SequenceNumber + fm.seqOff
	if om.started {
		d := int16(seq - om.hi)
		dts := int64(int32(pkt.Timestamp + fm.tsOff - om.lastTS))
		if !f.proven && f.state == feedPending && (d > maxSameSeqJump || d < -maxSameSeqJump ||
			(om.clock > 0 && (dts > maxSameTSJumpSeconds*om.clock || dts < -maxSameTSJumpSeconds*om.clock))) {
			// declared same-sequence, but nowhere near the output: another
			// sequence space (a restarted publisher). Splice it at a keyframe.
			f.splice = true
			for i := range f.medias {
				f.medias[i].on = false
			}
			s.stats.Waiting++
			return
		}
		if d <= 1 {
			fm.caught = true
		}
		if d <= 0 {
			if -int(d) < seqWindow && om.has(seq) {
				s.stats.Duplicates++
				f.proven = true
			} else {
				s.stats.Late++
			}
			return
		}
	}
	f.proven = true
	s.emit(f, mi, &pkt.Header, pkt.Payload, seq, pkt.Timestamp+fm.tsOff, now)
}

// emit writes one packet to the output and updates the output state.
func (s *Splicer) emit(f *feed, mi int, h *rtp.Header, payload []byte, seq uint16, ts uint32, now time.Time) {
	om := &s.medias[mi]
	if om.started {
		if s.window && mi == s.gapMedia() {
			if g := now.Sub(om.lastWall); g > s.gapMax {
				s.gapMax = g
			}
		}
		om.extTS += int64(int32(ts - om.lastTS))
	} else {
		om.ntpBase = now
	}
	om.mark(seq)
	om.started = true
	om.lastTS = ts
	om.lastWall = now
	s.everOut = true

	if s.lastWrite != f {
		if s.lastWrite != nil {
			s.lastWrite.run = 0
		}
		s.lastWrite = f
	}
	f.run++
	s.stats.PacketsOut++

	s.scratch.Header = *h
	s.scratch.SequenceNumber = seq
	s.scratch.Timestamp = ts
	s.scratch.Payload = payload
	s.out(mi, &s.scratch, om.ntpBase.Add(ticksToDuration(om.extTS, om.clock)))
}

// trySplice splices media mi of feed f in at pkt if pkt is the splice point:
// a keyframe for H.264/H.265 medias (the lead media first), otherwise the first
// packet whose feed time is at or after the lead media's splice point.
func (s *Splicer) trySplice(f *feed, mi int, pkt *rtp.Packet, now time.Time, fire []SwitchInfo) []SwitchInfo {
	om := &s.medias[mi]
	fm := &f.medias[mi]
	switch {
	case om.keyframe != nil:
		if (mi != s.lead && !f.switchSet) || !om.keyframe(pkt.Payload) {
			return fire
		}
	case s.lead >= 0:
		if !f.switchSet || mapTime(fm, om.clock, pkt.Timestamp).Before(f.switchAt) {
			return fire
		}
	default: // no keyframe media: the first packet of any media sets the switch point
		if !f.switchSet {
			f.switchSet, f.switchAt = true, mapTime(fm, om.clock, pkt.Timestamp)
		}
		if mapTime(fm, om.clock, pkt.Timestamp).Before(f.switchAt) {
			return fire
		}
	}
	if mi == s.lead {
		f.switchSet, f.switchAt = true, mapTime(fm, om.clock, pkt.Timestamp)
	}

	// offsets: the first packet continues the output's sequence and timestamps
	inject := om.keyframe != nil && fm.params != nil && !sameParams(fm.params, om.params)
	seq, ts := pkt.SequenceNumber, pkt.Timestamp
	if om.started {
		seq = om.hi + 1
		ticks := durationToTicks(now.Sub(om.lastWall), om.clock)
		ts = om.lastTS + uint32(max(ticks, 1))
	}
	if inject {
		for _, ps := range fm.params {
			h := pkt.Header
			h.Marker = false
			s.emit(f, mi, &h, ps, seq, ts, now)
			s.stats.ParamsInjected++
			seq++
		}
		om.params = fm.params
	}
	fm.seqOff, fm.tsOff, fm.on = seq-pkt.SequenceNumber, ts-pkt.Timestamp, true
	for _, g := range s.feeds { // other feeds' copies of this media are from another space
		if g != f && g.medias[mi].on {
			g.medias[mi].on = false
			if g.state == feedPending {
				g.splice = true
			}
		}
	}
	s.emit(f, mi, &pkt.Header, pkt.Payload, seq, ts, now)

	if f.state != feedActive {
		// f takes over: the old feed drains the medias f has not spliced yet
		old := s.active
		f.pending = SwitchInfo{To: f.id, Mode: SwitchKeyframe, ParamsSent: inject}
		f.pendingAt = now
		if old != nil {
			f.pending.From = old.id
			old.state = feedDraining
		} else {
			f.pending.From, f.pending.Break = s.lastID, true
		}
		f.state = feedActive
		f.splice = false
		s.active = f
	} else if inject {
		f.pending.ParamsSent = true
	}
	for i := range f.medias {
		if !f.medias[i].on {
			return fire
		}
	}
	if f.pending.To != "" {
		fire = s.complete(f, now, fire)
	}
	return fire
}

// complete finishes a keyframe switch to f: the old feed is retired.
func (s *Splicer) complete(f *feed, now time.Time, fire []SwitchInfo) []SwitchInfo {
	for _, g := range s.feeds {
		if g.state == feedDraining {
			g.state = feedRetired
			for i := range g.medias {
				g.medias[i].on = false
			}
		}
	}
	info := f.pending
	f.pending = SwitchInfo{}
	return s.record(info, now, fire)
}

// sequenceSwitch makes the SameSeqSpace feed f active and retires the old one.
func (s *Splicer) sequenceSwitch(f *feed, now time.Time, brk bool, fire []SwitchInfo) []SwitchInfo {
	info := SwitchInfo{To: f.id, Mode: SwitchSequence, Break: brk}
	if old := s.active; old != nil {
		info.From = old.id
		old.state = feedRetired
		for i := range old.medias {
			old.medias[i].on = false
		}
	} else {
		info.From = s.lastID
	}
	f.state = feedActive
	s.active = f
	return s.record(info, now, fire)
}

func (s *Splicer) record(info SwitchInfo, now time.Time, fire []SwitchInfo) []SwitchInfo {
	info.At = now
	info.Gap = s.gapMax
	s.window = false
	for _, g := range s.feeds {
		if g.state == feedPending {
			s.window = true // another feed still waits: keep measuring from here
		}
	}
	s.gapMax = 0
	s.stats.Switches++
	if len(s.stats.Recent) == recentSwitches {
		s.stats.Recent = append(s.stats.Recent[:0], s.stats.Recent[1:]...)
	}
	s.stats.Recent = append(s.stats.Recent, info)
	return append(fire, info)
}

// dropActive handles the loss of the active feed (removed or silent): a pending
// SameSeqSpace feed that is already writing takes over by sequence; otherwise the
// stream has no active feed and every pending feed is spliced at a keyframe.
func (s *Splicer) dropActive(now time.Time, fire []SwitchInfo) []SwitchInfo {
	old := s.active
	s.lastID = old.id
	s.active = nil
	for i := range old.medias {
		old.medias[i].on = false
	}
	if !s.window {
		s.window, s.gapMax = true, 0
	}
	var next *feed
	for _, g := range s.feeds {
		if g.state == feedPending && !g.splice && g.proven && (next == nil || g.lastSeen.After(next.lastSeen)) {
			next = g
		}
	}
	if next != nil {
		old.state = feedRetired
		info := SwitchInfo{From: old.id, To: next.id, Mode: SwitchSequence}
		next.state = feedActive
		s.active = next
		for _, g := range s.feeds { // draining feeds of a previous switch go too
			if g.state == feedDraining {
				g.state = feedRetired
			}
		}
		return s.record(info, now, fire)
	}
	for _, g := range s.feeds {
		switch g.state {
		case feedPending:
			g.splice = true
			for i := range g.medias {
				g.medias[i].on = false
			}
		case feedDraining: // an unfinished keyframe switch: keep draining into nothing
			g.state = feedRetired
		}
	}
	return fire
}

// mapTime maps a feed's RTP timestamp to wall time through the media's anchor
// (the arrival time and timestamp of the feed's first packet of that media).
func mapTime(fm *feedMedia, clock int64, ts uint32) time.Time {
	return fm.anchorWall.Add(ticksToDuration(int64(int32(ts-fm.anchorTS)), clock))
}

// ticksToDuration converts clock ticks to a duration without overflow.
func ticksToDuration(ticks, clock int64) time.Duration {
	if clock <= 0 {
		return 0
	}
	return time.Duration(ticks/clock)*time.Second + time.Duration(ticks%clock)*time.Second/time.Duration(clock)
}

// durationToTicks converts a duration to clock ticks (rounded down) without overflow.
func durationToTicks(d time.Duration, clock int64) int64 {
	sec := int64(d / time.Second)
	rem := int64(d % time.Second)
	return sec*clock + rem*clock/int64(time.Second)
}

func (s *Splicer) find(id string) *feed {
	for _, f := range s.feeds {
		if f.id == id {
			return f
		}
	}
	return nil
}
