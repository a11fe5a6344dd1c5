package app

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/pion/rtp"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/media"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/ingest/internal/rtsptest"
	"github.com/ferrystream/ferry/services/ingest/internal/stream"
)

// clockCheck records, per media, the offset between the NTP time a stream
// hands gortsplib (what its RTCP sender reports carry) and the source's own
// time of each packet (frame counter / rate).
type clockCheck struct {
	mu      sync.Mutex
	period  []time.Duration // per media: source time per counter step
	offsets [][]time.Duration
}

func (c *clockCheck) output(_ *stream.Stream, mi int, pkt *rtp.Packet, ntp time.Time) {
	n, ok := media.FrameCounter(pkt.Payload)
	if !ok || mi >= len(c.period) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	off := ntp.Sub(time.Unix(0, 0)) - time.Duration(n)*c.period[mi]
	c.offsets[mi] = append(c.offsets[mi], off)
}

// check returns the spread of the offsets of each media (one clock: ~0) and the
// difference between the media's offsets (audio/video sync).
func (c *clockCheck) check() (spread []time.Duration, skew time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var means []float64
	for _, offs := range c.offsets {
		lo, hi := time.Duration(math.MaxInt64), time.Duration(math.MinInt64)
		var sum float64
		for _, o := range offs {
			lo, hi = min(lo, o), max(hi, o)
			sum += float64(o)
		}
		spread = append(spread, hi-lo)
		if len(offs) > 0 {
			means = append(means, sum/float64(len(offs)))
		}
	}
	if len(means) == 2 {
		skew = time.Duration(math.Abs(means[0] - means[1]))
	}
	return spread, skew
}

// TestHandover moves a stream between two ingest hosts while readers watch on
// the old host, over TCP and UDP: the agent-like publisher dual-writes one
// sequence space to both hosts, the old host relays back from the new one and
// closes the old publisher session; the readers see 0 frames missing, 0
// duplicated, one SSRC, contiguous sequence numbers and monotonic timestamps.
// At the placement deadline the readers get a REDIRECT to the new host.
// The camera case adds a G.711 track: both tracks continuous, and the NTP
// times behind the sender reports stay on one clock with audio and video in
// sync.
func TestHandover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		camera bool
	}{
		{"h264", false},
		{"h264+g711", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testHandover(t, tc.camera)
		})
	}
}

