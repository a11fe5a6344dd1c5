package migration

import (
	"strings"
	"testing"
	"time"
)

func TestApply(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	timing := Timing{StepGrace: 10 * time.Second, FallbackGrace: 30 * time.Second}
	base := func(mut func(*Record)) Record {
		r := Record{ID: "m-1", Stream: "cam-1", FromHost: "h1", ToHost: "h2", Mode: "push", NeedCease: true, Deadline: at(time.Minute)}
		if mut != nil {
			mut(&r)
		}
		return NewDecided(r, t0)
	}
	for _, tc := range []struct {
		name      string
		rec       Record
		inputs    []Input
		state     State
		steps     string
		failed    string
		fallback  bool
		wantEvent bool
	}{
		{name: "make before break", rec: base(nil), inputs: []Input{
			{Kind: InDelivered, At: at(100 * time.Millisecond)}, {Kind: InAcked, At: at(200 * time.Millisecond)},
			{Kind: InAttached, Host: "h2", At: at(time.Second)}, {Kind: InCeased, Host: "h1", At: at(2 * time.Second)}},
			state: Completed, steps: "decided,delivered,notified,attached,ceased,completed"},
		{name: "attach on the wrong host ignored", rec: base(nil), inputs: []Input{
			{Kind: InAcked, At: at(time.Second)}, {Kind: InAttached, Host: "h3", At: at(2 * time.Second)}},
			state: Notified, steps: "decided,notified"},
		{name: "cease before attach waits for attach", rec: base(nil), inputs: []Input{
			{Kind: InCeased, Host: "h1", At: at(time.Second)}, {Kind: InAttached, Host: "h2", At: at(2 * time.Second)}},
			state: Completed, steps: "decided,ceased,attached,completed"},
		{name: "not capable completes at attach", rec: MarkFallback(base(nil), "cannot move", t0), inputs: []Input{
			{Kind: InAcked, At: at(time.Second)}, {Kind: InAttached, Host: "h2", At: at(70 * time.Second)}},
			state: Completed, steps: "decided,fallback,attached,completed", fallback: true},
		{name: "notice failed falls back", rec: base(nil), inputs: []Input{
			{Kind: InNoticeFailed, Reason: "not-capable", At: at(time.Second)}},
			state: Decided, steps: "decided,fallback", fallback: true},
		{name: "no ack by deadline falls back", rec: base(nil), inputs: []Input{
			{Kind: InTick, At: at(59 * time.Second)}, {Kind: InTick, At: at(61 * time.Second)}},
			state: Decided, steps: "decided,fallback", fallback: true},
		{name: "fallback fails after grace", rec: MarkFallback(base(nil), "cannot move", t0), inputs: []Input{
			{Kind: InTick, At: at(89 * time.Second)}, {Kind: InTick, At: at(91 * time.Second)}},
			state: Failed, failed: "attached", steps: "decided,fallback", fallback: true},
		{name: "no attach fails", rec: base(nil), inputs: []Input{
			{Kind: InAcked, At: at(time.Second)}, {Kind: InTick, At: at(71 * time.Second)}},
			state: Failed, failed: "attached", steps: "decided,notified"},
		{name: "no cease fails", rec: base(nil), inputs: []Input{
			{Kind: InAcked, At: at(time.Second)}, {Kind: InAttached, Host: "h2", At: at(2 * time.Second)},
			{Kind: InTick, At: at(69 * time.Second)}, {Kind: InTick, At: at(71 * time.Second)}},
			state: Failed, failed: "ceased", steps: "decided,notified,attached"},
		{name: "host down needs no cease", rec: MarkFallback(base(func(r *Record) { r.NeedCease = false; r.Deadline = t0 }), "old host down", t0),
			inputs: []Input{{Kind: InAttached, Host: "h2", At: at(500 * time.Millisecond)}},
			state:  Completed, steps: "decided,fallback,attached,completed", fallback: true},
		{name: "pull skips the notice", rec: base(func(r *Record) { r.Mode = "pull" }), inputs: []Input{
			{Kind: InTick, At: at(65 * time.Second)}, {Kind: InAttached, Host: "h2", At: at(66 * time.Second)},
			{Kind: InCeased, Host: "h1", At: at(67 * time.Second)}},
			state: Completed, steps: "decided,attached,ceased,completed"},
		{name: "superseded", rec: base(nil), inputs: []Input{{Kind: InSuperseded, Reason: "m-2", At: at(time.Second)}},
			state: Failed, failed: "notified", steps: "decided"},
		{name: "terminal ignores input", rec: NewFailed(base(nil), "decided", "no capacity", t0), inputs: []Input{
			{Kind: InAttached, Host: "h2", At: at(time.Second)}},
			state: Failed, failed: "decided", steps: "decided"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rec
			for _, in := range tc.inputs {
				r, _ = Apply(r, in, timing)
			}
			var steps []string
			for _, s := range r.Steps {
				steps = append(steps, s.Step)
				if s.SinceStartMS < 0 {
					t.Errorf("negative timing %+v", s)
				}
			}
			if r.State != tc.state || strings.Join(steps, ",") != tc.steps || r.FailedStep != tc.failed || r.Fallback != tc.fallback {
				t.Fatalf("state %s steps %v failed %q fallback %v", r.State, steps, r.FailedStep, r.Fallback)
			}
			if r.State == Completed {
				ev := r.CompletedEvent()
				if ev.MakeBeforeBreak == tc.fallback || ev.DurationMS <= 0 || len(ev.Steps) != len(r.Steps) {
					t.Fatalf("completed event %+v", ev)
				}
			}
			if r.State == Failed && r.FailedEvent().Reason == "" {
				t.Fatal("failed without reason")
			}
		})
	}
}

func TestApplyReportsChange(t *testing.T) {
	r := NewDecided(Record{ID: "m-1", FromHost: "h1", ToHost: "h2", Mode: "push", Deadline: time.Now().Add(time.Minute)}, time.Now())
	r2, changed := Apply(r, Input{Kind: InAcked, At: time.Now()}, Timing{})
	if !changed || r2.State != Notified {
		t.Fatal("ack did not change state")
	}
	if _, changed := Apply(r2, Input{Kind: InAcked, At: time.Now()}, Timing{}); changed {
		t.Fatal("second ack reported a change")
	}
	if _, changed := Apply(r2, Input{Kind: InTick, At: time.Now()}, Timing{StepGrace: time.Second}); changed {
		t.Fatal("tick before deadline reported a change")
	}
}
