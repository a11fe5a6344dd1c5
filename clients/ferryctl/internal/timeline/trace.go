package timeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ferrystream/ferry/libs/events"
)

// Step is one event of a migration, with its timing.
type Step struct {
	At   time.Time `json:"at"`
	Step string    `json:"step"`
	// Detail is the event's one-line description (without time and type).
	Detail string `json:"detail"`
	// SinceStartMS is milliseconds since the migration was decided
	// (placement.reassigned); negative for its cause.
	SinceStartMS float64 `json:"since_start_ms"`
	// DeltaMS is milliseconds since the previous step (0 for the first).
	DeltaMS float64 `json:"delta_ms"`
	// Cause marks the event that triggered the migration (not one of its steps).
	Cause bool   `json:"cause,omitempty"`
	Seq   uint64 `json:"seq,omitempty"`
}

// Outcomes of a traced migration.
const (
	OutcomeCompleted = "completed"
	OutcomeFailed    = "failed"
	OutcomeInFlight  = "in flight"
)

// Trace is a migration as its events tell it.
type Trace struct {
	MigrationID string    `json:"migration_id"`
	Stream      string    `json:"stream"`
	FromHost    string    `json:"from_host"`
	ToHost      string    `json:"to_host"`
	Reason      string    `json:"reason,omitempty"`
	Decided     time.Time `json:"decided,omitzero"`
	Deadline    time.Time `json:"deadline,omitzero"`
	Steps       []Step    `json:"steps"`
	// Outcome is "completed", "failed" or "in flight".
	Outcome string `json:"outcome"`
	// DurationMS is from the decision to the outcome event (or to the last
	// step while in flight).
	DurationMS float64 `json:"duration_ms"`
	// MakeBeforeBreak is set by migration_completed.
	MakeBeforeBreak *bool `json:"make_before_break,omitempty"`
	// FailedStep and FailReason are set by migration_failed.
	FailedStep string `json:"failed_step,omitempty"`
	FailReason string `json:"fail_reason,omitempty"`
	// PlacementSteps are the step timings placement reported in its outcome event.
	PlacementSteps []events.StepTiming `json:"placement_steps,omitempty"`
}

// ErrNoSuchMigration is returned when no event carries the migration id.
var ErrNoSuchMigration = errors.New("no event carries this migration id")

// causeTypes are the events on the old host that can start a migration.
var causeTypes = map[string]bool{
	events.TypeOutagePredicted:      true,
	events.TypeHostDown:             true,
	events.TypeDraining:             true,
	events.TypeMaintenanceScheduled: true,
}

// BuildTrace collects the events of migration id from evs (any order, any
// other events mixed in), orders them by time (then stream sequence) and
// computes each step's timing. The latest cause event on the old host at or
// before the decision (outage_predicted, host_down, draining,
// maintenance_scheduled) is listed first as the cause.
func BuildTrace(id string, evs []Event, loc *time.Location) (Trace, error) {
	tr := Trace{MigrationID: id, Outcome: OutcomeInFlight, Steps: []Step{}}
	var mine []Event
	for _, e := range evs {
		if e.Str("migration_id") == id {
			mine = append(mine, e)
		}
	}
	if len(mine) == 0 {
		return tr, fmt.Errorf("migration %s: %w", id, ErrNoSuchMigration)
	}
	sortEvents(mine)
	start := mine[0].Env.Time
	var outcomeAt time.Time
	for _, e := range mine {
		if tr.Stream == "" {
			tr.Stream = e.Str("stream")
		}
		if v := e.Str("from_host"); v != "" && tr.FromHost == "" {
			tr.FromHost = v
		}
		if v := e.Str("to_host"); v != "" && tr.ToHost == "" {
			tr.ToHost = v
		}
		switch e.Env.Type {
		case events.TypeReassigned:
			if tr.Decided.IsZero() {
				tr.Decided, start = e.Env.Time, e.Env.Time
				tr.FromHost, tr.ToHost = e.Str("from_host"), e.Str("to_host")
				tr.Reason, tr.Deadline = e.Str("reason"), e.Time("deadline")
			}
		case events.TypeMigrationCompleted:
			tr.Outcome, outcomeAt = OutcomeCompleted, e.Env.Time
			if v, ok := e.Data["make_before_break"].(bool); ok {
				tr.MakeBeforeBreak = &v
			}
			tr.PlacementSteps = stepTimings(e)
		case events.TypeMigrationFailed:
			tr.Outcome, outcomeAt = OutcomeFailed, e.Env.Time
			tr.FailedStep, tr.FailReason = e.Str("step"), e.Str("reason")
			tr.PlacementSteps = stepTimings(e)
		}
	}

	steps := make([]Step, 0, len(mine)+1)
	if c, ok := findCause(evs, tr.FromHost, start); ok {
		steps = append(steps, Step{At: c.Env.Time, Step: c.Short(), Detail: Describe(c, loc), Cause: true, Seq: c.Seq})
	}
	for _, e := range mine {
		steps = append(steps, Step{At: e.Env.Time, Step: e.Short(), Detail: Describe(e, loc), Seq: e.Seq})
	}
	for i := range steps {
		steps[i].SinceStartMS = ms(steps[i].At.Sub(start))
		if i > 0 {
			steps[i].DeltaMS = ms(steps[i].At.Sub(steps[i-1].At))
		}
	}
	tr.Steps = steps
	end := mine[len(mine)-1].Env.Time
	if !outcomeAt.IsZero() {
		end = outcomeAt // steps after the outcome (a late edge switch) are shown, not counted
	}
	tr.DurationMS = ms(end.Sub(start))
	return tr, nil
}

func findCause(evs []Event, host string, before time.Time) (Event, bool) {
	var best Event
	found := false
	if host == "" {
		return best, false
	}
	for _, e := range evs {
		if !causeTypes[e.Env.Type] || e.Str("host") != host || e.Env.Time.After(before) {
			continue
		}
		if !found || e.Env.Time.After(best.Env.Time) || (e.Env.Time.Equal(best.Env.Time) && e.Seq > best.Seq) {
			best, found = e, true
		}
	}
	return best, found
}

func stepTimings(e Event) []events.StepTiming {
	var out []events.StepTiming
	raw, err := json.Marshal(e.Data["steps"])
	if err != nil {
		return nil
	}
	_ = json.Unmarshal(raw, &out)
	return out
}

// sortEvents orders events by time, then by stream sequence.
func sortEvents(evs []Event) {
	sort.SliceStable(evs, func(i, j int) bool {
		a, b := evs[i], evs[j]
		if !a.Env.Time.Equal(b.Env.Time) {
			return a.Env.Time.Before(b.Env.Time)
		}
		return a.Seq < b.Seq
	})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
