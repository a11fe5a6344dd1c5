// Package engine is the placement service's core: the micro endpoints
// (placement.v1.choose, placement.v1.get), the views every replica keeps
// (hosts, open predictions, placements), and the decider that only the
// lease holder runs (evacuations, the migration state machines, deadlines).
//
// Every replica keeps its own read-only views: a watch on ingest_hosts, a
// watch on placements, and an ordered consumer that replays the health and
// drain events of FERRY_EVENTS from the start (DeliverAll), so a replica
// that just started or just became leader knows every open prediction.
// Any replica answers choose and get: choose writes with compare-and-set
// (Create for a new stream, Update(revision) for a move), so two replicas
// answering at once cannot give a stream two homes. A replica answers one
// choose at a time (micro handlers must respond before they return);
// throughput grows with replicas.
//
// Only the lease holder (key "placement.leader" in the leases bucket, bucket
// TTL bus.LeaseTTL, renewed every TTL/3) decides evacuations and drives
// migrations. Evacuation is level-triggered, not edge-triggered: the leader
// moves every stream whose placement names a host that must be evacuated
// (open prediction, drain, host_down), so a new leader finishes a half-done
// evacuation simply by looking at placements, and a stream already moved is
// never moved again. Migration progress (publisher_attached, stream_ceased,
// notice outcomes) is consumed only by the leader through the durable
// consumer "placement-migrations" (unacked messages wait for the next
// leader); each step is a compare-and-set on the migrations bucket, so
// two leaders at once (during a lease handover) stay safe. That consumer
// also takes publisher_detached: every lifecycle event is checked against
// its reporter and the placement record (checkLifecycle) and a forged one is
// dead-lettered there, once; every replica's presence view leaves it out.
package engine

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/obs"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/services/placement/client"
	"github.com/ferrystream/ferry/services/placement/internal/fleet"
	"github.com/ferrystream/ferry/services/placement/internal/lease"
	"github.com/ferrystream/ferry/services/placement/internal/migration"
)

// LeaseKey is the key of the decider lease in the leases bucket.
const LeaseKey = "placement.leader"

// ProgressDurable is the durable consumer of migration progress events.
const ProgressDurable = "placement-migrations"

// Config configures the engine (the root package builds it from env and flags).
type Config struct {
	// ID names this replica (lease holder value, event source).
	ID string
	// TokenSecret signs publish tokens; TokenTTL is their lifetime.
	TokenSecret []byte
	TokenTTL    time.Duration
	// MinDeadline is the least time an evacuation gives a stream (a
	// prediction closer than this is clamped to now + MinDeadline).
	MinDeadline time.Duration
	// Pace is the minimum spacing of two moves onto the same target host.
	// It is shortened when needed so that every decision of an evacuation
	// lands within DecideWithin of the time left before the deadline.
	Pace         time.Duration
	DecideWithin float64
	// Workers bounds the moves written concurrently, across every
	// evacuation running at once (one host's streams fit in one round).
	Workers int
	// Fleet configures liveness and capacity checks.
	Fleet fleet.Config
	// StreamBitrate estimates one stream's bitrate for bitrate headroom.
	StreamBitrate int64
	// Timing configures migration step deadlines.
	Timing migration.Timing
	// Tick is how often the leader checks deadlines and evacuations.
	Tick time.Duration
	// LeaseTTL must equal the leases bucket TTL.
	LeaseTTL time.Duration
	// ReleaseLease deletes the lease on a clean stop (fast handover).
	ReleaseLease bool
	// NoCapacityRetry is how long a stream that found no home waits before
	// the evacuation tries it again.
	NoCapacityRetry time.Duration
	// ReleaseAfter: the leader releases a push placement that has had no
	// publisher for this long (0: never), and no longer moves it.
	ReleaseAfter time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ID:           "placement-1",
		TokenTTL:     10 * time.Minute,
		MinDeadline:  10 * time.Second,
		Pace:         100 * time.Millisecond,
		DecideWithin: 0.5,
		Workers:      128,
		Fleet: fleet.Config{StaleAfter: 6 * time.Second, MaxCapacityStreams: 10000, MaxCapacityBitrate: 100_000_000_000,
			DefaultCapacityStreams: 100, EvacuationLead: 10 * time.Minute},
		StreamBitrate:   4_000_000,
		Timing:          migration.Timing{StepGrace: 15 * time.Second, FallbackGrace: 30 * time.Second},
		Tick:            250 * time.Millisecond,
		LeaseTTL:        bus.LeaseTTL,
		ReleaseLease:    true,
		NoCapacityRetry: 5 * time.Second,
		ReleaseAfter:    10 * time.Minute,
	}
}

