package ferryctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/clients/ferryctl/internal/timeline"
	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
)

// statusReport is `ferryctl status --json`.
type statusReport struct {
	At          time.Time           `json:"at"`
	Hosts       []hostStatus        `json:"hosts"`
	Streams     []streamStatus      `json:"streams"`
	Migrations  []migrationRecord   `json:"migrations"`
	Maintenance []maintenanceRecord `json:"maintenance"`
}

// hostStatus is a registered host (or one known only from its events) with
// its heartbeat and open predictions.
type hostStatus struct {
	events.HostRecord
	// Registered is false for a host known only from health events.
	Registered bool `json:"registered"`
	// Heartbeat is "ok", "silent" (the TTL expired: a delete marker) or "none".
	Heartbeat string `json:"heartbeat"`
	// HeartbeatAt is the last heartbeat's time (or the marker's, when silent).
	HeartbeatAt time.Time `json:"heartbeat_at,omitzero"`
	// HeartbeatAgeS is seconds since HeartbeatAt (-1 when none).
	HeartbeatAgeS float64 `json:"heartbeat_age_s"`
	// Predictions are the open outage predictions (not cleared).
	Predictions []prediction `json:"predictions"`
	// Down is the last host_down since the host (re)started, if any.
	Down *hostDown `json:"down,omitempty"`
	// Left is the host's announced departure (host_left) when it has not
	// registered again since.
	Left *hostLeft `json:"left,omitempty"`
}

type hostLeft struct {
	At          time.Time `json:"at"`
	Reason      string    `json:"reason"`
	StreamsLeft int       `json:"streams_left"`
}

// streamStatus is a placement with what status derives for it: its
// publisher (from the publisher lifecycle events, as placement judges it)
// and the migration moving it, if one is in flight (from the migrations
// bucket, the same records as MIGRATIONS IN FLIGHT).
type streamStatus struct {
	events.Placement
	Publisher publisherStatus `json:"publisher"`
	// Moving is the in-flight migration's id ("" when none).
	Moving string `json:"moving,omitempty"`
}

type publisherStatus struct {
	Attached bool   `json:"attached"`
	Host     string `json:"host,omitempty"`
	// IdleSince is since when the stream has had no publisher (when not attached).
	IdleSince time.Time `json:"idle_since,omitzero"`
}

type prediction struct {
	PredictionID      string    `json:"prediction_id"`
	Cause             string    `json:"cause"`
	ExpectedOfflineAt time.Time `json:"expected_offline_at"`
	Confidence        float64   `json:"confidence"`
	Revision          int       `json:"revision"`
	At                time.Time `json:"at"`
}

type hostDown struct {
	LastSeen   time.Time `json:"last_seen"`
	DetectedAt time.Time `json:"detected_at"`
	Reason     string    `json:"reason"`
}

func cmdStatus(e *env) error {
	fs := e.newFlags("status", "ferryctl status [--json]",
		`Shows the fleet as Ferry sees it:

  HOSTS       every host in ingest_hosts: zone, role, status (ok/draining),
              heartbeat age, streams/capacity, readers, bitrate in, and its
              open predictions (outage_predicted not yet cleared, host_down)
  STREAMS     every placement: home host, epoch, mode, publisher session,
              age, its publisher (attached where, or missing for how long:
              placement releases a push placement without a publisher for
              PLACEMENT_RELEASE_AFTER, default 10m), the migration moving it
  MIGRATIONS  migrations in flight (bucket migrations; MOVING above is the same)
  MAINTENANCE maintenance windows scheduled or open`, true)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, e.args)
	if err != nil {
		return err
	}
	if err := positional(pos, 0, ""); err != nil {
		return err
	}
	ctx, cancel := e.oneShot()
	defer cancel()
	c, err := e.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	rep, err := c.status(ctx, time.Now())
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e.stdout, rep)
	}
	printStatus(e, rep)
	return nil
}

