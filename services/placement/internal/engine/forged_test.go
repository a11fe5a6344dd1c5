package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	ftu "github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/placement/internal/migration"
)

// TestForgedLifecycleEventsAreDeadLettered: a stream_ceased or
// publisher_attached from a host that is neither the stream's old nor its new
// home, or one whose subject (bound to the publisher's credential) names
// another host than its body, changes nothing and lands in the dead-letter
// stream with the reason; the genuine events still complete the migration.
func TestForgedLifecycleEventsAreDeadLettered(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	h.host("h3", "zone-a", 100)
	h.seed("cam-f", "h1", "agent-1", true)
	r := h.start(testConfig("p1"), false)
	r.lead(h)
	go func() { _ = bus.RunDeadLetters(h.ctx, h.env.JS, zerolog.Nop(), bus.DeadLetters) }()
	h.predict("h1", 20*time.Second)
	p := h.movedOff("h1", 1, 5*time.Second)["cam-f"]
	bystander := "h3"
	if p.Host == "h3" {
		bystander = "h2"
	}
	now := time.Now().UTC()
	// A bystander host reports the stream ceased and attached, in its own name.
	h.publish(events.StreamCeased{Stream: "cam-f", Host: bystander, NewHost: p.Host, MigrationID: p.MigrationID, At: now})
	h.publish(events.PublisherAttached{Stream: "cam-f", Host: bystander, SessionID: p.SessionID, MigrationID: p.MigrationID, Mode: "push", At: now})
	// The bystander speaks in the old home's name: its credential lets it
	// publish only on subjects ending with its own id.
	_, body, err := events.Marshal("forger", events.StreamCeased{Stream: "cam-f", Host: "h1", NewHost: p.Host, MigrationID: p.MigrationID, At: now})
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(subject.StreamCeased("cam-f", bystander))
	msg.Data = body
	if _, err := h.env.JS.PublishMsg(h.ctx, msg); err != nil {
		t.Fatal(err)
	}

	var dead []deadLetter
	ftu.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		dead = h.deadLetters()
		if len(dead) < 3 {
			return fmt.Errorf("%d dead letters: %+v", len(dead), dead)
		}
		return nil
	})
	for _, d := range dead {
		t.Logf("host %s -> forged %s for cam-f (home %s, moving from h1 in %s): dead-lettered (reason %q)",
			d.reporter, d.what, p.Host, p.MigrationID, d.reason)
	}
	var reasons []string
	for _, d := range dead {
		reasons = append(reasons, d.reason)
	}
	slices.Sort(reasons)
	for i, want := range []string{
		"forged lifecycle event: io.ferry.ingest.publisher_attached.v1 from " + bystander + ", which is neither the old (h1) nor the new home (" + p.Host + ")",
		"forged lifecycle event: io.ferry.ingest.stream_ceased.v1 from " + bystander + ", which is neither the old (h1) nor the new home (" + p.Host + ")",
		"forged lifecycle event: io.ferry.ingest.stream_ceased.v1 names host h1 but was published by " + bystander,
	} {
		if !strings.HasPrefix(reasons[i], want) {
			t.Errorf("dead letter %d: reason %q, want it to start with %q", i, reasons[i], want)
		}
	}
	for _, rec := range h.migrations() {
		for _, s := range rec.Steps {
			if s.Step == "ceased" || s.Step == "attached" {
				t.Fatalf("a forged event advanced migration %s: steps %+v", rec.ID, rec.Steps)
			}
		}
	}

	// The genuine reports still complete it.
	h.publish(events.PublisherAttached{Stream: "cam-f", Host: p.Host, SessionID: p.SessionID, MigrationID: p.MigrationID, Mode: "push", At: now})
	h.publish(events.StreamCeased{Stream: "cam-f", Host: "h1", NewHost: p.Host, MigrationID: p.MigrationID, At: now.Add(time.Millisecond)})
	ftu.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if n := len(eventsOn[events.MigrationCompleted](h, subject.MigrationCompleted("cam-f"))); n != 1 {
			return fmt.Errorf("%d completed", n)
		}
		return nil
	})
	t.Logf("hosts %s and h1 -> genuine publisher_attached and stream_ceased for cam-f: migration %s completed", p.Host, p.MigrationID)
	// After the migration ended, its record still says who its homes were.
	// (a publisher_attached: a second stream_ceased of the same host and
	// migration would be the same event, deduplicated by its id)
	h.publish(events.PublisherAttached{Stream: "cam-f", Host: bystander, SessionID: p.SessionID, MigrationID: p.MigrationID,
		Mode: "push", At: now.Add(time.Second)})
	ftu.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		st, err := h.env.JS.Stream(h.ctx, bus.StreamDeadLetter)
		if err != nil {
			return err
		}
		info, err := st.Info(h.ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 4 {
			return fmt.Errorf("%d dead letters, want 4 (the late forgery too)", info.State.Msgs)
		}
		return nil
	})
	late := h.deadLetters()[3]
	t.Logf("host %s -> forged %s for cam-f after %s completed: dead-lettered (reason %q)", late.reporter, late.what, p.MigrationID, late.reason)
}

