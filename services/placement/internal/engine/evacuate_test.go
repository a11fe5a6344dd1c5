package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	ftu "github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/placement/internal/migration"
)

// movedOff waits until no placement names host and returns them all.
func (h *harness) movedOff(host string, n int, wait time.Duration) map[string]events.Placement {
	h.t.Helper()
	var ps map[string]events.Placement
	ftu.CheckFor(h.t, wait, 20*time.Millisecond, func() error {
		ps = h.placements()
		left := 0
		for _, p := range ps {
			if p.Host == host {
				left++
			}
		}
		if left > 0 || len(ps) != n {
			return fmt.Errorf("%d of %d streams still on %s", left, len(ps), host)
		}
		return nil
	})
	return ps
}

func TestPredictedOutageMovesEveryStreamToFitHosts(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-a", 100, func(r *events.HostRecord) { r.Status = "draining" })
	h.host("h3", "zone-b", 100)
	h.host("h4", "zone-b", 100)
	h.host("h5", "zone-c", 100)
	h.predict("h3", 10*time.Minute)
	streams := h.seedMany(30, "h1", "agent-1")
	r := h.start(testConfig("p1"), false)
	r.lead(h)

	offline := time.Now().Add(20 * time.Second).UTC()
	h.publish(events.OutagePredicted{PredictionID: "maint-1", Host: "h1", Cause: "maintenance", ExpectedOfflineAt: offline,
		Confidence: 1, Evidence: map[string]any{}, Revision: 1})
	ps := h.movedOff("h1", len(streams), 10*time.Second)
	perHost := map[string]int{}
	for _, p := range ps {
		perHost[p.Host]++
		if p.Host != "h4" && p.Host != "h5" {
			t.Errorf("%s moved onto unfit host %s", p.Stream, p.Host)
		}
		if p.Epoch != 2 || p.FromHost != "h1" || p.MigrationID == "" || !p.Deadline.Equal(offline) {
			t.Errorf("placement %+v: want epoch 2, from h1, a migration id, deadline %v", p, offline)
		}
	}
	if perHost["h4"] != 15 || perHost["h5"] != 15 {
		t.Errorf("load not balanced: %v", perHost)
	}
	// Every decision is followed by exactly one reassigned and one migration record.
	ftu.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		subs := h.subjects("FERRY_EVENTS", subject.Reassigned("*"))
		if len(subs) != len(streams) {
			return fmt.Errorf("%d reassigned subjects", len(subs))
		}
		for s, n := range subs {
			if n != 1 {
				return fmt.Errorf("%s: %d reassigned", s, n)
			}
		}
		return nil
	})
	ras := eventsOn[events.Reassigned](h, subject.Reassigned("*"))
	for _, ra := range ras {
		p := ps[ra.Stream]
		if ra.MigrationID != p.MigrationID || ra.ToHost != p.Host || ra.ToURL != "rtsp://"+p.Host+".test:8554/"+ra.Stream ||
			ra.Epoch != 2 || ra.SessionID != p.SessionID || ra.ClientID != "agent-1" || !strings.Contains(ra.Reason, "maint-1") {
			t.Errorf("reassigned %+v for placement %+v", ra, p)
		}
	}
	for _, m := range h.migrationsN(len(streams)) {
		if m.State != migration.Decided || m.Fallback || !m.NeedCease || m.Kind != migration.KindEvacuation {
			t.Errorf("migration %+v", m)
		}
	}
}

