package ferryctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
)

// eventSource is the CloudEvents source of everything ferryctl publishes.
const eventSource = "ferryctl"

// Maintenance record statuses. "scheduled" and "cancelled" are stored;
// "active" and "ended" are derived from the window and the clock.
const (
	statusScheduled = "scheduled"
	statusCancelled = "cancelled"
	statusActive    = "active"
	statusEnded     = "ended"
)

// maintenanceRecord is the value of maintenance.<id>: the scheduled event's
// fields plus what happened to the window since. Readers tolerate records
// that carry only the event's fields (status then means "scheduled").
type maintenanceRecord struct {
	events.MaintenanceScheduled
	Status       string    `json:"status,omitempty"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
	CancelledAt  time.Time `json:"cancelled_at,omitzero"`
	CancelReason string    `json:"cancel_reason,omitempty"`
}

// effective is the record's status at now.
func (r maintenanceRecord) effective(now time.Time) string {
	switch {
	case r.Status == statusCancelled:
		return statusCancelled
	case now.Before(r.StartAt):
		return statusScheduled
	case now.Before(r.EndAt):
		return statusActive
	default:
		return statusEnded
	}
}

func cmdMaintenance(e *env) error {
	subs := map[string]func(*env) error{
		"schedule": maintenanceSchedule,
		"cancel":   maintenanceCancel,
		"list":     maintenanceList,
	}
	groupUsage := func() {
		fmt.Fprint(e.stderr, `Usage:
  ferryctl maintenance schedule <host> (--in D | --at RFC3339) [--for D] [--reason TEXT]
  ferryctl maintenance cancel <id> [--reason TEXT]
  ferryctl maintenance list [--host H] [--json]

A maintenance window tells Ferry a host goes offline at a known time:
healthpredict turns it into an outage prediction and placement moves the
host's streams away before it starts.
`)
	}
	if len(e.args) == 0 {
		groupUsage()
		return usageErr("maintenance: missing subcommand (%s)", commandNames(subs))
	}
	if a := e.args[0]; a == "-h" || a == "--help" || a == "-help" {
		groupUsage()
		return flag.ErrHelp
	}
	sub, ok := subs[e.args[0]]
	if !ok {
		return usageErr("maintenance: unknown subcommand %q (want %s)", e.args[0], commandNames(subs))
	}
	e.args = e.args[1:]
	return sub(e)
}

func maintenanceSchedule(e *env) error {
	fs := e.newFlags("maintenance schedule",
		"ferryctl maintenance schedule <host> (--in D | --at RFC3339) [--for D] [--reason TEXT] [--by NAME] [--json]",
		`Schedules a maintenance window on an ingest host: publishes
io.ferry.ops.maintenance_scheduled.v1 with a new id (mw-<hex>), stores the window in
the maintenance bucket, and prints the id. Ferry moves the host's streams away
before the window starts.

Examples:
  ferryctl maintenance schedule ingest-2 --in 2m --reason "kernel upgrade"
  ferryctl maintenance schedule ingest-2 --at 2026-11-24T03:00:00Z --for 1h --reason "disk swap"`, true)
	in := fs.Duration("in", 0, "the window starts this long from now (e.g. 2m)")
	at := fs.String("at", "", "the window starts at this RFC3339 time (e.g. 2026-11-24T03:00:00Z)")
	dur := fs.Duration("for", 30*time.Minute, "length of the window")
	reason := fs.String("reason", "", "why (shown in status, events and to the services)")
	by := fs.String("by", e.getenv("USER"), "who asks (default $USER)")
	asJSON := fs.Bool("json", false, "print the stored record as JSON instead of the id")
	host, err := oneArg(fs, e.args, "host (ferryctl maintenance schedule <host> --in 2m)", "host", checkName)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	now := time.Now().UTC()
	var start time.Time
	switch {
	case set["in"] && set["at"]:
		return usageErr("use either --in or --at, not both")
	case set["in"]:
		if *in < 0 {
			return usageErr("--in %v: must not be negative", *in)
		}
		start = now.Add(*in)
	case set["at"]:
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usageErr("--at %q: not an RFC3339 time like 2026-11-24T03:00:00Z", *at)
		}
		if t.Before(now) {
			return usageErr("--at %s: is in the past", *at)
		}
		start = t.UTC()
	default:
		return usageErr("say when the window starts: --in D (e.g. --in 2m) or --at RFC3339")
	}
	if *dur <= 0 {
		return usageErr("--for %v: must be positive", *dur)
	}
	if len(*reason) > 1024 {
		return usageErr("--reason: at most 1024 characters")
	}
	rec := maintenanceRecord{
		MaintenanceScheduled: events.MaintenanceScheduled{
			MaintenanceID: newID("mw-", 6),
			Host:          host,
			StartAt:       start,
			EndAt:         start.Add(*dur),
			Reason:        *reason,
			RequestedBy:   truncate(*by, 256),
		},
		Status:    statusScheduled,
		CreatedAt: now,
	}

	ctx, cancel := e.oneShot()
	defer cancel()
	c, err := e.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	kv, err := c.bucket(ctx, bus.BucketMaintenance)
	if err != nil {
		return err
	}
	if _, err := c.stream(ctx, bus.StreamEvents); err != nil {
		return err
	}
	if !c.hostKnown(ctx, host) {
		fmt.Fprintf(e.stderr, "warning: host %s is not registered in %s (typo, or not started yet?)\n", host, bus.BucketHosts)
	}
	if _, err := events.Publish(ctx, c.js, eventSource, rec.MaintenanceScheduled); err != nil {
		return err
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := kv.Create(ctx, rec.MaintenanceID, body); err != nil {
		return fmt.Errorf("store maintenance %s: %w (the event was published)", rec.MaintenanceID, err)
	}
	if *asJSON {
		return writeJSON(e.stdout, rec)
	}
	fmt.Fprintln(e.stdout, rec.MaintenanceID)
	fmt.Fprintf(e.stderr, "scheduled %s on %s: %s to %s (starts %s)\n", rec.MaintenanceID, host,
		stamp(rec.StartAt), stamp(rec.EndAt), relative(now, rec.StartAt))
	return nil
}

func maintenanceCancel(e *env) error {
	fs := e.newFlags("maintenance cancel", "ferryctl maintenance cancel <id> [--reason TEXT]",
		`Cancels a maintenance window: publishes io.ferry.ops.maintenance_cancelled.v1 and
marks the window cancelled in the maintenance bucket. Pending evacuations for it stop.

Example:
  ferryctl maintenance cancel mw-0a1b2c3d4e5f --reason "postponed"`, true)
	reason := fs.String("reason", "", "why")
	id, err := oneArg(fs, e.args, "maintenance id (ferryctl maintenance cancel mw-...)", "maintenance id", checkID)
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
	kv, err := c.bucket(ctx, bus.BucketMaintenance)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		entry, err := kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("maintenance %s: not found (see `ferryctl maintenance list`)", id)
		}
		if err != nil {
			return fmt.Errorf("maintenance %s: %w", id, err)
		}
		var rec maintenanceRecord
		if err := json.Unmarshal(entry.Value(), &rec); err != nil {
			return fmt.Errorf("maintenance %s: unreadable record: %w", id, err)
		}
		if rec.Status == statusCancelled {
			fmt.Fprintf(e.stdout, "%s on %s was already cancelled at %s\n", id, rec.Host, stamp(rec.CancelledAt))
			return nil
		}
		if rec.Host == "" {
			return fmt.Errorf("maintenance %s: record has no host", id)
		}
		ev := events.MaintenanceCancelled{MaintenanceID: id, Host: rec.Host, Reason: *reason}
		if _, err := events.Publish(ctx, c.js, eventSource, ev); err != nil {
			return err
		}
		rec.Status, rec.CancelledAt, rec.CancelReason = statusCancelled, time.Now().UTC(), *reason
		body, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		_, err = kv.Update(ctx, id, body, entry.Revision())
		if errors.Is(err, jetstream.ErrKeyExists) && attempt < 3 {
			continue // changed under us: read again (the event is deduplicated)
		}
		if err != nil {
			return fmt.Errorf("mark maintenance %s cancelled: %w (the event was published)", id, err)
		}
		fmt.Fprintf(e.stdout, "cancelled %s on %s\n", id, rec.Host)
		return nil
	}
}

func maintenanceList(e *env) error {
	fs := e.newFlags("maintenance list", "ferryctl maintenance list [--host H] [--json]",
		`Lists the maintenance windows in the maintenance bucket (kept 30 days), by start time.
STATUS is scheduled, active (the window is open), ended or cancelled.`, true)
	host := fs.String("host", "", "only this host's windows")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, e.args)
	if err != nil {
		return err
	}
	if err := positional(pos, 0, ""); err != nil {
		return err
	}
	if *host != "" {
		if err := checkName("host", *host); err != nil {
			return err
		}
	}
	ctx, cancel := e.oneShot()
	defer cancel()
	c, err := e.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	kv, err := c.bucket(ctx, bus.BucketMaintenance)
	if err != nil {
		return err
	}
	recs, err := readMaintenance(ctx, kv)
	if err != nil {
		return err
	}
	now := time.Now()
	type row struct {
		maintenanceRecord
		Effective string `json:"effective_status"`
	}
	rows := []row{}
	for _, r := range recs {
		if *host == "" || r.Host == *host {
			rows = append(rows, row{r, r.effective(now)})
		}
	}
	if *asJSON {
		return writeJSON(e.stdout, rows)
	}
	if len(rows) == 0 {
		fmt.Fprintln(e.stdout, "no maintenance windows")
		return nil
	}
	t := newTable(e.stdout, "ID", "HOST", "STATUS", "START", "WHEN", "FOR", "REASON", "BY")
	for _, r := range rows {
		when := relative(now, r.StartAt)
		if r.Effective == statusActive {
			when = "ends " + relative(now, r.EndAt)
		}
		t.row(r.MaintenanceID, r.Host, r.Effective, stamp(r.StartAt), when,
			human(r.EndAt.Sub(r.StartAt)), r.Reason, r.RequestedBy)
	}
	t.flush()
	return nil
}

// readMaintenance returns every record of the bucket, by start time.
func readMaintenance(ctx context.Context, kv jetstream.KeyValue) ([]maintenanceRecord, error) {
	var out []maintenanceRecord
	err := eachKey(ctx, kv, func(key string, value []byte) {
		var r maintenanceRecord
		if json.Unmarshal(value, &r) != nil {
			return
		}
		if r.MaintenanceID == "" {
			r.MaintenanceID = key
		}
		out = append(out, r)
	})
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartAt.Equal(out[j].StartAt) {
			return out[i].StartAt.Before(out[j].StartAt)
		}
		return out[i].MaintenanceID < out[j].MaintenanceID
	})
	return out, err
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
