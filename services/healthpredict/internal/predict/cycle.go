package predict

import (
	"fmt"
	"maps"
	"math"
	"time"
)

// maxCycles is how many completed collection cycles a trend keeps.
const maxCycles = 8

// cycle is one completed collection cycle of a resource: the bucket maxima
// between two collections (large drops) rose from floor to peak; t is the
// time of the collection that ended it (Unix seconds).
type cycle struct{ t, length, peak, floor float64 }

// cycles follows the collections of a resource: a fall of the bucket
// maxima by at least CycleDrop of the limit within two buckets, without a
// crash (a garbage collection, a cache flush, a log rotation).
//
// A collection cycle longer than the envelope's span makes the envelope
// climb for most of the cycle, like a leak. While a collection is
// remembered (CycleMemory) and the current cycle has outlasted the span, the
// trend must bring more evidence (see trend.judge): either the resource is
// above the last cycle's peak by CycleMargin (the leak raises the peaks), or
// the peaks and floors of the last cycles rise together and the peaks' line
// meets the limit within the horizon.
type cycles struct {
	lastDrop    float64 // time of the last collection (0: none seen)
	first       float64 // time of the first bucket followed
	lastLen     float64 // the cycle the last collection ended lasted this long (at least)
	lastPeak    float64 // the peak before the last collection
	peak, floor float64 // maximum and minimum bucket maximum since then
	done        []cycle // completed cycles, oldest first
	// prof holds the bucket maxima of the current cycle (from the bucket
	// after the collection), prev those of the cycle before; lastRaise is
	// how much the cycle the last collection ended lay above its
	// predecessor, phase for phase (NaN: unknown).
	prof, prev []float64
	lastRaise  float64
	// raises are the raises of the completed cycles over their
	// predecessors (oldest first, at most maxCycles), lastRaise the newest.
	raises []float64
	// shapes are the raises of the completed cycles over their
	// predecessors at equal fractions of their lengths (shapeRaise), oldest
	// first, at most maxCycles; NaN where either cycle was not seen whole.
	shapes      []float64
	drops       int       // collections seen since the history began
	ts, ys, fs  []float64 // scratch
	rs          []float64
	pt, amp, ds []float64
}

// maxProfile caps the buckets of a cycle's profile.
const maxProfile = 128

// minShape is the fewest buckets a cycle's profile needs to be compared
// with another's at equal fractions of their lengths.
const minShape = 6

func (c *cycles) reset() {
	c.lastDrop = 0
	c.done = c.done[:0]
	c.prof, c.prev = c.prof[:0], c.prev[:0]
	c.raises = c.raises[:0]
	c.shapes = c.shapes[:0]
	c.drops = 0
}

// start begins following at the first bucket maximum m.
func (c *cycles) start(t, m float64) { c.first, c.peak, c.floor = t, m, m }

// bucket takes the maximum m of the bucket that closed at end; prev are the
// closed bucket maxima before it (oldest first).
func (c *cycles) bucket(cfg Config, end, m float64, prev []point) {
	ref := math.Inf(-1)
	bucket := cfg.Bucket.Seconds()
	for i := len(prev) - 1; i >= 0 && prev[i].t >= end-2*bucket-1e-6; i-- {
		ref = math.Max(ref, prev[i].v)
	}
	if ref-m >= cfg.CycleDrop && (c.lastDrop == 0 || end-c.lastDrop > 2*bucket) {
		if c.lastDrop != 0 { // the first drop ends a cycle whose start was not seen
			c.done = append(c.done, cycle{t: end, length: end - c.lastDrop, peak: math.Max(c.peak, ref), floor: c.floor})
			if len(c.done) > maxCycles {
				c.done = append(c.done[:0], c.done[1:]...)
			}
			// from the third collection on, both profiles began at one
			shape := math.NaN()
			if c.drops >= 2 && min(len(c.prev), len(c.prof)) >= minShape && max(len(c.prev), len(c.prof)) < maxProfile {
				shape = shapeRaise(c.prof, c.prev)
			}
			c.shapes = append(c.shapes, shape)
			if len(c.shapes) > maxCycles {
				c.shapes = append(c.shapes[:0], c.shapes[1:]...)
			}
		}
		c.drops++
		from := c.lastDrop
		if from == 0 {
			from = c.first
		}
		c.lastDrop, c.lastLen, c.lastPeak = end, end-from, math.Max(c.peak, ref)
		c.peak, c.floor = m, m
		c.lastRaise = math.NaN()
		if from != c.first {
			c.lastRaise, _ = c.raise()
			c.raises = append(c.raises, c.lastRaise)
			if len(c.raises) > maxCycles {
				c.raises = append(c.raises[:0], c.raises[1:]...)
			}
		}
		c.prev, c.prof = c.prof, c.prev[:0]
		return
	}
	c.peak, c.floor = math.Max(c.peak, m), math.Min(c.floor, m)
	if len(c.prof) < maxProfile {
		c.prof = append(c.prof, m)
	}
}

