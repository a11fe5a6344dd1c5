package engine

import (
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
	go func() { _ = bus.RunDeadLetters(h.ctx, h.env.JS, zerolog.Nop()) }()
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

	var reasons []string
	ftu.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		reasons = nil
		st, err := h.env.JS.Stream(h.ctx, bus.StreamDeadLetter)
		if err != nil {
			return err
		}
		info, err := st.Info(h.ctx)
		if err != nil {
			return err
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			if m, err := st.GetMsg(h.ctx, seq); err == nil {
				reasons = append(reasons, m.Header.Get(bus.HeaderDLQReason))
			}
		}
		if len(reasons) < 3 {
			return fmt.Errorf("%d dead letters: %q", len(reasons), reasons)
		}
		return nil
	})
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
}
