package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/obs"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/services/placement/internal/fleet"
	"github.com/ferrystream/ferry/services/placement/internal/migration"
)

// decider is the leader's state for one term. mu guards every map.
type decider struct {
	s   *Service
	log zerolog.Logger

	// writes bounds the moves written at once across every evacuation
	// (Config.Workers): one host's ~100 streams go out in one round, and
	// twenty hosts lost together share the same bound instead of each
	// bringing its own.
	writes chan struct{}
	// peak is the most slots of writes held at once (what the bound's test reads).
	peak atomic.Int64

	mu      sync.Mutex
	running map[string]bool            // hosts being evacuated
	slots   map[string]time.Time       // next free move slot per target host
	nocap   map[string]time.Time       // stream@rev -> when it last found no home
	active  map[string]tracked         // migrations not yet closed and announced
	latest  map[string]latestMigration // stream -> its newest migration
}

type latestMigration struct {
	id string
	at time.Time
}

type tracked struct {
	rec migration.Record
	rev uint64
}

func newDecider(s *Service) *decider {
	return &decider{s: s, log: s.log.With().Str(obs.FieldComponent, "decider").Logger(),
		writes: make(chan struct{}, max(1, s.cfg.Workers)), running: map[string]bool{}, slots: map[string]time.Time{}, nocap: map[string]time.Time{},
		active: map[string]tracked{}, latest: map[string]latestMigration{}}
}

// Lead runs the decider until ctx ends (the lease is lost or the replica stops).
func (s *Service) Lead(ctx context.Context) {
	s.leading.Store(true)
	defer s.leading.Store(false)
	s.met.leader.Set(1)
	defer s.met.leader.Set(0)
	d := newDecider(s)
	d.log.Info().Msg("deciding")
	defer d.log.Info().Msg("stopped deciding")

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	synced := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); s.watch(ctx, "migrations", s.st.Migrations, synced, d.onMigration) }()
	select {
	case <-synced:
	case <-ctx.Done():
		return
	}
	d.recover(ctx)

	wg.Add(1)
	go func() {
		defer wg.Done()
		spec := bus.ConsumerSpec{Stream: bus.StreamEvents, Durable: ProgressDurable,
			Filters: []string{subject.PublisherAttached("*", "*"), subject.PublisherDetached("*", "*"), subject.StreamCeased("*", "*"), subject.NoticeDelivered("*"),
				subject.NoticeAcked("*"), subject.NoticeFailed("*")},
			DeliverPolicy: jetstream.DeliverNewPolicy, MaxDeliver: 10, AckWait: 10 * time.Second,
			BackOff:   []time.Duration{200 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second},
			Processed: s.st.Processed}
		for ctx.Err() == nil {
			if err := bus.Consume(ctx, s.js, d.log, spec, d.onProgress); err != nil {
				d.log.Warn().Err(err).Msg("progress consumer")
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()

	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	recoverTick := time.NewTicker(15 * time.Second)
	defer recoverTick.Stop()
	var released time.Time
	housekeeping := func() {
		d.checkDeadlines(ctx)
		if now := s.now(); now.Sub(released) >= releaseEvery(s.cfg.ReleaseAfter) && d.releaseIdle(ctx) {
			released = now
		}
	}
	housekeeping()
	// A change of the fleet (a prediction, a drain, a host_down) starts
	// evacuations at once; deadlines and idle placements are judged by time,
	// on the tick, not on every change.
	for {
		d.reconcile(ctx, &wg)
		select {
		case <-ctx.Done():
			return
		case <-s.view.Changed():
		case <-tick.C:
			housekeeping()
		case <-recoverTick.C:
			d.recover(ctx)
		}
	}
}

// onMigration tracks a migrations bucket entry.
func (d *decider) onMigration(e jetstream.KeyValueEntry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(d.active, e.Key())
		return
	}
	var r migration.Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		d.log.Error().Err(err).Str(obs.FieldMigration, e.Key()).Msg("migration record is not JSON")
		return
	}
	d.noteLocked(r, e.Revision())
}