func TestMigrationStateMachineDrivenByEvents(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	h.seed("cam-mbb", "h1", "agent-1", true)
	h.seed("cam-nocap", "h1", "agent-2", false)
	h.seed("cam-late", "h1", "agent-3", true)
	r := h.start(testConfig("p1"), false)
	r.lead(h)
	h.predict("h1", 3*time.Second)
	ps := h.movedOff("h1", 3, 5*time.Second)
	now := time.Now().UTC()

	mbb := ps["cam-mbb"]
	h.publish(events.NoticeOutcome{NoticeID: "n-1", MigrationID: mbb.MigrationID, Stream: "cam-mbb", ClientID: "agent-1",
		Channel: "nats", Attempts: 1, At: now, Outcome: "delivered"})
	h.publish(events.NoticeOutcome{NoticeID: "n-1", MigrationID: mbb.MigrationID, Stream: "cam-mbb", ClientID: "agent-1",
		Channel: "nats", Attempts: 1, At: now.Add(10 * time.Millisecond), Outcome: "acked"})
	h.publish(events.PublisherAttached{Stream: "cam-mbb", Host: "h2", SessionID: mbb.SessionID, MigrationID: mbb.MigrationID,
		Mode: "push", At: now.Add(50 * time.Millisecond)})
	h.publish(events.StreamCeased{Stream: "cam-mbb", Host: "h1", NewHost: "h2", MigrationID: mbb.MigrationID, At: now.Add(80 * time.Millisecond)})

	// The incapable client is moved break-before-make: it completes when it
	// reconnects through choose and attaches (no migration id on the attach).
	nocap := ps["cam-nocap"]
	h.publish(events.PublisherAttached{Stream: "cam-nocap", Host: "h2", SessionID: nocap.SessionID, Mode: "push", At: now.Add(time.Second)})

	var done []events.MigrationCompleted
	ftu.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		done = eventsOn[events.MigrationCompleted](h, subject.MigrationCompleted("*"))
		if len(done) != 2 {
			return fmt.Errorf("%d completed", len(done))
		}
		return nil
	})
	for _, c := range done {
		var steps []string
		for _, s := range c.Steps {
			steps = append(steps, s.Step)
		}
		switch c.Stream {
		case "cam-mbb":
			if !c.MakeBeforeBreak || strings.Join(steps, ",") != "decided,delivered,notified,attached,ceased,completed" || c.DurationMS <= 0 {
				t.Errorf("make-before-break completion %+v steps %v", c, steps)
			}
		case "cam-nocap":
			if c.MakeBeforeBreak || strings.Join(steps, ",") != "decided,fallback,attached,completed" {
				t.Errorf("fallback completion %+v steps %v", c, steps)
			}
		}
	}
	// The third never acks nor attaches: first the fallback, then failed at
	// the attach deadline (offline 3 s + grace 2 s).
	var failed []events.MigrationFailed
	ftu.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		failed = eventsOn[events.MigrationFailed](h, subject.MigrationFailed("*"))
		if len(failed) != 1 {
			return fmt.Errorf("%d failed", len(failed))
		}
		return nil
	})
	f := failed[0]
	if f.Stream != "cam-late" || f.Step != "attached" || !strings.Contains(f.Reason, "did not attach on h2") || f.ToHost != "h2" {
		t.Fatalf("failed %+v", f)
	}
	if c := counter(t, r.s.met.migrations.WithLabelValues("failed", "false")); c != 1 {
		t.Fatalf("failed metric %v", c)
	}
}

func TestNoHealthyCapacityFailsWithoutMoving(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-a", 100)
	h.host("h3", "zone-b", 2)
	h.host("h3b", "zone-b", 100, func(r *events.HostRecord) { r.Status = "draining" })
	h.predict("h2", time.Minute)
	streams := h.seedMany(5, "h1", "agent-1")
	cfg := testConfig("p1")
	cfg.NoCapacityRetry = 200 * time.Millisecond
	r := h.start(cfg, false)
	r.lead(h)
	h.predict("h1", 30*time.Second)

	// h3 takes two; the other three have nowhere healthy to go.
	ftu.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if n := len(eventsOn[events.MigrationFailed](h, subject.MigrationFailed("*"))); n != 3 {
			return fmt.Errorf("%d failed", n)
		}
		// Retried at least twice more without a second report.
		if c := counter(t, r.s.met.noCapacity); c < 9 {
			return fmt.Errorf("no-capacity attempts %v", c)
		}
		return nil
	})
	failed := eventsOn[events.MigrationFailed](h, subject.MigrationFailed("*"))
	if len(failed) != 3 {
		t.Fatalf("%d failed events after retries, want one per stream", len(failed))
	}
	for _, f := range failed {
		if f.Step != "decided" || !strings.Contains(f.Reason, "no healthy host with headroom") || !strings.Contains(f.Reason, "h2: outage predicted") ||
			!strings.Contains(f.Reason, "h3: full (2/2 streams)") || f.ToHost != "" {
			t.Errorf("failed %+v", f)
		}
	}
	ps := h.placements()
	onH1, onH3 := 0, 0
	for _, s := range streams {
		switch ps[s].Host {
		case "h1":
			onH1++
			if ps[s].Epoch != 1 {
				t.Errorf("%s rewritten on h1: %+v", s, ps[s])
			}
		case "h3":
			onH3++
		default:
			t.Errorf("%s placed on unfit %s", s, ps[s].Host)
		}
	}
	if onH1 != 3 || onH3 != 2 {
		t.Fatalf("h1 %d, h3 %d", onH1, onH3)
	}
	// Capacity appears: the rest move without another failure.
	h.host("h6", "zone-c", 100)
	h.movedOff("h1", len(streams), 10*time.Second)
}