// Deps are the engine's collaborators.
type Deps struct {
	NC  *nats.Conn
	JS  jetstream.JetStream
	Log zerolog.Logger
	// Registry receives the metrics (nil: a private registry).
	Registry *prometheus.Registry
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Sentinel errors.
var (
	// ErrConflict: a compare-and-set write lost to a concurrent writer.
	ErrConflict = errors.New("placement changed concurrently")
	// ErrNotReady: the views have not caught up yet.
	ErrNotReady = errors.New("placement views not synced")
)

// Service is one placement replica.
type Service struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	log    zerolog.Logger
	now    func() time.Time
	source string
	met    *metrics

	st   *bus.Stores
	view *fleet.View
	ix   *index
	// pres says which streams have a publisher; presSynced is set once
	// its replay is done (until then nothing is released).
	pres       *events.Presence
	presSynced atomic.Bool

	ctx    context.Context
	synced atomic.Bool
	serve  atomic.Bool

	// leading reports whether this replica's decider runs.
	leading atomic.Bool

	// noLease runs no lease campaign (tests start deciders themselves).
	noLease bool
}

// New returns a replica; Run starts it.
func New(cfg Config, d Deps) (*Service, error) {
	if d.NC == nil || d.JS == nil {
		return nil, errors.New("engine: NATS connection and JetStream are required")
	}
	if len(cfg.TokenSecret) == 0 {
		return nil, errors.New("engine: token secret is required")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	reg := d.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.DecideWithin <= 0 || cfg.DecideWithin > 1 {
		cfg.DecideWithin = 0.5
	}
	log := d.Log.With().Str("replica", cfg.ID).Logger()
	s := &Service{cfg: cfg, nc: d.NC, js: d.JS, log: log, now: d.Now, source: "ferry/placement/" + cfg.ID,
		met: newMetrics(reg), ix: newIndex(), pres: events.NewPresence()}
	s.view = fleet.NewView(cfg.Fleet, log, d.Now)
	s.ix.follow(s.view, d.Now, cfg.StreamBitrate)
	return s, nil
}

// Ready returns nil once the views are synced and the endpoints serve.
func (s *Service) Ready() error {
	if !s.synced.Load() {
		return ErrNotReady
	}
	if !s.serve.Load() {
		return errors.New("placement endpoints not started")
	}
	return nil
}

// Leading reports whether this replica is the active decider.
func (s *Service) Leading() bool { return s.leading.Load() }

// Run serves until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	s.ctx = ctx
	st, err := bus.OpenStores(ctx, s.js)
	if err != nil {
		return err
	}
	s.st = st
	var wg sync.WaitGroup
	defer wg.Wait()
	hostsSynced, placementsSynced, healthSynced := make(chan struct{}), make(chan struct{}), make(chan struct{})
	wg.Add(3)
	go func() { defer wg.Done(); s.watch(ctx, "ingest_hosts", st.Hosts, hostsSynced, s.onHostRecord) }()
	go func() { defer wg.Done(); s.watch(ctx, "placements", st.Placements, placementsSynced, s.onPlacement) }()
	go func() { defer wg.Done(); s.followHealth(ctx, healthSynced) }()
	wg.Add(1)
	go func() { defer wg.Done(); s.followPresence(ctx, placementsSynced) }()
	for _, c := range []chan struct{}{hostsSynced, placementsSynced, healthSynced} {
		select {
		case <-c:
		case <-ctx.Done():
			return nil
		}
	}
	s.synced.Store(true)
	s.log.Info().Int("placements", s.ix.len()).Msg("views synced")

	svc, err := micro.AddService(s.nc, micro.Config{
		Name: subject.PlacementService, Version: "1.0.0",
		Description: "Ferry placement: where a stream publishes (choose) and where it lives (get)",
	})
	if err != nil {
		return fmt.Errorf("add micro service: %w", err)
	}
	if err := svc.AddEndpoint("choose", micro.HandlerFunc(s.handleChoose), micro.WithEndpointSubject(subject.PlacementChoose)); err != nil {
		_ = svc.Stop()
		return fmt.Errorf("add endpoint choose: %w", err)
	}
	if err := svc.AddEndpoint("get", micro.HandlerFunc(s.handleGet), micro.WithEndpointSubject(subject.PlacementGet)); err != nil {
		_ = svc.Stop()
		return fmt.Errorf("add endpoint get: %w", err)
	}
	// The server knows the subscriptions once a round trip is done.
	if err := s.nc.FlushTimeout(5 * time.Second); err != nil && ctx.Err() == nil {
		s.log.Warn().Err(err).Msg("flush endpoint subscriptions")
	}
	s.serve.Store(true)
	s.log.Info().Str("endpoints", subject.PlacementChoose+" "+subject.PlacementGet).Msg("serving")
	defer func() {
		s.serve.Store(false)
		_ = svc.Stop()
	}()

	if s.noLease {
		<-ctx.Done()
		return nil
	}
	l, err := lease.New(st.Leases, lease.Config{Key: LeaseKey, ID: s.cfg.ID, TTL: s.cfg.LeaseTTL, Release: s.cfg.ReleaseLease,
		OnChange: func(held bool) {
			if held {
				s.met.leader.Set(1)
			} else {
				s.met.leader.Set(0)
			}
		}}, s.log)
	if err != nil {
		return err
	}
	return l.Run(ctx, s.Lead)
}

