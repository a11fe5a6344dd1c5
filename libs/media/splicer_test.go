package media

import (
	"errors"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// fakeClock is a settable clock for Splicer.Now.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	start time.Time
}

func newFakeClock() *fakeClock {
	t0 := time.Unix(1_700_000_000, 0)
	return &fakeClock{t: t0, start: t0}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// outPkt is one packet the splicer wrote.
type outPkt struct {
	media  int
	seq    uint16
	ts     uint32
	marker bool
	ntp    time.Time
	at     time.Time
	pl     []byte
}

// collector records the splicer's output.
type collector struct {
	clk  *fakeClock
	mu   sync.Mutex
	pkts []outPkt
}

func (c *collector) out(mi int, p *rtp.Packet, ntp time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var at time.Time
	if c.clk != nil {
		at = c.clk.t // the splicer holds no clock lock while calling out
	}
	c.pkts = append(c.pkts, outPkt{media: mi, seq: p.SequenceNumber, ts: p.Timestamp, marker: p.Marker, ntp: ntp, at: at, pl: p.Payload})
}

func (c *collector) media(mi int) []outPkt {
	c.mu.Lock()
	defer c.mu.Unlock()
	var r []outPkt
	for _, p := range c.pkts {
		if p.media == mi {
			r = append(r, p)
		}
	}
	return r
}

// event is one packet arriving at the splicer from a feed.
type event struct {
	at    time.Duration
	feed  string
	media int
	pkt   *rtp.Packet
}

// play delivers events in time order (stable for equal times) on the fake clock;
// event times are relative to the clock's start.
func play(t *testing.T, clk *fakeClock, sp *Splicer, evs []event) {
	t.Helper()
	base := clk.start
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	for _, e := range evs {
		clk.Set(base.Add(e.at))
		if err := sp.Write(e.feed, e.media, e.pkt); err != nil && !errors.Is(err, ErrFeedRetired) {
			t.Fatalf("write %s media %d seq %d: %v", e.feed, e.media, e.pkt.SequenceNumber, err)
		}
	}
}

// genFrames returns n frames of a video source with the time each is due.
func genFrames(t *testing.T, src videoSource, n int) (frames [][]*rtp.Packet, counters []uint64) {
	t.Helper()
	for range n {
		c, pkts, _ := src.NextFrame()
		frames = append(frames, pkts)
		counters = append(counters, c)
	}
	return frames, counters
}

// checkContinuous asserts contiguous sequence numbers and non-decreasing
// timestamps on one media of the output.
func checkContinuous(t *testing.T, pkts []outPkt) {
	t.Helper()
	for i := 1; i < len(pkts); i++ {
		if pkts[i].seq != pkts[i-1].seq+1 {
			t.Fatalf("output packet %d: seq %d after %d", i, pkts[i].seq, pkts[i-1].seq)
		}
		if d := int32(pkts[i].ts - pkts[i-1].ts); d < 0 {
			t.Fatalf("output packet %d: ts %d after %d (backwards)", i, pkts[i].ts, pkts[i-1].ts)
		}
	}
}

// outFrames returns the frame counters in output order, one per frame (the first
// packet carrying each counter after a marker).
func outFrames(pkts []outPkt) []uint64 {
	var r []uint64
	ended := true
	var cur uint64
	for _, p := range pkts {
		if c, ok := FrameCounter(p.pl); ok && (ended || c != cur) {
			r = append(r, c)
			cur, ended = c, false
		}
		if p.marker {
			ended = true
		}
	}
	return r
}

func seqRange(from uint64, n int) []uint64 {
	r := make([]uint64, n)
	for i := range r {
		r[i] = from + uint64(i)
	}
	return r
}

// TestSplicerSameSeqOverlap: two feeds of one sequence space overlap, the second
// lagging 3 packets, then (the first stalls) leading; every sequence number comes
// out exactly once and the old feed is retired by sequence.
func TestSplicerSameSeqOverlap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		seq0    uint16
		bitrate int
	}{
		{"small frames", 1000, 0},
		{"fragmented frames", 1000, 1_500_000},
		{"seq wraps while the new feed lags", 65535 - 150, 1_500_000},
		{"seq wraps while the new feed leads", 65535 - 400, 1_500_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewFakeH264(FakeConfig{FPS: 25, GOP: 25, Bitrate: tc.bitrate, InitialSeq: u16(tc.seq0), FirstFrame: 1})
			if err != nil {
				t.Fatal(err)
			}
			frames, _ := genFrames(t, src, 100)
			var pkts []*rtp.Packet
			for _, f := range frames {
				pkts = append(pkts, f...)
			}
			clk := newFakeClock()
			col := &collector{clk: clk}
			var switches []SwitchInfo
			sp := NewSplicer(src.Description(), col.out, SplicerOptions{
				RetireAfter: 50, Now: clk.Now,
				OnSwitch: func(si SwitchInfo) { switches = append(switches, si) },
			})
			if err := sp.AddFeed("A", SameSeqSpace, nil); err != nil {
				t.Fatal(err)
			}
			const unit = time.Millisecond
			stall := len(pkts) / 2 // A stalls here for 6 packet times: B, 3 behind, becomes 3 ahead
			joinB := len(pkts) / 5
			var evs []event
			for i, p := range pkts {
				at := time.Duration(i) * unit
				if i >= stall {
					at += 6 * unit
				}
				evs = append(evs, event{at: at, feed: "A", pkt: p})
				if i >= joinB {
					evs = append(evs, event{at: time.Duration(i+3)*unit + unit/2, feed: "B", pkt: p})
				}
			}
			// B is added when its first packet arrives
			first := evs[:0:0]
			var rest []event
			for _, e := range evs {
				if e.feed == "B" && e.pkt == pkts[joinB] {
					first = append(first, e)
				} else {
					rest = append(rest, e)
				}
			}
			sort.SliceStable(rest, func(i, j int) bool { return rest[i].at < rest[j].at })
			var before, after []event
			for _, e := range rest {
				if e.at < first[0].at {
					before = append(before, e)
				} else {
					after = append(after, e)
				}
			}
			play(t, clk, sp, before)
			if err := sp.AddFeed("B", SameSeqSpace, nil); err != nil {
				t.Fatal(err)
			}
			play(t, clk, sp, append(first, after...))

			out := col.media(0)
			if len(out) != len(pkts) {
				t.Fatalf("output %d packets, want %d", len(out), len(pkts))
			}
			for i, p := range out {
				if p.seq != pkts[i].SequenceNumber || p.ts != pkts[i].Timestamp {
					t.Fatalf("output %d: seq %d ts %d, want %d %d", i, p.seq, p.ts, pkts[i].SequenceNumber, pkts[i].Timestamp)
				}
			}
			checkContinuous(t, out)
			if got := outFrames(out); !slices.Equal(got, seqRange(1, 100)) {
				t.Fatalf("frames out %v", got)
			}
			if len(switches) != 1 || switches[0].From != "A" || switches[0].To != "B" || switches[0].Mode != SwitchSequence || switches[0].Break {
				t.Fatalf("switches %+v", switches)
			}
			// A's last packet before the stall at 49 units, B's next at 53.5
			if want := 4*unit + unit/2; switches[0].Gap != want {
				t.Errorf("gap %v, want %v", switches[0].Gap, want)
			}
			if sp.Active() != "B" {
				t.Errorf("active %q", sp.Active())
			}
			st := sp.Stats()
			t.Logf("packets %d, stats %+v", len(pkts), st)
			// every packet B brought while lagging and A's copies after B led were dropped
			if st.Duplicates == 0 || st.Late != 0 || st.PacketsOut != uint64(len(pkts)) || st.Switches != 1 {
				t.Errorf("stats %+v", st)
			}
			if err := sp.Write("A", 0, pkts[0]); !errors.Is(err, ErrFeedRetired) {
				t.Errorf("write on retired feed: %v", err)
			}
		})
	}
}