func TestHostDownReassignsAtOnce(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	streams := h.seedMany(10, "h1", "agent-1")
	cfg := testConfig("p1")
	cfg.Pace = time.Second // host_down ignores pacing
	r := h.start(cfg, false)
	r.lead(h)
	start := time.Now()
	h.hostDown("h1")
	ps := h.movedOff("h1", len(streams), 5*time.Second)
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("host_down evacuation took %v", el)
	}
	for _, p := range ps {
		if p.Deadline.After(time.Now()) {
			t.Errorf("deadline %v in the future for host_down", p.Deadline)
		}
	}
	for _, m := range h.migrationsN(len(streams)) {
		if m.Kind != migration.KindHostDown || !m.Fallback || m.NeedCease {
			t.Errorf("migration %+v", m)
		}
	}
	// The agent reconnects at once and attaches: completed, break-before-make.
	p := ps["cam-0000"]
	h.publish(events.PublisherAttached{Stream: "cam-0000", Host: p.Host, SessionID: p.SessionID, MigrationID: p.MigrationID,
		Mode: "push", At: time.Now().UTC()})
	ftu.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		c := eventsOn[events.MigrationCompleted](h, subject.MigrationCompleted("cam-0000"))
		if len(c) != 1 || c[0].MakeBeforeBreak {
			return fmt.Errorf("completed %+v", c)
		}
		return nil
	})
}

func TestPacedEvacuationSpreadsDecisions(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	h.host("h3", "zone-c", 100)
	streams := h.seedMany(20, "h1", "agent-1")
	cfg := testConfig("p1")
	cfg.Pace = 100 * time.Millisecond
	r := h.start(cfg, false)
	r.lead(h)
	h.predict("h1", time.Minute)
	h.movedOff("h1", len(streams), 10*time.Second)
	// 10 moves per target, 100 ms apart on each target: at least 0.9 s
	// between a target's first and last decision.
	byTarget := map[string][]time.Time{}
	for _, m := range h.migrationsN(len(streams)) {
		byTarget[m.ToHost] = append(byTarget[m.ToHost], m.DecidedAt)
	}
	for host, ts := range byTarget {
		lo, hi := ts[0], ts[0]
		for _, t := range ts {
			if t.Before(lo) {
				lo = t
			}
			if t.After(hi) {
				hi = t
			}
		}
		if len(ts) != 10 || hi.Sub(lo) < 850*time.Millisecond {
			t.Errorf("target %s: %d moves over %v", host, len(ts), hi.Sub(lo))
		}
	}
}