// watch feeds fn from a KV watch until ctx ends, closing synced once the
// initial values are in; bus.WatchKV bounds each attempt and re-creates the
// watch, from the last revision seen, if it breaks.
func (s *Service) watch(ctx context.Context, name string, kv jetstream.KeyValue, synced chan struct{}, fn func(jetstream.KeyValueEntry)) {
	_ = bus.WatchKV(ctx, kv, bus.WatchSpec{Synced: func() { close(synced) },
		Log: s.log.With().Str("bucket", name).Logger()}, fn)
}

func (s *Service) onHostRecord(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		s.view.ApplyRecord(e.Key(), nil)
		return
	}
	var r events.HostRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		s.log.Error().Err(err).Str(obs.FieldHost, e.Key()).Msg("host record is not JSON: host excluded from placement")
		s.view.ApplyRecord(e.Key(), &events.HostRecord{Host: e.Key(), CapacityStreams: -1})
		return
	}
	s.view.ApplyRecord(e.Key(), &r)
}

func (s *Service) onPlacement(e jetstream.KeyValueEntry) {
	stream, ok := streamOfKey(e.Key())
	if !ok {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		s.ix.apply(stream, nil, e.Revision())
		return
	}
	var p events.Placement
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		s.log.Error().Err(err).Str(obs.FieldStream, stream).Msg("placement record is not JSON: ignored")
		return
	}
	s.ix.apply(stream, &p, e.Revision())
}

// healthFilters are the events that change a host's fitness.
func healthFilters() []string {
	return []string{subject.OutagePredicted("*"), subject.OutageCleared("*"), subject.HostDown("*"),
		subject.Draining("*"), subject.MaintenanceCancelled("*")}
}

