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
	// MaxGap: a gap between two samples longer than this resets a host's
	// resource history (the host likely restarted; default 1m).
	MaxGap time.Duration

	// OpenAfter: a condition must hold at every evaluation for this long
	// before a prediction opens (default 20s, i.e. three consecutive buckets).
	OpenAfter time.Duration
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
		MaxGap:                time.Minute,
		OpenAfter:             20 * time.Second,
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
		SurgeLead:             5 * time.Minute,
		SurgeFreezeMax:        30 * time.Minute,
		DrainGrace:            30 * time.Second,
	}
}

// ErrConfig marks an invalid predictor configuration.
var ErrConfig = errors.New("invalid predictor configuration")

// Validate checks the configuration. Errors name the field; the service maps
// fields to its environment keys.
func (c Config) Validate() error {
	var errs []error
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%w: %s must be positive, got %v", ErrConfig, name, d))
		}
	}
	unit := func(name string, v float64) {
		if !(v > 0 && v <= 1) {
			errs = append(errs, fmt.Errorf("%w: %s must be in (0,1], got %v", ErrConfig, name, v))
		}
	}
	pos("Horizon", c.Horizon)
	pos("Bucket", c.Bucket)
	pos("EnvelopeSpan", c.EnvelopeSpan)
	pos("MaxGap", c.MaxGap)
	pos("ClearAfter", c.ClearAfter)
	pos("SurgeBaselineHalfLife", c.SurgeBaselineHalfLife)
	pos("SurgeWindow", c.SurgeWindow)
	pos("SurgeLead", c.SurgeLead)
	pos("SurgeFreezeMax", c.SurgeFreezeMax)
	if c.OpenAfter < 0 {
		errs = append(errs, fmt.Errorf("%w: OpenAfter must not be negative, got %v", ErrConfig, c.OpenAfter))
	}
	if c.UpdateMinShift < 0 || c.SurgeHold < 0 || c.SurgeWarmup < 0 || c.DrainGrace < 0 {
		errs = append(errs, fmt.Errorf("%w: UpdateMinShift, SurgeHold, SurgeWarmup and DrainGrace must not be negative", ErrConfig))
	}
	if len(c.Windows) == 0 {
		errs = append(errs, fmt.Errorf("%w: Windows must list at least one window", ErrConfig))
	}
	for i, w := range c.Windows {
		if w < time.Duration(c.MinPoints)*c.Bucket {
			errs = append(errs, fmt.Errorf("%w: Windows[%d] = %v is shorter than MinPoints × Bucket = %v",
				ErrConfig, i, w, time.Duration(c.MinPoints)*c.Bucket))
		}
		if i > 0 && w <= c.Windows[i-1] {
			errs = append(errs, fmt.Errorf("%w: Windows must increase, got %v after %v", ErrConfig, w, c.Windows[i-1]))
		}
	}
	if c.MinPoints < 4 {
		errs = append(errs, fmt.Errorf("%w: MinPoints must be at least 4, got %d", ErrConfig, c.MinPoints))
	}
	if c.MaxPoints < c.MinPoints {
		errs = append(errs, fmt.Errorf("%w: MaxPoints (%d) must be at least MinPoints (%d)", ErrConfig, c.MaxPoints, c.MinPoints))
	}
	if c.MinRise < 0 || c.MinRise >= 1 {
		errs = append(errs, fmt.Errorf("%w: MinRise must be in [0,1), got %v", ErrConfig, c.MinRise))
	}
	if c.NoiseRise < 0 {
		errs = append(errs, fmt.Errorf("%w: NoiseRise must not be negative, got %v", ErrConfig, c.NoiseRise))
	}
	if c.RecentRatio < 0 || c.RecentRatio > 1 {
		errs = append(errs, fmt.Errorf("%w: RecentRatio must be in [0,1], got %v", ErrConfig, c.RecentRatio))
	}
	unit("Coverage", c.Coverage)
	unit("MinTau", c.MinTau)
	unit("MinR2", c.MinR2)
	unit("SurgeCalmRatio", c.SurgeCalmRatio)
	if c.UpdateFraction < 0 {
		errs = append(errs, fmt.Errorf("%w: UpdateFraction must not be negative, got %v", ErrConfig, c.UpdateFraction))
	}
	if c.SurgeFactor <= 1 {
		errs = append(errs, fmt.Errorf("%w: SurgeFactor must be above 1, got %v", ErrConfig, c.SurgeFactor))
	}
	if c.SurgeSigma <= 0 || c.SurgeMinErrorRate <= 0 || c.SurgeMinLossRate <= 0 {
		errs = append(errs, fmt.Errorf("%w: SurgeSigma, SurgeMinErrorRate and SurgeMinLossRate must be positive", ErrConfig))
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
