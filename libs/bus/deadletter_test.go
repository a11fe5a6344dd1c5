package bus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
)

// fetchOne creates the durable consumer cfg on stream and fetches its next
// message, which must exist; it returns the consumer and the message.
func fetchOne(t *testing.T, ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, jetstream.Msg) {
	t.Helper()
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	if len(got) != 1 {
		t.Fatalf("%s/%s: fetched %d messages, want 1 (%v)", stream, cfg.Durable, len(got), batch.Error())
	}
	return cons, got[0]
}

// terminate pulls the next message of a new consumer durable on stream
// (filter f) and terminates it, which raises a MSG_TERMINATED advisory.
func terminate(t *testing.T, ctx context.Context, js jetstream.JetStream, stream, durable, f string) {
	t.Helper()
	_, m := fetchOne(t, ctx, js, stream, jetstream.ConsumerConfig{Durable: durable, FilterSubject: f,
		AckPolicy: jetstream.AckExplicitPolicy})
	if err := m.TermWithReason("test: dead"); err != nil {
		t.Fatal(err)
	}
}

// exhaust pulls the next message of a new consumer durable on stream
// (filter f, one delivery) without acking it, which raises a MAX_DELIVERIES
// advisory once its ack wait ends (a terminated message would be gone from a
// work-queue stream).
func exhaust(t *testing.T, ctx context.Context, js jetstream.JetStream, stream, durable, f string) {
	t.Helper()
	cons, _ := fetchOne(t, ctx, js, stream, jetstream.ConsumerConfig{Durable: durable, FilterSubject: f,
		AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 1, AckWait: 200 * time.Millisecond})
	// the server notices the exhausted message when it looks for the next one
	for range 5 {
		if b, err := cons.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond)); err == nil {
			for range b.Messages() {
			}
		}
	}
}

// advisories waits until the advisories stream holds n messages.
func advisories(t *testing.T, ctx context.Context, js jetstream.JetStream, n uint64) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		st, err := js.Stream(ctx, bus.StreamAdvisories)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != n {
			return fmt.Errorf("%d advisories, want %d", info.State.Msgs, n)
		}
		return nil
	})
}

