package engine

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/services/placement/internal/fleet"
)

// benchFleet is a view of hosts hosts (3 zones, 150 streams of capacity)
// holding 100 streams each, one client per stream, and an index following it.
func benchFleet(b *testing.B, hosts int) (*fleet.View, *index) {
	b.Helper()
	now := time.Now().UTC()
	clock := func() time.Time { return now }
	v := fleet.NewView(fleet.Config{StaleAfter: time.Minute, MaxCapacityStreams: 100000, EvacuationLead: 10 * time.Minute,
		DefaultCapacityStreams: 150}, zerolog.Nop(), clock)
	ix := newIndex()
	ix.follow(v, clock, 4_000_000)
	for i := range hosts {
		h := fmt.Sprintf("ingest-%05d", i)
		v.ApplyRecord(h, &events.HostRecord{Host: h, RTSPURL: "rtsp://" + h + ":8554", Zone: fmt.Sprintf("zone-%d", i%3),
			Role: "origin", CapacityStreams: 150, Streams: 100, Status: "ok", StartedAt: now, UpdatedAt: now})
		for s := range 100 {
			p := events.Placement{Stream: fmt.Sprintf("cam-%d-%d", i, s), Host: h, ClientID: fmt.Sprintf("agent-%d-%d", i, s)}
			ix.apply(p.Stream, &p, uint64(i*100+s+1))
		}
	}
	return v, ix
}

// BenchmarkPick measures one host choice as the decider makes it for every
// stream it moves (pick, then release) on fleets of 100, 1,000 and 10,000
// hosts holding 100 streams each, two ways: "snapshot" is the choice as it
// was before the ranked index (a fresh fleet snapshot, then fleet.Pick over
// every host: O(hosts)), "ranked" is index.pick (the ranked hosts:
// O(zones × log hosts)). One op is one choice (docs/scale.md).
func BenchmarkPick(b *testing.B) {
	for _, hosts := range []int{100, 1000, 10000} {
		v, ix := benchFleet(b, hosts)
		for _, path := range []string{"snapshot", "ranked"} {
			b.Run(fmt.Sprintf("hosts=%d/%s", hosts, path), func(b *testing.B) {
				b.ReportAllocs()
				b.ResetTimer()
				for n := 0; n < b.N; n++ {
					var res *reservation
					var err error
					if path == "snapshot" {
						_, res, err = ix.pickScan(v.Snapshot(), "", "agent-x", "ingest-00000", 4_000_000)
					} else {
						_, res, err = ix.pick("", "agent-x", "ingest-00000", 4_000_000)
					}
					if err != nil {
						b.Fatal(err)
					}
					ix.release(res)
				}
			})
		}
	}
}

// BenchmarkEvacuationPicks measures the choices of a whole host's
// evacuation as the decider makes them: one pick per stream of the host,
// each kept (reserved) until the last, so every choice sees the ones
// before it. The figure reported is per choice (ns/choice).
func BenchmarkEvacuationPicks(b *testing.B) {
	for _, hosts := range []int{100, 1000, 10000} {
		_, ix := benchFleet(b, hosts)
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) {
			b.ReportAllocs()
			res := make([]*reservation, 0, 100)
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				for s := range 100 {
					_, r, err := ix.pick("", fmt.Sprintf("agent-0-%d", s), "ingest-00000", 4_000_000)
					if err != nil {
						b.Fatal(err)
					}
					res = append(res, r)
				}
				for _, r := range res {
					ix.release(r)
				}
				res = res[:0]
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/choice")
		})
	}
}

// BenchmarkStreamsOnHost: the streams of one host out of 100,000 placements
// on 1,000 hosts, as an evacuation asks for them: "scan" reads every
// placement (what index.on did), "set" the host's own set (what it does).
// Both hold the index lock meanwhile, so every pick waits for them.
func BenchmarkStreamsOnHost(b *testing.B) {
	ix := newIndex()
	for i := range 100_000 {
		p := events.Placement{Stream: fmt.Sprintf("cam-%06d", i), Host: fmt.Sprintf("ingest-%04d", i%1000)}
		ix.apply(p.Stream, &p, uint64(i+1))
	}
	scan := func(host string) []entry {
		ix.mu.Lock()
		defer ix.mu.Unlock()
		var out []entry
		for _, e := range ix.streams {
			if e.P.Host == host {
				out = append(out, e)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].P.Stream < out[j].P.Stream })
		return out
	}
	for _, tc := range []struct {
		name string
		on   func(string) []entry
	}{{"scan", scan}, {"set", ix.on}} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if got := tc.on("ingest-0500"); len(got) != 100 {
					b.Fatalf("%d streams on the host, want 100", len(got))
				}
			}
		})
	}
}
