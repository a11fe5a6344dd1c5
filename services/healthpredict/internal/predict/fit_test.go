package predict

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestTheilSen(t *testing.T) {
	line := func(n int, slope, level float64) ([]float64, []float64) {
		var ts, ys []float64
		for i := 0; i < n; i++ {
			x := float64(i-n+1) * 10
			ts, ys = append(ts, x), append(ys, level+slope*x)
		}
		return ts, ys
	}
	for _, tc := range []struct {
		name                 string
		ts, ys               []float64
		slope, level, tau    float64
		minR2, maxR2, within float64
	}{
		{name: "exact line", slope: 0.002, level: 0.6, tau: 1, minR2: 0.999, maxR2: 1, within: 1e-9},
		{name: "line with two wild outliers", slope: 0.002, level: 0.6, tau: 0.7, minR2: -10, maxR2: 1, within: 1e-9},
		{name: "flat", slope: 0, level: 0.5, tau: 0, minR2: 0, maxR2: 0, within: 1e-12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, ys := line(20, tc.slope, tc.level)
			if tc.name == "line with two wild outliers" {
				ys[5] += 0.5
				ys[12] -= 0.7
			}
			f, _ := TheilSen(ts, ys, nil)
			if math.Abs(f.Slope-tc.slope) > tc.within || math.Abs(f.Level-tc.level) > tc.within {
				t.Fatalf("slope %v level %v, want %v %v", f.Slope, f.Level, tc.slope, tc.level)
			}
			if f.Tau < tc.tau-1e-9 || f.R2 < tc.minR2 || f.R2 > tc.maxR2 || f.N != 20 {
				t.Fatalf("tau %v r2 %v n %d", f.Tau, f.R2, f.N)
			}
		})
	}
}

func TestMedianMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n < 60; n++ {
		for trial := 0; trial < 20; trial++ {
			xs := make([]float64, n)
			for i := range xs {
				xs[i] = math.Round(r.NormFloat64() * 3) // many ties
			}
			s := slices.Clone(xs)
			slices.Sort(s)
			want := s[n/2]
			if n%2 == 0 {
				want = (s[n/2-1] + s[n/2]) / 2
			}
			if got := median(xs); got != want {
				t.Fatalf("n=%d: median %v, want %v", n, got, want)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"default", func(*Config) {}, ""},
		{"zero horizon", func(c *Config) { c.Horizon = 0 }, "Horizon: must be positive, got 0s"},
		{"no windows", func(c *Config) { c.Windows = nil }, "Windows: must list at least one window"},
		{"window too short", func(c *Config) { c.Windows = []time.Duration{30 * time.Second} }, "Windows: 30s is shorter than MinPoints × Bucket = 1m0s"},
		{"windows not increasing", func(c *Config) { c.Windows = []time.Duration{4 * time.Minute, 2 * time.Minute} }, "Windows: must increase, got 2m0s after 4m0s"},
		{"tau above 1", func(c *Config) { c.MinTau = 1.5 }, "MinTau: must be in (0,1], got 1.5"},
		{"surge factor 1", func(c *Config) { c.SurgeFactor = 1 }, "SurgeFactor: must be above 1, got 1"},
		{"negative open-after", func(c *Config) { c.OpenAfter = -time.Second }, "OpenAfter: must not be negative, got -1s"},
		{"cycle drop 0", func(c *Config) { c.CycleDrop = 0 }, "CycleDrop: must be in (0,1), got 0"},
		{"cycle margin 1", func(c *Config) { c.CycleMargin = 1 }, "CycleMargin: must be in [0,1), got 1"},
		{"zero cycle memory", func(c *Config) { c.CycleMemory = 0 }, "CycleMemory: must be positive, got 0s"},
		{"negative trend warmup", func(c *Config) { c.TrendWarmup = -time.Second }, "TrendWarmup: must not be negative, got -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mod(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *FieldError
			if !errors.Is(err, ErrConfig) || !errors.As(err, &fe) || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
