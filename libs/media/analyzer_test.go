package media

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// clonePkts copies packets (header and payload slice header) so a scenario can
// change them.
func clonePkts(ps []*rtp.Packet) []*rtp.Packet {
	r := make([]*rtp.Packet, len(ps))
	for i, p := range ps {
		c := *p
		r[i] = &c
	}
	return r
}

func TestAnalyzerVideo(t *testing.T) {
	const frameDur = 40 * time.Millisecond
	for _, tc := range []struct {
		name  string
		build func(frames [][]*rtp.Packet) ([]*rtp.Packet, []time.Duration) // nil durations: frame pacing
		want  MediaReport
		skips []Skip // At as an offset from the Unix epoch
	}{
		{
			name:  "clean",
			build: func(f [][]*rtp.Packet) ([]*rtp.Packet, []time.Duration) { return flat(f), nil },
			want:  MediaReport{Frames: 20, FirstFrame: 1, LastFrame: 20, MaxTSStep: 3600, MaxTSStepMS: 40, LongestGapMS: 40},
		},
		{
			name: "one frame lost",
			build: func(f [][]*rtp.Packet) ([]*rtp.Packet, []time.Duration) {
				return flat(append(append([][]*rtp.Packet{}, f[:5]...), f[6:]...)), nil
			},
			want:  MediaReport{Frames: 19, FirstFrame: 1, LastFrame: 20, FramesMissing: 1, SeqGaps: 1, SeqGapPackets: 3, MaxTSStep: 7200, MaxTSStepMS: 80, LongestGapMS: 40},
			skips: []Skip{{At: time.Unix(0, int64(5*frameDur)), From: 5, To: 7}},
		},
		{
			name: "frame repeated as is",
			build: func(f [][]*rtp.Packet) ([]*rtp.Packet, []time.Duration) {
				return flat(append(append(append([][]*rtp.Packet{}, f[:6]...), clonePkts(f[4])), f[6:]...)), nil
			},
			// the repeat's 3 packets go back in seq and ts
			want: MediaReport{Frames: 20, FirstFrame: 1, LastFrame: 20, DuplicateFrames: 1, SeqBackwards: 3, TSBackwards: 1, MaxTSStep: 7200, MaxTSStepMS: 80, LongestGapMS: 40},
		},
		{
			name: "frame repeated with rewritten seq",
			build: func(f [][]*rtp.Packet) ([]*rtp.Packet, []time.Duration) {
				out := flat(f[:6])
				seq := out[len(out)-1].SequenceNumber
				for _, p := range clonePkts(f[5]) { // the same frame again, contiguous seq
					seq++
					p.SequenceNumber = seq
					out = append(out, p)
				}
				for _, p := range clonePkts(flat(f[6:])) {
					seq++
					p.SequenceNumber = seq
					out = append(out, p)
				}
				return out, nil
			},
			want: MediaReport{Frames: 20, FirstFrame: 1, LastFrame: 20, DuplicateFrames: 1, MaxTSStep: 3600, MaxTSStepMS: 40, LongestGapMS: 40},
		},
		{
			name: "frame arrives late",
			build: func(f [][]*rtp.Packet) ([]*rtp.Packet, []time.Duration) {
				return flat(append(append(append([][]*rtp.Packet{}, f[:5]...), f[6], f[5]), f[7:]...)), nil
			},
			want:  MediaReport{Frames: 20, FirstFrame: 1, LastFrame: 20, SeqGaps: 1, SeqGapPackets: 3, SeqBackwards: 3, TSBackwards: 1, MaxTSStep: 7200, MaxTSStepMS: 80, LongestGapMS: 40},
			skips: []Skip{{At: time.Unix(0, int64(5*frameDur)), From: 5, To: 7}}, // the late frame is taken off the count, not off this log
		},
		{
			name: "ssrc changes",
			build: func(f [][]*rtp.Packet) ([]*rtp.Packet, []time.Duration) {
				out := clonePkts(flat(f))
				for _, p := range out[30:] {
					p.SSRC++
				}
				return out, nil
			},
			want: MediaReport{Frames: 20, FirstFrame: 1, LastFrame: 20, SSRCChanges: 1, MaxTSStep: 3600, MaxTSStepMS: 40, LongestGapMS: 40},
		},
		{
			name: "new sequence space without rewrite",
			build: func(f [][]*rtp.Packet) ([]*rtp.Packet, []time.Duration) {
				out := clonePkts(flat(f))
				for _, p := range out[30:] {
					p.SequenceNumber -= 20000
					p.Timestamp -= 90000
				}
				return out, nil
			},
			want: MediaReport{Frames: 20, FirstFrame: 1, LastFrame: 20, SeqGaps: 1, SeqGapPackets: 65536 - 20000, TSBackwards: 1, MaxTSStep: 3600, MaxTSStepMS: 40, LongestGapMS: 40},
		},
		{
			name: "silence",
			build: func(f [][]*rtp.Packet) ([]*rtp.Packet, []time.Duration) {
				var at []time.Duration
				var ps []*rtp.Packet
				for i, fr := range f {
					d := time.Duration(i) * frameDur
					if i >= 10 {
						d += 300 * time.Millisecond
					}
					for _, p := range fr {
						ps, at = append(ps, p), append(at, d)
					}
				}
				return ps, at
			},
			want: MediaReport{Frames: 20, FirstFrame: 1, LastFrame: 20, MaxTSStep: 3600, MaxTSStepMS: 40, LongestGapMS: 340},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewFakeH264(FakeConfig{FPS: 25, GOP: 100, Bitrate: 800_000, FirstFrame: 1, PayloadMaxSize: 1500})
			if err != nil {
				t.Fatal(err)
			}
			frames, _ := genFrames(t, src, 20)
			for i, f := range frames[1:] { // frame 0, the keyframe, has a 4th: STAP-A(SPS, PPS)
				if len(f) != 3 {
					t.Fatalf("frame %d has %d packets, the cases assume 3", i+1, len(f))
				}
			}
			pkts, at := tc.build(frames)
			an := NewAnalyzer(src.Description())
			t0 := time.Unix(0, 0)
			n := 0 // frames received so far: paces the packets when the case sets no times
			for i, p := range pkts {
				d := time.Duration(n) * frameDur
				if at != nil {
					d = at[i]
				}
				an.Add(0, p, t0.Add(d))
				if p.Marker {
					n++
				}
			}
			got := an.Report().Medias[0]
			want := tc.want
			want.Codec = "H264"
			want.Packets = uint64(len(pkts))
			skips := got.Skips
			got.Skips = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("report\n got %+v\nwant %+v", got, want)
			}
			if len(skips) != len(tc.skips) {
				t.Fatalf("skips %+v, want %+v", skips, tc.skips)
			}
			for i := range skips {
				if !skips[i].At.Equal(tc.skips[i].At) || skips[i].From != tc.skips[i].From || skips[i].To != tc.skips[i].To {
					t.Errorf("skip %d: %+v, want %+v", i, skips[i], tc.skips[i])
				}
			}
		})
	}
}

