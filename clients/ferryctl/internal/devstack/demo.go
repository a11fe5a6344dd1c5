package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl/stack"
	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
)

// runDemo drives one migration on a running stack.
func runDemo(ctx context.Context, s *stack.Stack, streamName string, lead time.Duration, say func(string, ...any)) (Result, error) {
	res := Result{Result: "fail"}
	pub, err := s.StartPublisher(ctx, streamName, "demo-agent")
	if err != nil {
		return res, err
	}
	say("synthetic camera %s started (ferry-publish, fake H.264 25 fps with frame counters)", streamName)

	from, err := waitPlaced(ctx, s, streamName, pub)
	if err != nil {
		return res, err
	}
	res.From = from
	say("placement put %s on %s", streamName, from)

	edge := s.Edge()
	url := edge.RTSPURL + "/" + streamName
	v, err := stack.Watch(ctx, url)
	if err != nil {
		return res, err
	}
	defer v.Close()
	if err := waitFor(ctx, 20*time.Second, func() error {
		if n := v.Frames(); n < 50 {
			return fmt.Errorf("viewer on %s has %d frames", url, n)
		}
		return nil
	}); err != nil {
		return res, err
	}
	say("viewer on %s receives the stream (%d frames so far)", url, v.Frames())

	mw := events.MaintenanceScheduled{
		MaintenanceID: "mw-" + randHex(6), Host: from,
		StartAt: time.Now().Add(lead).UTC(), EndAt: time.Now().Add(lead + 30*time.Minute).UTC(),
		Reason: "demo: kernel upgrade", RequestedBy: "ferryctl demo",
	}
	// Every step is timed from the maintenance event's own time; the watcher
	// sees that event first, so it sets t0 before anything is printed.
	var t0 time.Time
	chain, err := stack.WatchChain(ctx, s.JS, func(e stack.Seen) {
		if e.Env.Type == events.TypeMaintenanceScheduled && e.Str("maintenance_id") == mw.MaintenanceID {
			t0 = e.At
		}
		if t0.IsZero() || (e.Str("stream") != streamName && e.Str("host") != from) {
			return
		}
		say("  +%7.1fms  %s", msSince(t0, e.At), describe(e))
	})
	if err != nil {
		return res, err
	}
	defer chain.Stop()

	if _, err := events.Publish(ctx, s.JS, "ferryctl/demo", mw); err != nil {
		return res, err
	}
	mb, _ := json.Marshal(mw)
	if kv, err := s.JS.KeyValue(ctx, bus.BucketMaintenance); err == nil {
		_, _ = kv.Put(ctx, mw.MaintenanceID, mb)
	}
	say("maintenance %s scheduled on %s, window starts in %v", mw.MaintenanceID, from, lead)

	var done stack.Seen
	err = waitFor(ctx, lead+45*time.Second, func() error {
		if e, ok := chain.First(events.TypeMigrationCompleted, stack.Field("stream", streamName)); ok {
			done = e
			return nil
		}
		if e, ok := chain.First(events.TypeMigrationFailed, stack.Field("stream", streamName)); ok {
			done = e
			return nil
		}
		if err := s.Check(); err != nil {
			return err
		}
		if pub.Exited() {
			return fmt.Errorf("ferry-publish exited (log %s)", pub.Log())
		}
		return fmt.Errorf("migration of %s not finished", streamName)
	})
	if err != nil {
		return res, err
	}
	res.MigrationID = done.Str("migration_id")
	res.To = done.Str("to_host")
	// The edge follows the placement; wait for its switch, then keep watching
	// three more seconds so that a late gap would show.
	_ = waitFor(ctx, 10*time.Second, func() error {
		if _, ok := chain.First(events.TypeEdgeSwitched, stack.Field("migration_id", res.MigrationID)); !ok {
			return fmt.Errorf("edge has not switched")
		}
		return nil
	})
	after := v.Frames()
	_ = waitFor(ctx, 10*time.Second, func() error {
		if v.Frames() < after+75 {
			return fmt.Errorf("viewer stalled at %d frames", v.Frames())
		}
		return nil
	})
	rep := v.Close()
	res.FramesSent = rep.FramesSent
	res.FramesReceived = rep.Frames
	res.FramesLost = rep.Missing
	res.Duplicates = rep.Duplicates
	res.MaxGapMS = rep.MaxGapMS

	at := func(typ string, match func(stack.Seen) bool) float64 {
		e, ok := chain.First(typ, match)
		if !ok {
			return -1
		}
		return msSince(t0, e.At)
	}
	mig := stack.Field("migration_id", res.MigrationID)
	res.PredictedMS = at(events.TypeOutagePredicted, stack.Field("host", from))
	res.ReassignedMS = at(events.TypeReassigned, mig)
	res.NotifiedMS = at(events.TypeNoticeAcked, mig)
	if res.NotifiedMS < 0 {
		res.NotifiedMS = at(events.TypeNoticeDelivered, mig)
	}
	res.AttachedMS = at(events.TypePublisherAttached, mig)
	res.CeasedMS = at(events.TypeStreamCeased, mig)
	res.CompletedMS = msSince(t0, done.At)

	say("viewer: %d frames received, %d lost, %d duplicated, longest gap %.1f ms, %d SSRC changes",
		rep.Frames, rep.Missing, rep.Duplicates, rep.MaxGapMS, rep.SSRCChanges)
	switch {
	case done.Env.Type == events.TypeMigrationFailed:
		res.Reason = "migration failed: " + done.Str("reason")
	case rep.Disconnected != "":
		res.Reason = "viewer disconnected: " + rep.Disconnected
	case rep.Missing != 0:
		res.Reason = fmt.Sprintf("%d frames lost", rep.Missing)
	case rep.Duplicates != 0:
		res.Reason = fmt.Sprintf("%d frames duplicated", rep.Duplicates)
	case rep.Frames == 0:
		res.Reason = "viewer received nothing"
	default:
		res.Result = "ok"
		say("stream %s moved %s -> %s with zero frames lost", streamName, res.From, res.To)
		return res, nil
	}
	return res, fmt.Errorf("%s", res.Reason)
}

func waitPlaced(ctx context.Context, s *stack.Stack, streamName string, pub *stack.Publisher) (string, error) {
	kv, err := s.JS.KeyValue(ctx, bus.BucketPlacements)
	if err != nil {
		return "", err
	}
	var host string
	err = waitFor(ctx, 20*time.Second, func() error {
		if pub.Exited() {
			return fmt.Errorf("ferry-publish exited (log %s)", pub.Log())
		}
		e, err := kv.Get(ctx, events.PlacementKey(streamName))
		if err != nil {
			return fmt.Errorf("no placement for %s yet: %v", streamName, err)
		}
		var p events.Placement
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			return err
		}
		host = p.Host
		return nil
	})
	return host, err
}

// waitFor polls f until it returns nil, ctx ends, or wait passes.
func waitFor(ctx context.Context, wait time.Duration, f func() error) error {
	deadline := time.Now().Add(wait)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
