package predict

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	memLimit = 4 << 30
	fdLimit  = 4096
)

// shape describes a synthetic host; every function takes seconds since t0.
type shape struct {
	mem  func(s float64, r *rand.Rand) float64 // fraction of the memory limit
	fds  func(s float64, r *rand.Rand) float64 // fraction of the descriptor limit (nil: 10%)
	disk func(s float64) float64               // fraction of the disk limit (nil: not reported)
	errs func(s float64) float64               // errors per second (nil: 0.1)
	loss func(s float64) float64               // lost packets per second (nil: 1)
}

// samples renders sh every 5 s for dur. A resource at or over its limit
// ends the trace (the host crashed).
func (sh shape) samples(host string, dur time.Duration, seed uint64) []Sample {
	r := rand.New(rand.NewPCG(seed, 7))
	var out []Sample
	var errs, lost float64
	for s := 0.0; s <= dur.Seconds(); s += 5 {
		m := sh.mem(s, r)
		fd := 0.1
		if sh.fds != nil {
			fd = sh.fds(s, r)
		}
		er, lr := 0.1, 1.0
		if sh.errs != nil {
			er = sh.errs(s)
		}
		if sh.loss != nil {
			lr = sh.loss(s)
		}
		errs += poisson(r, er*5)
		lost += poisson(r, lr*5)
		x := Sample{Host: host, T: t0.Add(time.Duration(s * float64(time.Second))),
			MemBytes: int64(m * memLimit), MemLimit: memLimit, FDs: int64(math.Min(fd, 1) * fdLimit), FDLimit: fdLimit,
			Errors: int64(errs), Lost: int64(lost)}
		if sh.disk != nil {
			x.DiskLimit = 100 << 30
			x.DiskBytes = int64(math.Min(sh.disk(s), 1) * float64(x.DiskLimit))
		}
		out = append(out, x)
		if m >= 1 || fd >= 1 || (sh.disk != nil && sh.disk(s) >= 1) {
			break
		}
	}
	return out
}

func poisson(r *rand.Rand, l float64) float64 {
	if l > 30 {
		return math.Max(0, math.Round(l+math.Sqrt(l)*r.NormFloat64()))
	}
	e, k, p := math.Exp(-l), 0.0, 1.0
	for {
		p *= r.Float64()
		if p <= e {
			return k
		}
		k++
	}
}

// observe feeds every sample and returns every decision.
func observe(t *testing.T, tr *Tracker, ss []Sample) []Decision {
	t.Helper()
	var out []Decision
	for _, s := range ss {
		if err := s.Check(time.Time{}, 0); err != nil {
			t.Fatalf("generated an invalid sample: %v", err)
		}
		ds, err := tr.Observe(s)
		if err != nil {
			t.Fatalf("observe %v: %v", s.T, err)
		}
		out = append(out, ds...)
	}
	return out
}

func kinds(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Kind.String()+" "+d.Prediction.Cause)
	}
	return out
}

func noisy(level, sigma float64) func(float64, *rand.Rand) float64 {
	return func(_ float64, r *rand.Rand) float64 { return level + sigma*r.NormFloat64() }
}

// leak is level until onset, then rises to 1 after d seconds (plus noise).
func leak(level, sigma, onset, d float64) func(float64, *rand.Rand) float64 {
	return func(s float64, r *rand.Rand) float64 {
		v := level + sigma*r.NormFloat64()
		if s > onset {
			v += (1 - level) * (s - onset) / d
		}
		return v
	}
}

// sawtooth adds a garbage-collector sawtooth of amplitude a and period p.
func sawtooth(base func(float64, *rand.Rand) float64, a, p float64) func(float64, *rand.Rand) float64 {
	return func(s float64, r *rand.Rand) float64 {
		return base(s, r) + a*math.Mod(s, p)/p
	}
}

// jsaw adds a garbage-collector sawtooth of amplitude a whose cycles last
// p × (1 ± j), drawn from seed (a collector's period wanders).
func jsaw(base func(float64, *rand.Rand) float64, a, p, j float64, seed uint64) func(float64, *rand.Rand) float64 {
	r := rand.New(rand.NewPCG(seed, 99))
	start, length := 0.0, p*(1-j+2*j*r.Float64())
	return func(s float64, rr *rand.Rand) float64 {
		for s-start >= length {
			start += length
			length = p * (1 - j + 2*j*r.Float64())
		}
		return base(s, rr) + a*(s-start)/length
	}
}

// leakOver is level until onset, then rises by rise over d seconds and on
// at that rate (plus noise).
func leakOver(level, sigma, onset, rise, d float64) func(float64, *rand.Rand) float64 {
	return func(s float64, r *rand.Rand) float64 {
		v := level + sigma*r.NormFloat64()
		if s > onset {
			v += rise * (s - onset) / d
		}
		return v
	}
}
