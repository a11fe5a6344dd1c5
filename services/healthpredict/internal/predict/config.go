// Package predict turns what is known about an ingest host (maintenance
// windows, drain notices, telemetry samples, heartbeat silence) into outage
// predictions, their revisions and their withdrawal.
//
// Everything here runs on event time: the clock is the timestamp of the
// samples and events fed in, never the wall clock, so a recorded trace
// replays faster than real time and gives the same decisions. Given the same
// inputs in the same order a Tracker makes the same decisions, with the same
// prediction ids and revisions; replicas rely on that to publish each
// prediction once (JetStream deduplicates equal event ids).
package predict

import (
	"errors"
	"fmt"
	"time"
)

// Config holds every threshold, window and horizon of the predictors.
// Default returns the documented defaults; the service reads overrides from
// HEALTHPREDICT_* variables (see the service README).
type Config struct {
	// Horizon: a resource trend predicts an outage only when the fitted time
	// to its limit is within Horizon (default 10m).
	Horizon time.Duration
	// Bucket is the resolution of a resource's upper envelope: samples are
	// reduced to one maximum per bucket, aligned on Unix time (default 10s).
	// Trends are evaluated when a bucket closes.
	Bucket time.Duration
	// EnvelopeSpan is the width of the rolling maximum over bucket maxima
	// that forms the upper envelope (default 2m). A garbage-collector
	// sawtooth whose period is below EnvelopeSpan leaves the envelope flat.
	EnvelopeSpan time.Duration
	// Windows are the trailing spans of envelope points fitted, shortest
	// first (default 1m, 2m, 4m, 8m): a short window catches a fast leak
	// early, a long one estimates a slow leak well. The longest window with a
	// good, consistent fit decides (see trend.evaluate).
	Windows []time.Duration
	// MinPoints is the fewest envelope points a window needs (default 6),
	// and Coverage the fraction of its buckets that must hold a point
	// (default 0.6). MaxPoints caps the points fitted per window (default
	// 24): longer windows are fitted on maxima of adjacent points.
	MinPoints int
	Coverage  float64
	MaxPoints int
	// MinTau is the least Kendall rank correlation of the window (how
	// consistently the envelope rises, 1 = every pair rising; default 0.7).
	MinTau float64
	// MinR2 is the least coefficient of determination of the robust line
	// (default 0.7).
	MinR2 float64
	// RecentRatio: the slope over the recent half of the window must be at
	// least this fraction of the window's slope (default 0.5), so that a step
	// (a load change, a spike held by the envelope) followed by a plateau is
	// not taken for a leak.
	RecentRatio float64
	// MinRise: the line must rise by at least this fraction of the limit
	// over its window (default 0.02). The rolling maximum of mere noise
	// creeps up; near the limit even that creep would reach it in time.
	MinRise float64
	// NoiseRise: the rise over the window must also exceed NoiseRise times
	// the resource's sample noise (default 4), estimated robustly from the
	// median difference between successive samples (last 120 samples).
	NoiseRise float64
	// NoiseRiseMax caps NoiseRise times the noise (default 0.08): the
	// samples of a fast collector's sawtooth swing by its amplitude, which
	// the estimate takes for noise, while the envelope flattens it.
	NoiseRiseMax float64
	// MaxGap: a gap between two samples longer than this resets a host's
	// resource history (the host likely restarted; default 1m).
	MaxGap time.Duration
	// TrendWarmup: a resource predicts nothing before this much history
	// since its last reset (default 12m): the first rising stretch of a
	// collection cycle up to that long looks like a leak.
	TrendWarmup time.Duration
	// CycleDrop: a fall of the bucket maxima by at least this fraction of
	// the limit within two buckets is a collection (default 0.1): a garbage
	// collection, a cache flush, a log rotation.
	CycleDrop float64
	// CycleMemory: a collection is remembered this long (default 25m). While
	// it is, and the current cycle has lasted 0.9 × EnvelopeSpan or more, the
	// envelope's prediction needs the resource above the last cycle's peak
	// by CycleMargin (default 0.04 of the limit); failing that, the peaks of
	// at least three remembered cycles must rise (floors too) and their line
	// meet the limit within the horizon.
	CycleMemory time.Duration
	CycleMargin float64
	// CycleNoise and CycleMarginMin scale the margin of a cycle over the
	// last (bucket for bucket) to the cycles' own noise: CycleNoise (default
	// 3) times the median size of that raise over the remembered cycles
	// before the one under test, within [CycleMarginMin (default 0.015),
	// CycleMargin]. 0 keeps CycleMargin. The margin above the last peak
	// stays CycleMargin.
	CycleNoise     float64
	CycleMarginMin float64
	// CycleSteep: above every recent peak by CycleMargin, an envelope
	// climbing at least CycleSteep times as fast as the cycles ramp up
	// (floor to peak, median of the last three) predicts even when the
	// limit comes after the next collection is due (default 2; 0: never):
	// a leak faster than the sawtooth's own ramp crashes whether or not one
	// more collection comes first.
	CycleSteep float64
	// CycleShape: two completed cycles in a row, each above its
	// predecessor at equal fractions of their lengths by the noise-scaled
	// margin (CycleNoise, CycleMarginMin), predict when the peaks, rising
	// that much per cycle, reach the limit within the horizon (default
	// true). A collector's cycles wander in length, which moves the
	// comparison bucket for bucket since the collections but not this one.
	CycleShape bool

	// OpenAfter: a condition must hold at every evaluation for this long
	// before a prediction opens (default 20s, i.e. three consecutive buckets).
	OpenAfter time.Duration
	// FastOpenAfter replaces OpenAfter when the evidence is unambiguous
	// (default 0s: at once): during slow collection cycles, at least two
	// completed, both the last bucket's maximum and the latest sample lie
	// above the peaks of the last cycles by CycleMargin, the bucket maxima
	// have climbed steadily for FastRampSpan (default 1m), and the limit
	// comes within FastWithin (default 2m) — a leak lifting this cycle over
	// every earlier one, which often leaves well under a minute before the
	// crash. A spike jumps rather than climbs, so it never qualifies.
	// FastOpenAfter ≥ OpenAfter turns the fast path off.
	FastOpenAfter time.Duration
	FastRampSpan  time.Duration
	FastWithin    time.Duration
	// ClearAfter: an open prediction is cleared once its condition has not
	// held for this long (default 2m): hysteresis against flapping.
	ClearAfter time.Duration
	// UpdateMinShift and UpdateFraction: an open prediction is revised only
	// when its expected time moves by more than the larger of UpdateMinShift
	// (default 30s) and UpdateFraction of the time still to go (default 0.25).
	UpdateMinShift time.Duration
	UpdateFraction float64

	// SurgeBaselineHalfLife is the half-life of the exponentially weighted
	// baseline of a host's error and loss rates (default 30m).
	SurgeBaselineHalfLife time.Duration
	// SurgeWarmup: no surge is judged before this much history (default 10m).
	SurgeWarmup time.Duration
	// SurgeWindow is the span over which the current rate is measured (default 30s).
	SurgeWindow time.Duration
	// SurgeFactor and SurgeSigma: the current rate is a surge above the
	// largest of Factor × baseline (default 5), baseline + Sigma × its typical
	// deviation (default 6) and the minimum rate (SurgeMinErrorRate default
	// 0.5/s, SurgeMinLossRate default 5 packets/s).
	SurgeFactor       float64
	SurgeSigma        float64
	SurgeMinErrorRate float64
	SurgeMinLossRate  float64
	// SurgeHold: a surge must last this long before it predicts (default
	// 2m30s), so a burst shorter than SurgeHold − SurgeWindow does not.
	SurgeHold time.Duration
	// SurgeCalmRatio: a surge ends when the rate falls below this fraction of
	// the threshold (default 0.5).
	SurgeCalmRatio float64
	// SurgeQuiet: a surge also ends when the rate of every sample interval
	// for this long is below that calm level (default 10s): bursts with
	// pauses between them, which the window's rate bridges, are not one
	// sustained surge. 0 turns this off.
	SurgeQuiet time.Duration
	// SurgeLead is how far ahead of the surge's confirmation the outage is
	// expected (default 5m); surge predictions keep that time.
	SurgeLead time.Duration
	// SurgeFreezeMax: the baseline stops learning during a surge, for at most
	// this long (default 30m); after it a lasting level becomes the new normal.
	SurgeFreezeMax time.Duration

	// DrainGrace: a drained host that reports again more than DrainGrace
	// after its deadline is back, and the drain prediction is cleared (default 30s).
	DrainGrace time.Duration
}

