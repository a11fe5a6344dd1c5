package ferryctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl/internal/timeline"
	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/subject"
)

func cmdTrace(e *env) error {
	fs := e.newFlags("trace", "ferryctl trace <migration-id> [--json]",
		`Shows one migration step by step, from the events that carry its id
(placement.reassigned, notify.*, ingest.publisher_attached, ingest.stream_ceased,
edge.switched, placement.migration_completed/failed), preceded by its cause on
the old host (outage_predicted, draining, host_down, maintenance_scheduled).
SINCE is the time from the decision (reassigned), DELTA the time from the
previous step.

Example:
  ferryctl trace m-0123456789abcdef`, true)
	asJSON := fs.Bool("json", false, "print the trace as JSON")
	id, err := oneArg(fs, e.args, "migration id (ferryctl trace m-...)", "migration id", checkID)
	if err != nil {
		return err
	}
	ctx, cancel := e.oneShot()
	defer cancel()
	c, err := e.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	tr, err := c.trace(ctx, id)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, tr)
	}
	printTrace(e, tr)
	return nil
}

// trace collects the events of migration id. It finds the stream (and old
// host) from the migrations bucket or the reassigned events, then reads only
// the events about that stream and host.
func (c *conn) trace(ctx context.Context, id string) (timeline.Trace, error) {
	stream, from := c.migrationEntities(ctx, id)
	if stream == "" {
		err := c.readEvents(ctx, replayOpts{filters: []string{subject.Reassigned("*")}}, func(ev timeline.Event) error {
			if ev.Str("migration_id") == id {
				stream, from = ev.Str("stream"), ev.Str("from_host")
				return errStop
			}
			return nil
		})
		if err != nil {
			return timeline.Trace{}, err
		}
	}
	o := replayOpts{}
	if stream != "" {
		o.filters = subject.EventsAbout(stream)
		if from != "" && from != stream {
			o.filters = append(o.filters, subject.EventsAbout(from)...)
		}
	}
	var evs []timeline.Event
	err := c.readEvents(ctx, o, func(ev timeline.Event) error {
		evs = append(evs, ev)
		return nil
	})
	if err != nil {
		return timeline.Trace{}, err
	}
	tr, err := timeline.BuildTrace(id, evs, time.Local)
	if errors.Is(err, timeline.ErrNoSuchMigration) {
		return tr, fmt.Errorf("migration %s: no event in %s carries this id (ids look like m-0123456789abcdef; see `ferryctl events --type reassigned`)", id, bus.StreamEvents)
	}
	return tr, err
}

// migrationEntities reads the stream and old host of a migration from the
// migrations bucket ("" when unknown).
func (c *conn) migrationEntities(ctx context.Context, id string) (stream, from string) {
	kv, err := c.js.KeyValue(ctx, bus.BucketMigrations)
	if err != nil {
		return "", ""
	}
	entry, err := kv.Get(ctx, id)
	if err != nil { // not there (expired, or placement keeps no record): scan the events
		return "", ""
	}
	m := parseMigration(entry.Key(), entry.Value())
	return m.Stream, m.FromHost
}

