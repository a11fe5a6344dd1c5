package predict

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// accel is level until onset, then rises by share of the way to 1 over
// slow seconds, then reaches 1 after fast more seconds (plus noise).
func accel(level, sigma, onset, slow, fast, share float64) func(float64, *rand.Rand) float64 {
	return func(s float64, r *rand.Rand) float64 {
		v := level + sigma*r.NormFloat64()
		rest := 1 - level
		switch el := s - onset; {
		case el > slow:
			v += share*rest + (1-share)*rest*(el-slow)/fast
		case el > 0:
			v += share * rest * el / slow
		}
		return v
	}
}

// step is from until at, then to (plus noise).
func step(from, to, sigma, at float64) func(float64, *rand.Rand) float64 {
	return func(s float64, r *rand.Rand) float64 {
		if s >= at {
			return to + sigma*r.NormFloat64()
		}
		return from + sigma*r.NormFloat64()
	}
}

// TestCollectionCycles: a slow garbage-collector sawtooth (minutes per
// cycle) climbs like a leak over each rising stretch; over several cycles
// it does not. A leak under it raises the floors and the peaks and must
// still be predicted, as must a leak that speeds up; a step that stays flat
// below the limit must not be.
func TestCollectionCycles(t *testing.T) {
	const h = 3600.0
	for _, tc := range []struct {
		name string
		mem  func(seed uint64) func(float64, *rand.Rand) float64
		dur  time.Duration
		leak bool
	}{
		{name: "5-min sawtooth 40→80% over 6 h", dur: 6 * time.Hour,
			mem: func(uint64) func(float64, *rand.Rand) float64 { return sawtooth(noisy(0.4, 0.01), 0.4, 300) }},
		{name: "3-min sawtooth 45→80% over 6 h", dur: 6 * time.Hour,
			mem: func(uint64) func(float64, *rand.Rand) float64 { return sawtooth(noisy(0.45, 0.01), 0.35, 180) }},
		{name: "7-min sawtooth 35→85% over 6 h", dur: 6 * time.Hour,
			mem: func(uint64) func(float64, *rand.Rand) float64 { return sawtooth(noisy(0.35, 0.01), 0.5, 420) }},
		{name: "10-min sawtooth 40→80% over 6 h", dur: 6 * time.Hour,
			mem: func(uint64) func(float64, *rand.Rand) float64 { return sawtooth(noisy(0.4, 0.01), 0.4, 600) }},
		{name: "10-min sawtooth 45→88%, noisier, over 6 h", dur: 6 * time.Hour,
			mem: func(uint64) func(float64, *rand.Rand) float64 { return sawtooth(noisy(0.45, 0.015), 0.43, 600) }},
		{name: "5-min sawtooth 40→80% with a load step up to 45→85%", dur: 6 * time.Hour,
			mem: func(seed uint64) func(float64, *rand.Rand) float64 {
				return sawtooth(step(0.4, 0.45, 0.01, 2*h+float64(seed)*77), 0.4, 300)
			}},
		{name: "step that stays flat at 85%", dur: 6 * time.Hour,
			mem: func(uint64) func(float64, *rand.Rand) float64 { return step(0.45, 0.85, 0.01, 2400) }},

		{name: "5-min sawtooth 40→80% with a leak raising the floor", dur: 6 * time.Hour, leak: true,
			mem: func(seed uint64) func(float64, *rand.Rand) float64 {
				// the floor rises 0.2 in 12 min: the peaks reach the limit
				return sawtooth(leak(0.4, 0.01, 3*h+float64(seed)*77, 36*60), 0.4, 300)
			}},
		{name: "5-min sawtooth 40→80% with a slower leak raising the floor", dur: 6 * time.Hour, leak: true,
			mem: func(seed uint64) func(float64, *rand.Rand) float64 {
				return sawtooth(leak(0.4, 0.01, 2*h+float64(seed)*77, 60*60), 0.4, 300)
			}},
		// the leak adds 0.17 per cycle: the limit comes in the first or
		// second cycle after its onset, whose rise looks like any other's
		// until it passes the last peak
		{name: "5-min sawtooth 40→80% with a leak crashing within 1–1.5 cycles of its onset", dur: 6 * time.Hour, leak: true,
			mem: func(seed uint64) func(float64, *rand.Rand) float64 {
				return sawtooth(leak(0.4, 0.01, 3*h+float64(seed)*77, 1080), 0.4, 300)
			}},
		// the leak adds 2.6% of the limit per cycle (less than CycleMargin),
		// peaks at 90%: the limit comes about 11 min after its onset
		{name: "3-min sawtooth 50→90% with a leak adding 2.6% per cycle", dur: 6 * time.Hour, leak: true,
			mem: func(seed uint64) func(float64, *rand.Rand) float64 {
				return sawtooth(leak(0.5, 0.005, 3*h+float64(seed)*77, 3400), 0.4, 180)
			}},
		{name: "accelerating leak: 4 min slow, then 3 min fast", dur: 2 * time.Hour, leak: true,
			mem: func(seed uint64) func(float64, *rand.Rand) float64 {
				return accel(0.35, 0.01, h+float64(seed)*31, 240, 180, 0.25)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 3; seed++ {
				ss := shape{mem: tc.mem(seed)}.samples("h1", tc.dur, seed)
				ds := observe(t, NewTracker(Default()), ss)
				var opens []Decision
				for _, d := range ds {
					if d.Kind == Open {
						opens = append(opens, d)
					}
				}
				if !tc.leak {
					if len(opens) > 0 {
						t.Fatalf("seed %d: predicted at %v: %v", seed, opens[0].At.Sub(t0), opens[0].Prediction.Evidence["summary"])
					}
					continue
				}
				crash := ss[len(ss)-1].T
				if u := float64(ss[len(ss)-1].MemBytes) / memLimit; u < 1-1e-9 {
					t.Fatalf("seed %d: the trace does not crash (ends at %.3f)", seed, u)
				}
				if len(opens) == 0 {
					t.Errorf("seed %d: nothing predicted before the crash at %v", seed, crash.Sub(t0))
					continue
				}
				// the last opening must come 30 s to the horizon before the crash,
				// and any earlier one within the horizon (else it was false)
				for _, o := range opens {
					lead := crash.Sub(o.At)
					if lead > Default().Horizon {
						t.Fatalf("seed %d: opened %v before the crash (more than the horizon): %v", seed, lead, o.Prediction.Evidence["summary"])
					}
				}
				if lead := crash.Sub(opens[0].At); lead < 30*time.Second {
					t.Fatalf("seed %d: predicted only %v before the crash", seed, lead)
				}
			}
		})
	}
}

