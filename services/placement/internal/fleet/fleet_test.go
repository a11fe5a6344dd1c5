package fleet

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
)

func cand(host, zone string, capStreams, streams int) Candidate {
	return Candidate{Host: host, Zone: zone, RTSPURL: "rtsp://" + host, CapacityStreams: capStreams, Streams: streams}
}

func TestPick(t *testing.T) {
	zones := map[string]string{"a1": "a", "a2": "a", "b1": "b", "gone": "b"}
	for _, tc := range []struct {
		name    string
		cands   []Candidate
		demand  Demand
		want    string
		wantErr string
	}{
		{name: "least loaded", cands: []Candidate{cand("a1", "a", 10, 5), cand("a2", "a", 10, 2)}, want: "a2"},
		{name: "placed counts beyond reported", cands: []Candidate{cand("a1", "a", 10, 0), cand("a2", "a", 10, 2)},
			demand: Demand{Placed: map[string]int{"a1": 4}}, want: "a2"},
		{name: "utilisation not count", cands: []Candidate{cand("a1", "a", 100, 20), cand("a2", "a", 10, 5)}, want: "a1"},
		{name: "full host skipped", cands: []Candidate{cand("a1", "a", 3, 3), cand("a2", "a", 10, 9)}, want: "a2"},
		{name: "exclude", cands: []Candidate{cand("a1", "a", 10, 0), cand("a2", "a", 10, 9)}, demand: Demand{Exclude: "a1"}, want: "a2"},
		{name: "spread zones before load", cands: []Candidate{cand("a1", "a", 10, 0), cand("b1", "b", 10, 8)},
			demand: Demand{ClientHosts: map[string]int{"a2": 1}}, want: "b1"},
		{name: "client on a dying host does not count", cands: []Candidate{cand("a1", "a", 10, 0), cand("b1", "b", 10, 8)},
			demand: Demand{Exclude: "a2", ClientHosts: map[string]int{"a2": 1}}, want: "a1"},
		{name: "spread hosts within zone", cands: []Candidate{cand("a1", "a", 10, 0), cand("a2", "a", 10, 5)},
			demand: Demand{ClientHosts: map[string]int{"a1": 1}}, want: "a2"},
		{name: "bitrate full", cands: []Candidate{
			{Host: "a1", Zone: "a", CapacityStreams: 10, CapacityBitrate: 10_000_000, Streams: 2, BitrateIn: 8_000_000},
			cand("a2", "a", 10, 8)}, demand: Demand{StreamBitrate: 4_000_000}, want: "a2"},
		{name: "bitrate of unreported streams", cands: []Candidate{
			{Host: "a1", Zone: "a", CapacityStreams: 10, CapacityBitrate: 20_000_000},
			cand("a2", "a", 10, 9)}, demand: Demand{StreamBitrate: 4_000_000, Placed: map[string]int{"a1": 5}}, want: "a2"},
		{name: "deterministic tie", cands: []Candidate{cand("a2", "a", 10, 1), cand("a1", "a", 10, 1)}, want: "a1"},
		{name: "nothing fits", cands: []Candidate{cand("a1", "a", 2, 2)}, wantErr: "no healthy host with headroom (a1: full (2/2 streams); gone: host down: silence)"},
		{name: "empty fleet", wantErr: "no healthy host with headroom: no ingest host registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := Snapshot{Candidates: tc.cands, Zones: zones}
			if tc.wantErr != "" && len(tc.cands) > 0 {
				snap.Unusable = map[string]string{"gone": "host down: silence"}
			}
			if tc.demand.StreamBitrate == 0 {
				tc.demand.StreamBitrate = 1
			}
			c, err := Pick(snap, tc.demand)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrNoCapacity) || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || c.Host != tc.want {
				t.Fatalf("picked %q (%v), want %q", c.Host, err, tc.want)
			}
		})
	}
}

func env(t *testing.T, d events.Data, at time.Time) events.Envelope {
	t.Helper()
	e, err := events.New("test", d)
	if err != nil {
		t.Fatal(err)
	}
	e.Time = at
	return e
}

func rec(host string, updated, started time.Time) *events.HostRecord {
	return &events.HostRecord{Host: host, RTSPURL: "rtsp://" + host + ":8554", Zone: "z", Role: "both", CapacityStreams: 10,
		Status: "ok", StartedAt: started, UpdatedAt: updated}
}

