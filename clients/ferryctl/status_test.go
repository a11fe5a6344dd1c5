package ferryctl_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
)

type statusJSON struct {
	Hosts []struct {
		Host            string  `json:"host"`
		Zone            string  `json:"zone"`
		Role            string  `json:"role"`
		Status          string  `json:"status"`
		Streams         int     `json:"streams"`
		CapacityStreams int     `json:"capacity_streams"`
		Registered      bool    `json:"registered"`
		Heartbeat       string  `json:"heartbeat"`
		HeartbeatAgeS   float64 `json:"heartbeat_age_s"`
		Predictions     []struct {
			PredictionID string `json:"prediction_id"`
			Cause        string `json:"cause"`
		} `json:"predictions"`
		Down *struct {
			Reason string `json:"reason"`
		} `json:"down"`
		Left *struct {
			Reason      string `json:"reason"`
			StreamsLeft int    `json:"streams_left"`
		} `json:"left"`
	} `json:"hosts"`
	Streams []struct {
		events.Placement
		Publisher struct {
			Attached  bool      `json:"attached"`
			Host      string    `json:"host"`
			IdleSince time.Time `json:"idle_since"`
		} `json:"publisher"`
		Moving string `json:"moving"`
	} `json:"streams"`
	// Migrations keep placement's whole record under "record".
	Migrations []struct {
		MigrationID string          `json:"migration_id"`
		Stream      string          `json:"stream"`
		Step        string          `json:"step"`
		StartedAt   time.Time       `json:"started_at"`
		Record      json.RawMessage `json:"record"`
	} `json:"migrations"`
	Maintenance []struct {
		MaintenanceID string `json:"maintenance_id"`
		Host          string `json:"host"`
	} `json:"maintenance"`
}