func (d *decider) noteLocked(r migration.Record, rev uint64) {
	if t, ok := d.active[r.ID]; ok && t.rev >= rev {
		return
	}
	if r.Terminal() && r.Announced {
		delete(d.active, r.ID)
	} else {
		d.active[r.ID] = tracked{rec: r, rev: rev}
	}
	// Only actual moves supersede: a "no capacity" record moved nothing.
	if l, ok := d.latest[r.Stream]; r.ToHost != "" && (!ok || l.at.Before(r.DecidedAt)) {
		d.latest[r.Stream] = latestMigration{id: r.ID, at: r.DecidedAt}
	}
}

// recover completes moves whose placement was written but whose migration
// record is missing (a leader died between the two writes).
func (d *decider) recover(ctx context.Context) {
	now := d.s.now()
	for _, e := range d.s.ix.all() {
		p := e.P
		if p.MigrationID == "" || now.Sub(p.UpdatedAt) > 10*time.Minute || now.Sub(p.UpdatedAt) < 2*time.Second {
			continue
		}
		d.mu.Lock()
		_, known := d.active[p.MigrationID]
		d.mu.Unlock()
		if known {
			continue
		}
		if _, err := d.s.st.Migrations.Get(ctx, p.MigrationID); !errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		st := d.s.view.Status(p.FromHost)
		spec := moveSpec{Kind: migration.KindEvacuation, Reason: "recovered: decided by a previous leader", OldAlive: !st.Down}
		if st.Down {
			spec.Kind, spec.Fallback = migration.KindHostDown, "old host down"
		}
		if readsSession(p, spec) {
			spec.Fallback = d.s.incapable(ctx, p.SessionID)
		}
		d.s.notify(p, e.Rev) // the notice may have been cut short too
		if err := d.s.announceMove(ctx, p, spec); err != nil {
			d.log.Warn().Err(err).Str(obs.FieldMigration, p.MigrationID).Str(obs.FieldStream, p.Stream).Msg("recover migration")
			continue
		}
		d.log.Info().Str(obs.FieldMigration, p.MigrationID).Str(obs.FieldStream, p.Stream).Msg("migration record recovered")
	}
}

// reconcile starts an evacuation for every host that must be left and
// still has streams.
func (d *decider) reconcile(ctx context.Context, wg *sync.WaitGroup) {
	now := d.s.now()
	for _, ev := range d.s.view.Evacuations() {
		if !ev.Immediate && now.Before(ev.StartAt) {
			continue
		}
		if d.s.ix.countOn(ev.Host) == 0 {
			continue
		}
		d.mu.Lock()
		busy := d.running[ev.Host]
		d.running[ev.Host] = true
		d.mu.Unlock()
		if busy {
			continue
		}
		d.s.met.evacuating.Inc()
		wg.Add(1)
		go func(host string) {
			defer wg.Done()
			defer d.s.met.evacuating.Dec()
			d.evacuate(ctx, host)
			d.mu.Lock()
			delete(d.running, host)
			d.mu.Unlock()
		}(ev.Host)
	}
}

// releaseIdle deletes, with compare-and-set on the revision it judged, every
// push placement that has had no publisher for ReleaseAfter and is not being
// moved, and reports each as released.
// It returns false, having judged nothing, until the presence replay is done.
func (d *decider) releaseIdle(ctx context.Context) bool {
	if d.s.cfg.ReleaseAfter <= 0 || !d.s.presSynced.Load() {
		return false
	}
	now := d.s.now()
	for _, e := range d.s.ix.all() {
		if ctx.Err() != nil {
			return true
		}
		since, idle := d.s.idle(e.P, now)
		if !idle || d.moving(e.P.Stream) {
			continue
		}
		d.release(ctx, e, since, now)
	}
	return true
}

// releaseEvery is how often the leader looks for idle placements: a
// twentieth of ReleaseAfter, between 1 s and 30 s. Each look reads every
// placement (100,000 at fleet scale); once a second it cost the idle leader
// 0.3 CPU s/s at 1,000 hosts, for a limit counted in minutes.
func releaseEvery(after time.Duration) time.Duration {
	return min(max(after/20, time.Second), 30*time.Second)
}

// moving reports whether stream has a migration not yet closed.
func (d *decider) moving(stream string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.active[d.latest[stream].id]
	return ok && !t.rec.Terminal()
}

