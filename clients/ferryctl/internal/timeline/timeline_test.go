package timeline

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/events"
)

func TestShortType(t *testing.T) {
	for in, want := range map[string]string{
		"io.ferry.placement.reassigned.v1": "placement.reassigned",
		"io.ferry.edge.switched.v12":       "edge.switched",
		"io.ferry.ops.thing.vx":            "ops.thing.vx",
		"other":                            "other",
	} {
		if got := ShortType(in); got != want {
			t.Errorf("ShortType(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	_, valid, err := events.Marshal("test", events.HostDown{Host: "ingest-1", LastSeen: time.Unix(0, 0), DetectedAt: time.Unix(1, 0), Reason: "heartbeat-silence"})
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	_ = json.Unmarshal(valid, &raw)
	raw["data"].(map[string]any)["host"] = "bad host"
	invalid, _ := json.Marshal(raw)

	for _, tc := range []struct {
		name     string
		body     []byte
		wantErr  bool
		invalid  bool
		lineHas  string
		entityIs string
	}{
		{"valid", valid, false, false, "health.host_down ingest-1 last-seen", "ingest-1"},
		{"fails its schema", invalid, false, true, "(invalid: invalid io.ferry.health.host_down.v1 at /data/host", "ingest-1"},
		{"not json", []byte("hello"), true, true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Parse(7, "ferry.evt.health.host_down.ingest-1", tc.body)
			if (err != nil) != tc.wantErr || (ev.Invalid != "") != tc.invalid {
				t.Fatalf("err %v invalid %q", err, ev.Invalid)
			}
			if tc.wantErr {
				return
			}
			if l := Line(ev, time.UTC); !strings.Contains(l, tc.lineHas) {
				t.Errorf("line %q lacks %q", l, tc.lineHas)
			}
			if ev.Entity() != tc.entityIs || ev.Seq != 7 {
				t.Errorf("entity %q seq %d", ev.Entity(), ev.Seq)
			}
		})
	}
}

func TestBuildTraceUnknown(t *testing.T) {
	_, err := BuildTrace("m-x", nil, time.UTC)
	if !errors.Is(err, ErrNoSuchMigration) {
		t.Errorf("err %v", err)
	}
}

func TestLineUnknownType(t *testing.T) {
	ev := Event{Subject: "ferry.evt.future.thing.cam-3", Env: events.Envelope{Type: "io.ferry.future.thing.v2", Time: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)},
		Data: map[string]any{"stream": "cam-3", "migration_id": "m-9"}}
	if got, want := Line(ev, time.UTC), "03:04:05.006 future.thing cam-3 stream cam-3 migration_id m-9"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
}

// TestLineDeparturesAndReleases: a host that left and a released placement
// say why (and what was left), not only their entity.
func TestLineDeparturesAndReleases(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		d    events.Data
		want string
	}{
		{events.HostLeft{Host: "ingest-2", Reason: "drain command", StreamsLeft: 0, At: t0},
			`03:04:05.000 ingest.host_left ingest-2 reason "drain command" streams-left 0`},
		{events.Released{Stream: "cam-1", Host: "ingest-1", Epoch: 3, Mode: "push", ClientID: "agent-1", IdleSince: t0.Add(-10 * time.Minute),
			Reason: "no publisher for 10m0s", At: t0},
			`03:04:05.000 placement.released cam-1 on ingest-1 client agent-1 mode push idle-since 02:54:05.000 reason "no publisher for 10m0s"`},
	} {
		_, body, err := events.Marshal("test", tc.d)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := Parse(1, tc.d.EventSubject(), body)
		if err != nil || ev.Invalid != "" {
			t.Fatalf("parse: %v %q", err, ev.Invalid)
		}
		ev.Env.Time = t0
		if got := Line(ev, time.UTC); got != tc.want {
			t.Errorf("Line = %q\n   want %q", got, tc.want)
		}
	}
}

func TestBuildTraceDurationEndsAtOutcome(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev := func(ms int, typ string, data map[string]any) Event {
		data["migration_id"] = "m-1"
		return Event{Env: events.Envelope{Type: typ, Time: t0.Add(time.Duration(ms) * time.Millisecond)}, Data: data}
	}
	evs := []Event{
		ev(1000, events.TypeEdgeSwitched, map[string]any{"stream": "cam-1"}), // after the outcome
		ev(80, events.TypeMigrationCompleted, map[string]any{"stream": "cam-1", "make_before_break": true}),
		ev(0, events.TypeReassigned, map[string]any{"stream": "cam-1", "from_host": "a", "to_host": "b"}),
	}
	tr, err := BuildTrace("m-1", evs, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if tr.DurationMS != 80 || tr.Outcome != OutcomeCompleted || len(tr.Steps) != 3 || tr.Steps[2].Step != "edge.switched" || tr.Steps[2].SinceStartMS != 1000 {
		t.Errorf("trace %+v", tr)
	}
}
