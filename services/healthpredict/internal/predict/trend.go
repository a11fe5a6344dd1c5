package predict

import (
	"fmt"
	"math"
	"time"
)

// point is one value at a time in Unix seconds.
type point struct{ t, v float64 }

// candidate is a predictor's current claim that the host goes offline.
type candidate struct {
	expected   time.Time
	confidence float64
	evidence   map[string]any
	// fast: the evidence is unambiguous, the prediction opens after
	// FastOpenAfter rather than OpenAfter.
	fast bool
	// at is the time the claim was evaluated for (a trend's bucket end;
	// zero: the sample's time). The hold before opening counts from it, so
	// three consecutive buckets are 20 s whatever the samples' jitter.
	at time.Time
}

// trend predicts exhaustion of one resource (memory, descriptors, disk) from
// the upper envelope of its utilization (value / limit).
//
// Samples are reduced to one maximum per bucket; the envelope is the rolling
// maximum of bucket maxima over EnvelopeSpan, so a garbage-collector sawtooth
// leaves it flat and a leak makes it climb. When a bucket closes, the fit
// windows of envelope points get Theil–Sen lines, and evaluate decides which
// window's line, if any, predicts the limit within the horizon.
type trend struct {
	cause, resource string

	has     bool
	since   time.Time // first reading since the last reset
	bucket  int64     // index of the open bucket
	max     float64   // its maximum utilization
	lastT   time.Time
	value   int64 // last raw value and limit (evidence)
	limit   int64
	prevU   float64   // last utilization
	diffs   []float64 // |successive differences| of utilization, a ring of noiseSamples
	diffAt  int
	bmax    []point // closed bucket maxima within EnvelopeSpan
	cur     float64 // the last closed bucket maximum
	cyc     cycles
	env     []point // envelope points within the longest window
	scratch []float64
	ts, ys  []float64
}

func newTrend(cause, resource string) *trend { return &trend{cause: cause, resource: resource} }

// noiseSamples is how many successive differences estimate the noise.
const noiseSamples = 120

// reset forgets the history (a gap: the host probably restarted).
func (r *trend) reset() {
	r.has = false
	r.diffs, r.diffAt = r.diffs[:0], 0
	r.bmax = r.bmax[:0]
	r.env = r.env[:0]
	r.cyc.reset()
}

// add feeds one reading. When it closes a bucket, add returns the bucket's
// end (Unix seconds) and true: the time at which to evaluate.
func (r *trend) add(cfg Config, t time.Time, value, limit int64) (float64, bool) {
	if limit <= 0 {
		return 0, false
	}
	if r.has && t.Sub(r.lastT) > cfg.MaxGap {
		r.reset()
	}
	r.lastT, r.value, r.limit = t, value, limit
	u := float64(value) / float64(limit)
	b := t.UnixNano() / int64(cfg.Bucket)
	if !r.has {
		r.has, r.since, r.bucket, r.max, r.prevU = true, t, b, u, u
		r.cyc.start(float64(t.UnixNano())/1e9, u)
		return 0, false
	}
	if b < r.bucket { // out of order within the host's own clock: ignore
		return 0, false
	}
	if d := math.Abs(u - r.prevU); len(r.diffs) < noiseSamples {
		r.diffs = append(r.diffs, d)
	} else {
		r.diffs[r.diffAt] = d
		r.diffAt = (r.diffAt + 1) % noiseSamples
	}
	r.prevU = u
	if b == r.bucket {
		r.max = math.Max(r.max, u)
		return 0, false
	}
	end := float64((r.bucket+1)*int64(cfg.Bucket)) / 1e9
	// the envelope is a maximum over EnvelopeSpan: until that much history
	// exists it would climb as history accumulates, which is not a trend
	warm := end-float64(r.since.UnixNano())/1e9 >= cfg.EnvelopeSpan.Seconds()
	r.closeBucket(cfg, end, r.max, warm)
	r.bucket, r.max = b, u
	return end, warm
}

func (r *trend) closeBucket(cfg Config, end, m float64, warm bool) {
	r.cyc.bucket(cfg, end, m, r.bmax)
	r.cur = m
	r.bmax = append(r.bmax, point{end, m})
	span := cfg.EnvelopeSpan.Seconds()
	drop := 0
	for drop < len(r.bmax) && r.bmax[drop].t <= end-span {
		drop++
	}
	r.bmax = append(r.bmax[:0], r.bmax[drop:]...)
	if !warm {
		return
	}
	env := math.Inf(-1)
	for _, p := range r.bmax {
		env = math.Max(env, p.v)
	}
	r.env = append(r.env, point{end, env})
	keep := cfg.maxWindow().Seconds()
	drop = 0
	for drop < len(r.env) && r.env[drop].t <= end-keep {
		drop++
	}
	r.env = append(r.env[:0], r.env[drop:]...)
}

