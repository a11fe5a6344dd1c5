package media

import (
	"bytes"
	"errors"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
)

// sourceEvents turns a source's batches due in [from, to) into arrival events at
// due+delay for feed.
func sourceEvents(src Source, feed string, from, to, delay time.Duration) []event {
	var evs []event
	for {
		due, mi, pkts := src.Next()
		if due >= to {
			return evs
		}
		if due < from {
			continue
		}
		for _, p := range pkts {
			evs = append(evs, event{at: due + delay, feed: feed, media: mi, pkt: p})
		}
	}
}

// countersOf returns the frame counters of a feed's events on one media in order.
func countersOf(evs []event, media int) map[uint64]bool {
	m := map[uint64]bool{}
	for _, e := range evs {
		if c, ok := FrameCounter(e.pkt.Payload); ok && e.media == media {
			m[c] = true
		}
	}
	return m
}

// checkNTP asserts that the NTP time of every output packet is within tol of its
// arrival (the sources are paced exactly on the fake clock) and never goes back.
func checkNTP(t *testing.T, pkts []outPkt, tol time.Duration) {
	t.Helper()
	for i, p := range pkts {
		if d := p.ntp.Sub(p.at); d < -tol || d > tol {
			t.Fatalf("output packet %d (seq %d): ntp %v off arrival by %v", i, p.seq, p.ntp, d)
		}
		if i > 0 && p.ntp.Before(pkts[i-1].ntp) {
			t.Fatalf("output packet %d: ntp goes back", i)
		}
	}
}

// splitAt returns the index of the first output packet whose counter belongs to set.
func splitAt(pkts []outPkt, set map[uint64]bool) int {
	for i, p := range pkts {
		if c, ok := FrameCounter(p.pl); ok && set[c] {
			return i
		}
	}
	return -1
}

// TestSplicerIndependentSwitch: a feed with its own sequence space (another encoder,
// joined mid-GOP) is spliced in at its first keyframe with offsets.
func TestSplicerIndependentSwitch(t *testing.T) {
	for _, tc := range []struct {
		name       string
		seqA, seqB uint16
		bitrate    int
		delayB     time.Duration
	}{
		{"plain", 1000, 40000, 0, 15 * time.Millisecond},
		{"fragmented frames", 1000, 40000, 1_500_000, 15 * time.Millisecond},
		{"output seq wraps at the splice", 65400, 10, 1_500_000, 15 * time.Millisecond},
		{"new feed input wraps", 1000, 65530, 1_500_000, 15 * time.Millisecond},
		{"new feed earlier than old", 1000, 40000, 0, -25 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := NewFakeH264(FakeConfig{FPS: 25, GOP: 25, Bitrate: tc.bitrate, InitialSeq: u16(tc.seqA), InitialTS: u32(4294000000), FirstFrame: 1})
			b, _ := NewFakeH264(FakeConfig{FPS: 25, GOP: 25, Bitrate: tc.bitrate, InitialSeq: u16(tc.seqB), InitialTS: u32(77), FirstFrame: 1001})
			evA := sourceEvents(a, "A", 0, 3*time.Second, 0)
			// B's packets start arriving at frame 10 (mid-GOP): first keyframe is frame 25
			evB := sourceEvents(b, "B", 400*time.Millisecond, 3*time.Second, 400*time.Millisecond+tc.delayB)
			var evs []event
			for _, e := range evA { // the old feed ends when B has been switched in for a while
				if e.at < 1500*time.Millisecond {
					evs = append(evs, e)
				}
			}
			clk := newFakeClock()
			col := &collector{clk: clk}
			var switches []SwitchInfo
			sp := NewSplicer(a.Description(), col.out, SplicerOptions{Now: clk.Now, OnSwitch: func(si SwitchInfo) { switches = append(switches, si) }})
			if err := sp.AddFeed("A", SameSeqSpace, nil); err != nil {
				t.Fatal(err)
			}
			if err := sp.AddFeed("B", IndependentSeqSpace, b.Description()); err != nil {
				t.Fatal(err)
			}
			play(t, clk, sp, append(evs, evB...))

			out := col.media(0)
			checkContinuous(t, out)
			checkNTP(t, out, 30*time.Millisecond)
			k := splitAt(out, countersOf(evB, 0))
			if k <= 0 {
				t.Fatalf("B never written (split %d)", k)
			}
			if !IsKeyframeH264(out[k].pl) {
				t.Errorf("first packet of B is not a keyframe: %x", out[k].pl[:2])
			}
			frames := outFrames(out)
			i := slices.Index(frames, 1026) // B's first keyframe: frame index 25
			if i < 0 {
				t.Fatalf("B's keyframe 1026 not in output %v", frames)
			}
			if want := seqRange(1026, 75-25); !slices.Equal(frames[i:], want) {
				t.Errorf("frames after the switch %v, want %v", frames[i:], want)
			}
			if want := seqRange(1, i); !slices.Equal(frames[:i], want) {
				t.Errorf("frames before the switch %v, want %v", frames[:i], want)
			}
			// the splice timestamp step is the wall time since A's last packet (at least 1)
			step := int64(out[k].ts - out[k-1].ts)
			wantStep := max(1, durationToTicks(out[k].at.Sub(out[k-1].at), 90000))
			if step != wantStep {
				t.Errorf("ts step at splice %d, want %d", step, wantStep)
			}
			if len(switches) != 1 || switches[0].From != "A" || switches[0].To != "B" || switches[0].Mode != SwitchKeyframe || switches[0].Break || switches[0].ParamsSent {
				t.Fatalf("switches %+v", switches)
			}
			if sp.Active() != "B" {
				t.Errorf("active %q", sp.Active())
			}
			if err := sp.Write("A", 0, evA[0].pkt); !errors.Is(err, ErrFeedRetired) {
				t.Errorf("write on retired feed: %v", err)
			}
		})
	}
}