// deadLetter is one message of the dead-letter stream.
type deadLetter struct {
	what, reporter, stream, reason string
}

// deadLetters reads the dead-letter stream, in order.
func (h *harness) deadLetters() []deadLetter {
	h.t.Helper()
	st, err := h.env.JS.Stream(h.ctx, bus.StreamDeadLetter)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := st.Info(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []deadLetter
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(h.ctx, seq)
		if err != nil {
			continue
		}
		d := deadLetter{reason: m.Header.Get(bus.HeaderDLQReason)}
		subj := m.Header.Get(bus.HeaderDLQSubject)
		d.reporter = subject.ReportingHost(subj)
		if tok := strings.Split(subj, "."); len(tok) == 6 {
			d.what, d.stream = tok[3], tok[4]
		}
		out = append(out, d)
	}
	return out
}

// TestLifecycleEventsCheckedAgainstThePlacement: the rule every consumer of
// publisher_attached, publisher_detached and stream_ceased applies. A host
// speaks about a stream when it is the stream's home, the previous home of
// the move that brought it there, or a home of the migration it names; the
// legitimate late reports (an old home's detach after a move, a host that
// has left, a pull stream, a move the view has not seen yet) pass.
func TestLifecycleEventsCheckedAgainstThePlacement(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	h.host("h3", "zone-a", 100)
	h.seed("cam-home", "h1", "agent-1", true)
	h.seed("cam-moved", "h2", "agent-2", true, func(p *events.Placement) { p.FromHost, p.MigrationID = "h1", "m-moved" })
	h.seed("cam-pull", "h3", "", false, func(p *events.Placement) { p.Mode, p.SourceURL = "pull", "rtsp://camera/1" })
	// cam-twice went h4 -> h1 (m-first), then h1 -> h2; h4 has left the fleet
	h.seed("cam-twice", "h2", "agent-3", true, func(p *events.Placement) { p.FromHost, p.MigrationID = "h1", "m-second" })
	b, _ := json.Marshal(migration.Record{ID: "m-first", Stream: "cam-twice", FromHost: "h4", ToHost: "h1", Kind: migration.KindEvacuation})
	if _, err := h.env.Stores.Migrations.Create(h.ctx, "m-first", b); err != nil {
		t.Fatal(err)
	}
	r := h.start(testConfig("a"), false)
	// A move another replica wrote a moment ago: the record decides, not the view.
	pb, _ := json.Marshal(events.Placement{Stream: "cam-new", Host: "h3", Epoch: 1, Mode: "push", UpdatedAt: time.Now().UTC()})
	if _, err := h.env.Stores.Placements.Create(h.ctx, events.PlacementKey("cam-new"), pb); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                               string
		typ, reporter, stream, host, migID string
		want                               error // nil, errForged or errUnplaced
	}{
		{"detached from the home, no migration", events.TypePublisherDetached, "h1", "cam-home", "h1", "", nil},
		{"attached on the home", events.TypePublisherAttached, "h1", "cam-home", "h1", "", nil},
		{"attached on the new home of a move", events.TypePublisherAttached, "h2", "cam-moved", "h2", "m-moved", nil},
		{"detached from the old home after the move", events.TypePublisherDetached, "h1", "cam-moved", "h1", "m-moved", nil},
		{"ceased by the old home", events.TypeStreamCeased, "h1", "cam-moved", "h1", "m-moved", nil},
		{"pull stream's camera detached on its home", events.TypePublisherDetached, "h3", "cam-pull", "h3", "", nil},
		{"late detach of a host that left, named migration", events.TypePublisherDetached, "h4", "cam-twice", "h4", "m-first", nil},
		{"attached on a home the view has not seen yet", events.TypePublisherAttached, "h3", "cam-new", "h3", "", nil},
		{"stream without a placement", events.TypePublisherDetached, "h2", "cam-gone", "h2", "", errUnplaced},
		{"bystander attached", events.TypePublisherAttached, "h2", "cam-home", "h2", "", errForged},
		{"bystander detached", events.TypePublisherDetached, "h3", "cam-home", "h3", "", errForged},
		{"bystander ceased", events.TypeStreamCeased, "h3", "cam-moved", "h3", "", errForged},
		{"bystander names the move", events.TypeStreamCeased, "h3", "cam-moved", "h3", "m-moved", errForged},
		{"former home names a move it was not in", events.TypePublisherAttached, "h4", "cam-twice", "h4", "m-second", errForged},
		{"migration of another stream", events.TypePublisherAttached, "h4", "cam-home", "h4", "m-first", errForged},
		{"speaks in the home's name", events.TypeStreamCeased, "h3", "cam-home", "h1", "", errForged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.s.checkLifecycle(h.ctx, lifecycle{typ: tc.typ, reporter: tc.reporter, stream: tc.stream, host: tc.host,
				migrationID: tc.migID}, nil)
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("%v, want %v", err, tc.want)
			}
			res := "accepted"
			if err != nil {
				res = "refused: " + err.Error()
			}
			t.Logf("host %s -> %s for %s (as %s, migration %q): %s", tc.reporter, tc.typ, tc.stream, tc.host, tc.migID, res)
		})
	}
}

