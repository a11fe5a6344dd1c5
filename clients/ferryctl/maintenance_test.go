package ferryctl_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
)

var mwID = regexp.MustCompile(`^mw-[0-9a-f]{12}$`)

// storedWindow reads maintenance.<id>.
func storedWindow(t *testing.T, env *testutil.Env, id string) map[string]any {
	t.Helper()
	e, err := env.Stores.Maintenance.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("maintenance %s not in the bucket: %v", id, err)
	}
	var m map[string]any
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMaintenanceScheduleIn(t *testing.T) {
	env := testutil.NATS(t)
	before := time.Now()
	r := mustCtl(t, env.URL, "maintenance", "schedule", "ingest-2", "--in", "2m", "--for", "45m", "--reason", "kernel upgrade")
	after := time.Now()
	id := strings.TrimSpace(r.stdout)
	if !mwID.MatchString(id) {
		t.Fatalf("stdout %q is not a maintenance id", r.stdout)
	}
	if !strings.Contains(r.stderr, "warning: host ingest-2 is not registered") {
		t.Errorf("no warning about the unregistered host: %q", r.stderr)
	}

	msg := lastEvent(t, env.JS, bus.StreamEvents, subject.MaintenanceScheduled("ingest-2"))
	envl, ev, err := events.DecodeAs[events.MaintenanceScheduled](msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if ev.MaintenanceID != id || ev.Host != "ingest-2" || ev.Reason != "kernel upgrade" || ev.RequestedBy != "tester" {
		t.Errorf("event = %+v", ev)
	}
	if ev.StartAt.Before(before.Add(2*time.Minute)) || ev.StartAt.After(after.Add(2*time.Minute)) {
		t.Errorf("start_at %v not within [%v, %v] + 2m", ev.StartAt, before, after)
	}
	if got := ev.EndAt.Sub(ev.StartAt); got != 45*time.Minute {
		t.Errorf("window length %v, want 45m", got)
	}
	if envl.Source != "ferryctl" || msg.Header.Get("Nats-Msg-Id") != events.ID(ev) {
		t.Errorf("source %q, msg id %q", envl.Source, msg.Header.Get("Nats-Msg-Id"))
	}

	rec := storedWindow(t, env, id)
	if rec["status"] != "scheduled" || rec["host"] != "ingest-2" || rec["start_at"] != ev.StartAt.Format(time.RFC3339Nano) {
		t.Errorf("stored record %v", rec)
	}
}

func TestMaintenanceScheduleAt(t *testing.T) {
	env := testutil.NATS(t)
	putJSON(t, env.JS, bus.BucketHosts, "ingest-1", events.HostRecord{Host: "ingest-1", Status: "ok"})
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	r := mustCtl(t, env.URL, "--nats", env.URL, "maintenance", "schedule", "--at", at.Format(time.RFC3339), "ingest-1", "--json")
	if strings.Contains(r.stderr, "warning") {
		t.Errorf("unexpected warning for a registered host: %q", r.stderr)
	}
	var rec struct {
		MaintenanceID string    `json:"maintenance_id"`
		StartAt       time.Time `json:"start_at"`
		EndAt         time.Time `json:"end_at"`
		Status        string    `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil {
		t.Fatalf("--json output %q: %v", r.stdout, err)
	}
	if !rec.StartAt.Equal(at) || !rec.EndAt.Equal(at.Add(30*time.Minute)) || rec.Status != "scheduled" {
		t.Errorf("record %+v, want start %v and the default 30m window", rec, at)
	}
	_, ev, err := events.DecodeAs[events.MaintenanceScheduled](lastEvent(t, env.JS, bus.StreamEvents, subject.MaintenanceScheduled("ingest-1")).Data)
	if err != nil {
		t.Fatal(err)
	}
	if !ev.StartAt.Equal(at) || ev.MaintenanceID != rec.MaintenanceID {
		t.Errorf("event %+v", ev)
	}
}

func TestMaintenanceCancel(t *testing.T) {
	env := testutil.NATS(t)
	id := strings.TrimSpace(mustCtl(t, env.URL, "maintenance", "schedule", "ingest-3", "--in", "10m").stdout)

	r := mustCtl(t, env.URL, "maintenance", "cancel", id, "--reason", "postponed")
	if want := "cancelled " + id + " on ingest-3\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	_, ev, err := events.DecodeAs[events.MaintenanceCancelled](lastEvent(t, env.JS, bus.StreamEvents, subject.MaintenanceCancelled("ingest-3")).Data)
	if err != nil {
		t.Fatal(err)
	}
	if ev.MaintenanceID != id || ev.Host != "ingest-3" || ev.Reason != "postponed" {
		t.Errorf("event %+v", ev)
	}
	rec := storedWindow(t, env, id)
	if rec["status"] != "cancelled" || rec["cancel_reason"] != "postponed" || rec["cancelled_at"] == nil {
		t.Errorf("record %v", rec)
	}

	// again: nothing new is published
	r = mustCtl(t, env.URL, "maintenance", "cancel", id)
	if !strings.Contains(r.stdout, "already cancelled") {
		t.Errorf("second cancel: %q", r.stdout)
	}
	info, err := env.JS.Stream(context.Background(), bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 2 {
		t.Errorf("%d events stored, want 2 (scheduled, cancelled)", n)
	}

	r = ctl(t, env.URL, "maintenance", "cancel", "mw-000000000000")
	if r.code != 1 || !strings.Contains(r.stderr, "maintenance mw-000000000000: not found") {
		t.Errorf("cancel of an unknown id: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestMaintenanceList(t *testing.T) {
	env := testutil.NATS(t)
	if r := mustCtl(t, env.URL, "maintenance", "list"); r.stdout != "no maintenance windows\n" {
		t.Errorf("empty list: %q", r.stdout)
	}
	a := strings.TrimSpace(mustCtl(t, env.URL, "maintenance", "schedule", "ingest-1", "--in", "1h", "--reason", "disk swap").stdout)
	b := strings.TrimSpace(mustCtl(t, env.URL, "maintenance", "schedule", "ingest-2", "--in", "0s", "--for", "1h").stdout)
	c := strings.TrimSpace(mustCtl(t, env.URL, "maintenance", "schedule", "ingest-3", "--in", "2h").stdout)
	mustCtl(t, env.URL, "maintenance", "cancel", c)

	out := lines(mustCtl(t, env.URL, "maintenance", "list").stdout)
	if len(out) != 4 {
		t.Fatalf("list has %d lines, want header + 3:\n%s", len(out), strings.Join(out, "\n"))
	}
	for i, want := range []struct{ id, host, status, extra string }{
		{b, "ingest-2", "active", "ends in"},
		{a, "ingest-1", "scheduled", "disk swap"},
		{c, "ingest-3", "cancelled", "tester"},
	} {
		f := strings.Fields(out[i+1])
		if f[0] != want.id || f[1] != want.host || f[2] != want.status || !strings.Contains(out[i+1], want.extra) {
			t.Errorf("row %d = %q, want %s %s %s ... %s", i, out[i+1], want.id, want.host, want.status, want.extra)
		}
	}
	if h := strings.Fields(out[0]); strings.Join(h, " ") != "ID HOST STATUS START WHEN FOR REASON BY" {
		t.Errorf("header %q", out[0])
	}

	var rows []map[string]any
	if err := json.Unmarshal([]byte(mustCtl(t, env.URL, "maintenance", "list", "--json", "--host", "ingest-1").stdout), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0]["maintenance_id"] != a || rows[0]["effective_status"] != "scheduled" {
		t.Errorf("--json --host ingest-1: %v", rows)
	}
}
