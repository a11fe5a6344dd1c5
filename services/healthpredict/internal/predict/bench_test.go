package predict

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// BenchmarkObserve measures the tracker's cost per telemetry sample on a
// mix of hosts (a leak, a sawtooth, a noisy stable host) and prints the
// sustained rate one core handles.
func BenchmarkObserve(b *testing.B) {
	var ss []Sample
	for i, sh := range []shape{
		{mem: leak(0.3, 0.01, 1800, 3000)},
		{mem: sawtooth(noisy(0.4, 0.01), 0.2, 45)},
		{mem: noisy(0.5, 0.015), fds: noisy(0.3, 0.01)},
	} {
		ss = append(ss, sh.samples(fmt.Sprintf("h%d", i), 2*time.Hour, uint64(i))...)
	}
	n := 0
	start := time.Now()
	for b.Loop() {
		tr := NewTracker(Default())
		for _, s := range ss {
			if _, err := tr.Observe(s); err != nil {
				b.Fatal(err)
			}
		}
		n += len(ss)
	}
	per := time.Since(start) / time.Duration(n)
	b.ReportMetric(float64(per.Nanoseconds()), "ns/sample")
	b.ReportMetric(1e9/float64(per.Nanoseconds()), "samples/s")
	fmt.Fprintf(os.Stdout, "tracker alone (no decoding or schema validation): %v per sample, %.0f samples/s on one core\n",
		per, 1e9/float64(per.Nanoseconds()))
}
