package predict

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// spiky adds spikes to base: every period seconds (from first), for width
// seconds, the value is at least to.
func spiky(base func(float64, *rand.Rand) float64, first, period, width, to float64) func(float64, *rand.Rand) float64 {
	return func(s float64, r *rand.Rand) float64 {
		v := base(s, r)
		if s >= first && math.Mod(s-first, period) < width {
			v = math.Max(v, to+0.005*r.NormFloat64())
		}
		return v
	}
}

// TestFastOpen: during slow collection cycles, a resource that climbs
// steadily above the peaks of the last cycles, toward the limit within
// FastWithin, opens its prediction after FastOpenAfter instead of
// OpenAfter. The leak crashes at the end of the cycle of its onset, about
// 40 s after passing the earlier peaks by CycleMargin: with the full hold
// it is predicted only 20–30 s ahead (5 of these 6 seeds, checked against
// the fast path turned off).
func TestFastOpen(t *testing.T) {
	const h = 3600.0
	slow := Default()
	slow.FastOpenAfter = slow.OpenAfter
	late := 0
	for seed := uint64(1); seed <= 6; seed++ {
		// peaks at 82%; from 40% into a cycle the leak adds 18% by its end
		ss := shape{mem: sawtooth(leakOver(0.42, 0.01, 3*h+7.4*300, 0.3, 180), 0.4, 300)}.samples("h1", 5*time.Hour, seed)
		crash := ss[len(ss)-1].T
		if u := float64(ss[len(ss)-1].MemBytes) / memLimit; u < 1-1e-9 {
			t.Fatalf("seed %d: the trace does not crash (ends at %.3f)", seed, u)
		}
		o := firstOpen(t, Default(), ss)
		if o == nil {
			t.Fatalf("seed %d: nothing predicted before the crash at %v", seed, crash.Sub(t0))
		}
		if lead := crash.Sub(o.At); lead < 30*time.Second || lead > Default().Horizon {
			t.Fatalf("seed %d: predicted %v before the crash: %v", seed, lead, o.Prediction.Evidence["summary"])
		}
		if o.Prediction.Evidence["fast_open"] != true || o.Prediction.Evidence["basis"] != "above_cycle_peak" {
			t.Errorf("seed %d: opened without the fast path: %v", seed, o.Prediction.Evidence)
		}
		if s := firstOpen(t, slow, ss); s == nil || crash.Sub(s.At) < 30*time.Second {
			late++
		}
	}
	if late < 4 {
		t.Errorf("only %d of 6 seeds late without the fast path: the case no longer tests it", late)
	}
}

// TestFastOpenNotForJumps: spikes and steps jump, they do not climb for
// FastRampSpan, so they never take the fast path. On hosts without
// collection cycles (spikes of 5–30 s to 85–97%, rising from one to the
// next; a step to 90% that stays) nothing is predicted at all. On a slow
// sawtooth, spikes above every peak and a step from the sawtooth to a flat
// 90% are predicted with or without the fast path (a limitation from
// before it, outside the generator's kinds): the fast path must not open
// them, nor open anything sooner.
func TestFastOpenNotForJumps(t *testing.T) {
	const h = 3600.0
	slow := Default()
	slow.FastOpenAfter = slow.OpenAfter
	for _, tc := range []struct {
		name  string
		mem   func(seed uint64) func(float64, *rand.Rand) float64
		quiet bool // nothing may be predicted
	}{
		{name: "spikes of 5–30 s to 85–97%, higher each time", quiet: true,
			mem: func(seed uint64) func(float64, *rand.Rand) float64 {
				base := noisy(0.45, 0.01)
				return func(s float64, r *rand.Rand) float64 {
					v := base(s, r)
					k := math.Floor((s - 1500 - float64(seed)*37) / 1100)
					if k >= 0 && math.Mod(s-1500-float64(seed)*37, 1100) < 5+math.Mod(7*k, 26) {
						v = math.Max(v, 0.85+math.Min(0.12, 0.03*k)+0.005*r.NormFloat64())
					}
					return v
				}
			}},
		{name: "step within 15 s to 90% that stays", quiet: true,
			mem: func(seed uint64) func(float64, *rand.Rand) float64 {
				at := 2*h + float64(seed)*77
				return func(s float64, r *rand.Rand) float64 {
					return 0.45 + 0.45*math.Min(1, math.Max(0, (s-at)/15)) + 0.01*r.NormFloat64()
				}
			}},
		{name: "5-min sawtooth 42→82% with 25-s spikes to 95% every 17 min",
			mem: func(seed uint64) func(float64, *rand.Rand) float64 {
				return spiky(sawtooth(noisy(0.42, 0.01), 0.4, 300), 1800+float64(seed)*41, 1020, 25, 0.95)
			}},
		{name: "5-min sawtooth 42→82% with 10-s spikes to 90% every 13 min",
			mem: func(seed uint64) func(float64, *rand.Rand) float64 {
				return spiky(sawtooth(noisy(0.42, 0.01), 0.4, 300), 1500+float64(seed)*53, 780, 10, 0.90)
			}},
		{name: "5-min sawtooth 40→80%, then a step to 90% that stays",
			mem: func(seed uint64) func(float64, *rand.Rand) float64 {
				at := 2*h + float64(seed)*77
				saw := sawtooth(noisy(0.4, 0.01), 0.4, 300)
				return func(s float64, r *rand.Rand) float64 {
					if s >= at {
						return 0.9 + 0.01*r.NormFloat64()
					}
					return saw(s, r)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 6; seed++ {
				ss := shape{mem: tc.mem(seed)}.samples("h1", 6*time.Hour, seed)
				for _, d := range observe(t, NewTracker(Default()), ss) {
					if d.Kind == Open && (tc.quiet || d.Prediction.Evidence["fast_open"] == true) {
						t.Fatalf("seed %d: predicted at %v: %v", seed, d.At.Sub(t0), d.Prediction.Evidence)
					}
				}
				if o, s := firstOpen(t, Default(), ss), firstOpen(t, slow, ss); (o == nil) != (s == nil) || (o != nil && !o.At.Equal(s.At)) {
					t.Fatalf("seed %d: the fast path changed the first opening: %v, without it %v", seed, o, s)
				}
			}
		})
	}
}

// firstOpen is the first prediction a tracker with cfg opens on ss, or nil.
func firstOpen(t *testing.T, cfg Config, ss []Sample) *Decision {
	t.Helper()
	for _, d := range observe(t, NewTracker(cfg), ss) {
		if d.Kind == Open {
			return &d
		}
	}
	return nil
}
