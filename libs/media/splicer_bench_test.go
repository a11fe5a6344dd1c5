package media

import (
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// BenchmarkSplicerSameSeq measures the per-packet cost of the overlap path: two
// SameSeqSpace feeds write the same packets, one copy is written, the other dropped.
// One op is one Write call.
func BenchmarkSplicerSameSeq(b *testing.B) {
	src, err := NewFakeH264(FakeConfig{FPS: 25, GOP: 25, Bitrate: 2_000_000})
	if err != nil {
		b.Fatal(err)
	}
	var pkts []*rtp.Packet
	for len(pkts) < 4096 {
		_, p, _ := src.NextFrame()
		pkts = append(pkts, p...)
	}
	var written int
	sp := NewSplicer(src.Description(), func(int, *rtp.Packet, time.Time) { written++ },
		SplicerOptions{RetireAfter: 1 << 30})
	if err := sp.AddFeed("agent-old", SameSeqSpace, nil); err != nil {
		b.Fatal(err)
	}
	if err := sp.AddFeed("agent-new", SameSeqSpace, nil); err != nil {
		b.Fatal(err)
	}
	// shift the packets' sequence numbers forward by len(pkts) on each pass so the
	// splicer always sees new sequence numbers
	seqs := make([]uint16, len(pkts))
	for i, p := range pkts {
		seqs[i] = p.SequenceNumber
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := (i / 2) % len(pkts)
		p := pkts[j]
		if i%2 == 0 && j == 0 && i > 0 {
			for k, q := range pkts {
				seqs[k] += uint16(len(pkts))
				q.SequenceNumber = seqs[k]
			}
		}
		feed := "agent-old"
		if i%2 == 1 {
			feed = "agent-new"
		}
		if err := sp.Write(feed, 0, p); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	st := sp.Stats()
	if st.Late != 0 {
		b.Fatalf("late packets: %+v", st)
	}
	b.ReportMetric(float64(st.Duplicates)/float64(b.N), "dups/op")
	fmt.Printf("BenchmarkSplicerSameSeq: N=%d written=%d duplicates=%d ns/op=%.1f\n",
		b.N, written, st.Duplicates, float64(b.Elapsed().Nanoseconds())/float64(b.N))
}