// TestSplicerParamSets: a new feed whose SDP carries SPS/PPS different from the
// output's gets them written right before its first IDR, with its timestamp.
func TestSplicerParamSets(t *testing.T) {
	sps := []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8}
	pps := []byte{0x68, 0xce, 0x3c, 0x80}
	for _, tc := range []struct {
		name       string
		oldS, oldP []byte
		newS, newP []byte
		want       bool
	}{
		{"new has params, old none", nil, nil, sps, pps, true},
		{"params differ", sps, []byte{0x68, 0xce, 0x01}, sps, pps, true},
		{"same params", sps, pps, sps, pps, false},
		{"new has none", sps, pps, nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := NewFakeH264(FakeConfig{InitialSeq: u16(100)})
			b, _ := NewFakeH264(FakeConfig{InitialSeq: u16(9000)})
			descA := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo,
				Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: tc.oldS, PPS: tc.oldP}}}}}
			descB := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo,
				Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: tc.newS, PPS: tc.newP}}}}}
			clk := newFakeClock()
			col := &collector{clk: clk}
			var switches []SwitchInfo
			sp := NewSplicer(descA, col.out, SplicerOptions{Now: clk.Now, OnSwitch: func(si SwitchInfo) { switches = append(switches, si) }})
			if err := sp.AddFeed("A", IndependentSeqSpace, descA); err != nil {
				t.Fatal(err)
			}
			if err := sp.AddFeed("B", IndependentSeqSpace, descB); err != nil {
				t.Fatal(err)
			}
			evs := sourceEvents(a, "A", 0, 200*time.Millisecond, 0)
			evs = append(evs, sourceEvents(b, "B", 0, 200*time.Millisecond, 100*time.Millisecond)...)
			play(t, clk, sp, evs)
			out := col.media(0)
			checkContinuous(t, out)
			// B's first packet (a keyframe) arrives at 100ms, after A's frames at 0, 40, 80ms
			n := 3
			got := out[n:]
			if tc.want {
				if len(got) < 3 || !bytes.Equal(got[0].pl, tc.newS) || !bytes.Equal(got[1].pl, tc.newP) {
					t.Fatalf("no SPS/PPS before the keyframe: %x", got[0].pl)
				}
				if got[0].ts != got[2].ts || got[1].ts != got[2].ts || got[0].marker || got[1].marker {
					t.Errorf("param sets ts %d %d, keyframe ts %d", got[0].ts, got[1].ts, got[2].ts)
				}
				if !IsKeyframeH264(got[2].pl) {
					t.Errorf("packet after param sets is not the keyframe")
				}
			} else if len(got) == 0 || !IsKeyframeH264(got[0].pl) || bytes.Equal(got[0].pl, tc.newS) {
				t.Fatalf("unexpected packet at the splice: %x", got[0].pl)
			}
			if len(switches) != 1 || switches[0].ParamsSent != tc.want {
				t.Errorf("switches %+v", switches)
			}
			if st := sp.Stats(); (st.ParamsInjected == 2) != tc.want {
				t.Errorf("ParamsInjected %d", st.ParamsInjected)
			}
		})
	}
}