func (d *decider) release(ctx context.Context, e entry, since, now time.Time) {
	p := e.P
	log := d.log.With().Str(obs.FieldStream, p.Stream).Str(obs.FieldHost, p.Host).Logger()
	err := d.s.st.Placements.Delete(ctx, events.PlacementKey(p.Stream), jetstream.LastRevision(e.Rev))
	if err != nil {
		if ctx.Err() == nil {
			log.Debug().Err(err).Uint64("revision", e.Rev).Msg("release: placement changed meanwhile (judged again next time)")
		}
		return
	}
	d.s.ix.apply(p.Stream, nil, e.Rev+1) // the watch brings the exact revision
	d.s.pres.Forget(p.Stream)
	d.s.met.released.Inc()
	ev := events.Released{Stream: p.Stream, Host: p.Host, Epoch: p.Epoch, Mode: p.Mode, SessionID: p.SessionID,
		ClientID: p.ClientID, IdleSince: since.UTC(), At: now.UTC(),
		Reason: fmt.Sprintf("no publisher attached for %s (release after %s)", now.Sub(since).Round(time.Second), d.s.cfg.ReleaseAfter)}
	if _, err := events.Publish(ctx, d.s.js, d.s.source, ev); err != nil {
		log.Warn().Err(err).Msg("placement released, event not published")
		return
	}
	log.Info().Time("idle_since", since).Uint64("epoch", p.Epoch).Str("reason", ev.Reason).Msg("placement released")
}

// slot reserves the next move slot on target (pace apart) and returns its time.
func (d *decider) slot(target string, pace time.Duration) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.s.now()
	if n := d.slots[target]; n.After(t) {
		t = n
	}
	d.slots[target] = t.Add(pace)
	return t
}

// evacuate moves every stream off host while it must be left.
func (d *decider) evacuate(ctx context.Context, host string) {
	log := d.log.With().Str(obs.FieldHost, host).Logger()
	for ctx.Err() == nil {
		ev, ok := d.s.view.EvacuationOf(host)
		if !ok {
			log.Info().Msg("evacuation stopped: the host no longer needs it")
			return
		}
		now := d.s.now()
		var todo []entry
		all := d.s.ix.on(host)
		if len(all) == 0 {
			log.Info().Msg("evacuation done: no stream left on the host")
			return
		}
		d.mu.Lock()
		for _, e := range all {
			if t, ok := d.nocap[nocapKey(e)]; ok && now.Sub(t) < d.s.cfg.NoCapacityRetry {
				continue
			}
			if _, idle := d.s.idle(e.P, now); idle {
				continue // no publisher for too long: released, not moved
			}
			todo = append(todo, e)
		}
		d.mu.Unlock()
		if len(todo) == 0 {
			if !bus.Sleep(ctx, d.s.cfg.Tick*4) {
				return
			}
			continue
		}
		spec := moveSpec{Kind: migration.KindEvacuation, Reason: ev.Reason, OldAlive: true}
		pace := d.s.cfg.Pace
		if ev.Immediate {
			spec.Kind, spec.Deadline, spec.Fallback, spec.OldAlive = migration.KindHostDown, now, "old host down", false
			pace = 0
		} else {
			spec.Deadline = ev.Deadline
			if min := now.Add(d.s.cfg.MinDeadline); spec.Deadline.Before(min) {
				spec.Deadline = min
			}
			if pace > 0 {
				targets := 0
				for _, c := range d.s.view.Snapshot().Candidates {
					if c.Host != host {
						targets++
					}
				}
				targets = max(1, targets)
				window := time.Duration(float64(spec.Deadline.Sub(now)) * d.s.cfg.DecideWithin)
				if per := window * time.Duration(targets) / time.Duration(len(todo)); per < pace {
					pace = per
				}
			}
		}
		log.Info().Int("streams", len(todo)).Time("deadline", spec.Deadline).Dur("pace", pace).Str("reason", ev.Reason).
			Msg("evacuating")
		moved := d.evacuatePass(ctx, host, todo, spec, pace)
		if moved == 0 && ctx.Err() == nil {
			if !bus.Sleep(ctx, d.s.cfg.Tick*4) {
				return
			}
		}
	}
}

func nocapKey(e entry) string { return fmt.Sprintf("%s@%d", e.P.Stream, e.Rev) }