// TestCollectionsAreFollowed: the drops of a slow sawtooth are found, with
// their cycles' lengths, peaks and floors.
func TestCollectionsAreFollowed(t *testing.T) {
	ss := shape{mem: sawtooth(noisy(0.4, 0.005), 0.4, 300)}.samples("h1", time.Hour, 1)
	tr := NewTracker(Default())
	observe(t, tr, ss)
	c := tr.hosts["h1"].trends[0].cyc
	if len(c.done) < 8 {
		t.Fatalf("%d cycles completed, want 8 (the most kept)", len(c.done))
	}
	for _, k := range c.done {
		if math.Abs(k.length-300) > 10 || math.Abs(k.peak-0.8) > 0.03 || math.Abs(k.floor-0.4) > 0.04 {
			t.Fatalf("cycle %+v, want length 300 s, peak 0.8, floor 0.4", k)
		}
	}
	if !c.gating(Default(), float64(ss[len(ss)-1].T.Unix())) {
		t.Fatal("a 5-min sawtooth does not gate the trend")
	}
	fast := NewTracker(Default())
	fs := shape{mem: sawtooth(noisy(0.4, 0.005), 0.2, 40)}.samples("h1", time.Hour, 1)
	observe(t, fast, fs)
	if fast.hosts["h1"].trends[0].cyc.gating(Default(), float64(fs[len(fs)-1].T.Unix())) {
		t.Fatal("a 40-s sawtooth gates the trend: its envelope is flat, its leaks must be seen early")
	}
}