func mustH264(t *testing.T, seq uint16) *FakeH264 {
	t.Helper()
	s, err := NewFakeH264(FakeConfig{InitialSeq: u16(seq)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSplicerAudioVideo: with audio beside video, audio switches at the packet whose
// timestamp matches the video switch point; both keep one wall clock.
func TestSplicerAudioVideo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delayB time.Duration
	}{
		{"new feed 15ms late", 15 * time.Millisecond},
		{"new feed 7ms early", -7 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := NewCameraSource(FakeConfig{FPS: 25, GOP: 25, InitialSeq: u16(500), FirstFrame: 1},
				FakeConfig{InitialSeq: u16(65000), FirstFrame: 1})
			b, _ := NewCameraSource(FakeConfig{FPS: 25, GOP: 25, InitialSeq: u16(30000), FirstFrame: 1001},
				FakeConfig{InitialSeq: u16(3), FirstFrame: 5001})
			var evs []event
			for _, e := range sourceEvents(a, "A", 0, 3*time.Second, 0) {
				if e.at < 1500*time.Millisecond {
					evs = append(evs, e)
				}
			}
			evB := sourceEvents(b, "B", 400*time.Millisecond, 3*time.Second, 400*time.Millisecond+tc.delayB)
			clk := newFakeClock()
			col := &collector{clk: clk}
			var switches []SwitchInfo
			sp := NewSplicer(a.Description(), col.out, SplicerOptions{Now: clk.Now, OnSwitch: func(si SwitchInfo) { switches = append(switches, si) }})
			if err := sp.AddFeed("A", SameSeqSpace, nil); err != nil {
				t.Fatal(err)
			}
			if err := sp.AddFeed("B", IndependentSeqSpace, nil); err != nil {
				t.Fatal(err)
			}
			play(t, clk, sp, append(evs, evB...))

			video, audio := col.media(0), col.media(1)
			checkContinuous(t, video)
			checkContinuous(t, audio)
			checkNTP(t, video, 30*time.Millisecond)
			checkNTP(t, audio, 30*time.Millisecond)
			kv := splitAt(video, countersOf(evB, 0))
			ka := splitAt(audio, countersOf(evB, 1))
			if kv <= 0 || ka <= 0 {
				t.Fatalf("split video %d audio %d", kv, ka)
			}
			// B's keyframe is its frame 25 (counter 1026), due at 1s of B's time; B's
			// audio packet 50 (counter 5051) is due at 1s too
			cv, _ := FrameCounter(video[kv].pl)
			ca, _ := FrameCounter(audio[ka].pl)
			if cv != 1026 || ca != 5051 {
				t.Errorf("switched at video frame %d and audio packet %d, want 1026 and 5051", cv, ca)
			}
			// A's audio runs until B's audio switch point arrives (B's 1s plays at
			// 1.4s+delay of A's time); then B's audio to its end, nothing lost
			wantA := int((1400*time.Millisecond+tc.delayB)/(20*time.Millisecond)) + 1
			if got := outFrames(audio[:ka]); !slices.Equal(got, seqRange(1, wantA)) {
				t.Errorf("audio before the switch %v, want 1..%d", got, wantA)
			}
			if got := outFrames(audio[ka:]); !slices.Equal(got, seqRange(5051, 100)) {
				t.Errorf("audio after the switch %v", got)
			}
			// both medias' output clocks agree at the switch: the NTP of the first B
			// video and audio packets differ by less than one audio packet
			if d := video[kv].ntp.Sub(audio[ka].ntp); d < -20*time.Millisecond || d > 20*time.Millisecond {
				t.Errorf("ntp of the switch: video %v audio %v", video[kv].ntp, audio[ka].ntp)
			}
			if len(switches) != 1 || switches[0].Mode != SwitchKeyframe || switches[0].To != "B" {
				t.Errorf("switches %+v", switches)
			}
		})
	}
}