func testHandover(t *testing.T, camera bool) {
	h := newHarness(t)
	var src media.Source = fakeH264(t)
	clocks := &clockCheck{period: []time.Duration{40 * time.Millisecond}, offsets: make([][]time.Duration, 1)}
	if camera {
		cam, err := media.NewCameraSource(media.FakeConfig{FPS: 25, GOP: 25}, media.FakeConfig{})
		if err != nil {
			t.Fatal(err)
		}
		src = cam
		clocks = &clockCheck{period: []time.Duration{40 * time.Millisecond, 20 * time.Millisecond}, offsets: make([][]time.Duration, 2)}
	}
	a := h.nodeWith("ingest-1", Deps{OnOutput: clocks.output}, withUDP(t))
	b := h.node("ingest-2", withUDP(t))
	h.place("cam-1", a, "s-1", "", "", time.Time{})

	ag := rtsptest.NewAgent(src)
	oldConn, err := ag.Connect(publishURL(a, "cam-1", h.token("cam-1", "ingest-1", "s-1", "", time.Minute)), gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	runAgent(t, ag)
	readers := map[string]*rtsptest.Reader{}
	for _, tr := range []gortsplib.Protocol{gortsplib.ProtocolTCP, gortsplib.ProtocolUDP} {
		readers[transportName(tr)] = read(t, a.PublicURL()+"/cam-1", tr)
	}
	for _, r := range readers {
		waitPackets(t, r, 50)
	}

	// placement moves the stream; the agent connects to the new host and
	// sends the same packets to both until the old host lets go
	deadline := time.Now().Add(8 * time.Second)
	pl := h.place("cam-1", b, "s-1", "m-1", "ingest-1", deadline)
	moved := time.Now()
	if _, err := ag.Connect(publishURL(b, "cam-1", h.token("cam-1", "ingest-2", "s-1", "m-1", time.Minute)), gortsplib.ProtocolUDP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-oldConn.Done():
		t.Logf("old host closed the old publisher session %v after the move", time.Since(moved))
	case <-time.After(5 * time.Second):
		t.Fatal("the old host did not close the old publisher session")
	}
	att := waitEvent(h, events.TypePublisherAttached, 5*time.Second, func(e events.PublisherAttached) bool { return e.Host == "ingest-2" })
	if att.MigrationID != pl.MigrationID {
		t.Fatalf("publisher_attached on the new host: %+v", att)
	}
	ceased := waitEvent(h, events.TypeStreamCeased, 5*time.Second, func(e events.StreamCeased) bool { return e.Stream == "cam-1" })
	if ceased.Host != "ingest-1" || ceased.NewHost != "ingest-2" || ceased.MigrationID != "m-1" || ceased.ReadersRelayed != 2 {
		t.Fatalf("stream_ceased = %+v", ceased)
	}
	waitEvent(h, events.TypePublisherDetached, 5*time.Second, func(e events.PublisherDetached) bool { return e.Host == "ingest-1" })

	// the readers keep receiving through the relay: 0 lost, 0 duplicated
	waitAll(t, readers, 75)
	for name, r := range readers {
		rep := r.A.Report()
		if err := rtsptest.Continuity(rep); err != nil {
			t.Errorf("%s reader: %v", name, err)
		}
		for _, m := range rep.Medias {
			t.Logf("%s reader media %d (%s): %d frames, %d missing, %d dup, ssrc changes %d, seq gaps %d, longest gap %.1f ms, max ts step %.1f ms, lost %d",
				name, m.Media, m.Codec, m.Frames, m.FramesMissing, m.DuplicateFrames, m.SSRCChanges, m.SeqGaps, m.LongestGapMS, m.MaxTSStepMS, r.Lost())
		}
		if r.Lost() != 0 || r.DecodeErrors() != 0 {
			t.Errorf("%s reader: gortsplib reported %d lost, %d decode errors", name, r.Lost(), r.DecodeErrors())
		}
	}
	spread, skew := clocks.check()
	t.Logf("sender-report clock: per-media spread %v, audio/video skew %v", spread, skew)
	for i, s := range spread {
		if s > 5*time.Millisecond {
			t.Errorf("media %d: NTP times drift by %v from the source clock across the switch", i, s)
		}
	}
	if camera && skew > 40*time.Millisecond {
		t.Errorf("audio and video NTP clocks differ by %v", skew)
	}

	// at the deadline the readers still on the old host are sent to the new one
	for name, r := range readers {
		select {
		case <-r.Done():
		case <-time.After(time.Until(deadline) + 5*time.Second):
			t.Fatalf("%s reader not closed at the deadline", name)
		}
		if got := r.Redirects(); len(got) != 1 || got[0] != b.PublicURL()+"/cam-1" {
			t.Errorf("%s reader REDIRECTs: %v, want %s", name, got, b.PublicURL()+"/cam-1")
		}
	}
	testutil.CheckFor(t, 3*time.Second, 50*time.Millisecond, func() error {
		if a.Node().Table().Get("cam-1") != nil {
			return fmt.Errorf("the old host still has the stream")
		}
		return nil
	})
	// the new host carries on
	r := read(t, b.PublicURL()+"/cam-1", gortsplib.ProtocolTCP)
	waitPackets(t, r, 25)
}

// TestHandoverNoReaders: without readers the old host closes the publisher as
// soon as the new one has it, and drops the stream.
func TestHandoverNoReaders(t *testing.T) {
	h := newHarness(t)
	a := h.node("ingest-1")
	b := h.node("ingest-2")
	ag, oldConn := h.publish(a, "cam-1", "s-1")
	h.place("cam-1", b, "s-1", "m-2", "ingest-1", time.Now().Add(time.Minute))
	if _, err := ag.Connect(publishURL(b, "cam-1", h.token("cam-1", "ingest-2", "s-1", "m-2", time.Minute)), gortsplib.ProtocolTCP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-oldConn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("old publisher not closed")
	}
	ceased := waitEvent(h, events.TypeStreamCeased, 5*time.Second, func(e events.StreamCeased) bool { return e.MigrationID == "m-2" })
	if ceased.ReadersRelayed != 0 {
		t.Fatalf("stream_ceased %+v", ceased)
	}
	testutil.CheckFor(t, 3*time.Second, 50*time.Millisecond, func() error {
		if a.Node().Table().Get("cam-1") != nil {
			return fmt.Errorf("old host still has the stream")
		}
		return nil
	})
}

// TestHandoverNewHostNeverAttaches: the stream is placed on another host but
// the publisher never arrives there. The old host keeps serving its readers
// until the move's deadline, then closes the publisher, reports stream_ceased
// with no reader relayed, sends its readers a REDIRECT to the new host and
// drops the stream. Nothing happens before the deadline.
func TestHandoverNewHostNeverAttaches(t *testing.T) {
	h := newHarness(t)
	a := h.node("ingest-1")
	b := h.node("ingest-2")
	_, conn := h.publish(a, "cam-1", "s-1")
	r := read(t, a.PublicURL()+"/cam-1", gortsplib.ProtocolTCP)
	waitPackets(t, r, 25)

	deadline := time.Now().Add(2 * time.Second)
	h.place("cam-1", b, "s-1", "m-2", "ingest-1", deadline)
	before := r.Packets()
	select {
	case <-conn.Done():
		t.Fatal("the publisher was closed before the deadline, with no publisher on the new host")
	case <-r.Done():
		t.Fatal("the reader was closed before the deadline")
	case <-time.After(time.Until(deadline) - 500*time.Millisecond):
	}
	if r.Packets() <= before {
		t.Fatal("the reader got nothing between the move and its deadline") // the local publisher still serves it
	}

	select {
	case <-r.Done():
	case <-time.After(time.Until(deadline) + 5*time.Second):
		t.Fatal("reader not closed at the deadline")
	}
	if !time.Now().After(deadline) {
		t.Fatalf("reader closed %v before the deadline", time.Until(deadline))
	}
	if got := r.Redirects(); len(got) != 1 || got[0] != b.PublicURL()+"/cam-1" {
		t.Errorf("REDIRECTs: %v, want %s", got, b.PublicURL()+"/cam-1")
	}
	select {
	case <-conn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the old publisher was not closed at the deadline")
	}
	ceased := waitEvent(h, events.TypeStreamCeased, 5*time.Second, func(e events.StreamCeased) bool { return e.MigrationID == "m-2" })
	if ceased.ReadersRelayed != 0 || ceased.NewHost != "ingest-2" {
		t.Errorf("stream_ceased %+v", ceased)
	}
	testutil.CheckFor(t, 3*time.Second, 50*time.Millisecond, func() error {
		if a.Node().Table().Get("cam-1") != nil {
			return fmt.Errorf("the old host still has the stream")
		}
		return nil
	})
}

// TestDetachCarriesItsMigration: two moves in a row, A→B (m-2) then B→A
// (m-3). The publisher arrived on B with m-2; its detach from B belongs to
// m-3, the move that took it away, and says so; a detach after m-3 ended
// names no migration.
func TestDetachCarriesItsMigration(t *testing.T) {
	h := newHarness(t)
	a := h.node("ingest-1")
	b := h.node("ingest-2")
	ag, oldConn := h.publish(a, "cam-1", "s-1")
	h.place("cam-1", b, "s-1", "m-2", "ingest-1", time.Now().Add(time.Minute))
	onB, err := ag.Connect(publishURL(b, "cam-1", h.token("cam-1", "ingest-2", "s-1", "m-2", time.Minute)), gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-oldConn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("publisher on ingest-1 not closed")
	}
	first := waitEvent(h, events.TypePublisherDetached, 5*time.Second, func(e events.PublisherDetached) bool { return e.Host == "ingest-1" })
	if first.MigrationID != "m-2" {
		t.Errorf("detach from ingest-1: migration %q, want m-2", first.MigrationID)
	}
	h.place("cam-1", a, "s-1", "m-3", "ingest-2", time.Now().Add(time.Minute))
	onA, err := ag.Connect(publishURL(a, "cam-1", h.token("cam-1", "ingest-1", "s-1", "m-3", time.Minute)), gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-onB.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("publisher on ingest-2 not closed")
	}
	second := waitEvent(h, events.TypePublisherDetached, 5*time.Second, func(e events.PublisherDetached) bool { return e.Host == "ingest-2" })
	if second.MigrationID != "m-3" {
		t.Errorf("detach from ingest-2: migration %q, want m-3 (the move that took it away)", second.MigrationID)
	}
	// m-3 has ended (its deadline passed); the publisher then leaves on its
	// own: that detach belongs to no migration, not to m-3.
	h.place("cam-1", a, "s-1", "m-3", "ingest-2", time.Now().Add(-time.Second))
	onA.Close()
	third := waitEvent(h, events.TypePublisherDetached, 5*time.Second, func(e events.PublisherDetached) bool { return e.Host == "ingest-1" && e.At.After(first.At) })
	if third.MigrationID != "" {
		t.Errorf("detach from ingest-1 after m-3 ended: migration %q, want none", third.MigrationID)
	}
}
