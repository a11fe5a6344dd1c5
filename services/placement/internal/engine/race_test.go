package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/subject"
	ftu "github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/placement/internal/migration"
)

// checkOneMove asserts every stream has exactly one home off host, was
// moved exactly once (epoch 2), has exactly one migration record (the one
// its placement names) and exactly one reassigned event.
func (h *harness) checkOneMove(host string, streams []string) {
	h.t.Helper()
	ps := h.movedOff(host, len(streams), 30*time.Second)
	recs := map[string][]migration.Record{}
	for _, m := range h.migrationsN(len(streams)) {
		recs[m.Stream] = append(recs[m.Stream], m)
	}
	var reassigned map[string]uint64
	ftu.CheckFor(h.t, 5*time.Second, 20*time.Millisecond, func() error {
		reassigned = h.subjects("FERRY_EVENTS", subject.Reassigned("*"))
		if len(reassigned) != len(streams) {
			return fmt.Errorf("%d streams reassigned", len(reassigned))
		}
		return nil
	})
	for _, s := range streams {
		p := ps[s]
		if p.Epoch != 2 || p.FromHost != host {
			h.t.Errorf("%s: epoch %d from %q: moved more than once or not at all", s, p.Epoch, p.FromHost)
		}
		if len(recs[s]) != 1 || recs[s][0].ID != p.MigrationID || recs[s][0].ToHost != p.Host {
			h.t.Errorf("%s: migrations %+v for placement %+v", s, recs[s], p)
		}
		if n := reassigned[subject.Reassigned(s)]; n != 1 {
			h.t.Errorf("%s: %d reassigned events", s, n)
		}
	}
}

func TestTwoDecidersSameOutageOneHomeEach(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"h1", "h2", "h3", "h4"} {
		h.host(n, "zone-"+n, 1000)
	}
	streams := h.seedMany(200, "h1", "agent-1")
	cfg := testConfig("a")
	cfg.Pace = 0
	a := h.start(cfg, false)
	cfg.ID = "b"
	b := h.start(cfg, false)
	// Both see the outage before either decides, then both decide at once.
	h.predict("h1", time.Minute)
	ftu.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, r := range []*replica{a, b} {
			if _, ok := r.s.view.EvacuationOf("h1"); !ok {
				return errors.New("prediction not seen yet")
			}
		}
		return nil
	})
	a.lead(h)
	b.lead(h)
	h.checkOneMove("h1", streams)
	da := counter(t, a.s.met.decisions.WithLabelValues("evacuation"))
	db := counter(t, b.s.met.decisions.WithLabelValues("evacuation"))
	conflicts := counter(t, a.s.met.conflicts) + counter(t, b.s.met.conflicts)
	t.Logf("decider a wrote %v, b wrote %v, %v compare-and-set conflicts", da, db, conflicts)
	if da+db != float64(len(streams)) {
		t.Fatalf("%v decisions written for %d streams", da+db, len(streams))
	}
	if conflicts == 0 {
		t.Fatalf("no conflict: the deciders did not race (a %v, b %v)", da, db)
	}
}

// The same decision taken twice from the same snapshot: exactly one write wins.
func TestConcurrentMovesOfOneSnapshot(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	h.host("h3", "zone-c", 100)
	streams := h.seedMany(50, "h1", "agent-1")
	cfg := testConfig("a")
	a := h.start(cfg, false)
	cfg.ID = "b"
	b := h.start(cfg, false)
	spec := moveSpec{Kind: migration.KindEvacuation, Reason: "test", Deadline: time.Now().Add(time.Minute), OldAlive: true}
	for _, s := range streams {
		e, ok := a.s.ix.get(s)
		if !ok {
			t.Fatalf("%s not indexed", s)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, r := range []*replica{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// a moves it to h2, b to h3 (candidates sorted h1, h2, h3).
				_, errs[i] = r.s.move(context.Background(), e, e.P, r.s.view.Snapshot().Candidates[i+1], nil, spec)
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrConflict):
				t.Fatalf("%s: %v", s, err)
			}
		}
		if won != 1 {
			t.Fatalf("%s: %d writers won (%v)", s, won, errs)
		}
	}
	h.checkOneMove("h1", streams)
	ps := h.placements()
	for _, s := range streams {
		if h := ps[s].Host; h != "h2" && h != "h3" {
			t.Fatalf("%s on %s", s, h)
		}
	}
}