// TestSplicerBreak: the active feed disappears (removed, or silent past the
// timeout); the next feed is spliced at its first keyframe and the gap reported.
func TestSplicerBreak(t *testing.T) {
	for _, tc := range []struct {
		name     string
		remove   bool // RemoveFeed(A) instead of letting it time out
		modeB    Mode
		seqB     uint16
		wantMode string
		wantGap  time.Duration
	}{
		// A's last frame is due at 960ms; B's first keyframe (frame 25 of a
		// source started at 1.5s) arrives at 2.5s
		{"removed, same-seq agent restarted", true, SameSeqSpace, 20, SwitchKeyframe, 2500*time.Millisecond - 960*time.Millisecond},
		{"removed, independent", true, IndependentSeqSpace, 20, SwitchKeyframe, 2500*time.Millisecond - 960*time.Millisecond},
		{"timed out, independent", false, IndependentSeqSpace, 20, SwitchKeyframe, 2500*time.Millisecond - 960*time.Millisecond},
		{"timed out, same-seq declared, new space ahead", false, SameSeqSpace, 20000, SwitchKeyframe, 2500*time.Millisecond - 960*time.Millisecond},
		{"timed out, same-seq declared, new space behind", false, SameSeqSpace, 50000, SwitchKeyframe, 2500*time.Millisecond - 960*time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := NewFakeH264(FakeConfig{InitialSeq: u16(65500), FirstFrame: 1})
			b, _ := NewFakeH264(FakeConfig{InitialSeq: u16(tc.seqB), FirstFrame: 1001})
			clk := newFakeClock()
			col := &collector{clk: clk}
			var switches []SwitchInfo
			sp := NewSplicer(a.Description(), col.out, SplicerOptions{Now: clk.Now, FeedTimeout: time.Second,
				OnSwitch: func(si SwitchInfo) { switches = append(switches, si) }})
			if err := sp.AddFeed("A", SameSeqSpace, nil); err != nil {
				t.Fatal(err)
			}
			play(t, clk, sp, sourceEvents(a, "A", 0, time.Second, 0))
			clk.Set(clk.start.Add(1200 * time.Millisecond))
			if tc.remove {
				if err := sp.RemoveFeed("A"); err != nil {
					t.Fatal(err)
				}
				if sp.Active() != "" {
					t.Fatalf("active %q after removal", sp.Active())
				}
			}
			if err := sp.AddFeed("B", tc.modeB, nil); err != nil {
				t.Fatal(err)
			}
			// B (a restarted publisher) joins mid-GOP: frames 10.. arrive from 1.9s
			play(t, clk, sp, sourceEvents(b, "B", 400*time.Millisecond, 2*time.Second, 1500*time.Millisecond))

			out := col.media(0)
			checkContinuous(t, out)
			frames := outFrames(out)
			if want := append(seqRange(1, 25), seqRange(1026, 25)...); !slices.Equal(frames, want) {
				t.Errorf("frames %v, want %v", frames, want)
			}
			if len(switches) != 1 {
				t.Fatalf("switches %+v", switches)
			}
			si := switches[0]
			if si.From != "A" || si.To != "B" || !si.Break || si.Mode != tc.wantMode || si.Gap != tc.wantGap {
				t.Errorf("switch %+v, want break from A, gap %v", si, tc.wantGap)
			}
			k := splitAt(out, map[uint64]bool{1026: true})
			if step := out[k].ts - out[k-1].ts; int64(step) != durationToTicks(tc.wantGap, 90000) {
				t.Errorf("ts step across the break %d, want %d", step, durationToTicks(tc.wantGap, 90000))
			}
			if st := sp.Stats(); st.Waiting != 15 {
				t.Errorf("waiting %d, want the 15 frames before B's keyframe", st.Waiting)
			}
		})
	}
}

