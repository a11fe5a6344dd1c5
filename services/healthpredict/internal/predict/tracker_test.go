package predict

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func at(min float64) time.Time { return t0.Add(time.Duration(min * float64(time.Minute))) }

// op is one input to a tracker in a scripted scenario.
type op struct {
	name string
	do   func(tr *Tracker) []Decision
	want []string // "kind cause" of each decision
}

func sample(host string, t time.Time) Sample {
	return Sample{Host: host, T: t, MemBytes: 1 << 30, MemLimit: memLimit, FDs: 100, FDLimit: fdLimit}
}

func runOps(t *testing.T, ops []op) []Decision {
	t.Helper()
	tr := NewTracker(Default())
	var all []Decision
	for _, o := range ops {
		ds := o.do(tr)
		if got := kinds(ds); !reflect.DeepEqual(got, o.want) && !(len(got) == 0 && len(o.want) == 0) {
			t.Fatalf("%s: got %v, want %v", o.name, got, o.want)
		}
		all = append(all, ds...)
	}
	return all
}

func obs(s Sample) func(*Tracker) []Decision {
	return func(tr *Tracker) []Decision {
		ds, err := tr.Observe(s)
		if err != nil {
			panic(err)
		}
		return ds
	}
}

func TestMaintenanceAndDrain(t *testing.T) {
	w1 := Maintenance{ID: "mw-1", Host: "h1", Start: at(30), End: at(60), Reason: "kernel", RequestedBy: "ops"}
	w2 := Maintenance{ID: "mw-2", Host: "h1", Start: at(20), End: at(40)}
	for _, tc := range []struct {
		name  string
		ops   []op
		check func(t *testing.T, ds []Decision)
	}{
		{name: "scheduled then cancelled", ops: []op{
			{"report", func(tr *Tracker) []Decision { return tr.Heartbeat("h1", at(0)) }, nil},
			{"schedule", func(tr *Tracker) []Decision { return tr.Schedule(w1, at(1)) }, []string{"open maintenance"}},
			{"schedule again (redelivery)", func(tr *Tracker) []Decision { return tr.Schedule(w1, at(1)) }, nil},
			{"cancel", func(tr *Tracker) []Decision { return tr.Cancel("h1", "mw-1", "postponed", at(2)) }, []string{"clear maintenance"}},
			{"cancel again", func(tr *Tracker) []Decision { return tr.Cancel("h1", "mw-1", "", at(3)) }, nil},
		}, check: func(t *testing.T, ds []Decision) {
			p := ds[0].Prediction
			if p.ID != "h1.maintenance.mw-1" || !p.ExpectedOfflineAt.Equal(w1.Start) || p.Confidence != 1 || p.Revision != 0 {
				t.Fatalf("prediction %+v", p)
			}
			if p.Evidence["maintenance_id"] != "mw-1" || p.Labels["maintenance_id"] != "mw-1" {
				t.Fatalf("evidence %v labels %v", p.Evidence, p.Labels)
			}
			if c := ds[1]; c.Prediction.ID != p.ID || !strings.Contains(c.Reason, "cancelled: postponed") {
				t.Fatalf("clear %+v", c)
			}
		}},
		{name: "pending until the host reports", ops: []op{
			{"schedule", func(tr *Tracker) []Decision { return tr.Schedule(w1, at(1)) }, nil},
			{"telemetry", obs(sample("h1", at(2))), []string{"open maintenance"}},
		}},
		{name: "a second, earlier window revises the one prediction", ops: []op{
			{"report", func(tr *Tracker) []Decision { return tr.Heartbeat("h1", at(0)) }, nil},
			{"schedule 1", func(tr *Tracker) []Decision { return tr.Schedule(w1, at(1)) }, []string{"open maintenance"}},
			{"schedule 2", func(tr *Tracker) []Decision { return tr.Schedule(w2, at(2)) }, []string{"update maintenance"}},
			{"reports and ticks change nothing", func(tr *Tracker) []Decision {
				ds := tr.Heartbeat("h1", at(2.5))
				ds = append(ds, tr.Advance(at(2.6))...)
				return append(ds, tr.Advance(at(2.7))...)
			}, nil},
			{"cancel 2", func(tr *Tracker) []Decision { return tr.Cancel("h1", "mw-2", "", at(3)) }, []string{"update maintenance"}},
			{"cancel 1", func(tr *Tracker) []Decision { return tr.Cancel("h1", "mw-1", "", at(4)) }, []string{"clear maintenance"}},
		}, check: func(t *testing.T, ds []Decision) {
			if u := ds[1].Prediction; u.ID != "h1.maintenance.mw-1" || u.Revision != 1 || !u.ExpectedOfflineAt.Equal(w2.Start) ||
				u.Labels["maintenance_id"] != "mw-2" {
				t.Fatalf("update %+v", u)
			}
			if u := ds[2].Prediction; u.Revision != 2 || !u.ExpectedOfflineAt.Equal(w1.Start) {
				t.Fatalf("second update %+v", u)
			}
		}},
		{name: "window ends: cleared on the host's next report", ops: []op{
			{"report", func(tr *Tracker) []Decision { return tr.Heartbeat("h1", at(0)) }, nil},
			{"schedule", func(tr *Tracker) []Decision { return tr.Schedule(w1, at(1)) }, []string{"open maintenance"}},
			{"during", func(tr *Tracker) []Decision { return tr.Heartbeat("h1", at(45)) }, nil},
			{"after", func(tr *Tracker) []Decision { return tr.Heartbeat("h1", at(61)) }, []string{"clear maintenance"}},
		}},
		{name: "window ends: cleared by the clock when the host stays silent", ops: []op{
			{"report", func(tr *Tracker) []Decision { return tr.Heartbeat("h1", at(0)) }, nil},
			{"schedule", func(tr *Tracker) []Decision { return tr.Schedule(w1, at(1)) }, []string{"open maintenance"}},
			{"tick during", func(tr *Tracker) []Decision { return tr.Advance(at(59)) }, nil},
			{"tick after", func(tr *Tracker) []Decision { return tr.Advance(at(60)) }, []string{"clear maintenance"}},
		}},
		{name: "a window already over is ignored", ops: []op{
			{"report", func(tr *Tracker) []Decision { return tr.Heartbeat("h1", at(0)) }, nil},
			{"schedule", func(tr *Tracker) []Decision { return tr.Schedule(w1, at(61)) }, nil},
		}},
		{name: "drain predicts the deadline; the host coming back clears it", ops: []op{
			{"drain", func(tr *Tracker) []Decision {
				return tr.Drain(Drain{Host: "h1", Deadline: at(5), Reason: "deploy", Streams: 3}, at(1))
			}, []string{"open drain"}},
			{"telemetry before the deadline", obs(sample("h1", at(4))), nil},
			{"telemetry within the grace", obs(sample("h1", at(5.2))), nil},
			{"telemetry after the grace", obs(sample("h1", at(7))), []string{"clear drain"}},
		}, check: func(t *testing.T, ds []Decision) {
			p := ds[0].Prediction
			if !p.ExpectedOfflineAt.Equal(at(5)) || p.Confidence != 1 || p.Evidence["streams"] != 3 {
				t.Fatalf("drain prediction %+v", p)
			}
		}},
		{name: "a drain with a new deadline revises", ops: []op{
			{"drain", func(tr *Tracker) []Decision { return tr.Drain(Drain{Host: "h1", Deadline: at(5)}, at(1)) }, []string{"open drain"}},
			{"drain again", func(tr *Tracker) []Decision { return tr.Drain(Drain{Host: "h1", Deadline: at(5)}, at(1)) }, nil},
			{"new deadline", func(tr *Tracker) []Decision { return tr.Drain(Drain{Host: "h1", Deadline: at(8)}, at(2)) }, []string{"update drain"}},
		}},
		{name: "heartbeat silence reports the host down once", ops: []op{
			{"heartbeat", func(tr *Tracker) []Decision { return tr.Heartbeat("h1", at(0)) }, nil},
			{"silence", func(tr *Tracker) []Decision { return tr.Silence("h1", at(1), "silent") }, []string{"down "}},
			{"silence again", func(tr *Tracker) []Decision { return tr.Silence("h1", at(1.5), "silent") }, nil},
			{"back", func(tr *Tracker) []Decision { return tr.Heartbeat("h1", at(2)) }, nil},
			{"silence later", func(tr *Tracker) []Decision { return tr.Silence("h1", at(3), "silent") }, []string{"down "}},
		}, check: func(t *testing.T, ds []Decision) {
			d := ds[0].Down
			if d.Host != "h1" || !d.LastSeen.Equal(at(0)) || !d.DetectedAt.Equal(at(1)) {
				t.Fatalf("down %+v", d)
			}
		}},
		{name: "a marker older than the last heartbeat is stale", ops: []op{
			{"heartbeat", func(tr *Tracker) []Decision { return tr.Heartbeat("h1", at(5)) }, nil},
			{"silence", func(tr *Tracker) []Decision { return tr.Silence("h1", at(4), "silent") }, nil},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := runOps(t, tc.ops)
			if tc.check != nil {
				tc.check(t, ds)
			}
		})
	}
}

