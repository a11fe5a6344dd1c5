package predict

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestTrendPredictors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sh    shape
		dur   time.Duration
		cause string // "" = no prediction may be made
	}{
		{name: "memory leak reaching the limit 5 min after onset",
			sh: shape{mem: leak(0.4, 0.01, 1800, 300)}, dur: time.Hour, cause: CauseMemory},
		{name: "fast memory leak, 2 min to the limit",
			sh: shape{mem: leak(0.3, 0.01, 1800, 120)}, dur: time.Hour, cause: CauseMemory},
		{name: "memory leak under a garbage-collector sawtooth",
			sh: shape{mem: sawtooth(leak(0.3, 0.01, 1800, 360), 0.15, 40)}, dur: time.Hour, cause: CauseMemory},
		{name: "slow memory leak that crashes after 40 min",
			sh: shape{mem: leak(0.3, 0.01, 1200, 2400)}, dur: 2 * time.Hour, cause: CauseMemory},
		{name: "descriptor leak",
			sh: shape{mem: noisy(0.4, 0.01), fds: leak(0.1, 0.005, 1800, 240)}, dur: time.Hour, cause: CauseFDs},
		{name: "disk filling",
			sh:  shape{mem: noisy(0.4, 0.01), disk: func(s float64) float64 { return 0.5 + 0.5*max(0, s-1800)/400 }},
			dur: time.Hour, cause: CauseDisk},

		{name: "stable but noisy host", sh: shape{mem: noisy(0.5, 0.015), fds: noisy(0.2, 0.01)}, dur: 3 * time.Hour},
		{name: "garbage-collector sawtooth, 25% every 90 s",
			sh: shape{mem: sawtooth(noisy(0.3, 0.01), 0.25, 90)}, dur: 3 * time.Hour},
		{name: "garbage-collector sawtooth, 10% every 15 s",
			sh: shape{mem: sawtooth(noisy(0.5, 0.005), 0.10, 15)}, dur: 3 * time.Hour},
		{name: "a single spike to 97% for 15 s",
			sh: shape{mem: func(s float64, r *rand.Rand) float64 {
				if s >= 2400 && s < 2415 {
					return 0.97
				}
				return 0.5 + 0.01*r.NormFloat64()
			}}, dur: 2 * time.Hour},
		{name: "a load step from 50% to 65%",
			sh: shape{mem: func(s float64, r *rand.Rand) float64 {
				if s >= 2400 {
					return 0.65 + 0.01*r.NormFloat64()
				}
				return 0.5 + 0.01*r.NormFloat64()
			}}, dur: 2 * time.Hour},
		{name: "slow leak that never reaches the limit inside the horizon",
			sh: shape{mem: leak(0.4, 0.005, 0, 3*3600)}, dur: 2 * time.Hour},
		{name: "descriptors stable near their limit",
			sh: shape{mem: noisy(0.4, 0.01), fds: noisy(0.95, 0.01)}, dur: 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 3; seed++ {
				ss := tc.sh.samples("h1", tc.dur, seed)
				tr := NewTracker(Default())
				ds := observe(t, tr, ss)
				var opens []Decision
				for _, d := range ds {
					if d.Kind == Open {
						opens = append(opens, d)
					}
				}
				if tc.cause == "" {
					if len(opens) > 0 {
						t.Fatalf("seed %d: predicted %v at %v: %v", seed, opens[0].Prediction.Cause, opens[0].At.Sub(t0),
							opens[0].Prediction.Evidence["summary"])
					}
					continue
				}
				crash := ss[len(ss)-1].T
				if len(opens) != 1 {
					t.Fatalf("seed %d: want one opening, got %v", seed, kinds(ds))
				}
				o := opens[0]
				if o.Prediction.Cause != tc.cause {
					t.Fatalf("seed %d: cause %s, want %s", seed, o.Prediction.Cause, tc.cause)
				}
				// a slow leak is estimated, not known: allow a minute past the horizon
				if lead := crash.Sub(o.At); lead < 30*time.Second || lead > Default().Horizon+time.Minute {
					t.Fatalf("seed %d: predicted %v before the crash, want 30s..%v", seed, lead, Default().Horizon+time.Minute)
				}
				last := o.Prediction
				for _, d := range ds {
					if d.Kind == Update && d.Prediction.Cause == tc.cause {
						last = d.Prediction
					}
				}
				if err := last.ExpectedOfflineAt.Sub(crash); err < -2*time.Minute || err > 2*time.Minute {
					t.Fatalf("seed %d: last expected time off by %v", seed, err)
				}
				if o.Prediction.Confidence <= 0.5 || o.Prediction.Confidence > 1 {
					t.Fatalf("seed %d: confidence %v", seed, o.Prediction.Confidence)
				}
				for _, k := range []string{"summary", "slope_per_s", "tau", "r2", "time_to_limit_s", "window_s", "as_of"} {
					if _, ok := o.Prediction.Evidence[k]; !ok {
						t.Fatalf("seed %d: evidence lacks %s: %v", seed, k, o.Prediction.Evidence)
					}
				}
			}
		})
	}
}