func TestViewLifecycle(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	v := NewView(Config{StaleAfter: 6 * time.Second, MaxCapacityStreams: 1000, EvacuationLead: 10 * time.Minute, DefaultCapacityStreams: 50},
		zerolog.Nop(), clock)
	started := now.Add(-time.Hour)
	v.ApplyRecord("h1", rec("h1", now, started))
	edge := rec("e1", now, started)
	edge.Role = "edge"
	v.ApplyRecord("e1", edge)
	if st := v.Status("h1"); !st.Usable {
		t.Fatalf("fresh host unusable: %+v", st)
	}
	if st := v.Status("e1"); st.Usable || st.Reason != "edge-only host" {
		t.Fatalf("edge %+v", st)
	}
	if c := v.Snapshot().Candidates; len(c) != 1 || c[0].Host != "h1" {
		t.Fatalf("candidates %+v", c)
	}

	// Stale record: not heartbeating.
	now = now.Add(7 * time.Second)
	if st := v.Status("h1"); st.Usable || !strings.HasPrefix(st.Reason, "not heartbeating") {
		t.Fatalf("stale %+v", st)
	}
	v.ApplyRecord("h1", rec("h1", now, started))

	// A prediction far ahead: unusable at once, evacuated only within the lead.
	p := events.OutagePredicted{PredictionID: "p1", Host: "h1", Cause: "maintenance", ExpectedOfflineAt: now.Add(time.Hour),
		Confidence: 1, Evidence: map[string]any{}, Revision: 1}
	if err := v.ApplyEvent(env(t, p, now), 10); err != nil {
		t.Fatal(err)
	}
	if st := v.Status("h1"); st.Usable || !st.Predicted {
		t.Fatalf("predicted %+v", st)
	}
	ev, ok := v.EvacuationOf("h1")
	if !ok || !ev.Deadline.Equal(p.ExpectedOfflineAt) || !ev.StartAt.Equal(p.ExpectedOfflineAt.Add(-10*time.Minute)) {
		t.Fatalf("evacuation %+v %v", ev, ok)
	}
	// A revision moves the deadline; an older revision replayed does not.
	p.Revision, p.ExpectedOfflineAt = 2, now.Add(2*time.Minute)
	_ = v.ApplyEvent(env(t, p, now), 11)
	old := p
	old.Revision, old.ExpectedOfflineAt = 1, now.Add(time.Hour)
	_ = v.ApplyEvent(env(t, old, now), 9) // older stream sequence: ignored
	if ev, _ := v.EvacuationOf("h1"); !ev.Deadline.Equal(now.Add(2 * time.Minute)) {
		t.Fatalf("deadline %v", ev.Deadline)
	}
	// Cleared: usable again, nothing to evacuate.
	_ = v.ApplyEvent(env(t, events.OutageCleared{PredictionID: "p1", Host: "h1", Cause: "maintenance", Reason: "done"}, now), 12)
	if _, ok := v.EvacuationOf("h1"); ok || !v.Status("h1").Usable {
		t.Fatalf("cleared but %+v", v.Status("h1"))
	}

	// Maintenance cancelled closes the matching maintenance prediction.
	mp := events.OutagePredicted{PredictionID: "maint-w1", Host: "h1", Cause: "maintenance", ExpectedOfflineAt: now.Add(time.Minute),
		Confidence: 1, Evidence: map[string]any{"maintenance_id": "w1"}, Revision: 0}
	_ = v.ApplyEvent(env(t, mp, now), 13)
	_ = v.ApplyEvent(env(t, events.MaintenanceCancelled{MaintenanceID: "w1", Host: "h1"}, now), 14)
	if !v.Status("h1").Usable {
		t.Fatalf("maintenance cancelled but %+v", v.Status("h1"))
	}

	// Host down: immediate evacuation until the host registers again.
	_ = v.ApplyEvent(env(t, events.HostDown{Host: "h1", LastSeen: now.Add(-5 * time.Second), DetectedAt: now, Reason: "silence"}, now), 15)
	if ev, ok := v.EvacuationOf("h1"); !ok || !ev.Immediate {
		t.Fatalf("down: %+v", ev)
	}
	now = now.Add(3 * time.Second)
	v.ApplyRecord("h1", rec("h1", now, now.Add(-time.Second)))
	if !v.Status("h1").Usable {
		t.Fatalf("re-registered but %+v", v.Status("h1"))
	}

	// Draining until the host restarts.
	_ = v.ApplyEvent(env(t, events.Draining{Host: "h1", Deadline: now.Add(30 * time.Second), Streams: 3}, now), 16)
	if ev, ok := v.EvacuationOf("h1"); !ok || ev.Reason != "draining" || !ev.Deadline.Equal(now.Add(30*time.Second)) {
		t.Fatalf("draining %+v", ev)
	}
	now = now.Add(time.Minute)
	v.ApplyRecord("h1", rec("h1", now, now.Add(-time.Second)))
	if !v.Status("h1").Usable {
		t.Fatalf("restarted after drain but %+v", v.Status("h1"))
	}
	// A record with no declared capacity gets the default.
	r0 := rec("h1", now, now.Add(-time.Second))
	r0.CapacityStreams = 0
	v.ApplyRecord("h1", r0)
	if c := v.Snapshot().Candidates; c[0].CapacityStreams != 50 {
		t.Fatalf("default capacity %+v", c)
	}
}