func TestEpisodeHysteresis(t *testing.T) {
	cfg := Default()
	e := &episode{host: "h1", cause: CauseMemory}
	c := &candidate{expected: at(10), confidence: 0.9}
	var got []string
	// the condition holds for a minute, then flickers every 30 s for half an
	// hour: one opening, no clear
	for i := 0; i < 60; i++ {
		var cc *candidate
		if i%2 == 0 || i < 3 {
			cc = c
		}
		if d, ok := e.step(cfg, at(float64(i)/2), cc, "gone"); ok {
			got = append(got, d.Kind.String())
		}
	}
	if !reflect.DeepEqual(got, []string{"open"}) {
		t.Fatalf("flapping: %v", got)
	}
	// then it stops holding: cleared once ClearAfter has passed
	var cleared time.Time
	for s := 30.0; s < 40; s += 0.25 {
		if d, ok := e.step(cfg, at(s), nil, "gone"); ok {
			if d.Kind != Clear || !cleared.IsZero() {
				t.Fatalf("unexpected %v", d.Kind)
			}
			cleared = d.At
		}
	}
	if want := at(29).Add(cfg.ClearAfter); cleared.Before(want) || cleared.After(want.Add(15*time.Second)) {
		t.Fatalf("cleared at %v, want about %v", cleared, want)
	}
}