func TestTrendRevisionsAreMaterialAndOneOpen(t *testing.T) {
	cfg := Default()
	ss := shape{mem: leak(0.2, 0.01, 1200, 1800)}.samples("h1", 2*time.Hour, 4)
	ds := observe(t, NewTracker(cfg), ss)
	var id string
	rev := -1
	var prev Decision
	for _, d := range ds {
		if d.Prediction.Cause != CauseMemory {
			continue
		}
		switch d.Kind {
		case Open:
			if id != "" {
				t.Fatalf("a second opening while %s is open", id)
			}
			id, rev, prev = d.Prediction.ID, 0, d
		case Update:
			if d.Prediction.ID != id || d.Prediction.Revision != rev+1 {
				t.Fatalf("update %s rev %d after %s rev %d", d.Prediction.ID, d.Prediction.Revision, id, rev)
			}
			if !material(cfg, d.At, prev.Prediction.ExpectedOfflineAt, d.Prediction.ExpectedOfflineAt) {
				t.Fatalf("immaterial revision: %v → %v", prev.Prediction.ExpectedOfflineAt, d.Prediction.ExpectedOfflineAt)
			}
			rev, prev = d.Prediction.Revision, d
		case Clear:
			t.Fatalf("cleared before the crash: %s", d.Reason)
		}
	}
	if id == "" {
		t.Fatal("nothing predicted")
	}
	if !strings.HasPrefix(id, "h1.memory.") {
		t.Fatalf("id %q", id)
	}
}

func TestTrendClearsWhenTheLeakStops(t *testing.T) {
	// a leak that is fixed (memory released) before the limit
	sh := shape{mem: func(s float64, r *rand.Rand) float64 {
		v := 0.4 + 0.01*r.NormFloat64()
		switch {
		case s > 1800 && s < 2000:
			v += 0.6 * (s - 1800) / 300
		case s >= 2000:
			v = 0.35 + 0.01*r.NormFloat64()
		}
		return v
	}}
	ds := observe(t, NewTracker(Default()), sh.samples("h1", time.Hour, 1))
	got := kinds(ds)
	if len(got) < 2 || got[0] != "open memory" || got[len(got)-1] != "clear memory" {
		t.Fatalf("want an opening then a clear, got %v", got)
	}
	last := ds[len(ds)-1]
	if !strings.Contains(last.Reason, "no longer reaches its limit") {
		t.Fatalf("reason %q", last.Reason)
	}
	var open time.Time
	for _, d := range ds {
		if d.Kind == Open {
			open = d.At
		}
	}
	if last.At.Sub(t0) < 2000*time.Second+Default().ClearAfter || last.At.Before(open) {
		t.Fatalf("cleared at %v, before the hysteresis", last.At.Sub(t0))
	}
}
