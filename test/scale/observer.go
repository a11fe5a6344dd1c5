package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
)

// mig is what the observer knows of one migration.
type mig struct {
	id, stream, from, to string
	reassigned           time.Time
	completed, failed    time.Time
	failStep, failReason string
	notice               string // the notice id sent for it
}

func (m *mig) terminal() bool { return !m.completed.IsZero() || !m.failed.IsZero() }

// placed is the observer's copy of one stream's placement.
type placed struct {
	host, migration string
	epoch, rev      uint64
}

// observer follows every event (a core subscription on ferry.evt.>) and the
// placements bucket, and checks the invariants as things happen: a stream's
// placement only moves forward one epoch per move (never two homes), every
// migration closes (completed, or failed with a reason), no notice is sent
// twice. mu guards every map.
type observer struct {
	s *sim

	mu         sync.Mutex
	ids        map[string]struct{}
	migs       map[string]*mig
	noCapacity []*mig // migration_failed without a reassignment (nothing moved)
	predicted  map[string][]time.Time
	hostDown   map[string]time.Time
	place      map[string]placed
	notices    map[string]uint64 // notice id -> stream sequence of its message
	counts     map[string]int
	changes    int64 // placement puts seen
}

func newObserver(s *sim) *observer {
	return &observer{s: s, ids: map[string]struct{}{}, migs: map[string]*mig{}, predicted: map[string][]time.Time{},
		hostDown: map[string]time.Time{}, place: map[string]placed{}, notices: map[string]uint64{}, counts: map[string]int{}}
}

// run subscribes and watches until ctx ends.
func (o *observer) run(ctx context.Context, nc *nats.Conn, placements jetstream.KeyValue) error {
	sub, err := nc.Subscribe(subject.AllEvents, o.onEvent)
	if err != nil {
		return err
	}
	_ = sub.SetPendingLimits(-1, -1)
	w, err := placements.WatchAll(ctx)
	if err != nil {
		return err
	}
	go func() {
		for e := range w.Updates() {
			if e != nil {
				o.onPlacement(e)
			}
		}
	}()
	go func() {
		<-ctx.Done()
		_ = sub.Unsubscribe()
		_ = w.Stop()
	}()
	return nc.Flush()
}

func (o *observer) onEvent(m *nats.Msg) {
	var env events.Envelope
	if err := json.Unmarshal(m.Data, &env); err != nil {
		o.s.violation("event on %s is not JSON: %v", m.Subject, err)
		return
	}
	if env.Type == events.TypePublisherAttached {
		var e events.PublisherAttached
		if json.Unmarshal(env.Data, &e) == nil {
			o.s.attach.arrived(e.Stream, e.Host, e.MigrationID)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, dup := o.ids[env.ID]; dup {
		o.counts["event_republished"]++ // a retried publish, deduplicated by JetStream
		return
	}
	o.ids[env.ID] = struct{}{}
	o.counts[env.Type]++
	switch env.Type {
	case events.TypeOutagePredicted:
		var e events.OutagePredicted
		if json.Unmarshal(env.Data, &e) == nil {
			o.predicted[e.Host] = append(o.predicted[e.Host], env.Time)
		}
	case events.TypeHostDown:
		var e events.HostDown
		if json.Unmarshal(env.Data, &e) == nil {
			if _, ok := o.hostDown[e.Host]; !ok {
				o.hostDown[e.Host] = env.Time
			}
		}
	case events.TypeReassigned:
		var e events.Reassigned
		if json.Unmarshal(env.Data, &e) == nil {
			g := o.migLocked(e.MigrationID)
			g.stream, g.from, g.to, g.reassigned = e.Stream, e.FromHost, e.ToHost, env.Time
		}
	case events.TypeMigrationCompleted:
		var e events.MigrationCompleted
		if json.Unmarshal(env.Data, &e) == nil {
			g := o.migLocked(e.MigrationID)
			if g.stream == "" {
				g.stream, g.from, g.to = e.Stream, e.FromHost, e.ToHost
			}
			if !g.failed.IsZero() {
				o.s.violation("migration %s both failed and completed", e.MigrationID)
			}
			g.completed = env.Time
		}
	case events.TypeMigrationFailed:
		var e events.MigrationFailed
		if json.Unmarshal(env.Data, &e) == nil {
			if e.Reason == "" {
				o.s.violation("migration %s failed without a reason", e.MigrationID)
			}
			if e.ToHost == "" && o.migs[e.MigrationID] == nil {
				o.noCapacity = append(o.noCapacity, &mig{id: e.MigrationID, stream: e.Stream, from: e.FromHost,
					failed: env.Time, failStep: e.Step, failReason: e.Reason})
				return
			}
			g := o.migLocked(e.MigrationID)
			if g.stream == "" {
				g.stream, g.from, g.to = e.Stream, e.FromHost, e.ToHost
			}
			if !g.completed.IsZero() {
				o.s.violation("migration %s both completed and failed", e.MigrationID)
			}
			g.failed, g.failStep, g.failReason = env.Time, e.Step, e.Reason
		}
	}
}

func (o *observer) migLocked(id string) *mig {
	g := o.migs[id]
	if g == nil {
		g = &mig{id: id}
		o.migs[id] = g
	}
	return g
}

// onPlacement checks that a stream's home changes only by a move from the
// current one: a new host needs epoch + 1 (a compare-and-set on the
// revision the decider read), and an epoch never goes back.
func (o *observer) onPlacement(e jetstream.KeyValueEntry) {
	stream := strings.TrimPrefix(e.Key(), events.PlacementKey(""))
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(o.place, stream)
		return
	}
	var p events.Placement
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		o.s.violation("placement %s is not JSON", stream)
		return
	}
	o.changes++
	prev, ok := o.place[stream]
	if ok {
		switch {
		case p.Epoch < prev.epoch:
			o.s.violation("placement %s went back from epoch %d to %d", stream, prev.epoch, p.Epoch)
		case p.Host != prev.host && p.Epoch != prev.epoch+1:
			o.s.violation("placement %s moved %s -> %s at epoch %d after %d (two homes from one decision?)",
				stream, prev.host, p.Host, p.Epoch, prev.epoch)
		case p.Epoch == prev.epoch && p.MigrationID != prev.migration:
			o.s.violation("placement %s: two migrations (%s, %s) at epoch %d", stream, prev.migration, p.MigrationID, p.Epoch)
		}
	}
	o.place[stream] = placed{host: p.Host, migration: p.MigrationID, epoch: p.Epoch, rev: e.Revision()}
}