func TestEpisodeOpensOnlyAfterOpenAfter(t *testing.T) {
	cfg := Default()
	e := &episode{host: "h1", cause: CauseMemory}
	c := &candidate{expected: at(10), confidence: 0.9}
	if _, ok := e.step(cfg, at(0), c, ""); ok {
		t.Fatal("opened at the first evaluation")
	}
	if _, ok := e.step(cfg, at(0).Add(cfg.OpenAfter-time.Second), c, ""); ok {
		t.Fatal("opened before OpenAfter")
	}
	if d, ok := e.step(cfg, at(0).Add(cfg.OpenAfter), c, ""); !ok || d.Kind != Open || d.Prediction.ID != "h1.memory."+
		strconv.FormatInt(at(0).Add(cfg.OpenAfter).UnixMilli(), 10) {
		t.Fatalf("want an opening after OpenAfter, got %+v %v", d, ok)
	}
}

// TestEpisodeHoldCountsBuckets: a trend's claim is evaluated for the end of
// a bucket, but reaches the episode with the sample that closed it, up to
// one sample interval later. The hold counts from the buckets, so three
// consecutive buckets open a prediction (OpenAfter 20 s) even when their
// samples came 19.8 s apart (a sample every 5 s ± 10%).
func TestEpisodeHoldCountsBuckets(t *testing.T) {
	cfg := Default()
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	e := &episode{host: "h1", cause: CauseMemory}
	for i, ev := range []struct{ sample, bucket float64 }{{22.3, 20}, {31.9, 30}, {42.1, 40}} {
		d, ok := e.step(cfg, sec(ev.sample), &candidate{expected: sec(300), confidence: 0.9, at: sec(ev.bucket)}, "")
		switch {
		case i < 2 && ok:
			t.Fatalf("opened at the evaluation of bucket %v", ev.bucket)
		case i == 2 && (!ok || d.Kind != Open || !d.At.Equal(sec(ev.sample))):
			t.Fatalf("three consecutive buckets did not open a prediction at the third's sample: %+v %v", d, ok)
		}
	}
}

