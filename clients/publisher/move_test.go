package publisher_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrystream/ferry/clients/publisher"
	"github.com/ferrystream/ferry/libs/testutil"
)

// TestMoveMakeBeforeBreak is the whole notice path on loopback, once per
// channel: two real ingest hosts (services/ingest), the real notifier, a
// placement stub, and the agent publishing fake H.264 with frame counters. A
// reader watches the stream on the old host. Placement reassigns the stream;
// the notifier tells the agent over the channels it declared (one, or all three:
// the agent acts on the first copy and ignores the others); the agent
// acks, connects to the new host, writes to both, and drops the old
// connection when the old host ends it (once it relays from the new host).
// The reader, still on the old host, must see every frame exactly once.
func TestMoveMakeBeforeBreak(t *testing.T) {
	for _, channels := range [][]string{
		{publisher.ChannelNATS}, {publisher.ChannelWebhook}, {publisher.ChannelSSE},
		{publisher.ChannelNATS, publisher.ChannelWebhook, publisher.ChannelSSE},
	} {
		t.Run(strings.Join(channels, "+"), func(t *testing.T) {
			env := testutil.NATS(t)
			outcomes := watchOutcomes(t, env)
			notifierURL := startNotifier(t, env)
			pl := newPlacementStub(t, env)
			pl.addHost("ingest-1", startIngest(t, env, "ingest-1"))
			pl.addHost("ingest-2", startIngest(t, env, "ingest-2"))

			ag := startAgent(t, env, func(c *publisher.Config) {
				c.Channels = channels
				c.NotifierURL = notifierURL
			}, nil)
			ag.waitHost(t, "ingest-1", 15*time.Second)
			ag.out.waitLine(t, time.Second, "published cam-1 to ingest-1 (session s-")
			rd := read(t, pl.hosts["ingest-1"]+"/cam-1")
			rd.waitFrames(t, 25, 10*time.Second)

			mig := pl.move("cam-1", "ingest-2", time.Now().Add(20*time.Second))
			acked := outcomes.wait(t, mig, "acked", 10*time.Second)
			if !slices.Contains(channels, acked.Channel) {
				t.Fatalf("acked via %q, want one of %v", acked.Channel, channels)
			}
			ag.waitHost(t, "ingest-2", 15*time.Second)
			ag.out.waitLine(t, time.Second, "moving cam-1 ingest-1 -> ingest-2 (migration "+mig+")")
			moved := ag.out.waitLine(t, time.Second, "moved cam-1 to ingest-2: overlap", "0 frames dropped")
			t.Log(moved)

			// keep watching after the move: the reader is now fed by the old
			// host's relay from the new one
			after := rd.report().Frames
			rd.waitFrames(t, after+50, 10*time.Second)
			rep := rd.report()
			t.Logf("reader on ingest-1: %d frames (%d..%d), %d missing, %d duplicated, %d SSRC changes, %d seq gaps, longest gap %.1f ms",
				rep.Frames, rep.FirstFrame, rep.LastFrame, rep.FramesMissing, rep.DuplicateFrames, rep.SSRCChanges, rep.SeqGaps, rep.LongestGapMS)
			if rep.FramesMissing != 0 || rep.DuplicateFrames != 0 {
				t.Fatalf("reader lost %d and duplicated %d frames across the move", rep.FramesMissing, rep.DuplicateFrames)
			}
			if rep.SeqGaps != 0 || rep.TSBackwards != 0 {
				t.Fatalf("reader saw %d sequence gaps and %d timestamps going backwards", rep.SeqGaps, rep.TSBackwards)
			}
			st := ag.Stats()
			if st.Moves != 1 || st.FramesDropped != 0 || st.Gaps != 0 || st.Uplinks != 1 {
				t.Fatalf("agent stats %+v", st)
			}
			if n := strings.Count(ag.out.String(), "moving cam-1"); n != 1 {
				t.Fatalf("the agent started %d moves for one notice sent over %v", n, channels)
			}
		})
	}
}
