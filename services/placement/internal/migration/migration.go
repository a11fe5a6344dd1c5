// Package migration is the state machine of one stream's move from one host
// to another:
//
//	decided -> notified -> attached -> ceased -> completed
//	   \__________\___________\__________\______> failed
//
// decided: placement wrote the new home. notified: the publisher acked the
// move notice. attached: the publisher (or, in pull mode, the new host's
// pull) reported publisher_attached on the new host. ceased: the old host
// reported stream_ceased. Every step has a deadline (Next); a missed notice
// switches the migration to the break-before-make fallback (docs/design.md §5)
// instead of failing it, a missed attach or cease fails it. A migration
// whose client cannot move (fallback), or whose old host is down, completes
// at attach: nobody is left on the old host to cease.
//
// The package is pure: Apply returns the next record for an input, and the
// caller stores it with a compare-and-set write.
package migration

import (
	"fmt"
	"time"

	"github.com/ferrystream/ferry/libs/events"
)

// State is a migration's state.
type State string

// States.
const (
	Decided   State = "decided"
	Notified  State = "notified"
	Attached  State = "attached"
	Ceased    State = "ceased"
	Completed State = "completed"
	Failed    State = "failed"
)

// Step names recorded in Steps (the states above plus these markers).
const (
	StepDelivered = "delivered"
	StepFallback  = "fallback"
)

// Kinds of migration.
const (
	KindEvacuation = "evacuation"
	KindHostDown   = "host_down"
	KindReconnect  = "reconnect"
)