func seedFleet(t *testing.T, env *testutil.Env) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	started := now.Add(-time.Hour)
	putJSON(t, env.JS, bus.BucketHosts, "ingest-1", events.HostRecord{Host: "ingest-1", RTSPURL: "rtsp://127.0.0.1:8554", Zone: "zone-a", Role: "origin",
		CapacityStreams: 100, Streams: 1, Readers: 3, BitrateIn: 2_500_000, Status: "ok", StartedAt: started, UpdatedAt: now})
	putJSON(t, env.JS, bus.BucketHosts, "ingest-2", events.HostRecord{Host: "ingest-2", RTSPURL: "rtsp://127.0.0.1:8555", Zone: "zone-b", Role: "origin",
		CapacityStreams: 100, Streams: 1, Status: "draining", Deadline: now.Add(25 * time.Second), StartedAt: started, UpdatedAt: now})
	putJSON(t, env.JS, bus.BucketHosts, "edge-1", events.HostRecord{Host: "edge-1", RTSPURL: "rtsp://127.0.0.1:8556", Zone: "zone-a", Role: "edge",
		Status: "ok", StartedAt: started, UpdatedAt: now})

	// heartbeats: ingest-1 alive; ingest-2's expires at once (a delete marker follows)
	if _, err := events.Publish(ctx, env.JS, "test", events.Heartbeat{Host: "ingest-1", Seq: 1, At: now}, jetstream.WithMsgTTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, env.JS, "test", events.Heartbeat{Host: "ingest-2", Seq: 1, At: now}, jetstream.WithMsgTTL(time.Second)); err != nil {
		t.Fatal(err)
	}

	// predictions: ingest-1's was cleared, ingest-2's is open; ingest-3 went
	// down; ingest-1 went down before it (re)started, which no longer counts
	at := func(d time.Duration) time.Time { return now.Add(d) }
	publishAt(t, env.JS, at(-3*time.Hour), events.HostDown{Host: "ingest-1", LastSeen: at(-3 * time.Hour), DetectedAt: at(-3 * time.Hour), Reason: "heartbeat-silence"})
	publishAt(t, env.JS, at(-50*time.Second), events.OutagePredicted{PredictionID: "p-1", Host: "ingest-1", Cause: "memory", ExpectedOfflineAt: at(time.Minute), Confidence: 0.7, Evidence: map[string]any{}, Revision: 1})
	publishAt(t, env.JS, at(-40*time.Second), events.OutagePredicted{PredictionID: "p-2", Host: "ingest-2", Cause: "drain", ExpectedOfflineAt: at(25 * time.Second), Confidence: 1, Evidence: map[string]any{}, Revision: 1})
	publishAt(t, env.JS, at(-30*time.Second), events.OutageCleared{PredictionID: "p-1", Host: "ingest-1", Cause: "memory", Reason: "recovered", Revision: 1})
	publishAt(t, env.JS, at(-20*time.Second), events.HostDown{Host: "ingest-3", LastSeen: at(-25 * time.Second), DetectedAt: at(-20 * time.Second), Reason: "heartbeat-silence"})

	putJSON(t, env.JS, bus.BucketPlacements, events.PlacementKey("cam-1"), events.Placement{Stream: "cam-1", Host: "ingest-1", RTSPURL: "rtsp://127.0.0.1:8554",
		Epoch: 2, MigrationID: "m-1", FromHost: "ingest-2", Deadline: at(25 * time.Second), SessionID: "s-0123456789abcdef", ClientID: "agent-1", Mode: "push", UpdatedAt: now})
	putJSON(t, env.JS, bus.BucketPlacements, events.PlacementKey("cam-2"), events.Placement{Stream: "cam-2", Host: "ingest-2", RTSPURL: "rtsp://127.0.0.1:8555",
		Epoch: 1, Mode: "pull", SourceURL: "rtsp://camera/2", UpdatedAt: now})
	// cam-3 moved 27 ms after m-2 was decided (completed) but its placement
	// still names m-2 with a deadline ahead; its publisher never attached
	putJSON(t, env.JS, bus.BucketPlacements, events.PlacementKey("cam-3"), events.Placement{Stream: "cam-3", Host: "ingest-1", RTSPURL: "rtsp://127.0.0.1:8554",
		Epoch: 2, MigrationID: "m-2", FromHost: "ingest-2", Deadline: at(8 * time.Second), Mode: "push", SessionID: "s-3",
		PlacedAt: at(-12 * time.Minute), UpdatedAt: at(-time.Second)})
	// cam-1's publisher is on ingest-1 (alive); cam-3's never came
	publishAt(t, env.JS, at(-time.Minute), events.PublisherAttached{Stream: "cam-1", Host: "ingest-1", SessionID: "s-0123456789abcdef", Mode: "push", At: at(-time.Minute)})

	// ingest-4 drained and left (a host_down of its silence, from before
	// healthpredict knew departures, no longer counts); ingest-5 left and
	// registered again
	publishAt(t, env.JS, at(-9*time.Second), events.HostLeft{Host: "ingest-4", Reason: "drain command", At: at(-9 * time.Second)})
	publishAt(t, env.JS, at(-6*time.Second), events.HostDown{Host: "ingest-4", LastSeen: at(-10 * time.Second), DetectedAt: at(-6 * time.Second), Reason: "heartbeats stopped (delete marker: MaxAge)"})
	publishAt(t, env.JS, at(-2*time.Hour), events.HostLeft{Host: "ingest-5", Reason: "signal", At: at(-2 * time.Hour)})
	putJSON(t, env.JS, bus.BucketHosts, "ingest-5", events.HostRecord{Host: "ingest-5", RTSPURL: "rtsp://127.0.0.1:8557", Zone: "zone-b", Role: "origin",
		Status: "ok", StartedAt: started, UpdatedAt: now})

	// migrations as placement writes them (services/placement/internal/migration.Record), plus a field it may add one day
	putJSON(t, env.JS, bus.BucketMigrations, "m-1", map[string]any{"id": "m-1", "stream": "cam-1", "from_host": "ingest-2", "to_host": "ingest-1",
		"epoch": 2, "mode": "push", "kind": "evacuation", "reason": "drain", "fallback": true, "state": "notified",
		"decided_at": at(-2 * time.Second), "deadline": at(25 * time.Second), "steps": []any{},
		"a_field_from_the_future": map[string]any{"x": 1}})
	putJSON(t, env.JS, bus.BucketMigrations, "m-0", map[string]any{"id": "m-0", "stream": "cam-9", "state": "completed"})
	putJSON(t, env.JS, bus.BucketMigrations, "m-2", map[string]any{"id": "m-2", "stream": "cam-3", "from_host": "ingest-2", "to_host": "ingest-1",
		"state": "completed", "decided_at": at(-time.Second), "deadline": at(8 * time.Second)})
}

