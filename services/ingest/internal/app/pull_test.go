package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/ingest/internal/rtsptest"
)

// TestPullMode: a pull command makes the host pull a camera as the stream's
// source; moving the pull-mode stream is done by the hosts alone: the new
// host pulls the camera too, the old one relays back from it for its readers,
// switches at a keyframe (two pulls are two sequence spaces) and stops its
// own pull.
func TestPullMode(t *testing.T) {
	h := newHarness(t)
	cam := h.node("camera-1", withEnv("INGEST_ALLOW_OPEN_PUBLISH", "true")) // stands in for an RTSP camera
	a := h.node("ingest-1")
	b := h.node("ingest-2")
	ag := rtsptest.NewAgent(fakeH264(t))
	if _, err := ag.Connect(cam.PublicURL()+"/front", gortsplib.ProtocolTCP); err != nil {
		t.Fatal(err)
	}
	runAgent(t, ag)
	camURL := cam.PublicURL() + "/front"

	h.putPlacement(events.Placement{Stream: "door", Host: "ingest-1", RTSPURL: a.PublicURL(), Epoch: 1, Mode: "pull",
		SourceURL: camURL, UpdatedAt: time.Now().UTC()})
	ctx := context.Background()
	if _, err := events.Publish(ctx, h.env.JS, "test", events.PullCommand{CommandID: "p-1", Host: "ingest-1", Stream: "door", SourceURL: camURL}); err != nil {
		t.Fatal(err)
	}
	att := waitEvent(h, events.TypePublisherAttached, 10*time.Second, func(e events.PublisherAttached) bool { return e.Host == "ingest-1" })
	if att.Mode != "pull" || att.Stream != "door" {
		t.Fatalf("publisher_attached %+v", att)
	}
	r := read(t, a.PublicURL()+"/door", gortsplib.ProtocolTCP)
	waitPackets(t, r, 30)

	h.putPlacement(events.Placement{Stream: "door", Host: "ingest-2", RTSPURL: b.PublicURL(), Epoch: 2, Mode: "pull",
		SourceURL: camURL, MigrationID: "m-p", FromHost: "ingest-1", Deadline: time.Now().Add(time.Minute), UpdatedAt: time.Now().UTC()})
	if _, err := events.Publish(ctx, h.env.JS, "test", events.PullCommand{CommandID: "p-2", Host: "ingest-2", Stream: "door", SourceURL: camURL, MigrationID: "m-p"}); err != nil {
		t.Fatal(err)
	}
	ceased := waitEvent(h, events.TypeStreamCeased, 10*time.Second, func(e events.StreamCeased) bool { return e.Stream == "door" })
	if ceased.Host != "ingest-1" || ceased.NewHost != "ingest-2" || ceased.MigrationID != "m-p" || ceased.ReadersRelayed != 1 {
		t.Fatalf("stream_ceased %+v", ceased)
	}
	if det := waitEvent(h, events.TypePublisherDetached, 5*time.Second, func(e events.PublisherDetached) bool { return e.Host == "ingest-1" }); det.MigrationID != "m-p" {
		t.Errorf("detach from ingest-1: migration %q, want m-p (the move that took the pull away)", det.MigrationID)
	}
	waitPackets(t, r, 50)
	select {
	case <-r.Done():
		t.Fatalf("reader disconnected: %v", r.Err())
	default:
	}
	m := r.A.Report().Medias[0]
	t.Logf("reader across the pull-mode move: %d frames, %d missing, %d dup, ssrc changes %d, seq gaps %d, ts backwards %d, longest gap %.0f ms",
		m.Frames, m.FramesMissing, m.DuplicateFrames, m.SSRCChanges, m.SeqGaps, m.TSBackwards, m.LongestGapMS)
	if m.SSRCChanges != 0 || m.SeqGaps != 0 || m.SeqBackwards != 0 || m.TSBackwards != 0 {
		t.Errorf("reader: %+v", m)
	}
	if got := a.camera.Running(); len(got) != 0 {
		t.Errorf("old host still pulls the camera: %v", got)
	}
	// stop command, after the move's deadline: the detach belongs to no
	// migration (m-p ended), so m-p's trace gets no stray step
	h.putPlacement(events.Placement{Stream: "door", Host: "ingest-2", RTSPURL: b.PublicURL(), Epoch: 2, Mode: "pull",
		SourceURL: camURL, MigrationID: "m-p", FromHost: "ingest-1", Deadline: time.Now().Add(-time.Second), UpdatedAt: time.Now().UTC()})
	if _, err := events.Publish(ctx, h.env.JS, "test", events.PullCommand{CommandID: "p-3", Host: "ingest-2", Stream: "door", SourceURL: camURL, Stop: true}); err != nil {
		t.Fatal(err)
	}
	if det := waitEvent(h, events.TypePublisherDetached, 5*time.Second, func(e events.PublisherDetached) bool { return e.Host == "ingest-2" }); det.MigrationID != "" {
		t.Errorf("detach from ingest-2 after m-p ended: migration %q, want none", det.MigrationID)
	}
}