// evacuatePass tries each stream once and returns how many moved.
func (d *decider) evacuatePass(ctx context.Context, host string, todo []entry, spec moveSpec, pace time.Duration) (n int) {
	var wg sync.WaitGroup
	var moved atomic.Int64
	sem := d.writes
	defer func() {
		wg.Wait()
		n = int(moved.Load())
	}()
	for _, e := range todo {
		if ctx.Err() != nil {
			return
		}
		if _, ok := d.s.view.EvacuationOf(host); !ok {
			return
		}
		c, res, err := d.s.ix.pick(e.P.Stream, e.P.ClientID, host, d.s.cfg.StreamBitrate)
		if err != nil {
			d.noCapacity(ctx, e, spec, err)
			continue
		}
		if pace > 0 {
			at := d.slot(c.Host, pace)
			if wait := at.Sub(d.s.now()); wait > 0 && !bus.Sleep(ctx, wait) {
				d.s.ix.release(res)
				return
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			d.s.ix.release(res)
			return
		}
		wg.Add(1)
		d.held()
		go func(e entry, c fleet.Candidate, res *reservation) {
			defer wg.Done()
			defer func() {
				<-sem
				d.s.met.writing.Set(float64(len(sem)))
			}()
			defer d.s.ix.release(res)
			if d.moveRetry(ctx, host, e, c, res, spec) {
				moved.Add(1)
			}
		}(e, c, res)
	}
	return
}

// held reports a slot of writes just taken: the gauge, and the peak.
func (d *decider) held() {
	n := int64(len(d.writes))
	d.s.met.writing.Set(float64(n))
	for p := d.peak.Load(); n > p && !d.peak.CompareAndSwap(p, n); p = d.peak.Load() {
	}
}

// moveRetry moves e to c, re-reading the placement after a lost race:
// a stream that another writer already moved off host is left alone.
func (d *decider) moveRetry(ctx context.Context, host string, e entry, c fleet.Candidate, res *reservation, spec moveSpec) bool {
	for attempt := 0; attempt < 3; attempt++ {
		np, err := d.s.move(ctx, e, e.P, c, res, spec)
		if err == nil {
			return true
		}
		if !errors.Is(err, ErrConflict) {
			if np.Host != "" {
				d.log.Warn().Err(err).Str(obs.FieldStream, e.P.Stream).Str(obs.FieldMigration, np.MigrationID).Msg("move written, follow-up failed (recovery will finish it)")
				return true
			}
			if ctx.Err() == nil {
				d.log.Warn().Err(err).Str(obs.FieldStream, e.P.Stream).Msg("move failed")
			}
			return false
		}
		kv, err := d.s.st.Placements.Get(ctx, events.PlacementKey(e.P.Stream))
		if err != nil {
			return false
		}
		var p events.Placement
		if json.Unmarshal(kv.Value(), &p) != nil {
			return false
		}
		d.s.ix.apply(p.Stream, &p, kv.Revision())
		if p.Host != host {
			return false // moved by someone else: nothing to do
		}
		e = entry{P: p, Rev: kv.Revision()}
	}
	return false
}

// noCapacity reports, once per placement revision, that a stream found no
// healthy home: migration_failed at step decided, nothing else written.
func (d *decider) noCapacity(ctx context.Context, e entry, spec moveSpec, why error) {
	d.s.met.noCapacity.Inc()
	d.mu.Lock()
	d.nocap[nocapKey(e)] = d.s.now()
	d.mu.Unlock()
	rec := migration.Record{ID: MigrationID(e.P.Stream, e.Rev, "no-capacity"), Stream: e.P.Stream, FromHost: e.P.Host,
		Epoch: e.P.Epoch, Mode: e.P.Mode, SessionID: e.P.SessionID, ClientID: e.P.ClientID, Kind: spec.Kind,
		Reason: truncate(spec.Reason, 1024), Deadline: spec.Deadline}
	rec = migration.NewFailed(rec, string(migration.Decided), truncate(why.Error(), 1024), d.s.now())
	b, _ := json.Marshal(rec)
	rev, err := d.s.st.Migrations.Create(ctx, rec.ID, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return // already reported for this placement revision
	}
	if err != nil {
		d.log.Warn().Err(err).Str(obs.FieldStream, e.P.Stream).Msg("record failed migration")
		return
	}
	d.log.Error().Str(obs.FieldMigration, rec.ID).Str(obs.FieldStream, e.P.Stream).Str(obs.FieldHost, e.P.Host).
		Str("reason", rec.FailReason).Msg("no healthy host for stream: migration failed, stream left in place")
	d.announce(ctx, rec, rev)
}

// checkDeadlines closes migrations whose step deadline passed, supersedes
// older migrations of a stream, and announces closed ones not yet announced.
func (d *decider) checkDeadlines(ctx context.Context) {
	now := d.s.now()
	type job struct {
		id string
		in migration.Input
		t  tracked
	}
	var jobs []job
	d.mu.Lock()
	for k, at := range d.nocap {
		if now.Sub(at) > 10*d.s.cfg.NoCapacityRetry {
			delete(d.nocap, k)
		}
	}
	for id, t := range d.active {
		switch {
		case t.rec.Terminal():
			if !t.rec.Announced {
				jobs = append(jobs, job{id: id, t: t})
			}
		case d.latest[t.rec.Stream].id != id:
			jobs = append(jobs, job{id: id, in: migration.Input{Kind: migration.InSuperseded, Reason: d.latest[t.rec.Stream].id, At: now}})
		default:
			if _, dl, ok := t.rec.Next(d.s.cfg.Timing); ok && now.After(dl) {
				jobs = append(jobs, job{id: id, in: migration.Input{Kind: migration.InTick, At: now}})
			}
		}
	}
	d.mu.Unlock()
	for _, j := range jobs {
		if ctx.Err() != nil {
			return
		}
		if j.in.Kind == "" {
			d.announce(ctx, j.t.rec, j.t.rev)
			continue
		}
		if err := d.update(ctx, j.id, j.in); err != nil && ctx.Err() == nil {
			d.log.Warn().Err(err).Str(obs.FieldMigration, j.id).Msg("migration deadline")
		}
	}
}

// errUnknownMigration: no record under that id.
var errUnknownMigration = errors.New("unknown migration")

// update applies in to migration id with compare-and-set, announcing it if it closed.
func (d *decider) update(ctx context.Context, id string, in migration.Input) error {
	for attempt := 0; attempt < 8; attempt++ {
		e, err := d.s.st.Migrations.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("%w %s", errUnknownMigration, id)
		}
		if err != nil {
			return fmt.Errorf("read migration %s: %w", id, err)
		}
		var r migration.Record
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return fmt.Errorf("migration %s is not JSON: %w", id, err)
		}
		nr, changed := migration.Apply(r, in, d.s.cfg.Timing)
		if !changed {
			return nil
		}
		b, _ := json.Marshal(nr)
		rev, err := d.s.st.Migrations.Update(ctx, id, b, e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write migration %s: %w", id, err)
		}
		d.mu.Lock()
		d.noteLocked(nr, rev)
		d.mu.Unlock()
		ev := d.log.Info().Str(obs.FieldMigration, id).Str(obs.FieldStream, nr.Stream).Str(obs.FieldHost, nr.ToHost).
			Str("from_host", nr.FromHost).Str("state", string(nr.State)).Str("input", in.Kind)
		if nr.Fallback && !r.Fallback {
			ev = ev.Str("fallback", nr.FallbackReason)
		}
		ev.Msg("migration step")
		if nr.Terminal() {
			d.announce(ctx, nr, rev)
		}
		return nil
	}
	return fmt.Errorf("migration %s: %w", id, ErrConflict)
}