// evaluate returns the trend's prediction at te, or nil. Nothing is
// predicted before TrendWarmup of history (the first rising stretch of a
// slow collection cycle is indistinguishable from a leak). While the
// resource is in a slow collection cycle (see cycles), the envelope's
// prediction stands only when the resource is above the last cycle's peak
// by CycleMargin; otherwise the cycles' peaks must predict by themselves.
func (r *trend) evaluate(cfg Config, te float64) *candidate {
	if te-float64(r.since.UnixNano())/1e9 < cfg.TrendWarmup.Seconds() {
		return nil
	}
	minRise := r.minRise(cfg)
	c := r.fitEnvelope(cfg, te, minRise)
	if !r.cyc.gating(cfg, te) {
		return c
	}
	// above the last peak, and the limit comes before the next collection
	// is due (or that collection is overdue: the pattern is broken)
	due := unixTime(r.cyc.lastDrop + r.cyc.longest())
	overdue := unixTime(r.cyc.lastDrop + 1.25*r.cyc.typical())
	if peak := r.cyc.lastPeak; c != nil && r.cur >= peak+cfg.CycleMargin &&
		(!c.expected.After(due) || !unixTime(te).Before(overdue) || r.steep(cfg, c)) {
		c.evidence["basis"] = "above_cycle_peak"
		c.evidence["cycle_peak"] = round(peak, 4)
		if top := r.cyc.topPeak(); len(r.cyc.done) >= 2 && min(r.cur, r.prevU) >= top+cfg.CycleMargin &&
			!c.expected.After(unixTime(te+cfg.FastWithin.Seconds())) && r.climbing(cfg) {
			c.fast = true
			c.evidence["fast_open"] = true
			c.evidence["cycles_top_peak"] = round(top, 4)
		}
		return c
	}
	if c := r.cyc.raiseTrend(cfg, r, te); c != nil {
		return c
	}
	if c := r.cyc.shapeTrend(cfg, r, te); c != nil && cfg.CycleShape {
		return c
	}
	return r.cyc.floorTrend(cfg, r, te, minRise)
}

// steep reports whether the envelope's candidate c climbs at least
// CycleSteep times as fast as the collection cycles ramp up (the median of
// the last three, floor to peak) while the resource lies above every one of
// their peaks by CycleMargin: then the limit counts even if it comes after
// the next collection is due. A sawtooth whose cycles vary in length ramps
// within a few tens of percent of its usual rate; a leak faster than the
// ramp crashes whether or not one more collection comes first.
func (r *trend) steep(cfg Config, c *candidate) bool {
	if cfg.CycleSteep <= 0 {
		return false
	}
	ramp := r.cyc.rampSlope()
	slope, _ := c.evidence["slope_per_s"].(float64)
	return ramp > 0 && slope >= cfg.CycleSteep*ramp && r.cur >= r.cyc.topPeak()+cfg.CycleMargin
}

// climbing reports whether the bucket maxima of the last FastRampSpan
// climb steadily: one per bucket at least (all but one present), ranked
// against time they correlate (Kendall's tau ≥ 0.8), and the rise over the
// older half is at least a third of that over the newer half. A spike or a
// step jumps within a bucket or two, which this rejects.
func (r *trend) climbing(cfg Config) bool {
	span, bucket := cfg.FastRampSpan.Seconds(), cfg.Bucket.Seconds()
	if span <= 0 || len(r.bmax) == 0 {
		return false
	}
	end := r.bmax[len(r.bmax)-1].t
	r.ts, r.ys = r.ts[:0], r.ys[:0]
	for _, p := range r.bmax {
		if p.t >= end-span-1e-6 {
			r.ts = append(r.ts, p.t)
			r.ys = append(r.ys, p.v)
		}
	}
	n := len(r.ts)
	if n < 4 || float64(n) < span/bucket {
		return false
	}
	var f Fit
	f, r.scratch = theilSen(r.ts, r.ys, r.scratch, 0.8)
	if f.Slope <= 0 || f.Tau < 0.8 {
		return false
	}
	h := n / 2
	older, newer := r.ys[h]-r.ys[0], r.ys[n-1]-r.ys[h]
	return older > 0 && newer > 0 && older >= newer/3
}

// minRise is the least rise a window must show: MinRise, or NoiseRise
// times the sample noise if larger, at most NoiseRiseMax. (A fast
// collector's sawtooth swings the samples by its amplitude, which reads as
// noise, while the envelope flattens it: uncapped, such a host's leak
// would have to rise by several times that amplitude within one window.)
func (r *trend) minRise(cfg Config) float64 {
	minRise := cfg.MinRise
	if cfg.NoiseRise > 0 && len(r.diffs) > 0 {
		r.scratch = append(r.scratch[:0], r.diffs...)
		// σ of the samples ≈ 1.4826 × MAD of differences / √2
		sigma := 1.0484 * median(r.scratch)
		minRise = math.Max(minRise, math.Min(cfg.NoiseRise*sigma, cfg.NoiseRiseMax))
	}
	return minRise
}