func forwarderInfo(ctx context.Context, js jetstream.JetStream, durable string) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, bus.StreamAdvisories, durable)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// TestDeadLettersSplitByStream: the shared forwarder (bus.DeadLetters, run
// by every control-plane service) takes the advisories of events, telemetry
// and heartbeats only; a dead command is left to bus.CommandDeadLetters (the
// notifier's), which copies it and deletes the original.
func TestDeadLettersSplitByStream(t *testing.T) {
	env := testutil.NATS(t)
	ctx := testutil.Context(t)
	log := testutil.Logger(t)

	if _, err := events.Publish(ctx, env.JS, "test", events.DrainCommand{CommandID: "c-dead", Host: "ingest-1", Reason: "deploy"}); err != nil {
		t.Fatal(err)
	}
	exhaust(t, ctx, env.JS, bus.StreamCommands, "ingest-ingest-1", subject.IngestCommands("ingest-1"))
	if _, err := events.Publish(ctx, env.JS, "test", events.Draining{Host: "ingest-9", Deadline: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	terminate(t, ctx, env.JS, bus.StreamEvents, "t-events", subject.AllEvents)
	advisories(t, ctx, env.JS, 2)

	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- bus.RunDeadLetters(sctx, env.JS, log, bus.DeadLetters) }()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		dl, err := dlqMessages(ctx, env.JS)
		if err != nil {
			return err
		}
		if len(dl) != 1 || dl[0].Header.Get(bus.HeaderDLQStream) != bus.StreamEvents {
			return fmt.Errorf("%d dead letters, want the event only", len(dl))
		}
		info, err := forwarderInfo(ctx, env.JS, bus.DeadLetterDurable)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.AckFloor.Consumer != 1 {
			return fmt.Errorf("%s: pending %d, ack pending %d, acked %d", bus.DeadLetterDurable,
				info.NumPending, info.NumAckPending, info.AckFloor.Consumer)
		}
		return nil
	})
	// Still only the event, still only one advisory ever delivered to it.
	time.Sleep(300 * time.Millisecond)
	if dl, err := dlqMessages(ctx, env.JS); err != nil || len(dl) != 1 {
		t.Fatalf("%d dead letters (%v), want the event only", len(dl), err)
	}
	if info, err := forwarderInfo(ctx, env.JS, bus.DeadLetterDurable); err != nil || info.Delivered.Consumer != 1 {
		t.Fatalf("%s took %+v (%v), want the event's advisory only", bus.DeadLetterDurable, info.Delivered, err)
	}
	t.Logf("%s (events, telemetry, heartbeats): forwarded the event, left the command's advisory alone", bus.DeadLetterDurable)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	go func() {
		if err := bus.RunDeadLetters(ctx, env.JS, log, bus.CommandDeadLetters); err != nil {
			t.Error(err)
		}
	}()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		dl, err := dlqMessages(ctx, env.JS)
		if err != nil {
			return err
		}
		if len(dl) != 2 || dl[1].Header.Get(bus.HeaderDLQStream) != bus.StreamCommands ||
			dl[1].Header.Get(bus.HeaderDLQSubject) != subject.IngestDrain("ingest-1") {
			return fmt.Errorf("%d dead letters, want the event's and the command's", len(dl))
		}
		st, err := env.JS.Stream(ctx, bus.StreamCommands)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return fmt.Errorf("%d commands left, want the dead one deleted", info.State.Msgs)
		}
		return nil
	})
	if info, err := forwarderInfo(ctx, env.JS, bus.CommandDeadLetterDurable); err != nil || info.Delivered.Consumer != 1 {
		t.Fatalf("%s took %+v (%v), want the command's advisory only", bus.CommandDeadLetterDurable, info.Delivered, err)
	}
	t.Logf("%s (commands): forwarded the command and deleted the original", bus.CommandDeadLetterDurable)
}

// TestDeadLetterDurableNarrowedInPlace: a deployment has the forwarder's
// durable from before the split, unfiltered, with advisories already
// forwarded; JetStream lets a durable's filter change, so RunDeadLetters
// narrows it in place and what it acked is not forwarded again.
func TestDeadLetterDurableNarrowedInPlace(t *testing.T) {
	env := testutil.NATS(t)
	ctx := testutil.Context(t)
	log := testutil.Logger(t)

	old, err := env.JS.CreateOrUpdateConsumer(ctx, bus.StreamAdvisories, jetstream.ConsumerConfig{
		Durable: bus.DeadLetterDurable, AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, env.JS, "test", events.Draining{Host: "ingest-8", Deadline: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	terminate(t, ctx, env.JS, bus.StreamEvents, "t-events", subject.AllEvents)
	advisories(t, ctx, env.JS, 1)
	// the old forwarder took it (and forwarded it; not needed here)
	batch, err := old.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}

	go func() { _ = bus.RunDeadLetters(ctx, env.JS, log, bus.DeadLetters) }()
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		info, err := forwarderInfo(ctx, env.JS, bus.DeadLetterDurable)
		if err != nil {
			return err
		}
		if len(info.Config.FilterSubjects) != 3 {
			return fmt.Errorf("filters %v, want one per forwarded stream", info.Config.FilterSubjects)
		}
		return nil
	})
	if _, err := events.Publish(ctx, env.JS, "test", events.Draining{Host: "ingest-9", Deadline: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	terminate(t, ctx, env.JS, bus.StreamEvents, "t-events", subject.AllEvents)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		dl, err := dlqMessages(ctx, env.JS)
		if err != nil {
			return err
		}
		if len(dl) != 1 || dl[0].Header.Get(bus.HeaderDLQSeq) != "2" {
			return fmt.Errorf("%d dead letters, want only the new one", len(dl))
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	if dl, err := dlqMessages(ctx, env.JS); err != nil || len(dl) != 1 {
		t.Fatalf("%d dead letters (%v): the one acked before the update was forwarded again", len(dl), err)
	}
}