func printTrace(e *env, tr timeline.Trace) {
	w := e.stdout
	head := fmt.Sprintf("migration %s  stream %s  %s -> %s", tr.MigrationID, tr.Stream, dash(tr.FromHost), dash(tr.ToHost))
	if tr.Reason != "" {
		head += "  reason " + tr.Reason
	}
	fmt.Fprintln(w, head)
	t := newTable(w, "TIME", "SINCE", "DELTA", "STEP", "DETAIL")
	for i, s := range tr.Steps {
		delta := ""
		if i > 0 {
			delta = fmt.Sprintf("+%.1fms", s.DeltaMS)
		}
		step := s.Step
		if s.Cause {
			step += " (cause)"
		}
		t.row(timeline.Clock(s.At, time.Local), fmt.Sprintf("%.1fms", s.SinceStartMS), delta, step, s.Detail)
	}
	t.flush()
	switch tr.Outcome {
	case timeline.OutcomeCompleted:
		how := ""
		if tr.MakeBeforeBreak != nil {
			how = ", break-before-make (fallback)"
			if *tr.MakeBeforeBreak {
				how = ", make-before-break"
			}
		}
		fmt.Fprintf(w, "completed in %.1f ms%s\n", tr.DurationMS, how)
	case timeline.OutcomeFailed:
		fmt.Fprintf(w, "failed at step %s after %.1f ms: %s\n", dash(tr.FailedStep), tr.DurationMS, tr.FailReason)
	default:
		fmt.Fprintf(w, "in flight: %.1f ms since the decision", tr.DurationMS)
		if !tr.Deadline.IsZero() {
			fmt.Fprintf(w, ", deadline %s (%s)", timeline.Clock(tr.Deadline, time.Local), relative(time.Now(), tr.Deadline))
		}
		fmt.Fprintln(w)
	}
	if len(tr.PlacementSteps) > 0 {
		fmt.Fprint(w, "placement's step timings:")
		for _, s := range tr.PlacementSteps {
			fmt.Fprintf(w, " %s %.1fms", s.Step, s.SinceStartMS)
		}
		fmt.Fprintln(w)
	}
}

func dash(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// migrationRecord is what ferryctl reads from a value of the migrations
// bucket, written by placement (services/placement/internal/migration.Record:
// id, stream, from_host, to_host, state, kind, fallback, decided_at,
// deadline, steps, ...). Every field is optional and unknown fields are
// kept in Raw, so a change of placement's record does not break status.
type migrationRecord struct {
	MigrationID string `json:"migration_id"`
	Stream      string `json:"stream"`
	FromHost    string `json:"from_host"`
	ToHost      string `json:"to_host"`
	Step        string `json:"step"`
	Reason      string `json:"reason,omitempty"`
	Mode        string `json:"mode,omitempty"`
	Kind        string `json:"kind,omitempty"`
	// Fallback is set when placement fell back to break-before-make.
	Fallback  bool            `json:"fallback,omitempty"`
	StartedAt time.Time       `json:"started_at,omitzero"`
	Deadline  time.Time       `json:"deadline,omitzero"`
	UpdatedAt time.Time       `json:"updated_at,omitzero"`
	Raw       json.RawMessage `json:"record"`
}

// terminal reports whether the migration is over.
func (m migrationRecord) terminal() bool {
	switch m.Step {
	case "completed", "failed", "done", "aborted", "cancelled":
		return true
	}
	return false
}

// parseMigration reads a migrations value tolerantly: the step may be named
// step, state, status or phase, the start decided_at, started_at or created_at.
func parseMigration(key string, value []byte) migrationRecord {
	m := migrationRecord{MigrationID: key, Raw: json.RawMessage(value)}
	var f map[string]any
	if json.Unmarshal(value, &f) != nil {
		m.Raw, _ = json.Marshal(string(value))
		return m
	}
	str := func(keys ...string) string {
		for _, k := range keys {
			if v, ok := f[k].(string); ok && v != "" {
				return v
			}
		}
		return ""
	}
	tm := func(keys ...string) time.Time {
		for _, k := range keys {
			if t, err := time.Parse(time.RFC3339Nano, str(k)); err == nil {
				return t
			}
		}
		return time.Time{}
	}
	if v := str("migration_id", "id"); v != "" {
		m.MigrationID = v
	}
	m.Stream = str("stream")
	m.FromHost = str("from_host", "from")
	m.ToHost = str("to_host", "to")
	m.Step = str("step", "state", "status", "phase")
	m.Reason = str("reason")
	m.Mode = str("mode")
	m.Kind = str("kind")
	m.Fallback, _ = f["fallback"].(bool)
	m.StartedAt = tm("decided_at", "started_at", "created_at", "at")
	m.Deadline = tm("deadline")
	m.UpdatedAt = tm("updated_at")
	return m
}