// Record is the value of migrations.<id>.
type Record struct {
	ID        string `json:"id"`
	Stream    string `json:"stream"`
	FromHost  string `json:"from_host"`
	ToHost    string `json:"to_host,omitempty"`
	Epoch     uint64 `json:"epoch"`
	Mode      string `json:"mode"`
	SessionID string `json:"session_id,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Kind      string `json:"kind"`
	Reason    string `json:"reason"`
	// Fallback: break-before-make (no capable client, no ack in time, host down).
	Fallback       bool   `json:"fallback"`
	FallbackReason string `json:"fallback_reason,omitempty"`
	// NeedCease: the old host is alive and must report stream_ceased.
	NeedCease bool `json:"need_cease"`

	State State `json:"state"`
	// DecidedAt is when the new home was written; Deadline when the old host goes offline.
	DecidedAt time.Time           `json:"decided_at"`
	Deadline  time.Time           `json:"deadline"`
	Steps     []events.StepTiming `json:"steps"`

	FailedStep string `json:"failed_step,omitempty"`
	FailReason string `json:"fail_reason,omitempty"`
	// Announced: the terminal event (completed/failed) was published.
	Announced bool      `json:"announced"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Timing configures step deadlines.
type Timing struct {
	// StepGrace is added to the offline deadline for the attach and cease steps.
	StepGrace time.Duration
	// FallbackGrace is how long after the deadline a fallback migration
	// waits for the publisher to reconnect through choose.
	FallbackGrace time.Duration
}

// Terminal reports whether the migration is over.
func (r Record) Terminal() bool { return r.State == Completed || r.State == Failed }

// Has reports whether step was recorded.
func (r Record) Has(step string) bool {
	_, ok := r.At(step)
	return ok
}

// At returns when step was recorded.
func (r Record) At(step string) (time.Time, bool) {
	for _, s := range r.Steps {
		if s.Step == step {
			return s.At, true
		}
	}
	return time.Time{}, false
}

func (r *Record) record(step string, at time.Time) {
	if r.Has(step) {
		return
	}
	since := float64(at.Sub(r.DecidedAt)) / float64(time.Millisecond)
	if since < 0 {
		since = 0
	}
	r.Steps = append(r.Steps, events.StepTiming{Step: step, At: at.UTC(), SinceStartMS: since})
}

// NewDecided returns a migration in state decided at now.
func NewDecided(r Record, now time.Time) Record {
	r.State = Decided
	r.DecidedAt = now.UTC()
	r.Steps = nil
	r.record(string(Decided), now)
	r.UpdatedAt = now.UTC()
	return r
}

// NewFailed returns a migration that failed at step with reason (e.g. no
// capacity at decision time: nothing was written to placements).
func NewFailed(r Record, step, reason string, now time.Time) Record {
	r = NewDecided(r, now)
	r.State, r.FailedStep, r.FailReason = Failed, step, reason
	return r
}

// Next returns the step the migration waits for and its deadline.
func (r Record) Next(t Timing) (step string, deadline time.Time, ok bool) {
	switch {
	case r.Terminal():
		return "", time.Time{}, false
	case r.State == Decided && !r.Fallback && r.Mode != "pull":
		return string(Notified), r.Deadline, true
	case r.State == Decided || r.State == Notified:
		grace := t.StepGrace
		if r.Fallback {
			grace = t.FallbackGrace
		}
		return string(Attached), r.Deadline.Add(grace), true
	case r.State == Attached:
		at, _ := r.At(string(Attached))
		base := r.Deadline
		if at.After(base) {
			base = at
		}
		return string(Ceased), base.Add(t.StepGrace), true
	}
	return "", time.Time{}, false
}

// Input is something that happened to a migration.
type Input struct {
	// Kind is one of the In* constants.
	Kind   string
	Host   string
	Reason string
	At     time.Time
}

// Input kinds.
const (
	InDelivered    = "delivered"
	InAcked        = "acked"
	InNoticeFailed = "notice_failed"
	InAttached     = "attached"
	InCeased       = "ceased"
	InTick         = "tick"
	// InSuperseded: a newer migration of the same stream was decided.
	InSuperseded = "superseded"
)

// Apply returns the record after in, and whether it changed.
func Apply(r Record, in Input, t Timing) (Record, bool) {
	if r.Terminal() {
		return r, false
	}
	before := fmt.Sprintf("%s/%v/%d", r.State, r.Fallback, len(r.Steps))
	at := in.At
	if at.IsZero() {
		at = time.Now()
	}
	switch in.Kind {
	case InDelivered:
		r.record(StepDelivered, at)
	case InAcked:
		if r.State == Decided && !r.Fallback {
			r.State = Notified
			r.record(string(Notified), at)
		}
	case InNoticeFailed:
		if r.State == Decided {
			r.fallback("notice failed: "+in.Reason, at)
		}
	case InAttached:
		if in.Host != r.ToHost {
			return r, false
		}
		if r.State == Decided || r.State == Notified {
			r.State = Attached
			r.record(string(Attached), at)
		}
		if r.State == Attached && (r.Fallback || !r.NeedCease || r.Has(string(Ceased))) {
			r.complete(at)
		}
	case InCeased:
		if in.Host != r.FromHost {
			return r, false
		}
		r.record(string(Ceased), at)
		if r.State == Attached {
			r.State = Ceased
			r.complete(at)
		}
	case InSuperseded:
		step, _, _ := r.Next(t)
		r.fail(step, "superseded by "+in.Reason, at)
	case InTick:
		step, dl, ok := r.Next(t)
		if !ok || !at.After(dl) {
			return r, false
		}
		switch step {
		case string(Notified):
			r.fallback("no notice ack before the deadline", at)
		case string(Attached):
			r.fail(step, fmt.Sprintf("publisher did not attach on %s by %s", r.ToHost, dl.UTC().Format(time.RFC3339)), at)
		case string(Ceased):
			r.fail(step, fmt.Sprintf("%s did not report stream_ceased by %s", r.FromHost, dl.UTC().Format(time.RFC3339)), at)
		}
	}
	changed := fmt.Sprintf("%s/%v/%d", r.State, r.Fallback, len(r.Steps)) != before
	if changed {
		r.UpdatedAt = at.UTC()
	}
	return r, changed
}

// MarkFallback switches r to break-before-make with reason (e.g. the
// client declared it cannot move), recording the step at at.
func MarkFallback(r Record, reason string, at time.Time) Record {
	if !r.Fallback {
		r.fallback(reason, at)
	}
	return r
}

func (r *Record) fallback(reason string, at time.Time) {
	r.Fallback, r.FallbackReason = true, reason
	r.record(StepFallback, at)
}

func (r *Record) complete(at time.Time) {
	r.State = Completed
	r.record(string(Completed), at)
}

func (r *Record) fail(step, reason string, at time.Time) {
	r.State, r.FailedStep, r.FailReason = Failed, step, reason
}

// CompletedEvent returns the migration_completed event of a completed record.
func (r Record) CompletedEvent() events.MigrationCompleted {
	end, _ := r.At(string(Completed))
	return events.MigrationCompleted{MigrationID: r.ID, Stream: r.Stream, FromHost: r.FromHost, ToHost: r.ToHost,
		Steps: r.Steps, DurationMS: max(0, float64(end.Sub(r.DecidedAt))/float64(time.Millisecond)),
		MakeBeforeBreak: !r.Fallback}
}

// FailedEvent returns the migration_failed event of a failed record.
func (r Record) FailedEvent() events.MigrationFailed {
	return events.MigrationFailed{MigrationID: r.ID, Stream: r.Stream, FromHost: r.FromHost, ToHost: r.ToHost,
		Step: r.FailedStep, Reason: r.FailReason, Steps: r.Steps}
}