// noticeSeen checks a notice as the agents' consumer receives it: one
// message per notice id (a redelivery of the same message is not a second
// notice), one notice per migration.
func (o *observer) noticeSeen(n events.MoveNotice, seq, delivered uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if delivered > 1 {
		o.counts["notice_redelivered"]++
	}
	if prev, ok := o.notices[n.NoticeID]; ok && prev != seq {
		o.s.violation("notice %s sent twice (stream sequences %d and %d)", n.NoticeID, prev, seq)
	}
	o.notices[n.NoticeID] = seq
	g := o.migLocked(n.MigrationID)
	if g.notice != "" && g.notice != n.NoticeID {
		o.s.violation("migration %s got two notices (%s, %s)", n.MigrationID, g.notice, n.NoticeID)
	}
	g.notice = n.NoticeID
}

// migrationsFrom returns copies of the migrations away from any of hosts
// reassigned at or after since.
func (o *observer) migrationsFrom(hosts map[string]bool, since time.Time) []mig {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []mig
	for _, g := range o.migs {
		if hosts[g.from] && !g.reassigned.IsZero() && !g.reassigned.Before(since) {
			out = append(out, *g)
		}
	}
	return out
}

// openMigrations returns the migrations reassigned since that have not closed.
func (o *observer) openMigrations(since time.Time) []mig {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []mig
	for _, g := range o.migs {
		if !g.reassigned.IsZero() && !g.reassigned.Before(since) && !g.terminal() {
			out = append(out, *g)
		}
	}
	return out
}

func (o *observer) firstPrediction(host string, since time.Time) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, t := range o.predicted[host] {
		if !t.Before(since) {
			return t, true
		}
	}
	return time.Time{}, false
}

func (o *observer) downAt(host string) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.hostDown[host]
	return t, ok
}

func (o *observer) placementOf(stream string) (placed, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.place[stream]
	return p, ok
}

func (o *observer) placedCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.place)
}

func (o *observer) placementChanges() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.changes
}

func (o *observer) noCapacitySince(since time.Time) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, g := range o.noCapacity {
		if !g.failed.Before(since) {
			n++
		}
	}
	return n
}

func (o *observer) countsCopy() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(o.counts))
	for k, v := range o.counts {
		out[k] = v
	}
	return out
}

func (g mig) String() string {
	return fmt.Sprintf("%s %s %s->%s", g.id, g.stream, g.from, g.to)
}
