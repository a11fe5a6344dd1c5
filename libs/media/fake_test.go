package media

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
)

func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }

type videoSource interface {
	Source
	NextFrame() (uint64, []*rtp.Packet, bool)
}

func TestFakeVideo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		make    func(FakeConfig) (videoSource, error)
		isKey   func([]byte) bool
		bitrate int
	}{
		{"h264 small", func(c FakeConfig) (videoSource, error) { return NewFakeH264(c) }, IsKeyframeH264, 0},
		{"h264 fragmented", func(c FakeConfig) (videoSource, error) { return NewFakeH264(c) }, IsKeyframeH264, 2_000_000},
		{"h265 small", func(c FakeConfig) (videoSource, error) { return NewFakeH265(c) }, IsKeyframeH265, 0},
		{"h265 fragmented", func(c FakeConfig) (videoSource, error) { return NewFakeH265(c) }, IsKeyframeH265, 2_000_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const fps, gop = 30, 10
			src, err := tc.make(FakeConfig{FPS: fps, GOP: gop, Bitrate: tc.bitrate,
				InitialSeq: u16(65530), InitialTS: u32(4294967000), SSRC: u32(7), FirstFrame: 100})
			if err != nil {
				t.Fatal(err)
			}
			wantSeq := uint16(65530)
			maxPkts := 0
			for i := range uint64(25) {
				frame, pkts, key := src.NextFrame()
				if frame != 100+i {
					t.Fatalf("frame %d: counter %d", i, frame)
				}
				if key != (i%gop == 0) {
					t.Fatalf("frame %d: key=%v", i, key)
				}
				if len(pkts) == 0 {
					t.Fatalf("frame %d: no packets", i)
				}
				maxPkts = max(maxPkts, len(pkts))
				wantTS := uint32(4294967000) + uint32(i*90000/fps)
				counted := 0
				for j, p := range pkts {
					if p.SequenceNumber != wantSeq {
						t.Fatalf("frame %d pkt %d: seq %d, want %d", i, j, p.SequenceNumber, wantSeq)
					}
					wantSeq++
					if p.Timestamp != wantTS || p.SSRC != 7 || p.PayloadType != 96 {
						t.Fatalf("frame %d pkt %d: ts %d ssrc %d pt %d", i, j, p.Timestamp, p.SSRC, p.PayloadType)
					}
					if p.Marker != (j == len(pkts)-1) {
						t.Fatalf("frame %d pkt %d: marker %v", i, j, p.Marker)
					}
					if c, ok := FrameCounter(p.Payload); ok {
						if c != frame {
							t.Fatalf("frame %d pkt %d: counter %d", i, j, c)
						}
						counted++
					}
				}
				if counted == 0 {
					t.Fatalf("frame %d: no packet carries the counter", i)
				}
				if got := tc.isKey(pkts[0].Payload); got != key {
					t.Fatalf("frame %d: keyframe detector on first packet = %v, want %v", i, got, key)
				}
			}
			if tc.bitrate > 0 && maxPkts < 3 {
				t.Errorf("bitrate %d: at most %d packets per frame, want fragmentation", tc.bitrate, maxPkts)
			}
			if tc.bitrate == 0 && maxPkts != 1 {
				t.Errorf("no padding: %d packets per frame, want 1 (aggregated)", maxPkts)
			}
			desc := src.Description()
			if len(desc.Medias) != 1 || desc.Medias[0].Type != description.MediaTypeVideo {
				t.Fatalf("description: %+v", desc.Medias)
			}
			if src.Description() != desc {
				t.Error("Description returns a new value on each call")
			}
			fmtp := desc.Medias[0].Formats[0].FMTP()
			for _, k := range []string{"sprop-parameter-sets", "sprop-sps", "sprop-pps", "sprop-vps"} {
				if _, ok := fmtp[k]; ok {
					t.Errorf("SDP carries %s", k)
				}
			}
		})
	}
}

func TestFakeConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  FakeConfig
	}{
		{"static payload type", FakeConfig{PayloadType: 26}},
		{"payload type too high", FakeConfig{PayloadType: 128}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewFakeH264(tc.cfg); !errors.Is(err, ErrBadConfig) {
				t.Errorf("NewFakeH264: %v, want ErrBadConfig", err)
			}
			if _, err := NewFakeH265(tc.cfg); !errors.Is(err, ErrBadConfig) {
				t.Errorf("NewFakeH265: %v, want ErrBadConfig", err)
			}
		})
	}
}

func TestFakeG711(t *testing.T) {
	src, err := NewFakeG711(FakeConfig{InitialSeq: u16(65535), InitialTS: u32(100), FirstFrame: 5})
	if err != nil {
		t.Fatal(err)
	}
	forma, ok := src.Description().Medias[0].Formats[0].(*format.G711)
	if !ok || !forma.MULaw || forma.ClockRate() != 8000 || forma.PayloadType() != 0 {
		t.Fatalf("format %#v", src.Description().Medias[0].Formats[0])
	}
	for i := range uint64(3) {
		due, mi, pkts := src.Next()
		if due != time.Duration(i)*20*time.Millisecond || mi != 0 || len(pkts) != 1 {
			t.Fatalf("packet %d: due %v media %d n %d", i, due, mi, len(pkts))
		}
		p := pkts[0]
		if p.SequenceNumber != uint16(65535+i) || p.Timestamp != uint32(100+160*i) || len(p.Payload) != 160 {
			t.Fatalf("packet %d: seq %d ts %d len %d", i, p.SequenceNumber, p.Timestamp, len(p.Payload))
		}
		if c, ok := FrameCounter(p.Payload); !ok || c != 5+i {
			t.Fatalf("packet %d: counter %d %v", i, c, ok)
		}
	}
}

func TestCameraSourceOrder(t *testing.T) {
	cam, err := NewCameraSource(FakeConfig{FPS: 25, InitialTS: u32(1000)}, FakeConfig{InitialTS: u32(50)})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cam.Description().Medias); n != 2 {
		t.Fatalf("%d medias", n)
	}
	var last time.Duration
	counts := [2]int{}
	for range 150 {
		due, mi, pkts := cam.Next()
		if due < last {
			t.Fatalf("due %v after %v", due, last)
		}
		last = due
		counts[mi]++
		// both medias' timestamps describe the same instant: ts-base = due*clock
		clock := []int64{90000, 8000}[mi]
		base := []uint32{1000, 50}[mi]
		if want := base + uint32(durationToTicks(due, clock)); pkts[0].Timestamp != want {
			t.Fatalf("media %d due %v: ts %d, want %d", mi, due, pkts[0].Timestamp, want)
		}
	}
	// 150 batches over about 1 s: 25 video frames per 50 audio packets
	if counts[1] < 2*counts[0]-2 || counts[1] > 2*counts[0]+2 {
		t.Errorf("video %d, audio %d: want 1:2", counts[0], counts[1])
	}
}

func TestRunPacesInRealTime(t *testing.T) {
	src, err := NewFakeH264(FakeConfig{FPS: 50})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var arrivals []time.Time
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, src, func(medi *description.Media, pkt *rtp.Packet) error {
			if medi != src.Description().Medias[0] {
				return errors.New("wrong media")
			}
			mu.Lock()
			defer mu.Unlock()
			arrivals = append(arrivals, time.Now())
			if len(arrivals) == 11 {
				cancel()
			}
			return nil
		})
	}()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// frame 10 is due at 200ms: it must not be written early
	if el := arrivals[10].Sub(start); el < 200*time.Millisecond {
		t.Errorf("11th frame written after %v, want >= 200ms", el)
	}

	// a failing write stops Run with the error
	werr := errors.New("boom")
	err = Run(context.Background(), src, func(*description.Media, *rtp.Packet) error { return werr })
	if !errors.Is(err, werr) {
		t.Errorf("Run with failing write: %v", err)
	}
}