func TestStatusJSON(t *testing.T) {
	env := testutil.NATS(t)
	seedFleet(t, env)
	id := strings.TrimSpace(mustCtl(t, env.URL, "maintenance", "schedule", "ingest-2", "--in", "1m").stdout)

	var st statusJSON
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		st = statusJSON{}
		if err := json.Unmarshal([]byte(mustCtl(t, env.URL, "status", "--json").stdout), &st); err != nil {
			return err
		}
		for _, h := range st.Hosts {
			if h.Host == "ingest-2" && h.Heartbeat != "silent" {
				return fmt.Errorf("ingest-2's heartbeat is %q, waiting for its TTL to expire", h.Heartbeat)
			}
		}
		return nil
	})
	var names []string
	for _, h := range st.Hosts {
		names = append(names, h.Host)
	}
	if strings.Join(names, " ") != "edge-1 ingest-1 ingest-2 ingest-3 ingest-4 ingest-5" {
		t.Fatalf("hosts %v", names)
	}
	edge, i1, i2, i3, i4, i5 := st.Hosts[0], st.Hosts[1], st.Hosts[2], st.Hosts[3], st.Hosts[4], st.Hosts[5]
	if i4.Registered || i4.Down != nil || i4.Left == nil || i4.Left.Reason != "drain command" {
		t.Errorf("ingest-4 (left) %+v", i4)
	}
	if !i5.Registered || i5.Left != nil || i5.Down != nil {
		t.Errorf("ingest-5 (back after leaving) %+v", i5)
	}
	if edge.Role != "edge" || edge.Heartbeat != "none" || edge.HeartbeatAgeS != -1 || len(edge.Predictions) != 0 {
		t.Errorf("edge-1 %+v", edge)
	}
	if i1.Zone != "zone-a" || i1.Status != "ok" || i1.Heartbeat != "ok" || i1.HeartbeatAgeS < 0 || i1.HeartbeatAgeS > 10 ||
		len(i1.Predictions) != 0 || i1.Down != nil || !i1.Registered || i1.CapacityStreams != 100 {
		t.Errorf("ingest-1 %+v", i1)
	}
	if i2.Status != "draining" || len(i2.Predictions) != 1 || i2.Predictions[0].PredictionID != "p-2" || i2.Predictions[0].Cause != "drain" {
		t.Errorf("ingest-2 %+v", i2)
	}
	if i3.Registered || i3.Down == nil || i3.Down.Reason != "heartbeat-silence" {
		t.Errorf("ingest-3 %+v", i3)
	}
	if len(st.Streams) != 3 || st.Streams[0].Stream != "cam-1" || st.Streams[0].Host != "ingest-1" || st.Streams[0].Epoch != 2 ||
		st.Streams[0].SessionID != "s-0123456789abcdef" || st.Streams[1].Mode != "pull" {
		t.Errorf("streams %+v", st.Streams)
	}
	// one source of truth for "in flight": m-1 (notified) moves cam-1; m-2
	// is completed, so cam-3 is not moving whatever its placement says
	if c1, c3 := st.Streams[0], st.Streams[2]; c1.Moving != "m-1" || c3.Moving != "" {
		t.Errorf("moving: cam-1 %q, cam-3 %q", c1.Moving, c3.Moving)
	}
	if c1, c2, c3 := st.Streams[0].Publisher, st.Streams[1].Publisher, st.Streams[2].Publisher; !c1.Attached || c1.Host != "ingest-1" ||
		c2.Attached || c3.Attached || time.Since(c3.IdleSince) < 11*time.Minute {
		t.Errorf("publishers: cam-1 %+v, cam-2 %+v, cam-3 %+v", c1, c2, c3)
	}
	if len(st.Migrations) != 1 || st.Migrations[0].MigrationID != "m-1" || st.Migrations[0].Step != "notified" ||
		st.Migrations[0].StartedAt.IsZero() || !strings.Contains(string(st.Migrations[0].Record), "a_field_from_the_future") {
		t.Errorf("migrations %+v", st.Migrations)
	}
	if len(st.Maintenance) != 1 || st.Maintenance[0].MaintenanceID != id {
		t.Errorf("maintenance %+v", st.Maintenance)
	}

	// the tables
	out := mustCtl(t, env.URL, "status").stdout
	ls := lines(out)
	// row returns the line starting with prefix, its columns joined by one space
	row := func(prefix string) string {
		for _, l := range ls {
			if strings.HasPrefix(l, prefix) {
				return strings.Join(strings.Fields(l), " ")
			}
		}
		t.Errorf("no line starting %q in:\n%s", prefix, out)
		return ""
	}
	for _, want := range []string{"HOSTS (6)", "STREAMS (3)", "MIGRATIONS IN FLIGHT (1)", "MAINTENANCE (1)"} {
		row(want)
	}
	if h := row("HOST "); h != "HOST ZONE ROLE STATUS HEARTBEAT STREAMS READERS IN PREDICTION" {
		t.Errorf("host header %v", h)
	}
	if l := row("ingest-1 "); !strings.Contains(l, "zone-a origin ok") || !strings.Contains(l, "1/100") || !strings.Contains(l, "2.5 Mb/s") {
		t.Errorf("ingest-1 row %q", l)
	}
	if l := row("ingest-2 "); !strings.Contains(l, "draining, offline in") || !strings.Contains(l, "silent") || !strings.Contains(l, "drain offline in") {
		t.Errorf("ingest-2 row %q", l)
	}
	if l := row("ingest-3 "); !strings.Contains(l, "unregistered") || !strings.Contains(l, "DOWN since") {
		t.Errorf("ingest-3 row %q", l)
	}
	if l := row("ingest-4 "); !regexp.MustCompile(`^ingest-4 - - left [0-9.]+s ago \(drained: drain command\) none - - - -$`).MatchString(l) {
		t.Errorf("ingest-4 row %q", l)
	}
	if l := row("STREAM "); l != "STREAM HOST EPOCH MODE SESSION CLIENT AGE PUBLISHER MOVING" {
		t.Errorf("stream header %q", l)
	}
	if l := row("cam-1 "); !strings.Contains(l, "ingest-1 2 push s-0123456789abcdef agent-1 - on ingest-1 m-1 from ingest-2, deadline in") {
		t.Errorf("cam-1 row %q", l)
	}
	if l := row("cam-3 "); !regexp.MustCompile(`^cam-3 ingest-1 2 push s-3 - 12m0\ds none for 12m0\ds -$`).MatchString(l) {
		t.Errorf("cam-3 row %q, want no MOVING (m-2 completed) and its publisher missing since it was placed", l)
	}
	if l := row("m-1 "); !strings.Contains(l, "cam-1 ingest-2 ingest-1 notified (fallback) evacuation") {
		t.Errorf("migration row %q", l)
	}
}

func TestStatusEmpty(t *testing.T) {
	env := testutil.NATS(t)
	out := mustCtl(t, env.URL, "status").stdout
	want := "HOSTS (0)\n  no ingest host registered\n\nSTREAMS (0)\n  no stream placed\n\nMIGRATIONS IN FLIGHT (0)\n  none\n"
	if out != want {
		t.Errorf("status of an empty fleet:\n%s\nwant:\n%s", out, want)
	}
}