// TestSplicerPromoteOnRemove: removing the active feed while a same-sequence relay
// already writes hands over by sequence at once, without waiting for a keyframe.
func TestSplicerPromoteOnRemove(t *testing.T) {
	src := mustH264(t, 65530)
	clk := newFakeClock()
	col := &collector{clk: clk}
	var switches []SwitchInfo
	sp := NewSplicer(src.Description(), col.out, SplicerOptions{Now: clk.Now, OnSwitch: func(si SwitchInfo) { switches = append(switches, si) }})
	for _, id := range []string{"A", "B"} {
		if err := sp.AddFeed(id, SameSeqSpace, nil); err != nil {
			t.Fatal(err)
		}
	}
	var pkts []*rtp.Packet
	for range 30 {
		_, p, _ := src.NextFrame()
		pkts = append(pkts, p...)
	}
	for i, p := range pkts[:10] { // B lags by 2
		for _, w := range []struct {
			id string
			p  *rtp.Packet
		}{{"A", p}, {"B", pkts[max(i-2, 0)]}} {
			if err := sp.Write(w.id, 0, w.p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := sp.RemoveFeed("A"); err != nil {
		t.Fatal(err)
	}
	if len(switches) != 1 || switches[0].Mode != SwitchSequence || switches[0].To != "B" || switches[0].Break {
		t.Fatalf("switches %+v", switches)
	}
	for _, p := range pkts[8:] {
		if err := sp.Write("B", 0, p); err != nil {
			t.Fatal(err)
		}
	}
	out := col.media(0)
	checkContinuous(t, out)
	if len(out) != len(pkts) || out[0].seq != 65530 {
		t.Errorf("output %d packets from seq %d", len(out), out[0].seq)
	}
}

func TestSplicerErrors(t *testing.T) {
	cam, _ := NewCameraSource(FakeConfig{}, FakeConfig{})
	h265, _ := NewFakeH265(FakeConfig{})
	h264pt97, _ := NewFakeH264(FakeConfig{PayloadType: 97})
	sp := NewSplicer(cam.Description(), func(int, *rtp.Packet, time.Time) {}, SplicerOptions{})
	if err := sp.AddFeed("A", SameSeqSpace, nil); err != nil {
		t.Fatal(err)
	}
	videoOnly := &description.Session{Medias: []*description.Media{cam.Description().Medias[0]}}
	swapped := &description.Session{Medias: []*description.Media{cam.Description().Medias[1], cam.Description().Medias[0]}}
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"duplicate id", func() error { return sp.AddFeed("A", SameSeqSpace, nil) }, ErrFeedExists},
		{"media count", func() error { return sp.AddFeed("B", SameSeqSpace, videoOnly) }, ErrIncompatible},
		{"media order", func() error { return sp.AddFeed("B", SameSeqSpace, swapped) }, ErrIncompatible},
		{"codec", func() error {
			return sp.AddFeed("B", SameSeqSpace, &description.Session{Medias: []*description.Media{h265.Description().Medias[0], cam.Description().Medias[1]}})
		}, ErrIncompatible},
		{"payload type", func() error {
			return sp.AddFeed("B", SameSeqSpace, &description.Session{Medias: []*description.Media{h264pt97.Description().Medias[0], cam.Description().Medias[1]}})
		}, ErrIncompatible},
		{"write unknown feed", func() error { return sp.Write("nope", 0, &rtp.Packet{}) }, ErrUnknownFeed},
		{"write bad media", func() error { return sp.Write("A", 2, &rtp.Packet{}) }, ErrMediaIndex},
		{"remove unknown", func() error { return sp.RemoveFeed("nope") }, ErrUnknownFeed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	if err := sp.AddFeed("C", Mode(9), nil); err == nil {
		t.Error("AddFeed with invalid mode succeeded")
	}
}

// TestSplicerIndependentCodecs: keyframe splicing for H.265, and codecs without
// keyframes (audio only, M-JPEG) switching at the new feed's first packet.
func TestSplicerIndependentCodecs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		make     func(seq uint16, first uint64) Source
		wantKey  func([]byte) bool // the first packet of B must satisfy this
		bOffset  time.Duration     // B's content starts here (mid-GOP for video)
		firstOfB uint64            // counter of B's first output frame
	}{
		{"h265", func(seq uint16, first uint64) Source {
			s, _ := NewFakeH265(FakeConfig{GOP: 25, InitialSeq: u16(seq), FirstFrame: first})
			return s
		}, IsKeyframeH265, 400 * time.Millisecond, 1025},
		{"g711 only", func(seq uint16, first uint64) Source {
			s, _ := NewFakeG711(FakeConfig{InitialSeq: u16(seq), FirstFrame: first})
			return s
		}, nil, 400 * time.Millisecond, 1020},
		{"mjpeg", func(seq uint16, first uint64) Source {
			s, _ := NewMJPEGSource(FakeConfig{FPS: 25, InitialSeq: u16(seq)}, 0, 0)
			return s
		}, nil, 400 * time.Millisecond, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tc.make(100, 0), tc.make(30000, 1000)
			var evs []event
			for _, e := range sourceEvents(a, "A", 0, 2*time.Second, 0) {
				if e.at < time.Second {
					evs = append(evs, e)
				}
			}
			evB := sourceEvents(b, "B", tc.bOffset, 2*time.Second, 0)
			clk := newFakeClock()
			col := &collector{clk: clk}
			var switches []SwitchInfo
			sp := NewSplicer(a.Description(), col.out, SplicerOptions{Now: clk.Now, OnSwitch: func(si SwitchInfo) { switches = append(switches, si) }})
			if err := sp.AddFeed("A", IndependentSeqSpace, nil); err != nil {
				t.Fatal(err)
			}
			if err := sp.AddFeed("B", IndependentSeqSpace, nil); err != nil {
				t.Fatal(err)
			}
			play(t, clk, sp, append(evs, evB...))
			out := col.media(0)
			checkContinuous(t, out)
			if len(switches) != 1 || switches[0].Mode != SwitchKeyframe || switches[0].To != "B" {
				t.Fatalf("switches %+v", switches)
			}
			// the first B packet in the output, by payload identity
			fromB := map[*byte]bool{}
			for _, e := range evB {
				fromB[&e.pkt.Payload[0]] = true
			}
			k := slices.IndexFunc(out, func(p outPkt) bool { return fromB[&p.pl[0]] })
			if k <= 0 {
				t.Fatalf("B not in output (%d)", k)
			}
			if tc.wantKey != nil && !tc.wantKey(out[k].pl) {
				t.Errorf("B starts with a non-keyframe")
			}
			if c, ok := FrameCounter(out[k].pl); ok && c != tc.firstOfB {
				t.Errorf("B starts at frame %d, want %d", c, tc.firstOfB)
			}
			if tc.wantKey == nil && &out[k].pl[0] != &evB[0].pkt.Payload[0] {
				t.Errorf("a codec without keyframes must switch at the new feed's first packet")
			}
		})
	}
}

