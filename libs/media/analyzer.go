package media

import (
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/pion/rtp"
)

// MediaReport is what an Analyzer measured on one media.
type MediaReport struct {
	// Media is the media's index in the description.
	Media int `json:"media"`
	// Codec is the media's codec ("" without a description).
	Codec string `json:"codec,omitempty"`
	// Packets counts every packet added.
	Packets uint64 `json:"packets"`
	// Frames counts distinct frames, by embedded counter (see FrameCounter).
	Frames uint64 `json:"frames"`
	// FirstFrame and LastFrame are the lowest and highest counters seen.
	FirstFrame uint64 `json:"first_frame"`
	LastFrame  uint64 `json:"last_frame"`
	// FramesMissing counts counters skipped between FirstFrame and LastFrame (a
	// counter that arrives late is taken off again).
	FramesMissing uint64 `json:"frames_missing"`
	// DuplicateFrames counts frames whose counter had already been seen.
	DuplicateFrames uint64 `json:"duplicate_frames"`
	// SSRCChanges counts packets whose SSRC differs from the previous packet's.
	SSRCChanges uint64 `json:"ssrc_changes"`
	// SeqGaps counts forward jumps of the sequence number by more than one, and
	// SeqGapPackets the sequence numbers they skipped.
	SeqGaps       uint64 `json:"seq_gaps"`
	SeqGapPackets uint64 `json:"seq_gap_packets"`
	// SeqBackwards counts packets whose sequence number is not after the previous
	// one (repeats and reordering).
	SeqBackwards uint64 `json:"seq_backwards"`
	// TSBackwards counts packets whose timestamp is before the previous packet's.
	TSBackwards uint64 `json:"ts_backwards"`
	// MaxTSStep is the largest forward timestamp step between consecutive packets,
	// in clock ticks, and MaxTSStepMS the same in milliseconds (0 without a clock rate).
	MaxTSStep   uint32  `json:"max_ts_step"`
	MaxTSStepMS float64 `json:"max_ts_step_ms"`
	// LongestGapMS is the longest wall-clock interval between consecutive packets.
	LongestGapMS float64 `json:"longest_gap_ms"`
	// Skips lists the first MaxSkips forward jumps of the frame counter (frames
	// counted missing), with when they arrived, so a loss can be matched to the
	// event that caused it.
	Skips []Skip `json:"skips,omitempty"`
}

// Skip is one forward jump of a media's frame counter: the frames after From and
// before To had not arrived when To did, at At.
type Skip struct {
	At   time.Time `json:"at"`
	From uint64    `json:"from"`
	To   uint64    `json:"to"`
}

// MaxSkips bounds MediaReport.Skips.
const MaxSkips = 64

// Report is an Analyzer's result, one entry per media.
type Report struct {
	Medias []MediaReport `json:"medias"`
}

// frameWindow is how many recent frame counters an Analyzer remembers to tell a
// duplicate from a late frame.
const frameWindow = 1024

// maxMisorder is how far back (in sequence numbers) a packet counts as reordered or
// repeated rather than as the start of a new sequence space.
const maxMisorder = 1000

type mediaAnalysis struct {
	rep   MediaReport
	clock int64
	audio bool // every counted packet is a frame of its own

	started bool
	seq     uint16
	ts      uint32
	ssrc    uint32
	arrival time.Time
	gap     time.Duration

	haveFrame bool
	maxFrame  uint64
	cur       uint64 // counter of the frame being received
	curOpen   bool   // no marker since cur's first packet
	seen      [frameWindow / 64]uint64
}

// Analyzer measures the continuity of received RTP streams: what a viewer or probe
// sees (loss, duplicates, SSRC changes, sequence gaps, timestamp jumps, silences).
// Frame metrics use the counters of this package's synthetic sources. An Analyzer
// is safe for concurrent use; one mutex guards its counters.
type Analyzer struct {
	mu     sync.Mutex
	medias []*mediaAnalysis
}

// NewAnalyzer returns an Analyzer for desc (codecs and clock rates per media; nil
// is allowed: medias are then created as packets arrive, without clock rates).
func NewAnalyzer(desc *description.Session) *Analyzer {
	a := &Analyzer{}
	if desc != nil {
		for i, m := range desc.Medias {
			ma := &mediaAnalysis{rep: MediaReport{Media: i}, audio: m.Type == description.MediaTypeAudio}
			if len(m.Formats) > 0 {
				ma.rep.Codec = m.Formats[0].Codec()
				ma.clock = int64(m.Formats[0].ClockRate())
			}
			a.medias = append(a.medias, ma)
		}
	}
	return a
}