// Default returns the default configuration.
func Default() Config {
	return Config{
		Horizon:               10 * time.Minute,
		Bucket:                10 * time.Second,
		EnvelopeSpan:          2 * time.Minute,
		Windows:               []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute},
		MinPoints:             6,
		Coverage:              0.6,
		MaxPoints:             24,
		MinTau:                0.7,
		MinR2:                 0.7,
		RecentRatio:           0.5,
		MinRise:               0.02,
		NoiseRise:             4,
		NoiseRiseMax:          0.08,
		MaxGap:                time.Minute,
		TrendWarmup:           12 * time.Minute,
		CycleDrop:             0.1,
		CycleMemory:           25 * time.Minute,
		CycleMargin:           0.04,
		CycleNoise:            3,
		CycleMarginMin:        0.015,
		CycleSteep:            2,
		CycleShape:            true,
		OpenAfter:             20 * time.Second,
		FastOpenAfter:         10 * time.Second,
		FastRampSpan:          time.Minute,
		FastWithin:            2 * time.Minute,
		ClearAfter:            2 * time.Minute,
		UpdateMinShift:        30 * time.Second,
		UpdateFraction:        0.25,
		SurgeBaselineHalfLife: 30 * time.Minute,
		SurgeWarmup:           10 * time.Minute,
		SurgeWindow:           30 * time.Second,
		SurgeFactor:           5,
		SurgeSigma:            6,
		SurgeMinErrorRate:     0.5,
		SurgeMinLossRate:      5,
		SurgeHold:             150 * time.Second,
		SurgeCalmRatio:        0.5,
		SurgeQuiet:            10 * time.Second,
		SurgeLead:             5 * time.Minute,
		SurgeFreezeMax:        30 * time.Minute,
		DrainGrace:            30 * time.Second,
	}
}