// shapeRaise is the median of how far the profile cur lies above prev at
// equal fractions of their lengths (16 points, linearly interpolated): the
// raise of one completed cycle over the one before it. Unlike the raise
// bucket for bucket since the collections, a cycle lasting a little longer
// or shorter than the last (a collector's period wanders by ±10%) does not
// move it: the two ramps climb from the same floor to the same peak.
func shapeRaise(cur, prev []float64) float64 {
	const points = 16
	at := func(p []float64, q float64) float64 {
		f := q*float64(len(p)) - 0.5
		i := int(math.Floor(f))
		switch {
		case i < 0:
			return p[0]
		case i >= len(p)-1:
			return p[len(p)-1]
		}
		w := f - float64(i)
		return p[i]*(1-w) + p[i+1]*w
	}
	var ds [points]float64
	for k := range points {
		q := (float64(k) + 0.5) / points
		ds[k] = at(cur, q) - at(prev, q)
	}
	return median(ds[:])
}

// shapeTrend predicts from the last two completed cycles when each lies
// above its predecessor at equal fractions of their lengths (shapeRaise) by
// the shape margin or more: CycleNoise times the median size of that raise
// over the earlier cycles remembered (at least three), at least
// CycleMarginMin (CycleMargin when CycleNoise is 0). A leak under the
// cycles lifts each completed cycle by what it leaks over one; a load step
// lifts one, or splits its lift over two. The last cycle must have ended
// within CycleMemory. The peaks are projected to rise by the smaller of the
// two raises per typical cycle; the first cycle end at which they reach
// the limit must be within the horizon. As for raiseTrend, the last cycle
// must be a ramp and the cycles shorter than half of CycleMemory.
func (c *cycles) shapeTrend(cfg Config, r *trend, te float64) *candidate {
	n, nd := len(c.shapes), len(c.done)
	if n < 5 || nd < 2 || te-c.done[nd-1].t > cfg.CycleMemory.Seconds() {
		return nil
	}
	a, b := c.shapes[n-2], c.shapes[n-1]
	if math.IsNaN(a) || math.IsNaN(b) {
		return nil
	}
	c.ds = c.ds[:0]
	for _, x := range c.shapes[:n-2] {
		if !math.IsNaN(x) {
			c.ds = append(c.ds, math.Abs(x))
		}
	}
	if len(c.ds) < 3 {
		return nil
	}
	m := cfg.CycleMargin
	if cfg.CycleNoise > 0 {
		m = math.Max(cfg.CycleMarginMin, cfg.CycleNoise*median(c.ds))
	}
	typ := c.typical()
	if a < m || b < m || typ <= 0 || typ > cfg.CycleMemory.Seconds()/2 || !c.ramp(r) {
		return nil
	}
	d := math.Min(a, b)
	ttl := math.Inf(1)
	for j := 1.0; c.lastDrop+j*typ-te <= cfg.Horizon.Seconds(); j++ {
		if c.lastPeak+j*d >= 1 {
			ttl = math.Max(0, c.lastDrop+j*typ-te)
			break
		}
	}
	if math.IsInf(ttl, 1) {
		return nil
	}
	ev := c.evidence(cfg, r, "cycle_shape", te)
	maps.Copy(ev, map[string]any{
		"fitted_utilization": round(c.lastPeak+d, 4),
		"cycle_peak":         round(c.lastPeak, 4),
		"cycle_raises":       []float64{round(a, 4), round(b, 4)},
		"shape_margin":       round(m, 4),
		"cycle_s":            round(typ, 1),
		"slope_per_s":        round(d/typ, 8),
		"growth_per_s":       round(d/typ*float64(r.limit), 1),
		"time_to_limit_s":    round(ttl, 1),
		"summary": fmt.Sprintf("%s collection cycles: each of the last two lay %.1f%% and %.1f%% of the limit above the one before, fraction for fraction of their lengths, cycles of %s: peaks reach the limit in %s",
			r.resource, 100*a, 100*b, time.Duration(typ*float64(time.Second)).Round(time.Second),
			time.Duration(ttl*float64(time.Second)).Round(time.Second)),
	})
	return &candidate{
		expected:   unixTime(te + ttl),
		confidence: round(math.Min(0.5+0.5*math.Min(d/(2*m), 1), 0.99), 3),
		evidence:   ev,
	}
}