// fitEnvelope fits the windows ending at te, longest first, and returns a
// prediction or nil. A window whose fit is good (rising, tau, R²) and
// consistent (the recent half's slope within RecentRatio of the window's,
// either way) is the verdict: it predicts when its time to the limit is
// within the horizon, and shorter windows are not consulted (they are
// noisier). A good window whose recent half rises much faster (a leak that
// started or sped up inside it) defers to shorter windows, and predicts
// itself if none of them qualifies. A window whose recent half rises much
// slower (a step, then a plateau) is no evidence of a leak.
func (r *trend) fitEnvelope(cfg Config, te, minRise float64) *candidate {
	var fallback *candidate
	bucket := cfg.Bucket.Seconds()
	for i := len(cfg.Windows) - 1; i >= 0; i-- {
		w := cfg.Windows[i]
		ws := w.Seconds()
		r.ts, r.ys = r.ts[:0], r.ys[:0]
		for _, p := range r.env {
			if p.t > te-ws {
				r.ts = append(r.ts, p.t-te)
				r.ys = append(r.ys, p.v)
			}
		}
		n := len(r.ts)
		if n < cfg.MinPoints || float64(n) < cfg.Coverage*ws/bucket {
			continue
		}
		r.ts, r.ys = decimate(r.ts, r.ys, cfg.MaxPoints)
		n = len(r.ts)
		var f Fit
		f, r.scratch = theilSen(r.ts, r.ys, r.scratch, cfg.MinTau)
		if f.Slope <= 0 || f.Tau < cfg.MinTau || f.R2 < cfg.MinR2 || f.Slope*ws < minRise {
			continue
		}
		var recent Fit
		recent, r.scratch = TheilSen(r.ts[n/2:], r.ys[n/2:], r.scratch)
		if recent.Slope < cfg.RecentRatio*f.Slope {
			continue
		}
		ttl := (1 - f.Level) / f.Slope
		if ttl < 0 {
			ttl = 0
		}
		accelerating := cfg.RecentRatio > 0 && recent.Slope > f.Slope/cfg.RecentRatio
		if ttl > cfg.Horizon.Seconds() {
			if accelerating {
				continue
			}
			return nil
		}
		c := r.candidate(cfg, te, w, n, f, recent, ttl)
		if !accelerating {
			return c
		}
		if fallback == nil {
			fallback = c
		}
	}
	return fallback
}

func (r *trend) candidate(cfg Config, te float64, w time.Duration, n int, f, recent Fit, ttl float64) *candidate {
	ws := w.Seconds()
	{
		conf := 0.5 + 0.5*f.Tau*f.R2
		return &candidate{
			expected:   unixTime(te + ttl),
			confidence: round(math.Min(conf, 0.99), 3),
			evidence: map[string]any{
				"predictor":          "trend",
				"basis":              "envelope",
				"resource":           r.resource,
				"value":              r.value,
				"limit":              r.limit,
				"utilization":        round(float64(r.value)/float64(r.limit), 4),
				"fitted_utilization": round(f.Level, 4),
				"slope_per_s":        round(f.Slope, 8),
				"recent_slope_per_s": round(recent.Slope, 8),
				"growth_per_s":       round(f.Slope*float64(r.limit), 1),
				"time_to_limit_s":    round(ttl, 1),
				"window_s":           ws,
				"points":             n,
				"tau":                round(f.Tau, 3),
				"r2":                 round(f.R2, 3),
				"as_of":              unixTime(te).Format(time.RFC3339Nano),
				"horizon_s":          cfg.Horizon.Seconds(),
				"summary": fmt.Sprintf("%s at %.1f%% of its limit, rising %.3f%%/min over the last %s (tau %.2f, R² %.2f): limit in %s",
					r.resource, 100*f.Level, 100*60*f.Slope, w, f.Tau, f.R2, time.Duration(ttl*float64(time.Second)).Round(time.Second)),
			},
		}
	}
}

// decimate merges adjacent points (time of the last, maximum value) until at
// most max remain, in place.
func decimate(ts, ys []float64, max int) ([]float64, []float64) {
	n := len(ts)
	if n <= max {
		return ts, ys
	}
	k := (n + max - 1) / max // points per group
	// groups end at the newest point so the last group is always full
	out := 0
	for end := n - ((n-1)/k)*k; end <= n; end += k {
		start := max0(end-k, 0)
		v := ys[start]
		for i := start + 1; i < end; i++ {
			v = math.Max(v, ys[i])
		}
		ts[out], ys[out] = ts[end-1], v
		out++
	}
	return ts[:out], ys[:out]
}

func max0(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// unixTime converts Unix seconds to a UTC time at millisecond precision.
func unixTime(s float64) time.Time {
	return time.UnixMilli(int64(math.Round(s * 1000))).UTC()
}

// round rounds x to d decimals, keeping evidence readable and stable.
func round(x float64, d int) float64 {
	p := math.Pow(10, float64(d))
	return math.Round(x*p) / p
}
