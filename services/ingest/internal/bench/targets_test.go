package bench

import "testing"

// TestTargets: the restated targets are judged on the figures given, and the
// median of the rounds is what is judged.
func TestTargets(t *testing.T) {
	t.Parallel()
	round := func(ferry1x1, ferry100x1, ferryCPU float64) figures {
		return figures{
			"plain 1x1": {0.01, 12.0, 6.0}, "ferry 1x1": {0.01, ferry1x1, 7.0},
			"plain 100x1": {0.40, 12.0 + 99*110.0/1024, 16.0}, "ferry 100x1": {ferryCPU, ferry100x1, 20.0},
		}
	}
	// fixed +6.0 MB; per stream 1.2x the relay's; CPU +5 %
	pass := round(18.0, 18.0+99*132.0/1024, 0.42)
	// fixed +7.0 MB; per stream 1.5x; CPU +20 %
	miss := round(19.0, 19.0+99*165.0/1024, 0.48)
	want := map[string]bool{}
	for _, tg := range pass.targets() {
		want[tg.name] = tg.ok
	}
	if len(want) != 3 || !want["fixed rss at 1x1 (ferry-plain)"] || !want["rss per published stream (1x1->100x1)"] || !want["cpu at 100x1 (within 10%)"] {
		t.Fatalf("passing figures judged %v", want)
	}
	for _, tg := range miss.targets() {
		if tg.ok {
			t.Errorf("%s passes on missing figures (%s vs %s, limit %s)", tg.name, tg.ferry, tg.plain, tg.limit)
		}
	}
	// two passing rounds and one missing: the median passes
	for _, tg := range medianFigures([]figures{pass, miss, pass}).targets() {
		if !tg.ok {
			t.Errorf("median of pass, miss, pass: %s misses", tg.name)
		}
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
}
