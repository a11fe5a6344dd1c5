package predict

import (
	"fmt"
	"math"
	"time"
)

// surge detects a sustained rise of a counter's rate (errors, lost packets)
// against the host's own baseline.
//
// The current rate is measured over SurgeWindow. The baseline is an
// exponentially weighted mean of the rate (half-life SurgeBaselineHalfLife)
// with a weighted mean absolute deviation of the current rate around it. A
// surge starts when the current rate exceeds the largest of Factor ×
// baseline, baseline + Sigma × deviation and the minimum rate; it ends when
// the rate falls below SurgeCalmRatio of that threshold. A surge that lasts
// SurgeHold predicts an outage SurgeLead later. The baseline does not learn
// during a surge (for at most SurgeFreezeMax), so a surge never becomes its
// own reference.
type surge struct {
	cause, counter string
	minRate        float64

	has      bool
	first    time.Time
	prevT    time.Time
	prevC    int64
	total    int64   // cumulative count with resets removed
	ring     []cpt   // (time, total) within SurgeWindow, plus one older anchor
	base     float64 // baseline rate, per second
	dev      float64 // typical |current − baseline|
	baseInit bool
	since    time.Time // start of the current surge (zero: none)
	// quietFrom: start of the current run of sample intervals whose own
	// rate was below the calm level (zero: none)
	quietFrom time.Time
}

type cpt struct {
	t time.Time
	c int64
}

func newSurge(cause, counter string, minRate float64) *surge {
	return &surge{cause: cause, counter: counter, minRate: minRate}
}

// reset forgets the rate window and any surge in progress (a gap in samples);
// the baseline is kept.
func (s *surge) reset() {
	s.has = false
	s.ring = s.ring[:0]
	s.since = time.Time{}
	s.quietFrom = time.Time{}
}

// add feeds one reading of the cumulative counter and returns a candidate
// while a confirmed surge lasts.
func (s *surge) add(cfg Config, t time.Time, c int64) *candidate {
	if s.has && t.Sub(s.prevT) > cfg.MaxGap {
		s.reset()
	}
	if !s.has {
		s.has, s.prevT, s.prevC = true, t, c
		if s.first.IsZero() {
			s.first = t
		}
		s.ring = append(s.ring[:0], cpt{t, s.total})
		return nil
	}
	dt := t.Sub(s.prevT).Seconds()
	if dt <= 0 {
		return nil
	}
	d := c - s.prevC
	if d < 0 { // counter reset: the host restarted; this interval is unknown
		d = 0
	}
	s.prevT, s.prevC = t, c
	s.total += d
	s.ring = append(s.ring, cpt{t, s.total})
	// keep one point at or before t − window as the anchor
	cut := t.Add(-cfg.SurgeWindow)
	drop := 0
	for drop+1 < len(s.ring) && !s.ring[drop+1].t.After(cut) {
		drop++
	}
	s.ring = append(s.ring[:0], s.ring[drop:]...)
	anchor := s.ring[0]
	span := t.Sub(anchor.t).Seconds()
	if span < cfg.SurgeWindow.Seconds()/2 {
		return nil
	}
	rate := float64(s.total-anchor.c) / span
	inst := float64(d) / dt
	if !s.baseInit {
		s.base, s.dev, s.baseInit = inst, 0, true
	}
	threshold := math.Max(math.Max(s.base*cfg.SurgeFactor, s.base+cfg.SurgeSigma*s.dev), s.minRate)
	warm := t.Sub(s.first) >= cfg.SurgeWarmup
	// bursts with pauses between them are not one surge: the window's rate
	// bridges a pause shorter than the window, the samples' own rate does not
	calm := cfg.SurgeCalmRatio * threshold
	switch {
	case inst >= calm:
		s.quietFrom = time.Time{}
	case s.quietFrom.IsZero():
		s.quietFrom = t.Add(-time.Duration(dt * float64(time.Second)))
	}
	paused := cfg.SurgeQuiet > 0 && !s.quietFrom.IsZero() && t.Sub(s.quietFrom) >= cfg.SurgeQuiet
	switch {
	case !warm:
		s.since = time.Time{}
	case s.since.IsZero() && rate > threshold && !paused:
		s.since = t
	case !s.since.IsZero() && (rate < calm || paused):
		s.since = time.Time{}
	}
	if s.since.IsZero() || t.Sub(s.since) > cfg.SurgeFreezeMax {
		a := 1 - math.Exp(-dt*math.Ln2/cfg.SurgeBaselineHalfLife.Seconds())
		s.base += a * (inst - s.base)
		s.dev += a * (math.Abs(rate-s.base) - s.dev)
	}
	if s.since.IsZero() || t.Sub(s.since) < cfg.SurgeHold {
		return nil
	}
	ratio := rate / threshold
	conf := math.Min(0.8, math.Max(0.5, 0.5+0.1*math.Log2(ratio)))
	return &candidate{
		expected:   t.Add(cfg.SurgeLead).UTC().Truncate(time.Millisecond),
		confidence: round(conf, 3),
		evidence: map[string]any{
			"predictor":       "surge",
			"counter":         s.counter,
			"rate_per_s":      round(rate, 3),
			"baseline_per_s":  round(s.base, 3),
			"threshold_per_s": round(threshold, 3),
			"surging_since":   s.since.UTC().Format(time.RFC3339Nano),
			"window_s":        cfg.SurgeWindow.Seconds(),
			"lead_s":          cfg.SurgeLead.Seconds(),
			"as_of":           t.UTC().Format(time.RFC3339Nano),
			"summary": fmt.Sprintf("%s at %.2f/s against a baseline of %.2f/s (threshold %.2f/s) since %s",
				s.counter, rate, s.base, threshold, s.since.UTC().Format(time.RFC3339)),
		},
	}
}
