package app

import (
	"fmt"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/ingest/internal/rtsptest"
)

// TestHandoverPingPong moves one stream back and forth between two hosts many
// times in a row (A→B→A→...), each move make-before-break, while a reader
// watches on an edge and another on the first host. Back-to-back moves find
// the old host still relaying the stream from the previous move when the
// publisher comes back: no frame may be lost or duplicated at either reader.
//
// With a short deadline, a move's deadline passes after the stream came back
// to its old host: the old host must not then redirect its readers and close
// the stream that has a publisher again (the chain benchmark lost 16 frames,
// and the publisher its new session, to exactly that).
func TestHandoverPingPong(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline time.Duration
	}{
		{"long deadline", time.Minute},
		{"deadline passes after the stream came back", 2500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) { pingPong(t, tc.deadline) })
	}
}

func pingPong(t *testing.T, deadline time.Duration) {
	moves := 8
	if testing.Short() {
		moves = 4
	}
	h := newHarness(t)
	a := h.node("ingest-1")
	b := h.node("ingest-2")
	e := h.node("edge-1", withRole("edge"))
	hosts := []*App{a, b}
	ag, conn := h.publish(a, "cam-1", "s-1")
	readers := map[string]*rtsptest.Reader{
		"edge":   read(t, e.PublicURL()+"/cam-1", gortsplib.ProtocolTCP),
		"origin": read(t, a.PublicURL()+"/cam-1", gortsplib.ProtocolTCP),
	}
	waitAll(t, readers, 50)

	// the publisher's new connection carries packets only 200 ms after RECORD:
	// the old host must not let the old one go before the new host has them
	ag.StartDelay = 200 * time.Millisecond
	for i := 1; i <= moves; i++ {
		to := hosts[i%2]
		from := hosts[(i+1)%2]
		mig := fmt.Sprintf("m-%d", i)
		h.putPlacement(events.Placement{Stream: "cam-1", Host: to.HostID(), RTSPURL: to.PublicURL(), Epoch: uint64(i + 1),
			MigrationID: mig, FromHost: from.HostID(), Deadline: time.Now().Add(deadline), SessionID: "s-1",
			Mode: "push", UpdatedAt: time.Now().UTC()})
		next, err := ag.Connect(publishURL(to, "cam-1", h.token("cam-1", to.HostID(), "s-1", mig, time.Minute)), gortsplib.ProtocolTCP)
		if err != nil {
			t.Fatalf("move %d: %v", i, err)
		}
		select {
		case <-conn.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("move %d: the old host %s did not let the publisher go", i, from.HostID())
		}
		conn = next
		waitAll(t, readers, 40)
	}
	if deadline < 10*time.Second {
		// every move's deadline passes; then the stream must still flow
		last := time.Now().Add(deadline)
		testutil.CheckFor(t, deadline+5*time.Second, 50*time.Millisecond, func() error {
			if time.Now().Before(last.Add(300 * time.Millisecond)) {
				return fmt.Errorf("the last deadline has not passed")
			}
			return nil
		})
	}
	waitAll(t, readers, 25)
	select {
	case <-conn.Done():
		t.Fatal("the publisher's session on the stream's home was closed")
	default:
	}
	for name, r := range readers {
		rep := r.A.Report()
		for _, m := range rep.Medias {
			t.Logf("%s reader: %d frames, %d missing, %d dup, ssrc changes %d, seq gaps %d, longest gap %.1f ms",
				name, m.Frames, m.FramesMissing, m.DuplicateFrames, m.SSRCChanges, m.SeqGaps, m.LongestGapMS)
		}
		if err := rtsptest.Continuity(rep); err != nil {
			t.Errorf("%s reader after %d moves: %v", name, moves, err)
		}
	}
}