// TestForgedPresenceEventsAreDeadLettered: a bystander host's
// publisher_attached or publisher_detached for a stream placed elsewhere is
// dead-lettered with the reason and changes nothing: an idle stream is still
// released, at the time its own history says; the genuine reports around it
// (a home's attach and detach, an old home's detach after a move, a host that
// left, a pull stream) are not dead-lettered.
func TestForgedPresenceEventsAreDeadLettered(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 100)
	h.host("h2", "zone-b", 100)
	placedAt := time.Now().UTC().Truncate(time.Millisecond)
	placed := func(p *events.Placement) { p.PlacedAt, p.UpdatedAt = placedAt, placedAt }
	for _, s := range []string{"cam-idle", "cam-fa", "cam-fd"} {
		h.seed(s, "h1", "agent-"+s, true, placed)
	}
	h.seed("cam-live", "h1", "agent-live", true, placed)
	h.seed("cam-moved", "h2", "agent-moved", true, placed, func(p *events.Placement) { p.FromHost, p.MigrationID = "h1", "m-moved" })
	h.seed("cam-left", "h2", "agent-left", true, placed, func(p *events.Placement) { p.FromHost, p.MigrationID = "h9", "m-left" })
	h.seed("cam-pull", "h1", "", false, placed, func(p *events.Placement) { p.Mode, p.SourceURL = "pull", "rtsp://camera/1" })
	go func() { _ = bus.RunDeadLetters(h.ctx, h.env.JS, zerolog.Nop(), bus.DeadLetters) }()
	cfg := testConfig("a")
	cfg.ReleaseAfter = 3 * time.Second
	r := h.start(cfg, false)
	r.lead(h)
	ftu.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		_, err := h.env.JS.Consumer(h.ctx, bus.StreamEvents, ProgressDurable)
		return err
	})

	now := time.Now().UTC()
	att := func(stream, host, mode string) events.PublisherAttached {
		return events.PublisherAttached{Stream: stream, Host: host, SessionID: "s-" + stream, Mode: mode, At: now}
	}
	det := func(stream, host, mig string) events.PublisherDetached {
		return events.PublisherDetached{Stream: stream, Host: host, SessionID: "s-" + stream, MigrationID: mig, Reason: "closed", At: now}
	}
	genuine := []events.Data{
		att("cam-live", "h1", "push"),
		att("cam-moved", "h2", "push"), det("cam-moved", "h1", "m-moved"), // the old home lets go after the move
		det("cam-left", "h9", "m-left"), // h9 left the fleet; its last detach arrives late
		att("cam-pull", "h1", "pull"), det("cam-pull", "h1", ""),
	}
	for _, d := range genuine {
		h.publish(d)
	}
	// h2, alive, speaks in its own name about streams placed on h1.
	h.publish(att("cam-fa", "h2", "push"))
	h.publish(det("cam-fd", "h2", ""))

	var dead []deadLetter
	ftu.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		dead = h.deadLetters()
		if len(dead) < 2 {
			return fmt.Errorf("%d dead letters", len(dead))
		}
		cons, err := h.env.JS.Consumer(h.ctx, bus.StreamEvents, ProgressDurable)
		if err != nil {
			return err
		}
		info, err := cons.Info(h.ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("progress consumer: %d pending, %d unacked", info.NumPending, info.NumAckPending)
		}
		fwd, err := h.env.JS.Consumer(h.ctx, bus.StreamAdvisories, bus.DeadLetterDurable)
		if err != nil {
			return err
		}
		if fi, err := fwd.Info(h.ctx); err != nil || fi.NumPending != 0 || fi.NumAckPending != 0 {
			return fmt.Errorf("dead-letter forwarder not caught up (%v)", err)
		}
		return nil
	})
	for _, d := range dead {
		t.Logf("host %s -> forged %s for %s (home h1): dead-lettered (reason %q)", d.reporter, d.what, d.stream, d.reason)
	}
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want the 2 forgeries: %+v", len(dead), dead)
	}
	for _, want := range []deadLetter{
		{what: "publisher_attached", reporter: "h2", stream: "cam-fa",
			reason: "forged lifecycle event: io.ferry.ingest.publisher_attached.v1 from h2 about cam-fa, whose home is h1 (previous home none)"},
		{what: "publisher_detached", reporter: "h2", stream: "cam-fd",
			reason: "forged lifecycle event: io.ferry.ingest.publisher_detached.v1 from h2 about cam-fd, whose home is h1 (previous home none)"},
	} {
		if !slices.Contains(dead, want) {
			t.Errorf("no dead letter %+v in %+v", want, dead)
		}
	}
	t.Logf("genuine reports (%d: a home's attach and detach, an old home's detach after a move, a host that left, a pull camera): none dead-lettered", len(genuine))

	// Nothing changed: the idle streams, forged ones included, are released
	// as idle since their placement; the live one is kept.
	released := map[string]events.Released{}
	ftu.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		for _, e := range eventsOn[events.Released](h, subject.Released("*")) {
			released[e.Stream] = e
		}
		for _, s := range []string{"cam-idle", "cam-fa", "cam-fd"} {
			if _, ok := released[s]; !ok {
				return fmt.Errorf("%s not released yet", s)
			}
		}
		return nil
	})
	for _, s := range []string{"cam-idle", "cam-fa", "cam-fd"} {
		if got := released[s].IdleSince; !got.Equal(placedAt) {
			t.Errorf("%s released as idle since %s, want since its placement %s", s, got, placedAt)
		}
		t.Logf("%s released, idle since its placement (%s)", s, released[s].Reason)
	}
	if _, ok := released["cam-live"]; ok {
		t.Error("cam-live, whose home reports its publisher, was released")
	}
}