// ErrConfig marks an invalid predictor configuration.
var ErrConfig = errors.New("invalid predictor configuration")

// FieldError is one invalid field of a Config; it wraps ErrConfig.
type FieldError struct {
	// Field is the Config field's name (e.g. "Horizon").
	Field string
	// Reason says what is wrong ("must be positive, got 0s").
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap returns ErrConfig.
func (e *FieldError) Unwrap() error { return ErrConfig }

// Validate checks the configuration. The result joins one *FieldError per
// problem, so a caller can name its own keys for the fields.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, a...)})
	}
	pos := func(field string, d time.Duration) {
		if d <= 0 {
			bad(field, "must be positive, got %v", d)
		}
	}
	nonneg := func(field string, d time.Duration) {
		if d < 0 {
			bad(field, "must not be negative, got %v", d)
		}
	}
	unit := func(field string, v float64) {
		if !(v > 0 && v <= 1) {
			bad(field, "must be in (0,1], got %v", v)
		}
	}
	pos("Horizon", c.Horizon)
	pos("Bucket", c.Bucket)
	pos("EnvelopeSpan", c.EnvelopeSpan)
	pos("MaxGap", c.MaxGap)
	pos("CycleMemory", c.CycleMemory)
	nonneg("TrendWarmup", c.TrendWarmup)
	pos("ClearAfter", c.ClearAfter)
	pos("SurgeBaselineHalfLife", c.SurgeBaselineHalfLife)
	pos("SurgeWindow", c.SurgeWindow)
	pos("SurgeLead", c.SurgeLead)
	pos("SurgeFreezeMax", c.SurgeFreezeMax)
	nonneg("OpenAfter", c.OpenAfter)
	nonneg("FastOpenAfter", c.FastOpenAfter)
	nonneg("FastRampSpan", c.FastRampSpan)
	nonneg("FastWithin", c.FastWithin)
	nonneg("UpdateMinShift", c.UpdateMinShift)
	nonneg("SurgeHold", c.SurgeHold)
	nonneg("SurgeWarmup", c.SurgeWarmup)
	nonneg("DrainGrace", c.DrainGrace)
	nonneg("SurgeQuiet", c.SurgeQuiet)
	if c.MinPoints < 4 {
		bad("MinPoints", "must be at least 4, got %d", c.MinPoints)
	}
	if c.MaxPoints < c.MinPoints {
		bad("MaxPoints", "must be at least MinPoints (%d), got %d", c.MinPoints, c.MaxPoints)
	}
	if len(c.Windows) == 0 {
		bad("Windows", "must list at least one window")
	}
	for i, w := range c.Windows {
		if min := time.Duration(c.MinPoints) * c.Bucket; w < min {
			bad("Windows", "%v is shorter than MinPoints × Bucket = %v", w, min)
		}
		if i > 0 && w <= c.Windows[i-1] {
			bad("Windows", "must increase, got %v after %v", w, c.Windows[i-1])
		}
	}
	unit("Coverage", c.Coverage)
	unit("MinTau", c.MinTau)
	unit("MinR2", c.MinR2)
	unit("SurgeCalmRatio", c.SurgeCalmRatio)
	if c.MinRise < 0 || c.MinRise >= 1 {
		bad("MinRise", "must be in [0,1), got %v", c.MinRise)
	}
	if c.NoiseRiseMax < c.MinRise || c.NoiseRiseMax >= 1 {
		bad("NoiseRiseMax", "must be in [MinRise,1), got %v", c.NoiseRiseMax)
	}
	if !(c.CycleDrop > 0 && c.CycleDrop < 1) {
		bad("CycleDrop", "must be in (0,1), got %v", c.CycleDrop)
	}
	if c.CycleMargin < 0 || c.CycleMargin >= 1 {
		bad("CycleMargin", "must be in [0,1), got %v", c.CycleMargin)
	}
	if c.CycleSteep < 0 {
		bad("CycleSteep", "must be ≥ 0, got %v", c.CycleSteep)
	}
	if c.CycleNoise < 0 {
		bad("CycleNoise", "must be ≥ 0, got %v", c.CycleNoise)
	}
	if c.CycleMarginMin < 0 || c.CycleMarginMin > c.CycleMargin {
		bad("CycleMarginMin", "must be in [0, CycleMargin], got %v", c.CycleMarginMin)
	}
	if c.NoiseRise < 0 {
		bad("NoiseRise", "must not be negative, got %v", c.NoiseRise)
	}
	if c.RecentRatio < 0 || c.RecentRatio > 1 {
		bad("RecentRatio", "must be in [0,1], got %v", c.RecentRatio)
	}
	if c.UpdateFraction < 0 {
		bad("UpdateFraction", "must not be negative, got %v", c.UpdateFraction)
	}
	if c.SurgeFactor <= 1 {
		bad("SurgeFactor", "must be above 1, got %v", c.SurgeFactor)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"SurgeSigma", c.SurgeSigma}, {"SurgeMinErrorRate", c.SurgeMinErrorRate}, {"SurgeMinLossRate", c.SurgeMinLossRate}} {
		if f.v <= 0 {
			bad(f.name, "must be positive, got %v", f.v)
		}
	}
	return errors.Join(errs...)
}

// maxWindow is the longest fit window.
func (c Config) maxWindow() time.Duration {
	if len(c.Windows) == 0 {
		return 0
	}
	return c.Windows[len(c.Windows)-1]
}