// TestWarmupBlindSpot pins the limitation the README states: nothing is
// predicted in the first TrendWarmup (12 min) after a host's first sample
// or a restart, so a leak that crashes by then is missed, while the same
// leak later in the host's life is predicted.
func TestWarmupBlindSpot(t *testing.T) {
	for _, tc := range []struct {
		onset     float64
		predicted bool
	}{
		{onset: 180, predicted: false}, // crashes 9 min after the start
		{onset: 900, predicted: true},  // crashes at 21 min
		{onset: 1800, predicted: true}, // crashes at 36 min
	} {
		for seed := uint64(1); seed <= 3; seed++ {
			ss := shape{mem: leak(0.4, 0.01, tc.onset, 360)}.samples("h1", time.Hour, seed)
			var opened bool
			for _, d := range observe(t, NewTracker(Default()), ss) {
				if d.Kind == Open && ss[len(ss)-1].T.Sub(d.At) >= 30*time.Second {
					opened = true
				}
			}
			if opened != tc.predicted {
				t.Fatalf("onset %v s, seed %d: predicted ≥ 30 s ahead %v, want %v", tc.onset, seed, opened, tc.predicted)
			}
		}
	}
}

// TestLeakWithinACycleOfItsOnset: a leak under a 4.5-min sawtooth whose
// period wanders by ±10% (38→79% of the limit), fast enough that the
// limit comes about 350 s after its onset, 1.3 cycles: its first cycles
// rise like any other until they pass the last peak, the cycle after the
// onset lies far above the onset's own. Every seed must be predicted at
// least 30 s ahead, and never more than the horizon ahead.
func TestLeakWithinACycleOfItsOnset(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		ss := shape{mem: jsaw(leakOver(0.38, 0.01, 3*3600+float64(seed)*77, 0.21, 350), 0.41, 270, 0.1, seed)}.samples("h1", 6*time.Hour, seed)
		crash := ss[len(ss)-1].T
		if u := float64(ss[len(ss)-1].MemBytes) / memLimit; u < 1-1e-9 {
			t.Fatalf("seed %d: the trace does not crash (ends at %.3f)", seed, u)
		}
		var first *Decision
		for _, d := range observe(t, NewTracker(Default()), ss) {
			if d.Kind == Open {
				if lead := crash.Sub(d.At); lead > Default().Horizon {
					t.Fatalf("seed %d: opened %v before the crash: %v", seed, lead, d.Prediction.Evidence["summary"])
				}
				if first == nil {
					first = &d
				}
			}
		}
		if first == nil || crash.Sub(first.At) < 30*time.Second {
			t.Fatalf("seed %d: not predicted 30 s before the crash at %v (%v)", seed, crash.Sub(t0), first)
		}
	}
}

