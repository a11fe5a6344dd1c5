package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/services/placement/internal/fleet"
)

// BenchmarkPick measures one host choice as the decider makes it for every
// stream it moves (a fresh fleet snapshot, then index.pick and release) on
// fleets of 100, 1,000 and 10,000 hosts holding 100 streams each: the part
// of a decision's CPU that grows with the fleet (docs/scale.md).
func BenchmarkPick(b *testing.B) {
	for _, hosts := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) {
			now := time.Now().UTC()
			v := fleet.NewView(fleet.Config{StaleAfter: time.Minute, MaxCapacityStreams: 100000, EvacuationLead: 10 * time.Minute,
				DefaultCapacityStreams: 150}, zerolog.Nop(), func() time.Time { return now })
			ix := newIndex()
			for i := range hosts {
				h := fmt.Sprintf("ingest-%05d", i)
				v.ApplyRecord(h, &events.HostRecord{Host: h, RTSPURL: "rtsp://" + h + ":8554", Zone: fmt.Sprintf("zone-%d", i%3),
					Role: "origin", CapacityStreams: 150, Streams: 100, Status: "ok", StartedAt: now, UpdatedAt: now})
				for s := range 100 {
					p := events.Placement{Stream: fmt.Sprintf("cam-%d-%d", i, s), Host: h, ClientID: fmt.Sprintf("agent-%d-%d", i, s)}
					ix.apply(p.Stream, &p, uint64(i*100+s+1))
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				_, res, err := ix.pick(v.Snapshot(), "agent-x", "ingest-00000", 4_000_000)
				if err != nil {
					b.Fatal(err)
				}
				ix.release(res)
			}
		})
	}
}