// evidence starts the evidence of a prediction from the collection cycles
// of r at te: the fields every basis shares.
func (c *cycles) evidence(cfg Config, r *trend, basis string, te float64) map[string]any {
	return map[string]any{
		"predictor":             "trend",
		"basis":                 basis,
		"resource":              r.resource,
		"value":                 r.value,
		"limit":                 r.limit,
		"utilization":           round(float64(r.value)/float64(r.limit), 4),
		"as_of":                 unixTime(te).Format(time.RFC3339Nano),
		"horizon_s":             cfg.Horizon.Seconds(),
		"last_collection_s_ago": round(te-c.lastDrop, 1),
	}
}

// raise is the median of how far the current cycle lies above the one
// before it, bucket for bucket since their collections, and the number of
// buckets compared.
func (c *cycles) raise() (float64, int) {
	c.ds = c.ds[:0]
	for i := 0; i < len(c.prof) && i < len(c.prev); i++ {
		c.ds = append(c.ds, c.prof[i]-c.prev[i])
	}
	if len(c.ds) == 0 {
		return 0, 0
	}
	return median(c.ds), len(c.ds)
}

// ramp reports whether the bucket maxima of the last completed cycle climb
// across it, as a collector's sawtooth does: ranked against time they
// correlate (Kendall's tau ≥ 0.6) and the line through them rises by at
// least half their range. A level with a brief excursion before the drop
// (a spike, not a cycle) or a step within the cycle does not.
func (c *cycles) ramp(r *trend) bool {
	n := len(c.prev)
	if n < 6 {
		return false
	}
	c.rs = c.rs[:0]
	lo, hi := c.prev[0], c.prev[0]
	for i, v := range c.prev {
		c.rs = append(c.rs, float64(i))
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	var f Fit
	f, r.scratch = theilSen(c.rs, c.prev, r.scratch, 0.6)
	return f.Tau >= 0.6 && f.Slope*float64(n-1) >= 0.5*(hi-lo)
}

// margin is how far a cycle must lie above the last, bucket for bucket,
// to count as raised: CycleNoise times the median size of that raise over
// the remembered cycles before the one under test (the cycles' own noise:
// sample noise, jitter of their periods), within [CycleMarginMin,
// CycleMargin]; CycleMargin while fewer than three such cycles are
// remembered.
func (c *cycles) margin(cfg Config) float64 {
	c.ds = c.ds[:0]
	for i := 0; i < len(c.raises)-1; i++ {
		c.ds = append(c.ds, math.Abs(c.raises[i]))
	}
	if len(c.ds) < 3 || cfg.CycleNoise <= 0 {
		return cfg.CycleMargin
	}
	return math.Max(cfg.CycleMarginMin, math.Min(cfg.CycleMargin, cfg.CycleNoise*median(c.ds)))
}

// raiseTrend predicts from a cycle that lies above the one before it
// (bucket for bucket since their collections, at least one minute of it)
// by the raise margin or more, after a cycle that already lay above its own
// predecessor by as much: a leak under the cycles lifts every cycle by the
// amount leaked over one cycle, while a single load step lifts one. Raises
// under CycleMargin also need the floors lifted, by the margin over the two
// cycles, which a shorter, steeper cycle does not do. A
// single raised cycle is enough when it lies above the last by twice the
// margin and, lifted that much, the last cycle reaches the limit: a leak
// fast enough to crash within the cycle after its onset. Cycles longer
// than half of CycleMemory (rare spikes, not a sawtooth) do not count. The
// peaks are projected to rise by that much per typical cycle length.
func (c *cycles) raiseTrend(cfg Config, r *trend, te float64) *candidate {
	typ := c.typical()
	d, n := c.raise()
	m := c.margin(cfg)
	if typ <= 0 || typ > cfg.CycleMemory.Seconds()/2 || float64(n)*cfg.Bucket.Seconds() < 60 || d < m || !c.ramp(r) {
		return nil
	}
	// the first cycle whose projected peak reaches the limit
	k := math.Ceil((1 - c.lastPeak) / d)
	if math.IsNaN(c.lastRaise) || c.lastRaise < m {
		if k > 1 || d < 2*m {
			return nil
		}
	} else if nd := len(c.done); math.Min(d, c.lastRaise) < cfg.CycleMargin && (nd < 2 || c.floor-c.done[nd-2].floor < m) {
		// raises under CycleMargin count when the floors rose too, by the
		// margin over the two cycles: a leak lifts them, a cycle shorter
		// than the last (steeper, so higher phase for phase) does not
		return nil
	}
	var ttl float64
	if k <= 1 { // this one: where the last cycle, lifted by d, met the limit
		ttl = typ - (te - c.lastDrop)
		for i, v := range c.prev {
			if v+d >= 1 {
				ttl = float64(i+1)*cfg.Bucket.Seconds() - (te - c.lastDrop)
				break
			}
		}
	} else {
		ttl = c.lastDrop + (k-1)*typ + typ - te
	}
	ttl = math.Max(0, ttl)
	if ttl > cfg.Horizon.Seconds() {
		return nil
	}
	rate := d / typ
	ev := c.evidence(cfg, r, "cycle_raise", te)
	maps.Copy(ev, map[string]any{
		"fitted_utilization":   round(c.lastPeak+d, 4),
		"cycle_peak":           round(c.lastPeak, 4),
		"cycle_raise":          round(d, 4),
		"previous_cycle_raise": round(c.lastRaise, 4),
		"cycle_margin":         round(m, 4),
		"cycle_s":              round(typ, 1),
		"slope_per_s":          round(rate, 8),
		"growth_per_s":         round(rate*float64(r.limit), 1),
		"time_to_limit_s":      round(ttl, 1),
		"window_s":             round(te-c.lastDrop+typ, 1),
		"points":               n,
		"summary": fmt.Sprintf("%s collection cycles: this cycle lies %.1f%% of the limit above the last (that one %.1f%% above its predecessor), cycles of %s: peaks reach the limit in %s",
			r.resource, 100*d, 100*c.lastRaise, time.Duration(typ*float64(time.Second)).Round(time.Second),
			time.Duration(ttl*float64(time.Second)).Round(time.Second)),
	})
	return &candidate{
		expected:   unixTime(te + ttl),
		confidence: round(math.Min(0.5+0.5*math.Min(d/(2*m), 1), 0.99), 3),
		evidence:   ev,
	}
}

// gating reports whether a collection is remembered at te and the cycles
// are slow: the median of the last three (the last, while fewer) lasted at least
// the envelope's span (after the first collection seen: the time since the
// history began, or since the collection, is that long). Shorter cycles keep
// the envelope flat by themselves, so the plain trend is trusted; a missed
// collection of a fast sawtooth makes one long cycle, not three.
func (c *cycles) gating(cfg Config, te float64) bool {
	if c.lastDrop == 0 {
		return false
	}
	since, span := te-c.lastDrop, cfg.EnvelopeSpan.Seconds()
	if since > cfg.CycleMemory.Seconds() {
		return false
	}
	n := len(c.done)
	switch {
	case n == 0:
		return c.lastLen >= span || since >= 0.9*span
	case n < 3:
		return c.done[n-1].length >= span
	}
	a, b, d := c.done[n-1].length, c.done[n-2].length, c.done[n-3].length
	return a+b+d-math.Max(a, math.Max(b, d))-math.Min(a, math.Min(b, d)) >= span // the median
}

// topPeak is the highest peak of the last three completed cycles and of
// the cycle the last collection ended.
func (c *cycles) topPeak() float64 {
	top := c.lastPeak
	for i := max(0, len(c.done)-3); i < len(c.done); i++ {
		top = math.Max(top, c.done[i].peak)
	}
	return top
}

// rampSlope is the median rate at which the last three completed cycles
// rose from floor to peak (0 when none completed).
func (c *cycles) rampSlope() float64 {
	c.ds = c.ds[:0]
	for i := max(0, len(c.done)-3); i < len(c.done); i++ {
		if k := c.done[i]; k.length > 0 {
			c.ds = append(c.ds, (k.peak-k.floor)/k.length)
		}
	}
	if len(c.ds) == 0 {
		return 0
	}
	return median(c.ds)
}

// longest is the length of the longest of the last three completed cycles
// (0 when none completed).
func (c *cycles) longest() float64 {
	l := 0.0
	for i := max(0, len(c.done)-3); i < len(c.done); i++ {
		l = math.Max(l, c.done[i].length)
	}
	return l
}

// typical is the median length of the last three completed cycles (of the
// last, while fewer), or 0 when none completed.
func (c *cycles) typical() float64 {
	n := len(c.done)
	switch n {
	case 0:
		return 0
	case 1, 2:
		return c.done[n-1].length
	}
	a, b, d := c.done[n-1].length, c.done[n-2].length, c.done[n-3].length
	return a + b + d - math.Max(a, math.Max(b, d)) - math.Min(a, math.Min(b, d))
}

// floorTrend predicts from the floors of the cycles remembered at te (the
// current cycle's too, once it has risen for 30 s): at least three, rising
// consistently (tau ≥ MinTau) by at least minRise, with the completed
// cycles' peaks rising at least half as fast (a leak under the cycles
// raises both). The peak is projected from the last one seen, rising as
// fast as the floors; it must meet the limit within the horizon.
func (c *cycles) floorTrend(cfg Config, r *trend, te, minRise float64) *candidate {
	c.ts, c.ys, c.fs = c.ts[:0], c.ys[:0], c.fs[:0]
	c.pt, c.amp = c.pt[:0], c.amp[:0]
	for _, k := range c.done {
		if k.t > te-cfg.CycleMemory.Seconds() {
			c.ts = append(c.ts, k.t-k.length-te)
			c.fs = append(c.fs, k.floor)
			c.pt = append(c.pt, k.t-te)
			c.ys = append(c.ys, k.peak)
			c.amp = append(c.amp, k.peak-k.floor)
		}
	}
	if len(c.pt) < 2 || !c.ramp(r) {
		return nil
	}
	if te-c.lastDrop >= 30 {
		c.ts = append(c.ts, c.lastDrop-te)
		c.fs = append(c.fs, c.floor)
	}
	n := len(c.ts)
	if n < 3 {
		return nil
	}
	var floors, peaks Fit
	floors, r.scratch = theilSen(c.ts, c.fs, r.scratch, cfg.MinTau)
	span := c.ts[n-1] - c.ts[0]
	if floors.Slope <= 0 || floors.Tau < cfg.MinTau || floors.Slope*span < minRise {
		return nil
	}
	peaks, r.scratch = TheilSen(c.pt, c.ys, r.scratch)
	if peaks.Slope < 0.5*floors.Slope {
		return nil
	}
	amp := median(c.amp)
	// from the last peak seen, rising as fast as the floors
	last := c.done[len(c.done)-1]
	proj := last.peak + floors.Slope*(te-last.t)
	ttl := math.Max(0, (1-proj)/floors.Slope)
	if ttl > cfg.Horizon.Seconds() {
		return nil
	}
	ev := c.evidence(cfg, r, "cycle_floors", te)
	maps.Copy(ev, map[string]any{
		"fitted_utilization": round(proj, 4),
		"floor_utilization":  round(floors.Level, 4),
		"cycle_amplitude":    round(amp, 4),
		"slope_per_s":        round(floors.Slope, 8),
		"peak_slope_per_s":   round(peaks.Slope, 8),
		"growth_per_s":       round(floors.Slope*float64(r.limit), 1),
		"time_to_limit_s":    round(ttl, 1),
		"window_s":           round(-c.ts[0], 1),
		"points":             n,
		"tau":                round(floors.Tau, 3),
		"r2":                 round(floors.R2, 3),
		"summary": fmt.Sprintf("%s collection cycles: floors rising %.3f%%/min over %d cycles (tau %.2f), peaks %.3f%%/min: peaks reach the limit in %s",
			r.resource, 100*60*floors.Slope, n, floors.Tau, 100*60*peaks.Slope,
			time.Duration(ttl*float64(time.Second)).Round(time.Second)),
	})
	return &candidate{
		expected:   unixTime(te + ttl),
		confidence: round(math.Min(0.5+0.5*floors.Tau*math.Max(floors.R2, 0), 0.99), 3),
		evidence:   ev,
	}
}