// TestSteepLeakBeforeTheNextCollection: a slow sawtooth (5-min cycles,
// 30→58%) whose cycle at 3 h lasts 6 min, a little longer than the others,
// as a collector's cycles wander. A leak starting with that cycle climbs
// about 2.4 times as fast as the cycles ramp up and crashes 315 s in:
// after the usual length, before this cycle's collection. Above every
// recent peak, a climb that steep predicts even though the limit comes
// after the next collection is due (CycleSteep); without it, nothing is
// predicted 30 s ahead.
func TestSteepLeakBeforeTheNextCollection(t *testing.T) {
	const h = 3600.0
	off := Default()
	off.CycleSteep = 0
	// cycles of 300 s, but the one from 3 h lasts 360 s
	saw := func(base func(float64, *rand.Rand) float64) func(float64, *rand.Rand) float64 {
		return func(s float64, r *rand.Rand) float64 {
			start, length := math.Floor(s/300)*300, 300.0
			if s >= 3*h && s < 3*h+360 {
				start, length = 3*h, 360
			} else if s >= 3*h+360 {
				start = 3*h + 360 + math.Floor((s-3*h-360)/300)*300
			}
			return base(s, r) + 0.28*(s-start)/length
		}
	}
	missed := 0
	for seed := uint64(1); seed <= 6; seed++ {
		ss := shape{mem: saw(leakOver(0.30, 0.01, 3*h+2, 0.347, 240))}.samples("h1", 4*time.Hour, seed)
		crash := ss[len(ss)-1].T
		if u := float64(ss[len(ss)-1].MemBytes) / memLimit; u < 1-1e-9 || crash.Sub(t0) <= 3*time.Hour+300*time.Second ||
			crash.Sub(t0) >= 3*time.Hour+360*time.Second {
			t.Fatalf("seed %d: the trace must crash 300–360 s into the long cycle (ends at %.3f, %v)", seed, u, crash.Sub(t0))
		}
		o := firstOpen(t, Default(), ss)
		if o == nil {
			t.Errorf("seed %d: nothing predicted before the crash at %v", seed, crash.Sub(t0))
			continue
		}
		if lead := crash.Sub(o.At); lead < 30*time.Second || lead > Default().Horizon {
			t.Fatalf("seed %d: predicted %v before the crash: %v", seed, lead, o.Prediction.Evidence["summary"])
		}
		if o.Prediction.Evidence["basis"] != "above_cycle_peak" {
			t.Errorf("seed %d: basis %v, want above_cycle_peak", seed, o.Prediction.Evidence["basis"])
		}
		if s := firstOpen(t, off, ss); s == nil || crash.Sub(s.At) < 30*time.Second {
			missed++
		}
	}
	if missed < 4 {
		t.Errorf("only %d of 6 seeds missed without CycleSteep: the case no longer tests it", missed)
	}
}

// TestShapeRaisedCycles: a leak adding 3% of the limit per cycle under a
// slow sawtooth whose cycles wander by ±10% (about 4 min, 46→86%, noisy):
// compared bucket for bucket since their collections, one cycle lies above
// the last by up to ±4% from the wandering alone, and the floors are as
// noisy as the leak is slow; compared at equal fractions of their lengths,
// each completed cycle lies about 3% above the last, and two in a row
// predict (cycle_shape). The prediction that covers the crash (the last
// opening, not cleared before it) must come at least 30 s ahead. (The
// floors' trend covers most of these crashes too, later; the generator's
// hosts that only the shapes catch are in evaltrace's
// TestShapeCatchesGeneratedLeaks.)
func TestShapeRaisedCycles(t *testing.T) {
	const h = 3600.0
	covered := func(cfg Config, seed uint64) (time.Duration, string) {
		ss := shape{mem: jsaw(leakOver(0.46, 0.012, 3*h, 0.03, 230), 0.40, 230, 0.1, seed)}.samples("h1", 5*time.Hour, seed)
		crash := ss[len(ss)-1].T
		if u := float64(ss[len(ss)-1].MemBytes) / memLimit; u < 1-1e-9 {
			t.Fatalf("seed %d: the trace does not crash (ends at %.3f)", seed, u)
		}
		var last *Decision
		for _, d := range observe(t, NewTracker(cfg), ss) {
			switch d.Kind {
			case Open:
				last = &d
			case Clear:
				last = nil
			}
		}
		if last == nil {
			return 0, ""
		}
		basis, _ := last.Prediction.Evidence["basis"].(string)
		return crash.Sub(last.At), basis
	}
	byShape := 0
	for seed := uint64(1); seed <= 8; seed++ {
		lead, basis := covered(Default(), seed)
		if lead < 30*time.Second {
			t.Errorf("seed %d: the crash is not covered 30 s ahead (lead %v, basis %q)", seed, lead, basis)
		}
		if basis == "cycle_shape" {
			byShape++
		}
	}
	if byShape < 4 {
		t.Fatalf("only %d of 8 seeds predicted from raised cycle shapes: the case no longer tests them", byShape)
	}
}