// Add records one packet of media mediaIndex that arrived at arrival. Packets must
// be added in arrival order per media.
func (a *Analyzer) Add(mediaIndex int, pkt *rtp.Packet, arrival time.Time) {
	if mediaIndex < 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for len(a.medias) <= mediaIndex {
		a.medias = append(a.medias, &mediaAnalysis{rep: MediaReport{Media: len(a.medias)}})
	}
	a.medias[mediaIndex].add(pkt, arrival)
}

func (m *mediaAnalysis) add(pkt *rtp.Packet, arrival time.Time) {
	r := &m.rep
	r.Packets++
	if m.started {
		if pkt.SSRC != m.ssrc {
			r.SSRCChanges++
		}
		switch d := int16(pkt.SequenceNumber - m.seq); {
		case d > 1 || d <= -maxMisorder:
			// a forward jump; far backwards it is a new sequence space, which a
			// receiver counts as the forward distance, as gortsplib's does
			r.SeqGaps++
			r.SeqGapPackets += uint64(pkt.SequenceNumber - m.seq - 1)
			m.seq = pkt.SequenceNumber
		case d <= 0:
			r.SeqBackwards++
		default:
			m.seq = pkt.SequenceNumber
		}
		switch d := int32(pkt.Timestamp - m.ts); {
		case d < 0:
			r.TSBackwards++
		case uint32(d) > r.MaxTSStep:
			r.MaxTSStep = uint32(d)
		}
		if g := arrival.Sub(m.arrival); g > m.gap {
			m.gap = g
		}
	} else {
		m.seq = pkt.SequenceNumber
	}
	m.started = true
	m.ssrc, m.ts, m.arrival = pkt.SSRC, pkt.Timestamp, arrival

	if c, ok := FrameCounter(pkt.Payload); ok {
		m.frame(c, arrival)
	}
	if pkt.Marker {
		m.curOpen = false
	}
}

func (m *mediaAnalysis) frame(c uint64, arrival time.Time) {
	r := &m.rep
	if !m.audio && m.haveFrame && m.curOpen && c == m.cur {
		return // another packet of the frame being received
	}
	m.cur, m.curOpen = c, !m.audio
	switch {
	case !m.haveFrame:
		m.haveFrame = true
		m.maxFrame, r.FirstFrame, r.LastFrame = c, c, c
		m.setSeen(c)
		r.Frames++
	case c > m.maxFrame:
		r.FramesMissing += c - m.maxFrame - 1
		if c > m.maxFrame+1 && len(r.Skips) < MaxSkips {
			r.Skips = append(r.Skips, Skip{At: arrival, From: m.maxFrame, To: c})
		}
		if c-m.maxFrame >= frameWindow {
			m.seen = [frameWindow / 64]uint64{}
		} else {
			for f := m.maxFrame + 1; f < c; f++ {
				m.clearSeen(f)
			}
		}
		m.maxFrame, r.LastFrame = c, c
		m.setSeen(c)
		r.Frames++
	case m.maxFrame-c < frameWindow && c >= r.FirstFrame && !m.isSeen(c):
		// a late frame that was counted missing
		r.FramesMissing--
		m.setSeen(c)
		r.Frames++
	case c < r.FirstFrame && m.maxFrame-c < frameWindow:
		// before the first frame seen: new, not missing
		r.FramesMissing += r.FirstFrame - c - 1
		r.FirstFrame = c
		m.setSeen(c)
		r.Frames++
	default:
		r.DuplicateFrames++
	}
}

func (m *mediaAnalysis) isSeen(c uint64) bool {
	i := c % frameWindow
	return m.seen[i/64]&(1<<(i%64)) != 0
}

func (m *mediaAnalysis) setSeen(c uint64) {
	i := c % frameWindow
	m.seen[i/64] |= 1 << (i % 64)
}

func (m *mediaAnalysis) clearSeen(c uint64) {
	i := c % frameWindow
	m.seen[i/64] &^= 1 << (i % 64)
}

// Report returns what was measured so far.
func (a *Analyzer) Report() Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	rep := Report{Medias: make([]MediaReport, len(a.medias))}
	for i, m := range a.medias {
		r := m.rep
		if m.clock > 0 {
			r.MaxTSStepMS = float64(r.MaxTSStep) * 1000 / float64(m.clock)
		}
		r.LongestGapMS = float64(m.gap) / float64(time.Millisecond)
		r.Skips = append([]Skip(nil), r.Skips...)
		rep.Medias[i] = r
	}
	return rep
}
