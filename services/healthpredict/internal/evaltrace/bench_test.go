package evaltrace

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkEval generates the default trace (200 hosts, 6 hours, a sample
// every 5 s, seed 1) and prints the evaluation figures: recall of fast
// leaks, lead time p10/p50, false predictions per 24 host-hours, per kind.
func BenchmarkEval(b *testing.B) {
	c := DefaultGen()
	var rep Report
	for b.Loop() {
		rep = Run(c, DefaultOptions())
	}
	b.ReportMetric(100*rep.Recall, "recall_%")
	b.ReportMetric(rep.LeadMinS, "lead_min_s")
	b.ReportMetric(rep.LeadP10S, "lead_p10_s")
	b.ReportMetric(rep.LeadP50S, "lead_p50_s")
	b.ReportMetric(rep.FalsePer24hStable, "false/24h_stable")
	b.ReportMetric(rep.WorstFalsePer24h, "false/24h_worst_kind")
	b.ReportMetric(100*rep.RecallAllLeaks, "recall_all_leaks_%")
	fmt.Fprintf(os.Stdout, "\n")
	_ = rep.WriteText(os.Stdout)
	_ = rep.WriteJSON(os.Stdout)
}

// UnseenSeeds are seeds never run while tuning the predictor: they were
// evaluated once, after the last change to it (cycle_shape, CycleSteep,
// SurgeQuiet and the hold counted by buckets). Tuning used seeds 1–30 of
// the default trace and, at 300 hosts × 8 h, TuningSeeds and 101–105,
// 7919, 31337, 4242, 1009, 86753.
var UnseenSeeds = []uint64{1001, 1002, 1003, 1004, 1005}

// TuningSeeds were the unseen seeds of earlier versions (201–205, then
// 601–605, then 701–705; 901–905 were run once on a version between); the
// changes after each were tuned on them, so they are reported as tuning
// seeds.
var TuningSeeds = []uint64{201, 202, 203, 204, 205, 601, 602, 603, 604, 605, 701, 702, 703, 704, 705, 901, 902, 903, 904, 905}

// BenchmarkEvalUnseen evaluates larger traces (300 hosts, 8 hours each) on
// UnseenSeeds and prints one line per seed and the worst figures over them:
// recall of the leaks that crash within 10 min of their onset, the shortest
// lead measured and lead p10, the leak under a slow sawtooth, and false
// predictions per 24 host-hours of the worst never-crashing kind.
func BenchmarkEvalUnseen(b *testing.B) { benchSeeds(b, "unseen", UnseenSeeds, 300, 8*time.Hour) }

// BenchmarkEvalTuning is BenchmarkEvalUnseen on TuningSeeds.
func BenchmarkEvalTuning(b *testing.B) { benchSeeds(b, "tuning", TuningSeeds, 300, 8*time.Hour) }

// BenchmarkEvalSweep is BenchmarkEvalUnseen on seeds 1–30 of the default
// trace (200 hosts × 6 h, tuned on): with about 50 target crashes and 100
// host-hours per never-crashing kind per seed, one miss moves a seed's
// recall by 2 % and one false prediction its kind by 0.25 per 24
// host-hours, so the spread over 30 seeds shows how often a single
// default-size run falls short of a target by chance.
func BenchmarkEvalSweep(b *testing.B) {
	seeds := make([]uint64, 30)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	c := DefaultGen()
	benchSeeds(b, "default-trace sweep", seeds, c.Hosts, c.Duration)
}

func benchSeeds(b *testing.B, name string, seeds []uint64, hosts int, dur time.Duration) {
	reps := make([]Report, len(seeds))
	for b.Loop() {
		for i, s := range seeds {
			c := DefaultGen()
			c.Hosts, c.Duration, c.Seed = hosts, dur, s
			reps[i] = Run(c, DefaultOptions())
		}
	}
	var w strings.Builder
	minRecall, minP10, minLead, minGCSlow, worstFalse := 1.0, 1e9, 1e9, 1.0, 0.0
	targetPredicted, targetCrashes, below := 0, 0, 0
	worstKind := ""
	hours := 0.0
	gcPredicted, gcCrashes := 0, 0
	for i, rep := range reps {
		gc := kindStats(rep, KindMemLeakGCSlow)
		gcRecall := ratio(gc.Predicted, gc.Crashes)
		gcPredicted, gcCrashes = gcPredicted+gc.Predicted, gcCrashes+gc.Crashes
		fmt.Fprintf(&w, "seed %d: %.0f host-hours; recall %d/%d = %.1f%%, lead min %.0f s p10 %.0f s p50 %.0f s; %s %d/%d predicted ≥ %.0f s ahead (min %.0f s, p10 %.0f s); worst never-crashing kind %s %.3f false/24h; false per kind:",
			seeds[i], rep.HostHours, rep.TargetPredicted, rep.TargetCrashes, 100*rep.Recall, rep.LeadMinS, rep.LeadP10S, rep.LeadP50S,
			KindMemLeakGCSlow, gc.Predicted, gc.Crashes, rep.MinLeadS, gc.LeadMinS, gc.LeadP10S, rep.WorstFalseKind, rep.WorstFalsePer24h)
		for _, k := range rep.Kinds {
			if k.Crashes == 0 {
				fmt.Fprintf(&w, " %s %.2f", k.Kind, k.FalsePer24h)
			}
		}
		fmt.Fprintln(&w)
		hours += rep.HostHours
		targetPredicted, targetCrashes = targetPredicted+rep.TargetPredicted, targetCrashes+rep.TargetCrashes
		if rep.Recall < 0.95 {
			below++
		}
		minRecall = min(minRecall, rep.Recall)
		minP10 = min(minP10, rep.LeadP10S)
		minLead = min(minLead, rep.LeadMinS)
		minGCSlow = min(minGCSlow, gcRecall)
		if rep.WorstFalsePer24h >= worstFalse {
			worstFalse, worstKind = rep.WorstFalsePer24h, fmt.Sprintf("%s (seed %d)", rep.WorstFalseKind, seeds[i])
		}
	}
	fmt.Fprintf(&w, "%s seeds %v, %.0f host-hours: recall %d/%d = %.1f%% over all, ≥ %.1f%% per seed (%d below 95%%), lead min %.0f s, lead p10 ≥ %.0f s, %s %d/%d (≥ %.1f%% per seed), worst false %.3f per 24 host-hours (%s)\n",
		name, seeds, hours, targetPredicted, targetCrashes, 100*ratio(targetPredicted, targetCrashes), 100*minRecall, below,
		minLead, minP10, KindMemLeakGCSlow, gcPredicted, gcCrashes, 100*minGCSlow, worstFalse, worstKind)
	b.ReportMetric(100*minRecall, "min_recall_%")
	b.ReportMetric(minLead, "min_lead_s")
	b.ReportMetric(minP10, "min_lead_p10_s")
	b.ReportMetric(100*minGCSlow, "min_recall_leak_gc_slow_%")
	b.ReportMetric(worstFalse, "false/24h_worst_kind")
	fmt.Fprintf(os.Stdout, "\n%s", w.String())
}

func kindStats(r Report, kind string) KindStats {
	if i := slices.IndexFunc(r.Kinds, func(k KindStats) bool { return k.Kind == kind }); i >= 0 {
		return r.Kinds[i]
	}
	return KindStats{Kind: kind}
}
