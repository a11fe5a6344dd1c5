package evaltrace

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/ferrystream/ferry/services/healthpredict/internal/predict"
)

func TestDebugHosts(t *testing.T) {
	kind := os.Getenv("DEBUG_KIND")
	if kind == "" {
		t.Skip()
	}
	n, _ := strconv.Atoi(os.Getenv("DEBUG_N"))
	c := DefaultGen()
	if s, err := strconv.Atoi(os.Getenv("DEBUG_SEED")); err == nil {
		c.Seed = uint64(s)
	}
	shown := 0
	for i := range c.Hosts {
		if c.kindOf(i) != kind {
			continue
		}
		l, recs := c.Host(i)
		tr := predict.NewTracker(predict.Default())
		var lines []string
		for _, r := range recs {
			ds, _ := tr.Observe(r.Sample())
			for _, d := range ds {
				lines = append(lines, fmt.Sprintf("  t=%.0f %s %s exp=%.0f %v %s", d.At.Sub(Epoch).Seconds(), d.Kind, d.Prediction.Cause,
					d.Prediction.ExpectedOfflineAt.Sub(Epoch).Seconds(), d.Prediction.Evidence["summary"], d.Reason))
			}
		}
		if len(lines) == 0 {
			continue
		}
		crash := -1.0
		if l.CrashAt != nil {
			crash = *l.CrashAt
		}
		fmt.Printf("%s %s crash=%.0f\n", l.Host, l.Kind, crash)
		for _, s := range lines {
			fmt.Println(s)
		}
		shown++
		if shown >= n {
			return
		}
	}
}
