package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl/stack"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
)

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// BenchmarkChainLatency moves one stream 100 times by scheduling maintenance
// on its current host (then cancelling it) and measures, per migration, the
// time from the maintenance event to the old host's stream_ceased, and the
// frames a viewer on the edge lost over all of them.
func BenchmarkChainLatency(b *testing.B) {
	const migrations = 100
	for i := 0; i < b.N; i++ {
		s := startStack(b, stack.Options{MinDeadline: 5 * time.Second, UDP: true})
		b.StopTimer()
		runChainBench(b, s, migrations)
		s.Stop()
	}
}

func runChainBench(b *testing.B, s *stack.Stack, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.StartPublisher(ctx, "cam-b", "agent-b"); err != nil {
		b.Fatal(err)
	}
	host := placedOn(b, s, "cam-b")
	// two viewers on the edge, one reading over TCP and one over UDP
	viewers := map[string]*stack.Viewer{
		"tcp": watchFlowing(b, s, "cam-b", stack.WatchOptions{}),
		"udp": watchFlowing(b, s, "cam-b", stack.WatchOptions{UDP: true}),
	}
	chain, err := stack.WatchChain(ctx, s.JS, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer chain.Stop()
	var ceased, completed []float64
	type round struct {
		at       time.Time // maintenance scheduled
		mig      string
		from, to string
	}
	var rounds []round
	for i := 0; i < n; i++ {
		mw := scheduleMaintenance(b, s, host, 5*time.Second)
		sched, _ := waitSeen(b, chain, events.TypeMaintenanceScheduled, stack.Field("maintenance_id", mw.MaintenanceID))
		var done stack.Seen
		testutil.CheckFor(b, 30*time.Second, 20*time.Millisecond, func() error {
			var ok bool
			if done, ok = chain.First(events.TypeMigrationCompleted, func(e stack.Seen) bool {
				return e.Str("stream") == "cam-b" && e.Str("from_host") == host && e.At.After(sched.At)
			}); !ok {
				return fmt.Errorf("migration %d not completed", i)
			}
			return nil
		})
		mig := done.Str("migration_id")
		c, _ := waitSeen(b, chain, events.TypeStreamCeased, stack.Field("migration_id", mig))
		ceased = append(ceased, float64(c.At.Sub(sched.At).Microseconds())/1000)
		completed = append(completed, float64(done.At.Sub(sched.At).Microseconds())/1000)
		edgeSwitched(b, chain, mig)
		rounds = append(rounds, round{at: sched.At, mig: mig, from: host, to: done.Str("to_host")})
		// Put the host back in service for later rounds.
		if _, err := events.Publish(ctx, s.JS, "bench", events.MaintenanceCancelled{MaintenanceID: mw.MaintenanceID, Host: host, Reason: "bench"}); err != nil {
			b.Fatal(err)
		}
		host = done.Str("to_host")
	}
	for _, v := range viewers {
		settle(b, v, 25)
	}
	reports := map[string]stack.ViewReport{}
	var lost int64
	for name, v := range viewers {
		rep := v.Close()
		reports[name] = rep
		lost += rep.Missing
		// Each skip of the viewer's frame counter belongs to the migration
		// scheduled last before it arrived: print them so a loss can be read
		// in that migration's logs (FERRY_KEEP_DATA=1 keeps them).
		for _, sk := range rep.Full.Video().Skips {
			r := round{mig: "(before the first migration)"}
			for _, c := range rounds {
				if !c.at.After(sk.At) {
					r = c
				}
			}
			fmt.Printf("chain: %s viewer: %d frames lost (%d..%d) at %s, %.0f ms after migration %s (%s -> %s) was scheduled\n",
				name, sk.To-sk.From-1, sk.From, sk.To, sk.At.UTC().Format("15:04:05.000"), float64(sk.At.Sub(r.at).Microseconds())/1000, r.mig, r.from, r.to)
		}
	}
	sort.Float64s(ceased)
	sort.Float64s(completed)
	b.ReportMetric(percentile(ceased, 0.5), "ceased-p50-ms")
	b.ReportMetric(percentile(ceased, 0.99), "ceased-p99-ms")
	b.ReportMetric(percentile(completed, 0.5), "completed-p50-ms")
	b.ReportMetric(float64(lost)/float64(n), "frames-lost/migration")
	fmt.Printf("chain: %d migrations; maintenance -> old host ceased p50 %.1f ms p99 %.1f ms max %.1f ms; completed p50 %.1f ms\n",
		n, percentile(ceased, 0.5), percentile(ceased, 0.99), ceased[len(ceased)-1], percentile(completed, 0.5))
	for _, name := range []string{"tcp", "udp"} {
		rep := reports[name]
		fmt.Printf("chain: %s viewer on the edge: %d frames, %d lost (%.2f per migration), %d duplicated, longest gap %.1f ms, %d SSRC changes, %d seq gaps\n",
			name, rep.Frames, rep.Missing, float64(rep.Missing)/float64(n), rep.Duplicates, rep.MaxGapMS, rep.SSRCChanges, rep.SeqGaps)
	}
}
func waitSeen(tb testing.TB, chain *stack.Chain, typ string, match func(stack.Seen) bool) (stack.Seen, bool) {
	tb.Helper()
	var e stack.Seen
	testutil.CheckFor(tb, 30*time.Second, 20*time.Millisecond, func() error {
		var ok bool
		if e, ok = chain.First(typ, match); !ok {
			return fmt.Errorf("no %s", typ)
		}
		return nil
	})
	return e, true
}