func TestObserveRejectsOutOfOrderWithoutDisturbing(t *testing.T) {
	ss := shape{mem: leak(0.4, 0.01, 1800, 300)}.samples("h1", time.Hour, 2)
	clean := observe(t, NewTracker(Default()), ss)
	tr := NewTracker(Default())
	var got []Decision
	for i, s := range ss {
		ds, err := tr.Observe(s)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ds...)
		if i == len(ss)/2 { // a stale sample and a duplicate, with absurd values
			stale := s
			stale.T = s.T.Add(-time.Minute)
			stale.MemBytes = memLimit
			for _, bad := range []Sample{stale, s} {
				if ds, err := tr.Observe(bad); !errors.Is(err, ErrOutOfOrder) || len(ds) != 0 {
					t.Fatalf("out-of-order sample: err %v, decisions %v", err, ds)
				}
			}
		}
	}
	if !reflect.DeepEqual(got, clean) {
		t.Fatalf("rejected samples changed the decisions:\n got %v\nwant %v", kinds(got), kinds(clean))
	}
}

func TestTrackerIsDeterministic(t *testing.T) {
	// two trackers fed the same inputs, hosts interleaved differently, make
	// the same decisions per host: the same ids, revisions and contents
	hosts := map[string][]Sample{
		"a": shape{mem: leak(0.4, 0.01, 1800, 300)}.samples("a", time.Hour, 1),
		"b": shape{mem: sawtooth(leak(0.3, 0.01, 1500, 400), 0.15, 40)}.samples("b", time.Hour, 2),
		"c": shape{mem: noisy(0.5, 0.01), errs: func(s float64) float64 { return map[bool]float64{true: 30, false: 0.2}[s > 1800] }}.samples("c", time.Hour, 3),
	}
	perHost := func(ds []Decision) map[string][]Decision {
		out := map[string][]Decision{}
		for _, d := range ds {
			out[d.Prediction.Host] = append(out[d.Prediction.Host], d)
		}
		return out
	}
	seq := NewTracker(Default())
	var a []Decision
	for _, h := range []string{"a", "b", "c"} {
		a = append(a, observe(t, seq, hosts[h])...)
	}
	inter := NewTracker(Default())
	var b []Decision
	for i := 0; ; i++ {
		more := false
		for _, h := range []string{"c", "b", "a"} {
			if i < len(hosts[h]) {
				more = true
				b = append(b, observe(t, inter, hosts[h][i:i+1])...)
			}
		}
		if !more {
			break
		}
	}
	if len(a) == 0 {
		t.Fatal("no decisions to compare")
	}
	if !reflect.DeepEqual(perHost(a), perHost(b)) {
		t.Fatalf("decisions differ:\n%v\n%v", kinds(a), kinds(b))
	}
}