func flat(frames [][]*rtp.Packet) []*rtp.Packet {
	var r []*rtp.Packet
	for _, f := range frames {
		r = append(r, f...)
	}
	return r
}

func TestAnalyzerAudio(t *testing.T) {
	src, _ := NewFakeG711(FakeConfig{FirstFrame: 1})
	var pkts []*rtp.Packet
	for range 10 {
		_, p := src.NextPacket()
		pkts = append(pkts, p)
	}
	// packet 4 twice in a row (an audio packet is a frame), packet 7 lost
	seq := append(append(append([]*rtp.Packet{}, pkts[:4]...), pkts[3]), pkts[4:6]...)
	seq = append(seq, pkts[7:]...)
	an := NewAnalyzer(src.Description())
	t0 := time.Unix(0, 0)
	for i, p := range seq {
		an.Add(0, p, t0.Add(time.Duration(i)*20*time.Millisecond))
	}
	got := an.Report().Medias[0]
	want := MediaReport{Codec: "G711", Packets: 10, Frames: 9, FirstFrame: 1, LastFrame: 10, FramesMissing: 1,
		DuplicateFrames: 1, SeqBackwards: 1, SeqGaps: 1, SeqGapPackets: 1, MaxTSStep: 320, MaxTSStepMS: 40, LongestGapMS: 20,
		Skips: []Skip{{At: t0.Add(7 * 20 * time.Millisecond), From: 6, To: 8}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("report\n got %+v\nwant %+v", got, want)
	}
}

func TestAnalyzerReportJSON(t *testing.T) {
	an := NewAnalyzer(nil) // medias appear as packets arrive
	src, _ := NewFakeH265(FakeConfig{FirstFrame: 7})
	_, pkts, _ := src.NextFrame()
	an.Add(1, pkts[0], time.Now())
	rep := an.Report()
	if len(rep.Medias) != 2 || rep.Medias[1].Frames != 1 || rep.Medias[1].FirstFrame != 7 || rep.Medias[0].Packets != 0 {
		t.Fatalf("report %+v", rep)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"frames_missing":0`, `"duplicate_frames":0`, `"ssrc_changes":0`, `"seq_gaps":0`,
		`"seq_gap_packets":0`, `"ts_backwards":0`, `"max_ts_step_ms":0`, `"longest_gap_ms":0`, `"first_frame":7`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON %s lacks %s", b, k)
		}
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back.Medias[1], rep.Medias[1]) {
		t.Errorf("round trip: %v %+v", err, back)
	}
}