func TestCheckRecord(t *testing.T) {
	c := Config{MaxCapacityStreams: 1000, MaxCapacityBitrate: 1_000_000_000}
	ok := *rec("h1", time.Now(), time.Now())
	for _, tc := range []struct {
		name string
		mut  func(*events.HostRecord)
		key  string
		want string
	}{
		{"ok", func(*events.HostRecord) {}, "h1", ""},
		{"absurd streams", func(r *events.HostRecord) { r.CapacityStreams = 5000 }, "h1", "absurd capacity: capacity_streams 5000 (allowed 0..1000)"},
		{"negative streams", func(r *events.HostRecord) { r.CapacityStreams = -1 }, "h1", "absurd capacity: capacity_streams -1 (allowed 0..1000)"},
		{"absurd bitrate", func(r *events.HostRecord) { r.CapacityBitrate = 1e12 }, "h1", "absurd capacity: capacity_bitrate 1000000000000 (allowed 0..1000000000)"},
		{"negative load", func(r *events.HostRecord) { r.Streams = -3 }, "h1", "absurd capacity: negative load (streams -3, bitrate_in 0)"},
		{"bad url", func(r *events.HostRecord) { r.RTSPURL = "h1:8554" }, "h1", `rtsp_url "h1:8554": must be rtsp://host:port`},
		{"bad name", func(r *events.HostRecord) { r.Host = "h.1" }, "h.1", `host "h.1": not a valid host name`},
		{"key mismatch", func(*events.HostRecord) {}, "h2", `host "h1": stored under key "h2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.mut(&r)
			err := c.CheckRecord(tc.key, r)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if strings.Contains(tc.want, "absurd") && !errors.Is(err, ErrAbsurdCapacity) {
				t.Fatal("not ErrAbsurdCapacity")
			}
		})
	}
}

// TestRecordRefreshDoesNotWakeTheDecider: Changed is signalled for a new
// host, a record that starts or ends an evacuation (draining, a restart
// that ends a host_down) and a deleted record, not for the refresh every
// host sends every 2 s (at 1,000 hosts, 500 wake-ups a second, each judging
// every host).
func TestRecordRefreshDoesNotWakeTheDecider(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	v := NewView(Config{StaleAfter: 6 * time.Second, MaxCapacityStreams: 1000, EvacuationLead: 10 * time.Minute, DefaultCapacityStreams: 50},
		zerolog.Nop(), func() time.Time { return now })
	woke := func() bool {
		select {
		case <-v.Changed():
			return true
		default:
			return false
		}
	}
	started := now.Add(-time.Hour)
	v.ApplyRecord("h1", rec("h1", now, started))
	if !woke() {
		t.Fatal("a new host did not signal")
	}
	for i := 1; i <= 3; i++ {
		r := rec("h1", now.Add(time.Duration(i)*2*time.Second), started)
		r.Streams = i // load changes are not evacuation changes either
		v.ApplyRecord("h1", r)
		if woke() {
			t.Fatalf("refresh %d signalled", i)
		}
	}
	drain := rec("h1", now.Add(8*time.Second), started)
	drain.Status, drain.Deadline = "draining", now.Add(time.Minute)
	v.ApplyRecord("h1", drain)
	if !woke() {
		t.Fatal("a draining record did not signal")
	}
	v.ApplyRecord("h1", drain)
	if woke() {
		t.Fatal("the same draining record signalled again")
	}
	v.ApplyRecord("h1", nil)
	if !woke() {
		t.Fatal("a deleted record did not signal")
	}
}
