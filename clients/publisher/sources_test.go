package publisher_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/ferrystream/ferry/clients/publisher"
	"github.com/ferrystream/ferry/libs/media"
	"github.com/ferrystream/ferry/libs/testutil"
)

// sourceEnv is a placement stub and one miniHost ingest; the agent's source
// is what the test sets.
func sourceEnv(t *testing.T, source string, tap func(int, *rtp.Packet)) (*miniHost, *runningAgent) {
	t.Helper()
	env := testutil.NATS(t)
	pl := newPlacementStub(t, env)
	h := newMiniHost(t, "ingest-a")
	h.tap = tap
	pl.addHost("ingest-a", h.url)
	ag := startAgent(t, env, func(c *publisher.Config) {
		c.Source = source
		c.FPS = 10
	}, nil)
	return h, ag
}

// TestMJPEGSourceDecodes: the mjpeg source publishes real JPEG frames whose
// drawn counter increases.
func TestMJPEGSourceDecodes(t *testing.T) {
	var mu sync.Mutex
	var numbers []uint16
	var decErr error
	dec, err := (&format.MJPEG{}).CreateDecoder()
	if err != nil {
		t.Fatal(err)
	}
	_, ag := sourceEnv(t, publisher.SourceMJPEG, func(_ int, pkt *rtp.Packet) {
		frame, err := dec.Decode(pkt)
		if err != nil {
			return // more packets needed
		}
		img, err := jpeg.Decode(bytes.NewReader(frame))
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			decErr = err
			return
		}
		numbers = append(numbers, media.MJPEGFrameNumber(img))
	})
	ag.waitHost(t, "ingest-a", 10*time.Second)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if decErr != nil {
			return decErr
		}
		if len(numbers) < 5 {
			return fmt.Errorf("%d frames decoded", len(numbers))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(numbers); i++ {
		if numbers[i] != numbers[i-1]+1 {
			t.Fatalf("decoded frame numbers %v: not consecutive", numbers)
		}
	}
}

// TestPullSourceKeepsOneSequenceSpace: the agent pulls a camera; the camera
// restarts (new SSRC, new sequence and timestamp bases); what the agent
// publishes stays one sequence space: no gap, no timestamp going back.
func TestPullSourceKeepsOneSequenceSpace(t *testing.T) {
	cam := newMiniHost(t, "camera")
	src1, _ := media.NewFakeH264(media.FakeConfig{FPS: 25, GOP: 10})
	stop1 := cam.serve(src1)
	h, ag := sourceEnv(t, cam.url+"/live", nil)
	ag.waitHost(t, "ingest-a", 10*time.Second)
	waitMoreFrames(t, h, 20)

	stop1() // the camera restarts
	src2, _ := media.NewFakeH264(media.FakeConfig{FPS: 25, GOP: 10, FirstFrame: 100000})
	cam.serve(src2)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		n := 0
		for k := range h.frameSet() {
			if k >= 100000 {
				n++
			}
		}
		if n < 20 {
			return fmt.Errorf("%d frames of the restarted camera", n)
		}
		return nil
	})
	rep := h.report()
	if rep.SeqGaps != 0 || rep.SeqBackwards != 0 || rep.TSBackwards != 0 || rep.SSRCChanges != 0 {
		t.Fatalf("ingest saw %+v: want one continuous sequence space", rep)
	}
	if st := ag.Stats(); st.Host != "ingest-a" || st.Gaps != 0 {
		t.Fatalf("agent %+v", st)
	}
}

// push publishes a fake H.264 source to url until ctx ends.
func push(ctx context.Context, url string, first uint64) error {
	src, _ := media.NewFakeH264(media.FakeConfig{FPS: 25, GOP: 10, FirstFrame: first})
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Protocol: &tcp}
	if err := c.StartRecording(url, src.Description()); err != nil {
		return err
	}
	defer c.Close()
	return media.Run(ctx, src, c.WritePacketRTP)
}

// TestListenSourceKeepsOneSequenceSpace: a pusher (ffmpeg-like) pushes to
// the agent's local RTSP endpoint, stops, and a new one pushes with its own
// sequence space: the agent's output stays continuous.
func TestListenSourceKeepsOneSequenceSpace(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	h, ag := sourceEnv(t, "listen://"+addr+"/cam", nil)
	ctx1, stop1 := context.WithCancel(context.Background())
	defer stop1()
	done1 := make(chan error, 1)
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		errc := make(chan error, 1)
		go func() { errc <- push(ctx1, "rtsp://"+addr+"/cam", 0) }()
		select {
		case err := <-errc:
			return err // endpoint not up yet
		case <-time.After(300 * time.Millisecond):
			go func() { done1 <- <-errc }()
			return nil
		}
	})
	ag.waitHost(t, "ingest-a", 10*time.Second)
	waitMoreFrames(t, h, 20)
	stop1()
	<-done1

	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	go func() { _ = push(ctx2, "rtsp://"+addr+"/cam", 100000) }()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		n := 0
		for k := range h.frameSet() {
			if k >= 100000 {
				n++
			}
		}
		if n < 20 {
			return fmt.Errorf("%d frames of the second push", n)
		}
		return nil
	})
	rep := h.report()
	if rep.SeqGaps != 0 || rep.SeqBackwards != 0 || rep.TSBackwards != 0 || rep.SSRCChanges != 0 {
		t.Fatalf("ingest saw %+v: want one continuous sequence space", rep)
	}
}

// TestFFmpegPush: plain ffmpeg pushes H.264 into the agent's local endpoint;
// the agent publishes it. Skipped without ffmpeg (make test installs it).
func TestFFmpegPush(t *testing.T) {
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not installed")
	}
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	h, ag := sourceEnv(t, "listen://"+addr+"/cam", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		cmd := exec.CommandContext(ctx, bin, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
			"-i", "testsrc=size=160x120:rate=25", "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
			"-rtsp_transport", "tcp", "-f", "rtsp", "rtsp://"+addr+"/cam")
		if err := cmd.Start(); err != nil {
			return err
		}
		errc := make(chan error, 1)
		go func() { errc <- cmd.Wait() }()
		select {
		case err := <-errc:
			if err == nil {
				err = errors.New("ffmpeg exited at once")
			}
			return err
		case <-time.After(500 * time.Millisecond):
			t.Cleanup(func() { cancel(); <-errc })
			return nil
		}
	})
	ag.waitHost(t, "ingest-a", 10*time.Second)
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if r := h.report(); r.Packets < 50 {
			return fmt.Errorf("%d packets from ffmpeg via the agent", r.Packets)
		}
		return nil
	})
	if r := h.report(); r.Codec != "H264" || r.SeqGaps != 0 {
		t.Fatalf("ingest saw %+v", r)
	}
}