func TestClearedPredictionStopsEvacuation(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	streams := h.seedMany(40, "h1", "agent-1")
	cfg := testConfig("p1")
	cfg.Pace = 100 * time.Millisecond
	r := h.start(cfg, false)
	r.lead(h)
	h.predict("h1", time.Minute)
	ftu.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := len(h.migrations()); n < 3 {
			return fmt.Errorf("%d moved", n)
		}
		return nil
	})
	h.publish(events.OutageCleared{PredictionID: "pred-h1", Host: "h1", Cause: "maintenance", Reason: "cancelled"})
	ftu.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if c := counter(t, r.s.met.evacuating); c != 0 {
			return fmt.Errorf("%v evacuations running", c)
		}
		return nil
	})
	moved := 0
	for _, p := range h.placements() {
		if p.Host != "h1" {
			moved++
		}
	}
	if moved == 0 || moved >= len(streams)-5 {
		t.Fatalf("%d of %d moved: the clear should have stopped the evacuation midway", moved, len(streams))
	}
}

func TestPullStreamEvacuationCommandsTheNewHost(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	h.seed("cam-pull", "h1", "ops", false, func(p *events.Placement) {
		p.Mode, p.SourceURL, p.SessionID = "pull", "rtsp://camera.local/s1", ""
	})
	r := h.start(testConfig("p1"), false)
	r.lead(h)
	h.predict("h1", time.Minute)
	p := h.movedOff("h1", 1, 5*time.Second)["cam-pull"]
	var c events.PullCommand
	ftu.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		var n uint64
		n, c = lastCommand[events.PullCommand](h, subject.IngestPull("h2"))
		if n != 1 {
			return fmt.Errorf("%d pull commands", n)
		}
		return nil
	})
	if c.Host != "h2" || c.Stream != "cam-pull" || c.SourceURL != "rtsp://camera.local/s1" || c.MigrationID != p.MigrationID {
		t.Fatalf("pull command %+v for placement %+v", c, p)
	}
	// No notice step: the migration waits for the new host's attach, not an ack.
	m := h.migrationsN(1)[0]
	if m.Fallback || m.Mode != "pull" {
		t.Fatalf("migration %+v", m)
	}
	ra := eventsOn[events.Reassigned](h, subject.Reassigned("cam-pull"))
	if len(ra) != 1 || ra[0].Mode != "pull" {
		t.Fatalf("reassigned %+v", ra)
	}
}

// TestEvacuationsShareTheWriteBound: PLACEMENT_WORKERS bounds the moves
// written at once across every evacuation, not per evacuation: two hosts
// evacuated together with Workers=2 never have more than two moves in
// flight (per-evacuation bounds allowed four), and every stream still moves.
func TestEvacuationsShareTheWriteBound(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-a", 100)
	h.host("h3", "zone-b", 100)
	h.host("h4", "zone-c", 100)
	for i := range 12 {
		h.seed(fmt.Sprintf("cam-1-%02d", i), "h1", fmt.Sprintf("agent-1-%d", i), true)
		h.seed(fmt.Sprintf("cam-2-%02d", i), "h2", fmt.Sprintf("agent-2-%d", i), true)
	}
	h.predict("h1", 2*time.Minute)
	h.predict("h2", 2*time.Minute)
	cfg := testConfig("a")
	cfg.Workers, cfg.Pace = 2, 0
	r := h.start(cfg, false)
	ftu.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, host := range []string{"h1", "h2"} {
			if _, ok := r.s.view.EvacuationOf(host); !ok {
				return fmt.Errorf("%s not to be evacuated yet", host)
			}
		}
		return nil
	})
	d := newDecider(r.s)
	ctx, cancel := context.WithCancel(h.ctx)
	var wg sync.WaitGroup
	for _, host := range []string{"h1", "h2"} {
		wg.Add(1)
		go func() { defer wg.Done(); d.evacuate(ctx, host) }()
	}
	h.movedOff("h1", 24, 20*time.Second)
	h.movedOff("h2", 24, 20*time.Second)
	cancel()
	wg.Wait()
	if p := d.peak.Load(); p < 1 || p > 2 {
		t.Fatalf("%d moves in flight at the peak, want 1..2 (PLACEMENT_WORKERS=2 across both evacuations)", p)
	}
	if n := len(d.writes); n != 0 {
		t.Fatalf("%d moves still counted in flight after the evacuations", n)
	}
	t.Logf("peak %d moves in flight", d.peak.Load())
}
