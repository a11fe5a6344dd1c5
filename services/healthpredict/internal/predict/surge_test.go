package predict

import (
	"math"
	"testing"
	"time"
)

func TestSurgePredictor(t *testing.T) {
	cfg := Default()
	between := func(from, to, in, out float64) func(float64) float64 {
		return func(s float64) float64 {
			if s >= from && s < to {
				return in
			}
			return out
		}
	}
	for _, tc := range []struct {
		name       string
		sh         shape
		dur        time.Duration
		cause      string  // "" = must not predict
		surgeStart float64 // seconds
		cleared    bool
	}{
		{name: "sustained error surge", dur: time.Hour, cause: CauseErrors, surgeStart: 1800,
			sh: shape{mem: noisy(0.4, 0.01), errs: between(1800, 3600, 20, 0.2)}},
		{name: "sustained packet-loss surge", dur: time.Hour, cause: CauseLoss, surgeStart: 1800,
			sh: shape{mem: noisy(0.4, 0.01), loss: between(1800, 3600, 200, 2)}},
		{name: "error surge that ends is cleared", dur: time.Hour, cause: CauseErrors, surgeStart: 1800, cleared: true,
			sh: shape{mem: noisy(0.4, 0.01), errs: between(1800, 2200, 20, 0.2)}},
		{name: "a 60 s error burst", dur: time.Hour,
			sh: shape{mem: noisy(0.4, 0.01), errs: between(1800, 1860, 50, 0.2)}},
		{name: "a 90 s loss burst", dur: time.Hour,
			sh: shape{mem: noisy(0.4, 0.01), loss: between(1800, 1890, 500, 2)}},
		{name: "a sustained surge at 2 errors/s (the least an error storm has)", dur: time.Hour, cause: CauseErrors, surgeStart: 1800,
			sh: shape{mem: noisy(0.4, 0.01), errs: between(1800, 3600, 2, 0.1)}},
		{name: "60 s error bursts with 15 s pauses for 6 minutes", dur: time.Hour,
			sh: shape{mem: noisy(0.4, 0.01), errs: bursts(1800, 2160, 60, 15, 50, 0.2)}},
		{name: "60 s loss bursts with 15 s pauses for 6 minutes", dur: time.Hour,
			sh: shape{mem: noisy(0.4, 0.01), loss: bursts(1800, 2160, 60, 15, 500, 2)}},
		{name: "a surge during warm-up only", dur: time.Hour,
			sh: shape{mem: noisy(0.4, 0.01), errs: between(60, 500, 20, 0.2)}},
		{name: "a busy but steady host", dur: 2 * time.Hour,
			sh: shape{mem: noisy(0.4, 0.01), errs: func(float64) float64 { return 3 }, loss: func(float64) float64 { return 40 }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := observe(t, NewTracker(cfg), tc.sh.samples("h1", tc.dur, 1))
			var open, clear *Decision
			for i, d := range ds {
				switch {
				case d.Kind == Open && open == nil:
					open = &ds[i]
				case d.Kind == Open:
					t.Fatalf("second opening: %v", kinds(ds))
				case d.Kind == Update:
					t.Fatalf("a surge prediction was revised: %v", kinds(ds))
				case d.Kind == Clear:
					clear = &ds[i]
				}
			}
			if tc.cause == "" {
				if open != nil {
					t.Fatalf("predicted %s at %v: %v", open.Prediction.Cause, open.At.Sub(t0), open.Prediction.Evidence["summary"])
				}
				return
			}
			if open == nil || open.Prediction.Cause != tc.cause {
				t.Fatalf("want %s predicted, got %v", tc.cause, kinds(ds))
			}
			start := t0.Add(time.Duration(tc.surgeStart) * time.Second)
			if d := open.At.Sub(start); d < cfg.SurgeHold || d > cfg.SurgeHold+cfg.SurgeWindow+cfg.OpenAfter+10*time.Second {
				t.Fatalf("opened %v after the surge began, want about SurgeHold %v", d, cfg.SurgeHold)
			}
			if got := open.Prediction.ExpectedOfflineAt.Sub(open.At); got < cfg.SurgeLead-time.Second || got > cfg.SurgeLead {
				t.Fatalf("expected offline %v after the prediction, want SurgeLead %v", got, cfg.SurgeLead)
			}
			if (clear != nil) != tc.cleared {
				t.Fatalf("cleared = %v, want %v: %v", clear != nil, tc.cleared, kinds(ds))
			}
		})
	}
}

// bursts is in for on seconds, then out for off seconds, over and over
// from from until to; out elsewhere.
func bursts(from, to, on, off, in, out float64) func(float64) float64 {
	return func(s float64) float64 {
		if s >= from && s < to && math.Mod(s-from, on+off) < on {
			return in
		}
		return out
	}
}

// TestSurgeQuietSplitsBursts: the window's rate (30 s) bridges a 15 s
// pause between bursts, so without SurgeQuiet bursts with pauses make one
// surge that lasts SurgeHold and predicts; with it they do not.
func TestSurgeQuietSplitsBursts(t *testing.T) {
	sh := shape{mem: noisy(0.4, 0.01), errs: bursts(1800, 2160, 60, 15, 50, 0.2)}
	off := Default()
	off.SurgeQuiet = 0
	if o := firstOpen(t, off, sh.samples("h1", time.Hour, 1)); o == nil || o.Prediction.Cause != CauseErrors {
		t.Fatalf("without SurgeQuiet the bursts predict nothing (%v): the case no longer tests it", o)
	}
	if o := firstOpen(t, Default(), sh.samples("h1", time.Hour, 1)); o != nil {
		t.Fatalf("bursts with pauses predicted %s: %v", o.Prediction.Cause, o.Prediction.Evidence["summary"])
	}
}

func TestSurgeIgnoresCounterReset(t *testing.T) {
	tr := NewTracker(Default())
	ss := shape{mem: noisy(0.4, 0.01), errs: func(float64) float64 { return 2 }}.samples("h1", time.Hour, 1)
	for i := range ss {
		if i >= len(ss)/2 { // the host restarted: its counters start again from zero
			ss[i].Errors -= ss[len(ss)/2].Errors
			ss[i].Lost -= ss[len(ss)/2].Lost
		}
	}
	if ds := observe(t, tr, ss); len(ds) != 0 {
		t.Fatalf("a counter reset predicted: %v", kinds(ds))
	}
}