// announce publishes a closed migration's event and marks it announced.
func (d *decider) announce(ctx context.Context, r migration.Record, rev uint64) {
	var err error
	var ack *jetstream.PubAck
	outcome := "completed"
	if r.State == migration.Completed {
		ack, err = events.Publish(ctx, d.s.js, d.s.source, r.CompletedEvent())
	} else {
		outcome = "failed"
		ack, err = events.Publish(ctx, d.s.js, d.s.source, r.FailedEvent())
	}
	if err != nil {
		d.log.Warn().Err(err).Str(obs.FieldMigration, r.ID).Msg("announce migration")
		return
	}
	if !ack.Duplicate {
		d.s.met.migrations.WithLabelValues(outcome, fmt.Sprint(!r.Fallback)).Inc()
		ev := d.log.Info()
		if outcome == "failed" {
			ev = d.log.Warn().Str("step", r.FailedStep).Str("reason", r.FailReason)
		}
		ev.Str(obs.FieldMigration, r.ID).Str(obs.FieldStream, r.Stream).Str(obs.FieldHost, r.ToHost).Str("from_host", r.FromHost).
			Bool("make_before_break", !r.Fallback).Msg("migration " + outcome)
	}
	for attempt := 0; attempt < 5; attempt++ {
		r.Announced = true
		b, _ := json.Marshal(r)
		nrev, err := d.s.st.Migrations.Update(ctx, r.ID, b, rev)
		if err == nil {
			d.mu.Lock()
			d.noteLocked(r, nrev)
			d.mu.Unlock()
			return
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return
		}
		e, gerr := d.s.st.Migrations.Get(ctx, r.ID)
		if gerr != nil || json.Unmarshal(e.Value(), &r) != nil || r.Announced {
			return
		}
		rev = e.Revision()
	}
}

