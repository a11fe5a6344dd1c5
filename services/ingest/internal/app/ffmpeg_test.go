package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
)

var ffmpegOnce sync.Once

// needFFmpeg makes sure ffmpeg and ffprobe are installed (running
// scripts/ensure-ffmpeg.sh when they are not) and skips the test, saying
// what to install, only when they still cannot be found.
func needFFmpeg(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the ffmpeg interop test")
	}
	ffmpegOnce.Do(func() {
		if _, err := exec.LookPath("ffmpeg"); err == nil {
			if _, err := exec.LookPath("ffprobe"); err == nil {
				return
			}
		}
		script, _ := filepath.Abs("../../../../scripts/ensure-ffmpeg.sh")
		cmd := exec.Command("bash", script)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			t.Logf("%s: %v", script, err)
		}
	})
	for _, bin := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not found after trying scripts/ensure-ffmpeg.sh: install Debian's ffmpeg package (apt-get install ffmpeg)", bin)
		}
	}
}

// ffmpegPublish starts an ffmpeg publishing an H.264 test pattern to url
// until the test ends (or the server closes it).
func ffmpegPublish(t *testing.T, url string, extra ...string) *exec.Cmd {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-g", "25"}
	args = append(args, extra...)
	args = append(args, "-f", "rtsp", "-rtsp_transport", "tcp", url)
	cmd := exec.Command("ffmpeg", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("ffmpeg publisher stderr: %s", stderr.String())
		}
	})
	return cmd
}

var frameRe = regexp.MustCompile(`frame=\s*(\d+)`)

// ffmpegDecode reads url for the given media duration, decoding into null, and
// returns the number of frames decoded and the stderr.
func ffmpegDecode(ctx context.Context, url, transport string, seconds int) (int, string, error) {
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostats", "-loglevel", "info", "-stats",
		"-rtsp_transport", transport, "-i", url, "-t", strconv.Itoa(seconds), "-f", "null", "-")
	out, err := cmd.CombinedOutput()
	m := frameRe.FindAllSubmatch(out, -1)
	n := 0
	if len(m) > 0 {
		n, _ = strconv.Atoi(string(m[len(m)-1][1]))
	}
	return n, string(out), err
}

// TestFFmpegInterop: Debian's ffmpeg publishes testsrc H.264 to the ingest
// with a token; ffprobe and ffmpeg (TCP and UDP) read it back decoded.
func TestFFmpegInterop(t *testing.T) {
	needFFmpeg(t)
	h := newHarness(t)
	a := h.node("ingest-1", withUDP(t))
	h.place("cam-1", a, "s-1", "", "", time.Time{})
	ffmpegPublish(t, publishURL(a, "cam-1", h.token("cam-1", "ingest-1", "s-1", "", time.Minute)))
	waitEvent(h, events.TypePublisherAttached, 15*time.Second, func(e events.PublisherAttached) bool { return e.Stream == "cam-1" })
	url := a.PublicURL() + "/cam-1"

	var probe struct {
		Streams []struct {
			CodecName string `json:"codec_name"`
			Width     int    `json:"width"`
			Height    int    `json:"height"`
		} `json:"streams"`
	}
	testutil.CheckFor(t, 15*time.Second, 200*time.Millisecond, func() error {
		out, err := exec.Command("ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_streams", "-of", "json", url).Output()
		if err != nil {
			return err
		}
		return json.Unmarshal(out, &probe)
	})
	if len(probe.Streams) != 1 || probe.Streams[0].CodecName != "h264" || probe.Streams[0].Width != 320 || probe.Streams[0].Height != 240 {
		t.Fatalf("ffprobe: %+v", probe)
	}
	for _, tr := range []string{"tcp", "udp"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		n, out, err := ffmpegDecode(ctx, url, tr, 3)
		cancel()
		if err != nil || n < 50 {
			t.Fatalf("ffmpeg %s reader: %d frames, err %v\n%s", tr, n, err, out)
		}
		t.Logf("ffmpeg %s reader decoded %d frames in 3s", tr, n)
	}
}

// TestFFmpegEdgeSwitch: two independent ffmpeg publishers on two origins, an
// edge switching from one to the other at a keyframe (with sequence/timestamp
// rewrite and the new encoder's SPS/PPS), and an ffmpeg reader on the edge
// that keeps decoding through the switch.
func TestFFmpegEdgeSwitch(t *testing.T) {
	needFFmpeg(t)
	h := newHarness(t)
	a := h.node("origin-1", withRole("origin"))
	b := h.node("origin-2", withRole("origin"))
	e := h.node("edge-1", withRole("edge"))
	h.place("cam-1", a, "s-a", "", "", time.Time{})
	ffmpegPublish(t, publishURL(a, "cam-1", h.token("cam-1", "origin-1", "s-a", "", time.Minute)))
	waitEvent(h, events.TypePublisherAttached, 15*time.Second, func(e events.PublisherAttached) bool { return e.Host == "origin-1" })
	// make sure the edge serves before the reader starts
	r := read(t, e.PublicURL()+"/cam-1", gortsplib.ProtocolTCP)
	waitPackets(t, r, 25)

	const seconds = 10
	type result struct {
		n   int
		out string
		err error
	}
	res := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		n, out, err := ffmpegDecode(ctx, e.PublicURL()+"/cam-1", "tcp", seconds)
		res <- result{n, out, err}
	}()
	time.Sleep(3 * time.Second) // let the reader decode the first publisher for a while (not an assertion)
	h.place("cam-1", b, "s-b", "m-1", "origin-1", time.Now().Add(time.Minute))
	// another encoder with other settings: other SPS
	ffmpegPublish(t, publishURL(b, "cam-1", h.token("cam-1", "origin-2", "s-b", "m-1", time.Minute)), "-level:v", "3.1", "-refs", "2")
	sw := waitEvent(h, events.TypeEdgeSwitched, 20*time.Second, func(e events.EdgeSwitched) bool { return e.Edge == "edge-1" })
	t.Logf("edge switched: %+v", sw)
	if sw.ToHost != "origin-2" || sw.Mode != "keyframe" {
		t.Errorf("edge_switched %+v, want a keyframe switch to origin-2", sw)
	}
	got := <-res
	t.Logf("ffmpeg reader on the edge: %d frames in %ds of media, err %v", got.n, seconds, got.err)
	if got.err != nil || got.n < seconds*25*8/10 {
		t.Fatalf("the ffmpeg reader did not keep decoding through the switch: %d frames, err %v\n%s", got.n, got.err, got.out)
	}
	t.Logf("edge desc: %s; origin-2 desc: %s", spropOf(e, "cam-1"), spropOf(b, "cam-1"))
	st := e.Node().Table().Get("cam-1").SplicerStats()
	t.Logf("edge splicer: switches %d, params injected %d, recent %+v", st.Switches, st.ParamsInjected, st.Recent)
	if st.ParamsInjected == 0 {
		t.Error("the new encoder's SPS/PPS were not sent before its first IDR")
	}
}

func spropOf(a *App, name string) string {
	s := a.Node().Table().Get(name)
	if s == nil {
		return "(no stream)"
	}
	if f, ok := s.Desc.Medias[0].Formats[0].(interface{ SafeParams() ([]byte, []byte) }); ok {
		sps, pps := f.SafeParams()
		return fmt.Sprintf("sps %x pps %x", sps, pps)
	}
	return "(not h264)"
}