// followHealth replays and follows the health events into the view,
// closing synced once the replay is done.
func (s *Service) followHealth(ctx context.Context, synced chan struct{}) {
	_ = bus.Replay(ctx, s.js, bus.ReplaySpec{Stream: bus.StreamEvents, Filters: healthFilters(), Follow: true,
		CaughtUp: func() { close(synced) }, Log: s.log}, func(m jetstream.Msg) error {
		var seq uint64
		if md, err := m.Metadata(); err == nil {
			seq = md.Sequence.Stream
		}
		env, err := events.Decode(m.Data())
		if err != nil {
			s.log.Warn().Err(err).Str(obs.FieldSubject, m.Subject()).Msg("invalid health event ignored")
		} else if err := s.view.ApplyEvent(env, seq); err != nil {
			s.log.Warn().Err(err).Str(obs.FieldSubject, m.Subject()).Msg("health event not applied")
		}
		return nil
	})
}

// followPresence replays (the last of each stream and host) and follows
// the publisher_attached and publisher_detached events into pres, once the
// placements view is synced. An event that fails checkLifecycle (a host
// speaking for another, or about a stream placed elsewhere) is left out;
// the leader's progress consumer dead-letters it. So is one about a stream
// without a placement: there is no placement for it to keep or release.
func (s *Service) followPresence(ctx context.Context, placementsSynced <-chan struct{}) {
	select {
	case <-placementsSynced:
	case <-ctx.Done():
		return
	}
	log := s.log.With().Str("feed", "presence").Logger()
	_ = bus.Replay(ctx, s.js, bus.ReplaySpec{Stream: bus.StreamEvents,
		Filters:       []string{subject.PublisherAttached("*", "*"), subject.PublisherDetached("*", "*")},
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy, Follow: true,
		CaughtUp: func() { s.presSynced.Store(true) }, Log: log},
		func(m jetstream.Msg) error {
			env, err := events.Decode(m.Data())
			if err != nil {
				return nil
			}
			l, _, err := lifecycleOf(env, m.Subject())
			if err != nil {
				return nil
			}
			switch err := s.checkLifecycle(ctx, l, nil); {
			case err == nil:
			case errors.Is(err, errForged):
				log.Warn().Err(err).Str(obs.FieldSubject, m.Subject()).Str(obs.FieldStream, l.stream).
					Msg("lifecycle event left out of the presence view")
				return nil
			case errors.Is(err, errUnplaced):
				return nil
			default:
				// The record could not be read: count the event rather
				// than risk releasing a stream that has a publisher.
				log.Warn().Err(err).Str(obs.FieldSubject, m.Subject()).Msg("lifecycle event not checked")
			}
			s.pres.Apply(env)
			return nil
		})
}

// alive reports whether host counts as a publisher's home: registered,
// heartbeating and not down.
func (s *Service) alive(host string) bool {
	st := s.view.Status(host)
	return st.Known && st.Heartbeating && !st.Down
}

// idle reports whether p is a push placement that has had no publisher for
// ReleaseAfter or longer (never before the presence replay is done), and
// since when it has had none.
func (s *Service) idle(p events.Placement, now time.Time) (time.Time, bool) {
	if s.cfg.ReleaseAfter <= 0 || !s.presSynced.Load() || p.Mode == client.ModePull {
		return time.Time{}, false
	}
	placed := p.PlacedAt
	if placed.IsZero() {
		placed = p.UpdatedAt
	}
	ps := s.pres.Publisher(p.Stream, s.alive, placed, p.UpdatedAt)
	if ps.Attached {
		return time.Time{}, false
	}
	return ps.IdleSince, now.Sub(ps.IdleSince) >= s.cfg.ReleaseAfter
}

// MigrationID derives a move's id from the stream and the placement
// revision it replaces: two deciders racing on the same decision compute
// the same id, and a stream never reuses one.
func MigrationID(stream string, rev uint64, salt string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%s", stream, rev, salt))
	return "m-" + hex.EncodeToString(sum[:8])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
