package probe_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl/internal/camtest"
	"github.com/ferrystream/ferry/clients/ferryctl/probe"
	"github.com/ferrystream/ferry/libs/testutil"
)

// TestProbeCountsFrames reads the fake camera and checks the counts exactly:
// nothing missing on a clean run, exactly the dropped frame otherwise.
func TestProbeCountsFrames(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transport string
		udp       bool
		drop      bool
	}{
		{name: "tcp clean", transport: probe.TransportTCP},
		{name: "tcp one frame dropped", transport: probe.TransportTCP, drop: true},
		{name: "udp clean", transport: probe.TransportUDP, udp: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cam := camtest.Start(t, tc.udp)
			ctx := testutil.Context(t)
			p, err := probe.Start(ctx, probe.Config{URL: cam.URL, Transport: tc.transport})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
				if n := p.Report().Video().Frames; n < 10 {
					return fmt.Errorf("%d frames so far", n)
				}
				return nil
			})
			target := p.Report().Video().LastFrame + 20
			if tc.drop {
				cam.DropNext()
				testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
					if cam.Dropped() < 0 {
						return errors.New("frame not dropped yet")
					}
					return nil
				})
				target = uint64(cam.Dropped()) + 20
			}
			testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
				if last := p.Report().Video().LastFrame; last < target {
					return fmt.Errorf("last frame %d, waiting for %d", last, target)
				}
				return nil
			})
			cam.Halt()
			rep := p.Close()
			v := rep.Video()
			wantMissing := uint64(0)
			if tc.drop {
				wantMissing = 1
			}
			if v.FramesMissing != wantMissing {
				t.Errorf("frames missing = %d, want %d (report %+v)", v.FramesMissing, wantMissing, v)
			}
			if v.DuplicateFrames != 0 || v.SSRCChanges != 0 || v.TSBackwards != 0 {
				t.Errorf("dup %d, ssrc changes %d, ts backwards %d; want 0", v.DuplicateFrames, v.SSRCChanges, v.TSBackwards)
			}
			if got, want := v.Frames, v.LastFrame-v.FirstFrame+1-wantMissing; got != want {
				t.Errorf("frames = %d, want %d", got, want)
			}
			if tc.drop && v.SeqGaps != 1 {
				t.Errorf("seq gaps = %d, want 1 (the dropped frame's packets)", v.SeqGaps)
			}
			if !tc.drop && v.SeqGaps != 0 {
				t.Errorf("seq gaps = %d, want 0", v.SeqGaps)
			}
			if rep.Clean() == tc.drop {
				t.Errorf("Clean() = %v with drop=%v", rep.Clean(), tc.drop)
			}
			if rep.Disconnected != "" {
				t.Errorf("disconnected = %q after our own Close", rep.Disconnected)
			}
			if !rep.HasCounters(rep.VideoIndex()) || rep.MarkerFrames[0] < v.Frames {
				t.Errorf("counters %v, marker frames %v, frames %d", rep.HasCounters(0), rep.MarkerFrames, v.Frames)
			}
			if v.Codec != "H264" {
				t.Errorf("codec = %q", v.Codec)
			}
		})
	}
}

// TestRunEndsWhenServerCloses checks that Run reports a server-side end as
// ErrDisconnected, with what it measured until then, and ticks meanwhile.
func TestRunEndsWhenServerCloses(t *testing.T) {
	cam := camtest.Start(t, false)
	ctx := testutil.Context(t)
	var ticks atomic.Int64
	type result struct {
		rep probe.Report
		err error
	}
	res := make(chan result, 1)
	go func() {
		rep, err := probe.Run(ctx, probe.Config{URL: cam.URL, Duration: time.Minute, Interval: 20 * time.Millisecond,
			OnTick: func(r probe.Report) {
				if r.Video().Frames > 0 {
					ticks.Add(1)
				}
			}})
		res <- result{rep, err}
	}()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if ticks.Load() < 3 {
			return errors.New("fewer than 3 ticks with frames")
		}
		return nil
	})
	cam.Halt()
	cam.CloseStream()
	var r result
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the server closed the stream")
	}
	if !errors.Is(r.err, probe.ErrDisconnected) {
		t.Fatalf("err = %v, want ErrDisconnected", r.err)
	}
	if r.rep.Disconnected == "" || r.rep.Video().Frames == 0 {
		t.Errorf("report: disconnected %q, frames %d", r.rep.Disconnected, r.rep.Video().Frames)
	}
}