// TestSplicerConcurrentWrites: two goroutines write the same packets as two
// SameSeqSpace feeds at once; the output has every sequence number once, in order.
func TestSplicerConcurrentWrites(t *testing.T) {
	src, err := NewFakeH264(FakeConfig{Bitrate: 1_000_000, InitialSeq: u16(60000)})
	if err != nil {
		t.Fatal(err)
	}
	var pkts []*rtp.Packet
	for len(pkts) < 20000 {
		_, p, _ := src.NextFrame()
		pkts = append(pkts, p...)
	}
	col := &collector{}
	sp := NewSplicer(src.Description(), col.out, SplicerOptions{RetireAfter: 1 << 30})
	var wg sync.WaitGroup
	// Both feeds write the first packet before the goroutines start: B is then
	// proven to share A's sequence space even if A runs far ahead of it (an
	// unproven feed more than half the window away would be spliced as another
	// sequence space, which is not what this test is about).
	for _, id := range []string{"A", "B"} {
		if err := sp.AddFeed(id, SameSeqSpace, nil); err != nil {
			t.Fatal(err)
		}
		if err := sp.Write(id, 0, pkts[0]); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"A", "B"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, p := range pkts[1:] {
				if err := sp.Write(id, 0, p); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // readers of the stats race with the writers
		defer wg.Done()
		for range 100 {
			_ = sp.Stats()
			_ = sp.Active()
		}
	}()
	wg.Wait()
	out := col.media(0)
	if len(out) != len(pkts) {
		t.Fatalf("output %d packets, want %d", len(out), len(pkts))
	}
	checkContinuous(t, out)
	// the second copy of each packet is dropped: as a duplicate, or as late when the
	// other goroutine ran more than the remembered window ahead
	if st := sp.Stats(); st.Duplicates+st.Late != uint64(len(pkts)) || st.PacketsOut != uint64(len(pkts)) {
		t.Errorf("stats %+v", st)
	}
}
