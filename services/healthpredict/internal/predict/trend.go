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
}

// trend predicts exhaustion of one resource (memory, descriptors, disk) from
// the upper envelope of its utilization (value / limit).
//
// Samples are reduced to one maximum per bucket; the envelope is the rolling
// maximum of bucket maxima over EnvelopeSpan, so a garbage-collector sawtooth
// leaves it flat and a leak makes it climb. When a bucket closes, each fit
// window of envelope points gets a Theil–Sen line; a window predicts when the
// line rises, the points rise consistently (Kendall's tau), the line explains
// them (R²), and the line meets the limit within the horizon.
type trend struct {
	cause, resource string

	has     bool
	bucket  int64   // index of the open bucket
	max     float64 // its maximum utilization
	lastT   time.Time
	value   int64 // last raw value and limit (evidence)
	limit   int64
	bmax    []point // closed bucket maxima within EnvelopeSpan
	env     []point // envelope points within the longest window
	scratch []float64
	ts, ys  []float64
}

func newTrend(cause, resource string) *trend { return &trend{cause: cause, resource: resource} }

// reset forgets the history (a gap: the host probably restarted).
func (r *trend) reset() {
	r.has = false
	r.bmax = r.bmax[:0]
	r.env = r.env[:0]
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
		r.has, r.bucket, r.max = true, b, u
		return 0, false
	}
	if b == r.bucket {
		r.max = math.Max(r.max, u)
		return 0, false
	}
	if b < r.bucket { // out of order within the host's own clock: ignore
		return 0, false
	}
	end := float64((r.bucket+1)*int64(cfg.Bucket)) / 1e9
	r.closeBucket(cfg, end, r.max)
	r.bucket, r.max = b, u
	return end, true
}

func (r *trend) closeBucket(cfg Config, end, m float64) {
	r.bmax = append(r.bmax, point{end, m})
	span := cfg.EnvelopeSpan.Seconds()
	drop := 0
	for drop < len(r.bmax) && r.bmax[drop].t <= end-span {
		drop++
	}
	r.bmax = append(r.bmax[:0], r.bmax[drop:]...)
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

// evaluate fits every window ending at te and returns the most urgent
// qualifying prediction, or nil.
func (r *trend) evaluate(cfg Config, te float64) *candidate {
	var best *candidate
	bestTTL := math.Inf(1)
	bucket := cfg.Bucket.Seconds()
	for _, w := range cfg.Windows {
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
		var f Fit
		f, r.scratch = TheilSen(r.ts, r.ys, r.scratch)
		if f.Slope <= 0 || f.Tau < cfg.MinTau || f.R2 < cfg.MinR2 {
			continue
		}
		ttl := (1 - f.Level) / f.Slope
		if ttl < 0 {
			ttl = 0
		}
		if ttl > cfg.Horizon.Seconds() || ttl >= bestTTL {
			continue
		}
		bestTTL = ttl
		conf := 0.5 + 0.5*f.Tau*f.R2
		best = &candidate{
			expected:   unixTime(te + ttl),
			confidence: round(math.Min(conf, 0.99), 3),
			evidence: map[string]any{
				"predictor":          "trend",
				"resource":           r.resource,
				"value":              r.value,
				"limit":              r.limit,
				"utilization":        round(float64(r.value)/float64(r.limit), 4),
				"fitted_utilization": round(f.Level, 4),
				"slope_per_s":        round(f.Slope, 8),
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
	return best
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
