package evaltrace

import (
	"fmt"
	"os"
	"testing"
)

// BenchmarkEval generates the default trace (200 hosts, 6 hours, a sample
// every 5 s) and prints the evaluation figures: recall of fast leaks, lead
// time p10/p50, false predictions per 24 host-hours.
func BenchmarkEval(b *testing.B) {
	c := DefaultGen()
	var rep Report
	for b.Loop() {
		rep = Run(c, DefaultOptions())
	}
	b.ReportMetric(100*rep.Recall, "recall_%")
	b.ReportMetric(rep.LeadP10S, "lead_p10_s")
	b.ReportMetric(rep.LeadP50S, "lead_p50_s")
	b.ReportMetric(rep.FalsePer24hStable, "false/24h_stable")
	b.ReportMetric(100*rep.RecallAllLeaks, "recall_all_leaks_%")
	fmt.Fprintf(os.Stdout, "\n")
	_ = rep.WriteText(os.Stdout)
	_ = rep.WriteJSON(os.Stdout)
}
