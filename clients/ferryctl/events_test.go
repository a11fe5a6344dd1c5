package ferryctl_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
)

// chain is a seeded migration: m-1 moves cam-1 from ingest-2 to ingest-1
// after a maintenance prediction; m-2 moves cam-2 from ingest-3 to ingest-1
// and fails.
type chain struct {
	t0     time.Time // the decision of m-1
	events []seeded
}

type seeded struct {
	at   time.Time
	data events.Data
}

func seedChain(t *testing.T, env *testutil.Env) chain {
	t.Helper()
	t0 := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	deadline := t0.Add(30 * time.Second)
	caps := events.Capabilities{CanMove: true, Channels: []string{"nats"}}
	c := chain{t0: t0, events: []seeded{
		{at(-2500), events.MaintenanceScheduled{MaintenanceID: "mw-1", Host: "ingest-2", StartAt: deadline, EndAt: deadline.Add(time.Hour), Reason: "kernel upgrade"}},
		{at(-2000), events.OutagePredicted{PredictionID: "p-1", Host: "ingest-2", Cause: "maintenance", ExpectedOfflineAt: deadline, Confidence: 1, Evidence: map[string]any{"maintenance_id": "mw-1"}, Revision: 1}},
		{at(0), events.Reassigned{MigrationID: "m-1", Stream: "cam-1", FromHost: "ingest-2", ToHost: "ingest-1", ToURL: "rtsp://127.0.0.1:8554/cam-1", Epoch: 2, Deadline: deadline, Reason: "maintenance", SessionID: "s-1", ClientID: "agent-1", Mode: "push"}},
		{at(20), events.Reassigned{MigrationID: "m-2", Stream: "cam-2", FromHost: "ingest-3", ToHost: "ingest-1", ToURL: "rtsp://127.0.0.1:8554/cam-2", Epoch: 5, Deadline: deadline, Reason: "host_down", Mode: "push"}},
		{at(40), events.NoticeOutcome{NoticeID: "n-1", MigrationID: "m-1", Stream: "cam-1", ClientID: "agent-1", Channel: "nats", Attempts: 1, At: at(40), Outcome: "delivered"}},
		{at(120), events.NoticeOutcome{NoticeID: "n-1", MigrationID: "m-1", Stream: "cam-1", ClientID: "agent-1", Channel: "nats", Attempts: 1, At: at(120), Outcome: "acked"}},
		{at(300), events.PublisherAttached{Stream: "cam-1", Host: "ingest-1", SessionID: "s-1", ClientID: "agent-1", Capabilities: caps, MigrationID: "m-1", Mode: "push", At: at(300)}},
		{at(380), events.EdgeSwitched{Stream: "cam-1", Edge: "edge-1", FromHost: "ingest-2", ToHost: "ingest-1", MigrationID: "m-1", Mode: "sequence", GapMS: 40, At: at(380)}},
		{at(450), events.StreamCeased{Stream: "cam-1", Host: "ingest-2", NewHost: "ingest-1", MigrationID: "m-1", ReadersRelayed: 1, At: at(450)}},
		{at(500), events.MigrationCompleted{MigrationID: "m-1", Stream: "cam-1", FromHost: "ingest-2", ToHost: "ingest-1", DurationMS: 500, MakeBeforeBreak: true,
			Steps: []events.StepTiming{{Step: "decided", At: at(0)}, {Step: "notified", At: at(120), SinceStartMS: 120}, {Step: "completed", At: at(500), SinceStartMS: 500}}}},
		{at(900), events.MigrationFailed{MigrationID: "m-2", Stream: "cam-2", FromHost: "ingest-3", ToHost: "ingest-1", Step: "attached", Reason: "publisher did not attach before the deadline"}},
	}}
	// publish out of time order: the stream order must not be what orders a trace
	order := []int{0, 1, 2, 3, 9, 4, 6, 5, 8, 7, 10}
	for _, i := range order {
		publishAt(t, env.JS, c.events[i].at, c.events[i].data)
	}
	return c
}