func TestRunDuration(t *testing.T) {
	cam := camtest.Start(t, false)
	rep, err := probe.Run(testutil.Context(t), probe.Config{URL: cam.URL, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Video().Frames == 0 || rep.ElapsedS < 0.3 {
		t.Errorf("frames %d elapsed %.3fs", rep.Video().Frames, rep.ElapsedS)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  probe.Config
		want string
	}{
		{probe.Config{}, "probe: bad config: url: must not be empty"},
		{probe.Config{URL: "http://x/y"}, `probe: bad config: url "http://x/y": scheme must be rtsp or rtsps`},
		{probe.Config{URL: "rtsp://x/y", Transport: "sctp"}, `probe: bad config: transport "sctp": must be tcp, udp or auto`},
		{probe.Config{URL: "rtsp://x/y", Duration: -time.Second}, "probe: bad config: duration -1s: must not be negative"},
	} {
		err := tc.cfg.Validate()
		if err == nil || err.Error() != tc.want {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
		if !errors.Is(err, probe.ErrBadConfig) {
			t.Errorf("%v is not ErrBadConfig", err)
		}
	}
}

func TestNothingListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = probe.Run(ctx, probe.Config{URL: "rtsp://" + addr + "/cam", Duration: time.Second})
	if err == nil {
		t.Fatal("probe of a closed port succeeded")
	}
}

// TestProbeStall freezes the camera mid-stream and checks that a probe with
// MaxGap reports the stall (and is not clean) though no frame is missing,
// that one without MaxGap is clean, and that a source that freezes and never
// resumes counts as stalled by its silence until the end.
func TestProbeStall(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxGap    time.Duration
		resume    bool
		wantStall bool
		wantClean bool
	}{
		{name: "stall then resume, max gap 150ms", maxGap: 150 * time.Millisecond, resume: true, wantStall: true},
		{name: "stall never resumed, max gap 150ms", maxGap: 150 * time.Millisecond, wantStall: true},
		{name: "stall, no max gap", resume: true, wantClean: true},
		{name: "no stall, max gap 1s", maxGap: time.Second, wantClean: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cam := camtest.Start(t, false)
			p, err := probe.Start(testutil.Context(t), probe.Config{URL: cam.URL, MaxGap: tc.maxGap})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
				if n := p.Report().Video().Frames; n < 10 {
					return fmt.Errorf("%d frames so far", n)
				}
				return nil
			})
			stalls := tc.name != "no stall, max gap 1s"
			if stalls {
				cam.Pause()
				// the probe sees the silence grow past 300ms
				testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
					if s := p.Report().SilenceMS[0]; s < 300 {
						return fmt.Errorf("silent for %.0fms", s)
					}
					return nil
				})
			}
			if !stalls || tc.resume {
				cam.Resume()
				target := p.Report().Video().LastFrame + 20
				testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
					if last := p.Report().Video().LastFrame; last < target {
						return fmt.Errorf("last frame %d, waiting for %d", last, target)
					}
					return nil
				})
			}
			rep := p.Close()
			v := rep.Video()
			if v.FramesMissing != 0 || v.DuplicateFrames != 0 {
				t.Errorf("missing %d dup %d; want 0 (a stall loses nothing)", v.FramesMissing, v.DuplicateFrames)
			}
			if stalls && rep.StallMS(0) < 300 {
				t.Errorf("StallMS = %.0f, want >= 300", rep.StallMS(0))
			}
			if stalls && tc.resume && v.LongestGapMS < 300 {
				t.Errorf("longest gap %.0fms, want >= 300", v.LongestGapMS)
			}
			if rep.Stalled() != tc.wantStall || rep.Clean() != tc.wantClean {
				t.Errorf("Stalled() = %v, Clean() = %v; want %v, %v (stall %.0fms, max gap %.0fms)",
					rep.Stalled(), rep.Clean(), tc.wantStall, tc.wantClean, rep.StallMS(0), rep.MaxGapMS)
			}
		})
	}
}
