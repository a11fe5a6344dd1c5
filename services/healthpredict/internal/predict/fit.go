package predict

import "math"

// Fit is a robust straight line through a window of points, with its quality.
type Fit struct {
	// Slope is the Theil–Sen slope: the median of all pairwise slopes.
	Slope float64
	// Level is the line's value at t = 0 (the evaluation time): the median
	// of y − Slope·t.
	Level float64
	// Tau is Kendall's rank correlation between t and y (−1..1).
	Tau float64
	// R2 is the coefficient of determination of the line (≤ 1; 0 for flat data).
	R2 float64
	// N is the number of points.
	N int
}

// TheilSen fits ys against ts (ascending). scratch is reused to avoid
// allocation; it may be nil. With fewer than two points the fit is zero.
func TheilSen(ts, ys []float64, scratch []float64) (Fit, []float64) {
	return theilSen(ts, ys, scratch, math.Inf(-1))
}

// theilSen is TheilSen that stops after the rank correlation when it is
// below minTau (Slope and Level are then zero): most windows of a healthy
// host end there, without the medians.
func theilSen(ts, ys []float64, scratch []float64, minTau float64) (Fit, []float64) {
	n := len(ts)
	f := Fit{N: n}
	if n < 2 {
		return f, scratch
	}
	scratch = scratch[:0]
	conc, disc := 0, 0
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			dt := ts[j] - ts[i]
			if dt <= 0 {
				continue
			}
			dy := ys[j] - ys[i]
			scratch = append(scratch, dy/dt)
			switch {
			case dy > 0:
				conc++
			case dy < 0:
				disc++
			}
		}
	}
	pairs := len(scratch)
	if pairs == 0 {
		return f, scratch
	}
	f.Tau = float64(conc-disc) / float64(pairs)
	if f.Tau < minTau {
		return f, scratch
	}
	f.Slope = median(scratch)
	scratch = scratch[:0]
	mean := 0.0
	for i := range ts {
		scratch = append(scratch, ys[i]-f.Slope*ts[i])
		mean += ys[i]
	}
	f.Level = median(scratch)
	mean /= float64(n)
	var ssRes, ssTot float64
	for i := range ts {
		r := ys[i] - (f.Level + f.Slope*ts[i])
		ssRes += r * r
		d := ys[i] - mean
		ssTot += d * d
	}
	if ssTot > 0 {
		f.R2 = 1 - ssRes/ssTot
	}
	return f, scratch
}

// median returns the median of xs, reordering xs (quickselect).
func median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return selectK(xs, n/2)
	}
	a := selectK(xs, n/2-1)
	// After selecting k, every element right of k is >= xs[k]: the next
	// order statistic is the minimum of the right part.
	b := math.Inf(1)
	for _, x := range xs[n/2:] {
		if x < b {
			b = x
		}
	}
	return (a + b) / 2
}

// selectK puts the k-th smallest element at xs[k], smaller ones before it and
// larger or equal ones after it, and returns it. Three-way partitioning
// around a median-of-three pivot keeps runs of equal values (a flat
// resource) linear, and the deterministic pivot keeps results reproducible.
func selectK(xs []float64, k int) float64 {
	lo, hi := 0, len(xs)-1
	for lo < hi {
		a, b, c := xs[lo], xs[lo+(hi-lo)/2], xs[hi]
		p := b
		if (a <= b) == (b <= c) {
			p = b
		} else if (b <= a) == (a <= c) {
			p = a
		} else {
			p = c
		}
		// xs[lo:lt] < p, xs[lt:i] == p, xs[gt+1:hi+1] > p
		lt, i, gt := lo, lo, hi
		for i <= gt {
			switch {
			case xs[i] < p:
				xs[lt], xs[i] = xs[i], xs[lt]
				lt++
				i++
			case xs[i] > p:
				xs[i], xs[gt] = xs[gt], xs[i]
				gt--
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt - 1
		case k > gt:
			lo = gt + 1
		default:
			return p
		}
	}
	return xs[k]
}