// TestPullCameraReconnect: the camera a host pulls goes away (its server dies)
// and comes back at the same address as a new encoder (its own sequence
// space). The host reconnects with backoff and splices the new source in at
// its first keyframe; the reader on the host stays connected throughout and
// sees one SSRC, contiguous sequence numbers and timestamps that never go back.
func TestPullCameraReconnect(t *testing.T) {
	h := newHarness(t)
	camAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	camera := func(id string) (*App, *rtsptest.Agent) {
		cam := h.node(id, withEnv("INGEST_ALLOW_OPEN_PUBLISH", "true"), withEnv("INGEST_RTSP_ADDR", camAddr))
		ag := rtsptest.NewAgent(fakeH264(t))
		if _, err := ag.Connect("rtsp://"+camAddr+"/front", gortsplib.ProtocolTCP); err != nil {
			t.Fatal(err)
		}
		runAgent(t, ag)
		return cam, ag
	}
	cam, _ := camera("camera-1")
	a := h.node("ingest-1")
	camURL := "rtsp://" + camAddr + "/front"
	h.putPlacement(events.Placement{Stream: "door", Host: "ingest-1", RTSPURL: a.PublicURL(), Epoch: 1, Mode: "pull",
		SourceURL: camURL, UpdatedAt: time.Now().UTC()})
	if _, err := events.Publish(context.Background(), h.env.JS, "test", events.PullCommand{CommandID: "p-1", Host: "ingest-1", Stream: "door", SourceURL: camURL}); err != nil {
		t.Fatal(err)
	}
	r := read(t, a.PublicURL()+"/door", gortsplib.ProtocolTCP)
	waitPackets(t, r, 30)

	cam.Abort() // the camera dies: the pull loses its source
	<-cam.Done()
	lost := time.Now()
	before := r.Packets()
	camera("camera-1b") // and comes back, a new encoder at the same address
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if n := r.Packets(); n < before+30 {
			return fmt.Errorf("reader at %d packets, %d before the camera died", n, before)
		}
		return nil
	})
	t.Logf("frames flow again %v after the camera died", time.Since(lost))
	select {
	case <-r.Done():
		t.Fatalf("reader disconnected: %v", r.Err())
	default:
	}
	m := r.A.Report().Medias[0]
	t.Logf("reader across the camera's restart: %d frames, ssrc changes %d, seq gaps %d, seq backwards %d, ts backwards %d, longest gap %.0f ms",
		m.Frames, m.SSRCChanges, m.SeqGaps, m.SeqBackwards, m.TSBackwards, m.LongestGapMS)
	if m.SSRCChanges != 0 || m.SeqGaps != 0 || m.SeqBackwards != 0 || m.TSBackwards != 0 {
		t.Errorf("reader: %+v", m)
	}
	if got := a.camera.Running(); len(got) != 1 {
		t.Errorf("pulls running: %v, want the door's", got)
	}
}