func (c *conn) status(ctx context.Context, now time.Time) (statusReport, error) {
	rep := statusReport{At: now.UTC(), Hosts: []hostStatus{}, Streams: []streamStatus{},
		Migrations: []migrationRecord{}, Maintenance: []maintenanceRecord{}}

	hostsKV, err := c.bucket(ctx, bus.BucketHosts)
	if err != nil {
		return rep, err
	}
	hosts := map[string]*hostStatus{}
	err = eachKey(ctx, hostsKV, func(key string, value []byte) {
		h := &hostStatus{Registered: true}
		if json.Unmarshal(value, &h.HostRecord) != nil {
			return
		}
		if h.Host == "" {
			h.Host = key
		}
		hosts[h.Host] = h
	})
	if err != nil {
		return rep, err
	}

	// open predictions and host_down, replaying the health events in order
	open := map[string]map[string]prediction{}
	down := map[string]hostDown{}
	left := map[string]hostLeft{}
	err = c.readEvents(ctx, replayOpts{filters: []string{
		subject.OutagePredicted("*"), subject.OutageCleared("*"), subject.HostDown("*"), subject.HostLeft("*"),
	}}, func(ev timeline.Event) error {
		host := ev.Str("host")
		if host == "" {
			return nil
		}
		switch ev.Env.Type {
		case events.TypeOutagePredicted:
			if open[host] == nil {
				open[host] = map[string]prediction{}
			}
			open[host][ev.Str("prediction_id")] = prediction{
				PredictionID: ev.Str("prediction_id"), Cause: ev.Str("cause"),
				ExpectedOfflineAt: ev.Time("expected_offline_at"), Confidence: ev.Num("confidence"),
				Revision: int(ev.Num("revision")), At: ev.Env.Time,
			}
		case events.TypeOutageCleared:
			delete(open[host], ev.Str("prediction_id"))
		case events.TypeHostDown:
			down[host] = hostDown{LastSeen: ev.Time("last_seen"), DetectedAt: ev.Time("detected_at"), Reason: ev.Str("reason")}
		case events.TypeHostLeft:
			left[host] = hostLeft{At: ev.Time("at"), Reason: ev.Str("reason"), StreamsLeft: int(ev.Num("streams_left"))}
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	for host, preds := range open {
		if len(preds) > 0 && hosts[host] == nil {
			hosts[host] = &hostStatus{HostRecord: events.HostRecord{Host: host}}
		}
	}
	for host, l := range left {
		h := hosts[host]
		if h != nil && !h.StartedAt.Before(l.At) {
			continue // registered again since
		}
		if h == nil {
			h = &hostStatus{HostRecord: events.HostRecord{Host: host}}
			hosts[host] = h
		}
		l := l
		h.Left = &l
	}
	for host, d := range down {
		h := hosts[host]
		if h != nil && h.Left != nil && !d.LastSeen.After(h.Left.At) {
			continue // the silence of a host that left on purpose
		}
		if h == nil {
			h = &hostStatus{HostRecord: events.HostRecord{Host: host}}
			hosts[host] = h
		}
		if h.StartedAt.IsZero() || d.DetectedAt.After(h.StartedAt) {
			d := d
			h.Down = &d
		}
	}

	hb, hbErr := c.js.Stream(ctx, bus.StreamHeartbeats)
	for _, h := range hosts {
		h.Predictions = []prediction{}
		for _, p := range open[h.Host] {
			h.Predictions = append(h.Predictions, p)
		}
		sort.Slice(h.Predictions, func(i, j int) bool {
			return h.Predictions[i].ExpectedOfflineAt.Before(h.Predictions[j].ExpectedOfflineAt)
		})
		h.Heartbeat, h.HeartbeatAgeS = "none", -1
		if hbErr != nil {
			continue
		}
		msg, err := hb.GetLastMsgForSubject(ctx, subject.Heartbeat(h.Host))
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgNotFound) {
				return rep, fmt.Errorf("heartbeat of %s: %w", h.Host, err)
			}
			continue
		}
		h.HeartbeatAt = msg.Time
		h.HeartbeatAgeS = now.Sub(msg.Time).Seconds()
		h.Heartbeat = "ok"
		if msg.Header.Get(markerReasonHeader) != "" || len(msg.Data) == 0 {
			h.Heartbeat = "silent"
		}
	}
	for _, h := range hosts {
		rep.Hosts = append(rep.Hosts, *h)
	}
	sort.Slice(rep.Hosts, func(i, j int) bool { return rep.Hosts[i].Host < rep.Hosts[j].Host })

	placementsKV, err := c.bucket(ctx, bus.BucketPlacements)
	if err != nil {
		return rep, err
	}
	err = eachKey(ctx, placementsKV, func(key string, value []byte) {
		var p events.Placement
		if json.Unmarshal(value, &p) != nil {
			return
		}
		if p.Stream == "" {
			p.Stream = strings.TrimPrefix(key, events.PlacementKey(""))
		}
		rep.Streams = append(rep.Streams, streamStatus{Placement: p})
	})
	if err != nil {
		return rep, err
	}
	sort.Slice(rep.Streams, func(i, j int) bool { return rep.Streams[i].Stream < rep.Streams[j].Stream })

	// each stream's publisher, judged as placement judges it (events.Presence)
	if len(rep.Streams) > 0 {
		pres := events.NewPresence()
		err = c.readEvents(ctx, replayOpts{lastPerSubject: true,
			filters: []string{subject.PublisherAttached("*", "*"), subject.PublisherDetached("*", "*")}},
			func(ev timeline.Event) error {
				if subject.ReportingHost(ev.Subject) == ev.Str("host") {
					pres.Apply(ev.Env)
				}
				return nil
			})
		if err != nil {
			return rep, err
		}
		alive := func(host string) bool {
			h := hosts[host]
			return h != nil && h.Registered && h.Heartbeat != "silent"
		}
		for i := range rep.Streams {
			p := rep.Streams[i].Placement
			placed := p.PlacedAt
			if placed.IsZero() {
				placed = p.UpdatedAt
			}
			ps := pres.Publisher(p.Stream, alive, placed, p.UpdatedAt)
			rep.Streams[i].Publisher = publisherStatus{Attached: ps.Attached, Host: ps.Host}
			if !ps.Attached {
				rep.Streams[i].Publisher.IdleSince = ps.IdleSince.UTC()
			}
		}
	}

	if kv, err := c.js.KeyValue(ctx, bus.BucketMigrations); err == nil {
		err = eachKey(ctx, kv, func(key string, value []byte) {
			if m := parseMigration(key, value); !m.terminal() {
				rep.Migrations = append(rep.Migrations, m)
			}
		})
		if err != nil {
			return rep, err
		}
		sort.Slice(rep.Migrations, func(i, j int) bool {
			a, b := rep.Migrations[i], rep.Migrations[j]
			if !a.StartedAt.Equal(b.StartedAt) {
				return a.StartedAt.Before(b.StartedAt)
			}
			return a.MigrationID < b.MigrationID
		})
	}
	// MOVING comes from the same records as MIGRATIONS IN FLIGHT (the
	// newest in flight per stream), not from the placement's last move.
	moving := map[string]string{}
	for _, m := range rep.Migrations {
		moving[m.Stream] = m.MigrationID
	}
	for i := range rep.Streams {
		rep.Streams[i].Moving = moving[rep.Streams[i].Stream]
	}

	if kv, err := c.js.KeyValue(ctx, bus.BucketMaintenance); err == nil {
		recs, err := readMaintenance(ctx, kv)
		if err != nil {
			return rep, err
		}
		for _, r := range recs {
			if s := r.effective(now); s == statusScheduled || s == statusActive {
				rep.Maintenance = append(rep.Maintenance, r)
			}
		}
	}
	return rep, nil
}

// markerReasonHeader is set on the delete marker JetStream writes when a
// heartbeat's message TTL expires.
const markerReasonHeader = "Nats-Marker-Reason"

func printStatus(e *env, rep statusReport) {
	w := e.stdout
	now := rep.At
	fmt.Fprintf(w, "HOSTS (%d)\n", len(rep.Hosts))
	if len(rep.Hosts) == 0 {
		fmt.Fprintln(w, "  no ingest host registered")
	} else {
		t := newTable(w, "HOST", "ZONE", "ROLE", "STATUS", "HEARTBEAT", "STREAMS", "READERS", "IN", "PREDICTION")
		for _, h := range rep.Hosts {
			status := h.Status
			if h.Left != nil {
				status = fmt.Sprintf("left %s (drained: %s", relative(now, h.Left.At), h.Left.Reason)
				if h.Left.StreamsLeft > 0 {
					status += fmt.Sprintf(", %d streams closed at the deadline", h.Left.StreamsLeft)
				}
				status += ")"
			} else if !h.Registered {
				status = "unregistered"
			} else if h.Status == "draining" && !h.Deadline.IsZero() {
				status = "draining, offline " + relative(now, h.Deadline)
			}
			hb := h.Heartbeat
			switch h.Heartbeat {
			case "ok":
				hb = human(now.Sub(h.HeartbeatAt))
			case "silent":
				hb = "silent " + human(now.Sub(h.HeartbeatAt))
			}
			streams := fmt.Sprint(h.Streams)
			if h.CapacityStreams > 0 {
				streams += "/" + fmt.Sprint(h.CapacityStreams)
			}
			var preds []string
			if h.Down != nil {
				preds = append(preds, fmt.Sprintf("DOWN since %s (%s)", timeline.Clock(h.Down.DetectedAt, time.Local), h.Down.Reason))
			}
			for _, p := range h.Predictions {
				preds = append(preds, fmt.Sprintf("%s offline %s (%.2f)", p.Cause, relative(now, p.ExpectedOfflineAt), p.Confidence))
			}
			readers, in := fmt.Sprint(h.Readers), bitrate(h.BitrateIn)
			if !h.Registered {
				streams, readers, in = "", "", ""
			}
			t.row(h.Host, h.Zone, h.Role, status, hb, streams, readers, in, strings.Join(preds, "; "))
		}
		t.flush()
	}

	fmt.Fprintf(w, "\nSTREAMS (%d)\n", len(rep.Streams))
	if len(rep.Streams) == 0 {
		fmt.Fprintln(w, "  no stream placed")
	} else {
		inFlight := map[string]migrationRecord{}
		for _, m := range rep.Migrations {
			inFlight[m.MigrationID] = m
		}
		t := newTable(w, "STREAM", "HOST", "EPOCH", "MODE", "SESSION", "CLIENT", "AGE", "PUBLISHER", "MOVING")
		for _, p := range rep.Streams {
			moving := ""
			if m, ok := inFlight[p.Moving]; ok {
				moving = fmt.Sprintf("%s from %s, deadline %s", m.MigrationID, m.FromHost, relative(now, m.Deadline))
			}
			pub := "none for " + age(now, p.Publisher.IdleSince)
			if p.Publisher.Attached {
				pub = "on " + p.Publisher.Host
			}
			t.row(p.Stream, p.Host, fmt.Sprint(p.Epoch), p.Mode, p.SessionID, p.ClientID, age(now, p.PlacedAt), pub, moving)
		}
		t.flush()
	}

	fmt.Fprintf(w, "\nMIGRATIONS IN FLIGHT (%d)\n", len(rep.Migrations))
	if len(rep.Migrations) == 0 {
		fmt.Fprintln(w, "  none")
	} else {
		t := newTable(w, "MIGRATION", "STREAM", "FROM", "TO", "STEP", "KIND", "AGE", "DEADLINE")
		for _, m := range rep.Migrations {
			step := m.Step
			if m.Fallback {
				step += " (fallback)"
			}
			t.row(m.MigrationID, m.Stream, m.FromHost, m.ToHost, step, m.Kind, age(now, m.StartedAt), relative(now, m.Deadline))
		}
		t.flush()
	}

	if len(rep.Maintenance) > 0 {
		fmt.Fprintf(w, "\nMAINTENANCE (%d)\n", len(rep.Maintenance))
		t := newTable(w, "ID", "HOST", "STATUS", "START", "WHEN", "REASON")
		for _, r := range rep.Maintenance {
			t.row(r.MaintenanceID, r.Host, r.effective(now), stamp(r.StartAt), relative(now, r.StartAt), r.Reason)
		}
		t.flush()
	}
}

// bitrate renders bits per second.
func bitrate(bps int64) string {
	switch {
	case bps <= 0:
		return "0"
	case bps < 1_000_000:
		return fmt.Sprintf("%.0f kb/s", float64(bps)/1e3)
	default:
		return fmt.Sprintf("%.1f Mb/s", float64(bps)/1e6)
	}
}