// knownMigration returns a migration this leader tracks.
func (d *decider) knownMigration(id string) (migration.Record, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.active[id]
	return t.rec, ok
}

// onProgress applies a progress event to its migration. Every lifecycle
// event (publisher_attached, publisher_detached, stream_ceased) is first
// checked against its reporter and the placement record (checkLifecycle):
// a forged one is dead-lettered with the reason and changes nothing, here
// and in every replica's presence view.
func (d *decider) onProgress(ctx context.Context, m bus.Msg) error {
	var id, stream string
	var in migration.Input
	switch m.Env.Type {
	case events.TypePublisherAttached:
		var e events.PublisherAttached
		if err := json.Unmarshal(m.Env.Data, &e); err != nil {
			return bus.Permanent(err)
		}
		id, stream, in = e.MigrationID, e.Stream, migration.Input{Kind: migration.InAttached, Host: e.Host, At: e.At}
	case events.TypeStreamCeased:
		var e events.StreamCeased
		if err := json.Unmarshal(m.Env.Data, &e); err != nil {
			return bus.Permanent(err)
		}
		id, stream, in = e.MigrationID, e.Stream, migration.Input{Kind: migration.InCeased, Host: e.Host, At: e.At}
	case events.TypePublisherDetached:
		// no migration step: checked below, for the presence views
	case events.TypeNoticeDelivered, events.TypeNoticeAcked, events.TypeNoticeFailed:
		var e events.NoticeOutcome
		if err := json.Unmarshal(m.Env.Data, &e); err != nil {
			return bus.Permanent(err)
		}
		kind := map[string]string{events.TypeNoticeDelivered: migration.InDelivered, events.TypeNoticeAcked: migration.InAcked,
			events.TypeNoticeFailed: migration.InNoticeFailed}[m.Env.Type]
		id, stream, in = e.MigrationID, e.Stream, migration.Input{Kind: kind, Reason: e.Reason, At: e.At}
	default:
		return nil
	}
	subj := "" // no subject, no reporter: such an event is refused as forged
	if m.Raw != nil {
		subj = m.Raw.Subject()
	}
	if l, ok, err := lifecycleOf(m.Env, subj); ok {
		if err != nil {
			return bus.Permanent(err)
		}
		if err := d.s.checkLifecycle(ctx, l, d.knownMigration); errors.Is(err, errForged) {
			return bus.Permanent(err)
		} else if err != nil && !errors.Is(err, errUnplaced) {
			return err
		}
	}
	if in.Kind == "" {
		return nil
	}
	if id == "" {
		// A fallback publisher reconnecting may carry no migration id: match
		// the stream's open migration by host.
		d.mu.Lock()
		if t, ok := d.active[d.latest[stream].id]; ok && !t.rec.Terminal() &&
			((in.Kind == migration.InAttached && t.rec.ToHost == in.Host) || (in.Kind == migration.InCeased && t.rec.FromHost == in.Host)) {
			id = t.rec.ID
		}
		d.mu.Unlock()
		if id == "" {
			return nil
		}
	}
	err := d.update(ctx, id, in)
	if errors.Is(err, errUnknownMigration) {
		// The placement may name it while its record is still being written.
		if e, ok := d.s.ix.get(stream); ok && e.P.MigrationID == id {
			return err
		}
		return nil
	}
	return err
}