func TestEventsPrintsEveryEvent(t *testing.T) {
	env := testutil.NATS(t)
	c := seedChain(t, env)
	out := lines(mustCtl(t, env.URL, "events").stdout)
	if len(out) != len(c.events) {
		t.Fatalf("%d lines for %d events:\n%s", len(out), len(c.events), strings.Join(out, "\n"))
	}
	clock := func(t time.Time) string { return t.Local().Format("15:04:05.000") }
	// the third published event is m-1's reassigned
	want := clock(c.t0) + " placement.reassigned cam-1 ingest-2 -> ingest-1 migration m-1 deadline " +
		clock(c.t0.Add(30*time.Second)) + " mode push reason maintenance"
	if out[2] != want {
		t.Errorf("reassigned line\n got %q\nwant %q", out[2], want)
	}
	for _, l := range out {
		if strings.Contains(l, "invalid") || !strings.Contains(l, ".") {
			t.Errorf("line %q", l)
		}
	}
	if !strings.Contains(out[4], "placement.migration_completed cam-1 ingest-2 -> ingest-1 migration m-1 in 500.0ms make-before-break") {
		t.Errorf("completed line %q", out[4])
	}
	if !strings.Contains(out[1], "health.outage_predicted ingest-2 cause maintenance offline "+clock(c.t0.Add(30*time.Second))+" confidence 1.00 prediction p-1") {
		t.Errorf("prediction line %q", out[1])
	}
}

func TestEventsFilters(t *testing.T) {
	env := testutil.NATS(t)
	seedChain(t, env)
	for _, tc := range []struct {
		args  []string
		want  int
		every string
	}{
		{[]string{"--stream", "cam-1"}, 7, " cam-1 "},
		{[]string{"--stream", "cam-2"}, 2, " cam-2 "},
		{[]string{"--host", "ingest-3"}, 2, "ingest-3"},
		{[]string{"--host", "ingest-2"}, 6, "ingest-2"},
		{[]string{"--host", "edge-1"}, 1, "edge.switched"},
		{[]string{"--stream", "cam-1", "--host", "ingest-2"}, 4, "ingest-2"},
		{[]string{"--type", "health"}, 1, "health.outage_predicted"},
		{[]string{"--stream", "cam-1", "--type", "notify"}, 2, "notify."},
		{[]string{"--stream", "cam-9"}, 0, ""},
		{[]string{"--since", "10s"}, 0, ""}, // every event is a minute old
		{[]string{"--since", "10m", "--stream", "cam-2"}, 2, "cam-2"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out := lines(mustCtl(t, env.URL, append([]string{"events"}, tc.args...)...).stdout)
			if len(out) != tc.want {
				t.Fatalf("%d lines, want %d:\n%s", len(out), tc.want, strings.Join(out, "\n"))
			}
			for _, l := range out {
				if !strings.Contains(l, tc.every) {
					t.Errorf("line %q lacks %q", l, tc.every)
				}
			}
		})
	}

	// --json: one envelope per line
	out := lines(mustCtl(t, env.URL, "events", "--json", "--stream", "cam-2").stdout)
	for _, l := range out {
		var env events.Envelope
		if err := json.Unmarshal([]byte(l), &env); err != nil || env.SpecVersion != "1.0" {
			t.Errorf("line %q: %v", l, err)
		}
	}
}

func TestEventsFollow(t *testing.T) {
	env := testutil.NATS(t)
	seedChain(t, env)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testutil.Buffer
	var wg sync.WaitGroup
	code := -1
	wg.Add(1)
	go func() {
		defer wg.Done()
		code = ferryctl.Run(ctx, []string{"events", "--follow", "--stream", "cam-7"}, envFor(env.URL), &out, &errb)
	}()
	// publish until the follower (which starts at new events) shows one
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if strings.Contains(out.String(), "placement.reassigned cam-7") {
			return nil
		}
		publishAt(t, env.JS, time.Now(), events.Reassigned{MigrationID: fmt.Sprintf("m-7-%d", time.Now().UnixNano()), Stream: "cam-7",
			FromHost: "ingest-1", ToHost: "ingest-2", ToURL: "rtsp://h/cam-7", Epoch: 1, Deadline: time.Now(), Reason: "drain", Mode: "push"})
		publishAt(t, env.JS, time.Now(), events.Reassigned{MigrationID: fmt.Sprintf("m-8-%d", time.Now().UnixNano()), Stream: "cam-8",
			FromHost: "ingest-1", ToHost: "ingest-2", ToURL: "rtsp://h/cam-8", Epoch: 1, Deadline: time.Now(), Reason: "drain", Mode: "push"})
		return fmt.Errorf("follower printed %q", out.String())
	})
	cancel()
	wg.Wait()
	if code != 0 {
		t.Errorf("exit %d after Ctrl-C, stderr %q", code, errb.String())
	}
	if s := out.String(); strings.Contains(s, "cam-1") || strings.Contains(s, "cam-8") {
		t.Errorf("follower printed old or other streams' events:\n%s", s)
	}
}