func TestAdopt(t *testing.T) {
	mk := func(id string, rev int) Prediction {
		return Prediction{ID: id, Host: "h1", Cause: CauseMemory, ExpectedOfflineAt: at(10), Revision: rev}
	}
	// a tracker with an open memory prediction of its own
	withOpen := func() (*Tracker, Prediction) {
		tr := NewTracker(Default())
		ds := observe(t, tr, shape{mem: leak(0.4, 0.01, 1800, 600)}.samples("h1", 33*time.Minute, 1))
		for _, d := range ds {
			if d.Kind == Open {
				return tr, d.Prediction
			}
		}
		t.Fatal("no prediction to adopt against")
		return nil, Prediction{}
	}
	t.Run("same id, higher revision", func(t *testing.T) {
		tr, own := withOpen()
		if ds := tr.Adopt(mk(own.ID, own.Revision+3), at(40)); len(ds) != 0 {
			t.Fatalf("decisions %v", kinds(ds))
		}
		if got := tr.Open()[0].Revision; got != own.Revision+3 {
			t.Fatalf("revision %d", got)
		}
	})
	t.Run("another id: the smaller wins, the other is cleared", func(t *testing.T) {
		tr, own := withOpen()
		smaller := mk("h1.memory.0", 0)
		ds := tr.Adopt(smaller, at(40))
		if len(ds) != 1 || ds[0].Kind != Clear || ds[0].Prediction.ID != own.ID {
			t.Fatalf("want our own cleared, got %+v", ds)
		}
		if tr.Open()[0].ID != smaller.ID {
			t.Fatal("the smaller id is not the open one")
		}
		tr2, own2 := withOpen()
		larger := mk("h1.memory.9999999999999", 0)
		ds = tr2.Adopt(larger, at(40))
		if len(ds) != 1 || ds[0].Kind != Clear || ds[0].Prediction.ID != larger.ID || tr2.Open()[0].ID != own2.ID {
			t.Fatalf("want the larger cleared, got %+v", ds)
		}
	})
	t.Run("nothing open: telemetry cause adopted, cleared after the hysteresis", func(t *testing.T) {
		tr := NewTracker(Default())
		observe(t, tr, shape{mem: noisy(0.4, 0.01)}.samples("h1", 10*time.Minute, 1))
		p := mk("h1.memory.1", 2)
		if ds := tr.Adopt(p, at(10)); len(ds) != 0 {
			t.Fatalf("decisions %v", kinds(ds))
		}
		if got := tr.Open(); len(got) != 1 || got[0].ID != p.ID {
			t.Fatalf("open %v", got)
		}
		var ds []Decision
		for m := 10.1; m < 14; m += 1.0 / 12 {
			d, err := tr.Observe(Sample{Host: "h1", T: at(m), MemBytes: memLimit / 3, MemLimit: memLimit, FDs: 10, FDLimit: fdLimit})
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, d...)
		}
		if len(ds) != 1 || ds[0].Kind != Clear || ds[0].Prediction.ID != p.ID || ds[0].Prediction.Revision != 2 {
			t.Fatalf("want the adopted prediction cleared, got %v", ds)
		}
	})
	t.Run("nothing open: maintenance without a window is cleared", func(t *testing.T) {
		tr := NewTracker(Default())
		p := Prediction{ID: "h1.maintenance.mw-9", Host: "h1", Cause: CauseMaintenance, Revision: 1}
		ds := tr.Adopt(p, at(1))
		if len(ds) != 1 || ds[0].Kind != Clear || ds[0].Prediction.ID != p.ID {
			t.Fatalf("want a clear, got %v", ds)
		}
	})
	t.Run("withdraw closes without a decision", func(t *testing.T) {
		tr, _ := withOpen()
		own := tr.Open()[0]
		tr.Withdraw("h1", CauseMemory, own.ID, own.Revision-1)
		if len(tr.Open()) != 1 {
			t.Fatal("an older revision's clear withdrew a newer revision")
		}
		tr.Withdraw("h1", CauseMemory, own.ID, own.Revision)
		if len(tr.Open()) != 0 {
			t.Fatal("still open")
		}
	})
}

