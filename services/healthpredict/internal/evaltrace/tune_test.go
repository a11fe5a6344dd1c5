package evaltrace

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrystream/ferry/services/healthpredict/internal/predict"
)

func TestTune(t *testing.T) {
	if os.Getenv("TUNE") == "" {
		t.Skip()
	}
	variants := map[string]func(*predict.Config){
		"default": func(*predict.Config) {},
		"span90":  func(c *predict.Config) { c.EnvelopeSpan = 90 * time.Second },
		"span120": func(c *predict.Config) { c.EnvelopeSpan = 120 * time.Second },
		"open20":  func(c *predict.Config) { c.OpenAfter = 20 * time.Second },
		"s120o20": func(c *predict.Config) { c.OpenAfter = 20 * time.Second; c.EnvelopeSpan = 120 * time.Second },
		"s90o20":  func(c *predict.Config) { c.OpenAfter = 20 * time.Second; c.EnvelopeSpan = 90 * time.Second },
		"w1m": func(c *predict.Config) {
			c.Windows = []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute}
		},
		"w1m15": func(c *predict.Config) {
			c.Windows = []time.Duration{90 * time.Second, 3 * time.Minute, 6 * time.Minute, 12 * time.Minute}
		},
	}
	for _, name := range strings.Fields(os.Getenv("TUNE")) {
		for seed := uint64(1); seed <= 4; seed++ {
			g := DefaultGen()
			g.Seed = seed
			o := DefaultOptions()
			variants[name](&o.Predict)
			r := Run(g, o)
			fmt.Printf("%-8s seed %d recall %.3f (%d/%d) all-leaks %.3f lead p10 %.0f p50 %.0f false/24h stable %.3f (%d) all %d %v\n",
				name, seed, r.Recall, r.TargetPredicted, r.TargetCrashes, r.RecallAllLeaks, r.LeadP10S, r.LeadP50S, r.FalsePer24hStable, r.FalseStable, r.FalseAll, r.FalseByCause)
		}
	}
}
