package engine

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/subject"
)

// BenchmarkChoose measures initial placements answered through
// placement.v1.choose (request, validation, host choice, compare-and-set
// Create of the placement, session write, token), in batches of 500 new
// streams: sequentially against one replica, and from 8 concurrent
// clients against two replicas.
func BenchmarkChoose(b *testing.B) {
	for _, bc := range []struct {
		name              string
		replicas, clients int
	}{{"1replica-sequential", 1, 1}, {"2replicas-8clients", 2, 8}} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b)
			for i := range 5 {
				h.host(fmt.Sprintf("h%d", i+1), fmt.Sprintf("zone-%d", i%3), 10000)
			}
			for i := range bc.replicas {
				h.start(testConfig(fmt.Sprintf("p%d", i)), false)
			}
			const batch = 500
			total := 0
			var elapsed time.Duration
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				start := time.Now()
				var wg sync.WaitGroup
				errs := make(chan error, bc.clients)
				for c := range bc.clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						cl := h.client()
						for i := c; i < batch; i += bc.clients {
							if _, err := cl.Choose(h.ctx, choose(fmt.Sprintf("b%d-cam-%d", n, i), fmt.Sprintf("agent-%d", i%50))); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
				total += batch
			}
			rate := float64(total) / elapsed.Seconds()
			b.ReportMetric(rate, "decisions/s")
			b.ReportMetric(0, "ns/op")
			fmt.Printf("placement choose %s: %d initial placements in %v = %.0f decisions/s\n", bc.name, total,
				elapsed.Round(time.Millisecond), rate)
		})
	}
}

// BenchmarkEvacuate1000 measures the decisions of evacuating 1,000 streams
// from one of 5 hosts (decisions written, not media moved): from the event
// (an outage prediction, unpaced, or a host_down) to every placement
// rewritten (compare-and-set) and to every reassigned event and migration
// record stored.
func BenchmarkEvacuate1000(b *testing.B) {
	for _, kind := range []string{"outage_predicted", "host_down"} {
		b.Run(kind, func(b *testing.B) {
			var decided, announced time.Duration
			for n := 0; n < b.N; n++ {
				d, a := evacuate1000(b, kind)
				decided += d
				announced += a
			}
			per := decided / time.Duration(b.N)
			perAll := announced / time.Duration(b.N)
			b.ReportMetric(float64(per.Milliseconds()), "ms-to-decide-1000")
			b.ReportMetric(float64(perAll.Milliseconds()), "ms-to-announce-1000")
			b.ReportMetric(1000/per.Seconds(), "decisions/s")
			b.ReportMetric(0, "ns/op")
			fmt.Printf("placement evacuate 1000 streams from 1 of 5 hosts (%s): decisions written in %v (%.0f decisions/s), reassigned+records in %v\n",
				kind, per.Round(time.Millisecond), 1000/per.Seconds(), perAll.Round(time.Millisecond))
		})
	}
}

func evacuate1000(b *testing.B, kind string) (decided, announced time.Duration) {
	b.StopTimer()
	h := newHarness(b)
	for i := range 5 {
		h.host(fmt.Sprintf("h%d", i+1), fmt.Sprintf("zone-%d", i%3), 1000)
	}
	h.seedMany(1000, "h1", "agent-1")
	cfg := testConfig("p1")
	cfg.Pace = 0
	r := h.start(cfg, false)
	if r.s.ix.countOn("h1") != 1000 {
		b.Fatalf("seeded %d", r.s.ix.countOn("h1"))
	}
	r.lead(h)
	b.StartTimer()
	start := time.Now()
	if kind == "host_down" {
		h.hostDown("h1")
	} else {
		h.predict("h1", time.Minute)
	}
	label := "evacuation"
	if kind == "host_down" {
		label = "host_down"
	}
	for counter(b, r.s.met.decisions.WithLabelValues(label)) < 1000 {
		if time.Since(start) > time.Minute {
			b.Fatal("evacuation did not finish in a minute")
		}
		time.Sleep(time.Millisecond)
	}
	decided = time.Since(start)
	for {
		subs := h.subjects("FERRY_EVENTS", subject.Reassigned("*"))
		if len(subs) == 1000 && r.s.ix.countOn("h1") == 0 {
			break
		}
		if time.Since(start) > time.Minute {
			b.Fatalf("%d reassigned after a minute", len(subs))
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Records are written right after each reassigned.
	for len(h.migrations()) < 1000 {
		if time.Since(start) > time.Minute {
			b.Fatal("records missing after a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
	announced = time.Since(start)
	b.StopTimer()
	return decided, announced
}
