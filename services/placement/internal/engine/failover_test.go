package engine

import (
	"errors"
	"fmt"
	"testing"
	"time"

	ftu "github.com/ferrystream/ferry/libs/testutil"
)

func TestFailoverMidEvacuation(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the lease TTL")
	}
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	h.host("h3", "zone-c", 100)
	streams := h.seedMany(40, "h1", "agent-1")
	cfg := testConfig("a")
	cfg.Pace = 150 * time.Millisecond // 20 moves per target: about 3 s in all
	cfg.ReleaseLease = false          // a crash releases nothing
	a := h.start(cfg, true)
	ftu.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !a.s.Leading() {
			return errors.New("a not leading")
		}
		return nil
	})
	cfg.ID = "b"
	b := h.start(cfg, true)
	if b.s.Leading() {
		t.Fatal("two leaders")
	}
	h.predict("h1", 2*time.Minute)
	ftu.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := counter(t, a.s.met.decisions.WithLabelValues("evacuation")); n < 8 {
			return fmt.Errorf("a decided %v", n)
		}
		return nil
	})
	killed := time.Now()
	a.stop()
	a.nc.Close()
	decidedByA := counter(t, a.s.met.decisions.WithLabelValues("evacuation"))
	if int(decidedByA) >= len(streams) {
		t.Fatalf("a finished before it was killed (%v)", decidedByA)
	}
	ftu.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if !b.s.Leading() {
			return errors.New("b not leading")
		}
		return nil
	})
	takeover := time.Since(killed)
	t.Logf("a decided %v of %d before it died; b took over after %v", decidedByA, len(streams), takeover.Round(time.Millisecond))
	if takeover > 10*time.Second {
		t.Errorf("takeover took %v", takeover)
	}
	h.checkOneMove("h1", streams)
	decidedByB := counter(t, b.s.met.decisions.WithLabelValues("evacuation"))
	if decidedByA+decidedByB != float64(len(streams)) {
		t.Fatalf("a %v + b %v decisions for %d streams", decidedByA, decidedByB, len(streams))
	}
}
