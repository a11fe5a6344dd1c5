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
			t.Errorf("%s passes on missing figures (%s vs %s, limit %s)", tg.name, tg.show(tg.ferry), tg.show(tg.plain), tg.show(tg.limit))
		}
	}
	// two passing rounds and one missing: the median round passes, and the
	// rounds' verdicts are listed; two missing: it misses
	for _, tg := range judge([][]target{pass.targets(), miss.targets(), pass.targets()}) {
		if !tg.ok || tg.rounds != "PASS MISS PASS" {
			t.Errorf("pass, miss, pass: %s judged %v (%s)", tg.name, tg.ok, tg.rounds)
		}
	}
	for _, tg := range judge([][]target{miss.targets(), pass.targets(), miss.targets()}) {
		if tg.ok {
			t.Errorf("miss, pass, miss: %s passes", tg.name)
		}
	}
	// a pair is judged within its round: medians of the relay's and Ferry's
	// figures taken apart (0.40 and 0.34) would pass; every round but one
	// misses, so the target misses
	cpu := func(plain, ferry float64) []target {
		r := round(18.0, 18.0+99*132.0/1024, ferry)
		r["plain 100x1"] = mem{plain, r["plain 100x1"].rss, 16.0}
		return r.targets()
	}
	for _, tg := range judge([][]target{cpu(0.50, 0.56), cpu(0.30, 0.34), cpu(0.40, 0.30)}) {
		if tg.name == "cpu at 100x1 (within 10%)" && (tg.ok || tg.rounds != "MISS MISS PASS") {
			t.Errorf("cpu judged %v (%s), want a miss (MISS MISS PASS)", tg.ok, tg.rounds)
		}
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
}