// TestSplicerOldFeedGoesMidSwitch: the old feed is removed after the video splice,
// before the audio one; the switch completes at once and audio follows later.
// A new feed without audio completes the switch after FeedTimeout.
func TestSplicerOldFeedGoesMidSwitch(t *testing.T) {
	for _, tc := range []struct {
		name      string
		removeOld bool // remove A right after B's video splice
		bAudio    bool
		wantAt    time.Duration // when OnSwitch fires
	}{
		{"old removed before the audio splice", true, true, 1000 * time.Millisecond},
		{"new feed never sends audio", false, false, 1000*time.Millisecond + 2*time.Second + 40*time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := NewCameraSource(FakeConfig{FirstFrame: 1}, FakeConfig{FirstFrame: 1})
			b, _ := NewCameraSource(FakeConfig{FirstFrame: 1001}, FakeConfig{FirstFrame: 5001})
			evA := sourceEvents(a, "A", 0, 4*time.Second, 0)
			evB := sourceEvents(b, "B", 400*time.Millisecond, 4*time.Second, 0)
			clk := newFakeClock()
			col := &collector{clk: clk}
			var switches []SwitchInfo
			sp := NewSplicer(a.Description(), col.out, SplicerOptions{Now: clk.Now, OnSwitch: func(si SwitchInfo) { switches = append(switches, si) }})
			_ = sp.AddFeed("A", SameSeqSpace, nil)
			_ = sp.AddFeed("B", IndependentSeqSpace, nil)
			var evs []event
			for _, e := range evA {
				if !tc.removeOld || e.at < 1000*time.Millisecond {
					evs = append(evs, e)
				}
			}
			for _, e := range evB {
				if !tc.bAudio && e.media == 1 {
					continue
				}
				// B's audio is a little behind its video: it reaches 1s at 1.01s
				if e.media == 1 {
					e.at += 10 * time.Millisecond
				}
				evs = append(evs, e)
			}
			sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
			removed := false
			for _, e := range evs {
				clk.Set(clk.start.Add(e.at))
				_ = sp.Write(e.feed, e.media, e.pkt)
				if tc.removeOld && !removed && sp.Active() == "B" {
					removed = true
					if err := sp.RemoveFeed("A"); err != nil {
						t.Fatal(err)
					}
				}
			}
			if len(switches) != 1 || switches[0].From != "A" || switches[0].To != "B" {
				t.Fatalf("switches %+v", switches)
			}
			if at := switches[0].At.Sub(clk.start); at != tc.wantAt {
				t.Errorf("switch completed at %v, want %v", at, tc.wantAt)
			}
			audio := col.media(1)
			checkContinuous(t, audio)
			checkContinuous(t, col.media(0))
			if tc.bAudio {
				k := splitAt(audio, countersOf(evB, 1))
				if c, _ := FrameCounter(audio[k].pl); c != 5051 {
					t.Errorf("audio switched at %d, want 5051", c)
				}
			} else if sp.Write("A", 1, evA[len(evA)-1].pkt) != ErrFeedRetired {
				t.Errorf("old feed not retired after the timeout")
			}
		})
	}
}