func TestSampleCheck(t *testing.T) {
	now := at(0)
	good := Sample{Host: "h1", T: now, MemBytes: 1 << 30, MemLimit: 4 << 30, FDs: 10, FDLimit: 1024}
	for _, tc := range []struct {
		name string
		mod  func(*Sample)
		want string // "" = valid
	}{
		{"valid", func(*Sample) {}, ""},
		{"slightly ahead of the clock", func(s *Sample) { s.T = now.Add(10 * time.Second) }, ""},
		{"no host", func(s *Sample) { s.Host = "" }, "host is missing"},
		{"no time", func(s *Sample) { s.T = time.Time{} }, "is missing or before 2000"},
		{"from the future", func(s *Sample) { s.T = now.Add(time.Hour) }, "1h0m0s in the future (limit 30s)"},
		{"negative memory", func(s *Sample) { s.MemBytes = -5 }, "mem_bytes is negative (-5)"},
		{"memory limit 0", func(s *Sample) { s.MemLimit = 0 }, "mem_limit is 0"},
		{"descriptor limit 0", func(s *Sample) { s.FDLimit = 0 }, "fd_limit is 0"},
		{"memory far over its limit", func(s *Sample) { s.MemBytes = 5 * s.MemLimit }, "more than 4× mem_limit"},
		{"descriptors over their limit", func(s *Sample) { s.FDs = 2000 }, "fds 2000 exceeds fd_limit 1024"},
		{"negative counter", func(s *Sample) { s.Errors = -1 }, "errors is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.mod(&s)
			err := s.Check(now, 30*time.Second)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidSample) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestLeaveIsNotDown: a host that announced its departure gets no Down for
// the silence that follows, in either order of the two inputs; once it sends
// a heartbeat again, its next silence is a Down again.
func TestLeaveIsNotDown(t *testing.T) {
	hb := func(m float64) func(*Tracker) []Decision {
		return func(tr *Tracker) []Decision { return tr.Heartbeat("h1", at(m)) }
	}
	silence := func(m float64) func(*Tracker) []Decision {
		return func(tr *Tracker) []Decision { return tr.Silence("h1", at(m), "heartbeats stopped") }
	}
	leave := func(m float64) func(*Tracker) []Decision {
		return func(tr *Tracker) []Decision { return tr.Leave("h1", at(m)) }
	}
	drain := func(tr *Tracker) []Decision {
		return tr.Drain(Drain{Host: "h1", Deadline: at(2), Reason: "deploy", Streams: 1}, at(1))
	}
	for _, tc := range []struct {
		name  string
		ops   []op
		downs int // Downs() at the end
	}{
		{name: "left, then silent", ops: []op{
			{"heartbeat", hb(0), nil},
			{"leave", leave(0.1), nil},
			{"silence", silence(0.2), nil},
		}},
		{name: "silence seen first (replay), then the departure", ops: []op{
			{"heartbeat", hb(0), nil},
			{"silence", silence(0.2), []string{"down "}},
			{"leave", leave(0.1), nil},
		}},
		{name: "drain prediction cleared by the departure", ops: []op{
			{"heartbeat", hb(0), nil},
			{"drain", drain, []string{"open drain"}},
			{"leave", leave(1.5), []string{"clear drain"}},
			{"silence", silence(1.6), nil},
		}},
		{name: "back after leaving, then silent: down", ops: []op{
			{"heartbeat", hb(0), nil},
			{"leave", leave(0.1), nil},
			{"silence", silence(0.2), nil},
			{"registers again", hb(5), nil},
			{"silent again", silence(5.1), []string{"down "}},
		}, downs: 1},
		{name: "a stale departure does not hide a later silence", ops: []op{
			{"heartbeat", hb(5), nil},
			{"old leave", leave(1), nil},
			{"silence", silence(5.1), []string{"down "}},
		}, downs: 1},
		{name: "no departure: down", ops: []op{
			{"heartbeat", hb(0), nil},
			{"silence", silence(0.2), []string{"down "}},
		}, downs: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(Default())
			for _, o := range tc.ops {
				if got := kinds(o.do(tr)); !reflect.DeepEqual(got, o.want) && !(len(got) == 0 && len(o.want) == 0) {
					t.Fatalf("%s: got %v, want %v", o.name, got, o.want)
				}
			}
			if got := len(tr.Downs()); got != tc.downs {
				t.Fatalf("Downs() = %v, want %d", tr.Downs(), tc.downs)
			}
		})
	}
}
