package engine

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	ftu "github.com/ferrystream/ferry/libs/testutil"
)

// TestMoveNotifiesBothHomesAndTheStream: each placement written by a move
// is announced on the old home's and the new home's notice subjects and on
// the stream's, with the record's revision (bus.NotifyPlacement), so hosts
// need not watch the whole bucket.
func TestMoveNotifiesBothHomesAndTheStream(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	h.seedMany(3, "h1", "agent-1")
	var mu sync.Mutex
	got := map[string][]uint64{} // subject -> revisions
	for _, s := range []string{subject.PlacementHostAll("h1"), subject.PlacementHostAll("h2"), subject.PlacementStream("cam-0001")} {
		sub, err := h.env.NC.Subscribe(s, func(m *nats.Msg) {
			p, rev, err := bus.PlacementNotice(m)
			if err != nil || p.Host != "h2" || p.FromHost != "h1" {
				t.Errorf("notice on %s: %+v (%v)", m.Subject, p, err)
			}
			mu.Lock()
			got[m.Subject] = append(got[m.Subject], rev)
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	r := h.start(testConfig("p1"), false)
	r.lead(h)
	h.hostDown("h1")
	h.movedOff("h1", 3, 5*time.Second)
	revs := map[string]uint64{}
	for s := range h.placements() {
		e, err := h.env.Stores.Placements.Get(t.Context(), events.PlacementKey(s))
		if err != nil {
			t.Fatal(err)
		}
		revs[s] = e.Revision()
	}
	ftu.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range []string{"cam-0000", "cam-0001", "cam-0002"} {
			for _, subj := range []string{subject.PlacementHost("h1", s), subject.PlacementHost("h2", s)} {
				if g := got[subj]; len(g) == 0 || g[len(g)-1] != revs[s] {
					return fmt.Errorf("%s: revisions %v, want the record's %d last", subj, g, revs[s])
				}
			}
		}
		if g := got[subject.PlacementStream("cam-0001")]; len(g) == 0 || g[len(g)-1] != revs["cam-0001"] {
			return fmt.Errorf("stream subject: revisions %v", g)
		}
		return nil
	})
}
