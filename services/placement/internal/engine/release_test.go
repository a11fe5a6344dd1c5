package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	ftu "github.com/ferrystream/ferry/libs/testutil"
)

// TestReleaseIdlePlacements: push placements without a publisher for
// ReleaseAfter are deleted and reported as released, and are not moved off
// a host being evacuated; a stream whose publisher is attached, one detached
// recently, one whose publisher's host died just before it moved, and a pull
// stream are kept (and the live one is moved).
func TestReleaseIdlePlacements(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	now := time.Now().UTC()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	placed := func(d time.Duration, moved ...time.Duration) func(*events.Placement) {
		return func(p *events.Placement) {
			p.PlacedAt, p.UpdatedAt = ago(d), ago(d)
			if len(moved) > 0 {
				p.UpdatedAt = ago(moved[0])
			}
		}
	}
	attach := func(stream, host string, d time.Duration) {
		h.publish(events.PublisherAttached{Stream: stream, Host: host, SessionID: "s-" + stream, Mode: "push", At: ago(d)})
	}
	detach := func(stream, host string, d time.Duration) {
		h.publish(events.PublisherDetached{Stream: stream, Host: host, SessionID: "s-" + stream, Reason: "closed", At: ago(d)})
	}
	h.seed("cam-gone", "h1", "agent-1", true, placed(20*time.Minute)) // ffmpeg killed 15 min ago
	attach("cam-gone", "h1", 19*time.Minute)
	detach("cam-gone", "h1", 15*time.Minute)
	h.seed("cam-never", "h1", "agent-2", true, placed(11*time.Minute)) // placed, never published
	h.seed("cam-live", "h1", "agent-3", true, placed(30*time.Minute))
	attach("cam-live", "h1", 29*time.Minute)
	h.seed("cam-recent", "h2", "agent-4", true, placed(20*time.Minute))
	attach("cam-recent", "h2", 19*time.Minute)
	detach("cam-recent", "h2", time.Minute)
	h.seed("cam-moved", "h2", "agent-5", true, placed(40*time.Minute, time.Minute), func(p *events.Placement) {
		p.FromHost, p.MigrationID = "h3", "m-0123456789abcdef" // its host h3 died, moved a minute ago
	})
	attach("cam-moved", "h3", 39*time.Minute)
	h.seed("cam-pull", "h1", "", false, placed(time.Hour), func(p *events.Placement) { p.Mode, p.SourceURL = "pull", "rtsp://camera/1" })

	h.predict("h1", 2*time.Minute) // h1 is evacuated: idle streams on it must not be moved
	cfg := testConfig("a")
	r := h.start(cfg, false)
	r.lead(h)

	var released []events.Released
	ftu.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		released = eventsOn[events.Released](h, subject.Released("*"))
		if len(released) != 2 {
			return fmt.Errorf("%d released", len(released))
		}
		if p := h.placements()["cam-live"]; p.Host != "h2" {
			return fmt.Errorf("cam-live on %s, waiting for its move to h2", p.Host)
		}
		return nil
	})
	slices.SortFunc(released, func(a, b events.Released) int { return strings.Compare(a.Stream, b.Stream) })
	if g := released[0]; g.Stream != "cam-gone" || g.Host != "h1" || !g.IdleSince.Equal(ago(15*time.Minute)) || g.Epoch != 1 ||
		g.ClientID != "agent-1" || !strings.Contains(g.Reason, "no publisher attached for 15m") {
		t.Errorf("released %+v", g)
	}
	if n := released[1]; n.Stream != "cam-never" || !n.IdleSince.Equal(ago(11*time.Minute)) {
		t.Errorf("released %+v", n)
	}
	ps := h.placements()
	var kept []string
	for s := range ps {
		kept = append(kept, s)
	}
	slices.Sort(kept)
	if strings.Join(kept, " ") != "cam-live cam-moved cam-pull cam-recent" {
		t.Errorf("placements left: %v", kept)
	}
	for _, m := range h.migrations() {
		if m.Stream == "cam-gone" || m.Stream == "cam-never" {
			t.Errorf("an idle stream was moved: %+v", m)
		}
	}
	if c := counter(t, r.s.met.released); c != 2 {
		t.Errorf("ferry_placement_released_total = %v", c)
	}
}

// TestIdleStreamsAreNotEvacuated: an evacuation (run alone here, without the
// leader's release loop) moves the streams that have a publisher and leaves
// those idle past ReleaseAfter where they are: they are released, not moved.
func TestIdleStreamsAreNotEvacuated(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	old := func(p *events.Placement) {
		p.PlacedAt, p.UpdatedAt = p.UpdatedAt.Add(-time.Hour), p.UpdatedAt.Add(-time.Hour)
	}
	h.seed("cam-a-idle", "h1", "agent-1", true, old) // sorted first: moved first if not skipped
	h.seed("cam-b-live", "h1", "agent-2", true, old)
	h.seed("cam-c-idle", "h1", "agent-3", true, old)
	h.seed("cam-d-live", "h1", "agent-4", true, old)
	for _, s := range []string{"cam-b-live", "cam-d-live"} {
		h.publish(events.PublisherAttached{Stream: s, Host: "h1", SessionID: "s-" + s, Mode: "push", At: time.Now().UTC()})
	}
	h.predict("h1", 2*time.Minute)
	r := h.start(testConfig("a"), false)
	ftu.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !r.s.presSynced.Load() {
			return fmt.Errorf("presence not replayed")
		}
		if _, ok := r.s.view.EvacuationOf("h1"); !ok {
			return fmt.Errorf("h1 not to be evacuated yet")
		}
		return nil
	})
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan struct{})
	go func() { defer close(done); newDecider(r.s).evacuate(ctx, "h1") }()
	ftu.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ps := h.placements()
		if ps["cam-b-live"].Host != "h2" || ps["cam-d-live"].Host != "h2" {
			return fmt.Errorf("live streams on %s and %s, waiting for h2", ps["cam-b-live"].Host, ps["cam-d-live"].Host)
		}
		return nil
	})
	cancel()
	<-done
	ps := h.placements()
	for _, s := range []string{"cam-a-idle", "cam-c-idle"} {
		if ps[s].Host != "h1" || ps[s].Epoch != 1 {
			t.Errorf("idle %s was moved: %+v", s, ps[s])
		}
	}
	for _, m := range h.migrations() {
		if strings.HasSuffix(m.Stream, "-idle") {
			t.Errorf("migration of an idle stream: %+v", m)
		}
	}
}

func TestReleaseEvery(t *testing.T) {
	for _, c := range []struct{ after, want time.Duration }{
		{10 * time.Minute, 30 * time.Second},
		{5 * time.Minute, 15 * time.Second},
		{10 * time.Second, time.Second},
		{time.Hour, 30 * time.Second},
	} {
		if got := releaseEvery(c.after); got != c.want {
			t.Errorf("releaseEvery(%v) = %v, want %v", c.after, got, c.want)
		}
	}
}
