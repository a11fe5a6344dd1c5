// Package service runs health prediction on NATS: it replays and follows
// maintenance windows, drain notices, departures (host_left) and Ferry's own
// health events on
// FERRY_EVENTS, telemetry on FERRY_TELEMETRY and heartbeats (and their
// delete markers) on FERRY_HEARTBEATS, feeds them to a predict.Tracker, and
// publishes its decisions as outage_predicted, outage_cleared and host_down.
//
// Replicas. Every replica reads every input through ordered consumers and
// makes the same decisions (the tracker is deterministic per host), with
// event ids derived from the prediction id and revision, so JetStream stores
// each event once however many replicas publish it. A replica also reads
// back what has been published (the ledger): it skips events already stored,
// keeps its revisions in step with the others, and after a restart adopts
// the predictions that are open instead of raising new ones. At start it
// replays history without publishing, then reconciles its state with the
// ledger and only then goes live (and reports ready).
//
// Bad input (a message failing its schema, absurd telemetry values, a host
// that does not match the subject) is logged with the reason, copied to the
// dead-letter stream (ferry.dlq.<stream>.healthpredict, the same id from
// every replica), and never reaches the tracker.
package service

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/obs"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/services/healthpredict/internal/predict"
)

// ConsumerName names the service in dead-letter subjects (ferry.dlq.<stream>.healthpredict).
const ConsumerName = "healthpredict"

// Feed names (log field "feed", metric label).
const (
	FeedEvents     = "events"
	FeedTelemetry  = "telemetry"
	FeedHeartbeats = "heartbeats"
)

// ErrNotReady is returned by Ready while history is being replayed.
var ErrNotReady = errors.New("replaying history")

// Config configures the service.
type Config struct {
	// Predict configures the predictors.
	Predict predict.Config
	// Instance names this replica in event sources and logs.
	Instance string
	// MaxFuture: telemetry stamped further ahead of this replica's clock is rejected.
	MaxFuture time.Duration
	// Tick is how often maintenance windows are checked against the clock
	// and unpublished decisions retried.
	Tick time.Duration
	// DeadLetterEvery: at most one dead-letter copy per feed, host and reason
	// in this period (0: every rejected message); every rejection is counted.
	DeadLetterEvery time.Duration
}

// Deps are the service's collaborators.
type Deps struct {
	JS       jetstream.JetStream
	Log      zerolog.Logger
	Registry prometheus.Registerer
	// Now is the wall clock (time.Now if nil): it judges future timestamps
	// and ends maintenance windows of silent hosts; predictors never read it.
	Now func() time.Time
}

// Service is the running health-prediction service.
type Service struct {
	cfg    Config
	js     jetstream.JetStream
	log    zerolog.Logger
	now    func() time.Time
	m      *metrics
	source string
	ready  atomic.Bool

	// mu guards the tracker, the ledger, the outbox and the replay state;
	// every feed's handler runs under it, one message at a time.
	mu       sync.Mutex
	tr       *predict.Tracker
	led      *ledger
	outbox   []predict.Decision
	live     bool
	pending  map[string]bool // feeds still replaying
	dlqLast  map[string]time.Time
	dlqQuiet map[string]int
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// New returns a service; Run starts it.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Predict.Validate(); err != nil {
		return nil, err
	}
	if d.JS == nil {
		return nil, errors.New("healthpredict: JetStream is required")
	}
	if !namePattern.MatchString(cfg.Instance) {
		return nil, fmt.Errorf("healthpredict: instance %q must match %s", cfg.Instance, namePattern)
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 5 * time.Second
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &Service{cfg: cfg, js: d.JS, now: d.Now, m: newMetrics(d.Registry),
		log:    d.Log.With().Str(obs.FieldComponent, "healthpredict").Logger(),
		source: "ferry/healthpredict/" + cfg.Instance,
		tr:     predict.NewTracker(cfg.Predict), led: newLedger(),
		dlqLast: map[string]time.Time{}, dlqQuiet: map[string]int{}}
	return s, nil
}

// Ready reports nil once the startup replay is done and decisions are published.
func (s *Service) Ready() error {
	if !s.ready.Load() {
		return ErrNotReady
	}
	return nil
}

type feed struct {
	name, stream string
	filters      []string
	deliver      jetstream.DeliverPolicy
	handle       func(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata)
}

func (s *Service) feeds() []feed {
	return []feed{
		{name: FeedEvents, stream: bus.StreamEvents, deliver: jetstream.DeliverAllPolicy, handle: s.onEvent,
			filters: []string{subject.MaintenanceScheduled("*"), subject.MaintenanceCancelled("*"), subject.Draining("*"),
				subject.HostLeft("*"), subject.OutagePredicted("*"), subject.OutageCleared("*"), subject.HostDown("*")}},
		{name: FeedTelemetry, stream: bus.StreamTelemetry, deliver: jetstream.DeliverAllPolicy, handle: s.onTelemetry,
			filters: []string{subject.Telemetry("*")}},
		{name: FeedHeartbeats, stream: bus.StreamHeartbeats, deliver: jetstream.DeliverLastPerSubjectPolicy,
			handle: s.onHeartbeat, filters: []string{subject.Heartbeat("*")}},
	}
}

// Run consumes until ctx ends. The streams must exist (bus.Bootstrap).
func (s *Service) Run(ctx context.Context) error {
	feeds := s.feeds()
	s.mu.Lock()
	s.pending = map[string]bool{}
	for _, f := range feeds {
		s.pending[f.name] = true
	}
	s.mu.Unlock()
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	errc := make(chan error, len(feeds))
	for _, f := range feeds {
		log := s.log.With().Str("feed", f.name).Logger()
		spec := bus.ReplaySpec{Stream: f.stream, Filters: f.filters, DeliverPolicy: f.deliver, Follow: true,
			CheckEvery: s.cfg.Tick, Log: log, CaughtUp: func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.caughtUp(ctx, f.name)
			}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := bus.Replay(rctx, s.js, spec, func(m jetstream.Msg) error {
				s.dispatch(ctx, f, m)
				return nil
			})
			if rctx.Err() == nil {
				errc <- fmt.Errorf("feed %s: %w", f.name, err)
			}
		}()
	}
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			stop()
			wg.Wait()
			s.mu.Lock()
			if len(s.outbox) > 0 {
				fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				s.flush(fctx)
				cancel()
			}
			s.mu.Unlock()
			return nil
		case err := <-errc:
			return err
		case <-t.C:
			s.tick(ctx)
		}
	}
}

func (s *Service) dispatch(ctx context.Context, f feed, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		s.log.Warn().Err(err).Str(obs.FieldSubject, m.Subject()).Msg("message without metadata: ignored")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f.handle(ctx, m, md)
}

// caughtUp marks a feed's replay done; when every feed is, the service
// reconciles with the ledger and goes live. Called with mu held.
func (s *Service) caughtUp(ctx context.Context, name string) {
	if !s.pending[name] {
		return
	}
	delete(s.pending, name)
	s.log.Debug().Str("feed", name).Msg("replay done")
	if len(s.pending) == 0 && !s.live {
		s.reconcile(ctx)
	}
}

// reconcile aligns the replayed state with what is published, publishes
// what is missing, and goes live. Called with mu held.
func (s *Service) reconcile(ctx context.Context) {
	now := s.now()
	s.tr.Advance(now) // windows that ended meanwhile: the state says so, the ledger is fixed below
	own := map[hostCause]predict.Prediction{}
	for _, p := range s.tr.Open() {
		own[hostCause{p.Host, p.Cause}] = p
	}
	var out []predict.Decision
	for _, l := range s.led.openPredictions() {
		k := hostCause{l.Host, l.Cause}
		p, ok := own[k]
		delete(own, k)
		switch {
		case ok && p.ID == l.ID && p.Revision > l.Revision:
			out = append(out, predict.Decision{Kind: predict.Update, At: now, Prediction: p})
		case ok && p.ID != l.ID && p.ID < l.ID:
			out = append(out, s.tr.Adopt(l, now)...) // clears l: ours wins, and is not published yet
			out = append(out, predict.Decision{Kind: predict.Open, At: now, Prediction: p})
		default:
			out = append(out, s.published(s.tr.Adopt(l, now))...)
		}
	}
	rest := make([]predict.Prediction, 0, len(own))
	for _, p := range own {
		rest = append(rest, p)
	}
	sortPredictions(rest)
	for _, p := range rest {
		if seen, open := s.led.known(p.ID); seen && !open {
			s.tr.Withdraw(p.Host, p.Cause, p.ID, p.Revision) // cleared by another replica
			continue
		}
		out = append(out, predict.Decision{Kind: predict.Open, At: now, Prediction: p})
	}
	for _, d := range s.tr.Downs() {
		if !s.led.down[d.Host].Equal(d.DetectedAt) {
			out = append(out, predict.Decision{Kind: predict.Down, At: d.DetectedAt, Down: d})
		}
	}
	s.live = true
	s.ready.Store(true)
	s.m.ready.Set(1)
	s.log.Info().Int("hosts", s.tr.Hosts()).Int("open", len(s.tr.Open())).Int("to_publish", len(out)).
		Msg("replay done: live")
	s.emit(ctx, out)
}

func sortPredictions(ps []predict.Prediction) {
	slices.SortFunc(ps, func(a, b predict.Prediction) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Cause, b.Cause), cmp.Compare(a.ID, b.ID))
	})
}

// emit queues decisions for publishing (when live) and flushes. Called with mu held.
func (s *Service) emit(ctx context.Context, ds []predict.Decision) {
	for _, d := range ds {
		cause := d.Prediction.Cause
		if d.Kind == predict.Down {
			cause = "heartbeat"
		}
		s.m.decisions.WithLabelValues(d.Kind.String(), cause).Inc()
	}
	if !s.live || len(ds) == 0 {
		return // replaying: reconcile publishes what the final state needs
	}
	s.outbox = append(s.outbox, ds...)
	s.flush(ctx)
}

// flush publishes the outbox in order, stopping at the first failure (the
// tick retries). Called with mu held.
func (s *Service) flush(ctx context.Context) {
	for len(s.outbox) > 0 {
		d := s.outbox[0]
		data := dataOf(d)
		id := events.ID(data)
		if s.led.has(id) {
			s.m.published.WithLabelValues(data.EventType(), "skipped").Inc()
			s.outbox = s.outbox[1:]
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := events.Publish(pctx, s.js, s.source, data)
		cancel()
		if err != nil {
			s.m.published.WithLabelValues(data.EventType(), "error").Inc()
			s.log.Warn().Err(err).Str(obs.FieldHost, hostOf(d)).Int("outbox", len(s.outbox)).Msg("publish failed: will retry")
			break
		}
		s.outbox = s.outbox[1:]
		s.led.ids[id] = struct{}{}
		result := "stored"
		if ack.Duplicate {
			result = "duplicate"
		}
		s.m.published.WithLabelValues(data.EventType(), result).Inc()
		s.logDecision(d, result)
	}
	s.m.outbox.Set(float64(len(s.outbox)))
}

func (s *Service) logDecision(d predict.Decision, result string) {
	if d.Kind == predict.Down {
		s.log.Warn().Str(obs.FieldHost, d.Down.Host).Time("last_seen", d.Down.LastSeen).Str("reason", d.Down.Reason).
			Str("result", result).Msg("host down")
		return
	}
	p := d.Prediction
	ev := s.log.Info().Str(obs.FieldHost, p.Host).Str("cause", p.Cause).Str("prediction_id", p.ID).
		Int("revision", p.Revision).Str("result", result)
	switch d.Kind {
	case predict.Clear:
		ev.Str("reason", d.Reason).Msg("outage cleared")
	default:
		ev.Time("expected_offline_at", p.ExpectedOfflineAt).Float64("confidence", p.Confidence).
			Interface("summary", p.Evidence["summary"]).Msg("outage predicted")
	}
}

func hostOf(d predict.Decision) string {
	if d.Kind == predict.Down {
		return d.Down.Host
	}
	return d.Prediction.Host
}

// dataOf turns a decision into the event that publishes it.
func dataOf(d predict.Decision) events.Data {
	p := d.Prediction
	switch d.Kind {
	case predict.Clear:
		reason := d.Reason
		if reason == "" {
			reason = "cause went away"
		}
		return events.OutageCleared{PredictionID: p.ID, Host: p.Host, Cause: p.Cause, Reason: reason, Revision: p.Revision}
	case predict.Down:
		return events.HostDown{Host: d.Down.Host, LastSeen: d.Down.LastSeen.UTC(), DetectedAt: d.Down.DetectedAt.UTC(),
			Reason: d.Down.Reason}
	default:
		return events.OutagePredicted{PredictionID: p.ID, Host: p.Host, Cause: p.Cause,
			ExpectedOfflineAt: p.ExpectedOfflineAt.UTC(), Confidence: p.Confidence, Evidence: p.Evidence,
			Revision: p.Revision, Labels: p.Labels}
	}
}

// tick ends maintenance windows by the clock, retries the outbox and
// refreshes the gauges.
func (s *Service) tick(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live {
		s.emit(ctx, s.tr.Advance(s.now()))
		s.flush(ctx)
	}
	s.m.hosts.Set(float64(s.tr.Hosts()))
	counts := map[string]int{}
	for _, p := range s.tr.Open() {
		counts[p.Cause]++
	}
	for _, c := range []string{predict.CauseMaintenance, predict.CauseDrain, predict.CauseMemory, predict.CauseFDs,
		predict.CauseDisk, predict.CauseErrors, predict.CauseLoss} {
		s.m.open.WithLabelValues(c).Set(float64(counts[c]))
	}
}

// onEvent handles FERRY_EVENTS: maintenance, drains, and the ledger.
func (s *Service) onEvent(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata) {
	host := lastToken(m.Subject())
	env, err := events.Decode(m.Data())
	if err != nil {
		s.reject(ctx, FeedEvents, bus.StreamEvents, m, md, host, "schema", err)
		return
	}
	var ds []predict.Decision
	switch env.Type {
	case events.TypeMaintenanceScheduled:
		e, err := dataAs[events.MaintenanceScheduled](env)
		if err == nil {
			err = sameHost(e.Host, host)
		}
		if err == nil && !e.EndAt.After(e.StartAt) {
			err = fmt.Errorf("end_at %s is not after start_at %s", e.EndAt.Format(time.RFC3339), e.StartAt.Format(time.RFC3339))
		}
		if err != nil {
			s.reject(ctx, FeedEvents, bus.StreamEvents, m, md, host, "absurd", err)
			return
		}
		ds = s.tr.Schedule(predict.Maintenance{ID: e.MaintenanceID, Host: e.Host, Start: e.StartAt, End: e.EndAt,
			Reason: e.Reason, RequestedBy: e.RequestedBy}, env.Time)
	case events.TypeMaintenanceCancelled:
		e, err := dataAs[events.MaintenanceCancelled](env)
		if err == nil {
			err = sameHost(e.Host, host)
		}
		if err != nil {
			s.reject(ctx, FeedEvents, bus.StreamEvents, m, md, host, "absurd", err)
			return
		}
		ds = s.tr.Cancel(e.Host, e.MaintenanceID, e.Reason, env.Time)
	case events.TypeDraining:
		e, err := dataAs[events.Draining](env)
		if err == nil {
			err = sameHost(e.Host, host)
		}
		if err != nil {
			s.reject(ctx, FeedEvents, bus.StreamEvents, m, md, host, "absurd", err)
			return
		}
		ds = s.tr.Drain(predict.Drain{Host: e.Host, Deadline: e.Deadline, Reason: e.Reason, Streams: e.Streams}, env.Time)
	case events.TypeHostLeft:
		e, err := dataAs[events.HostLeft](env)
		if err == nil {
			err = sameHost(e.Host, host)
		}
		if err != nil {
			s.reject(ctx, FeedEvents, bus.StreamEvents, m, md, host, "absurd", err)
			return
		}
		// The server's clock, like the heartbeats' and their markers'.
		ds = s.tr.Leave(e.Host, md.Timestamp.UTC())
		if s.live {
			s.log.Info().Str(obs.FieldHost, e.Host).Str("reason", e.Reason).Int("streams_left", e.StreamsLeft).
				Msg("host left: its heartbeat silence is not a failure")
		}
	case events.TypeOutagePredicted:
		e, err := dataAs[events.OutagePredicted](env)
		if err != nil {
			return // someone else's malformed event: not ours to dead-letter twice
		}
		p := s.led.predicted(env.ID, e)
		if s.live {
			ds = s.sync(p)
		}
	case events.TypeOutageCleared:
		e, err := dataAs[events.OutageCleared](env)
		if err != nil {
			return
		}
		s.led.cleared(env.ID, e)
		if s.live {
			s.tr.Withdraw(e.Host, e.Cause, e.PredictionID, e.Revision)
		}
	case events.TypeHostDown:
		e, err := dataAs[events.HostDown](env)
		if err != nil {
			return
		}
		s.led.hostDown(env.ID, e)
	default:
		s.reject(ctx, FeedEvents, bus.StreamEvents, m, md, host, "type",
			fmt.Errorf("unexpected event type %s on %s", env.Type, m.Subject()))
		return
	}
	s.emit(ctx, ds)
}

// sync keeps this replica's open prediction in step with one published
// elsewhere: a higher revision of the same prediction is taken over, a
// different prediction for the same host and cause is resolved (the smaller
// id wins). A prediction this replica does not hold is ignored: its model
// will make its own decision from the same inputs.
func (s *Service) sync(p predict.Prediction) []predict.Decision {
	own, ok := s.tr.OpenFor(p.Host, p.Cause)
	if !ok || (own.ID == p.ID && own.Revision >= p.Revision) {
		return nil
	}
	return s.published(s.tr.Adopt(p, s.now()))
}

// published drops clears of predictions that were never published (a
// replica's own prediction that lost to one already out).
func (s *Service) published(ds []predict.Decision) []predict.Decision {
	out := ds[:0]
	for _, d := range ds {
		if d.Kind == predict.Clear {
			if seen, _ := s.led.known(d.Prediction.ID); !seen {
				continue
			}
		}
		out = append(out, d)
	}
	return out
}

// onTelemetry handles one telemetry sample.
func (s *Service) onTelemetry(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata) {
	host := lastToken(m.Subject())
	_, t, err := events.DecodeAs[events.Telemetry](m.Data())
	if err != nil {
		s.reject(ctx, FeedTelemetry, bus.StreamTelemetry, m, md, host, "schema", err)
		return
	}
	if err := sameHost(t.Host, host); err != nil {
		s.reject(ctx, FeedTelemetry, bus.StreamTelemetry, m, md, host, "host_mismatch", err)
		return
	}
	smp := predict.Sample{Host: t.Host, T: t.At, MemBytes: t.MemBytes, MemLimit: t.MemLimit, FDs: t.FDs,
		FDLimit: t.FDLimit, DiskBytes: t.DiskBytes, DiskLimit: t.DiskLimit, Errors: t.Errors, Lost: t.RTPLost}
	if err := smp.Check(s.now(), s.cfg.MaxFuture); err != nil {
		s.reject(ctx, FeedTelemetry, bus.StreamTelemetry, m, md, host, "absurd", err)
		return
	}
	ds, err := s.tr.Observe(smp)
	if err != nil {
		s.m.samples.WithLabelValues("out_of_order").Inc()
		s.log.Debug().Err(err).Str(obs.FieldHost, host).Msg("telemetry out of order: ignored")
		return
	}
	s.m.samples.WithLabelValues("accepted").Inc()
	s.emit(ctx, ds)
}

// onHeartbeat handles a heartbeat or its delete marker (the host went silent).
func (s *Service) onHeartbeat(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata) {
	host := lastToken(m.Subject())
	if reason := m.Headers().Get(jetstream.MarkerReasonHeader); reason != "" && len(m.Data()) == 0 {
		s.emit(ctx, s.tr.Silence(host, md.Timestamp.UTC(), "heartbeats stopped (delete marker: "+reason+")"))
		return
	}
	_, hb, err := events.DecodeAs[events.Heartbeat](m.Data())
	if err != nil {
		s.reject(ctx, FeedHeartbeats, bus.StreamHeartbeats, m, md, host, "schema", err)
		return
	}
	if err := sameHost(hb.Host, host); err != nil {
		s.reject(ctx, FeedHeartbeats, bus.StreamHeartbeats, m, md, host, "host_mismatch", err)
		return
	}
	s.emit(ctx, s.tr.Heartbeat(host, md.Timestamp.UTC()))
}

// reject logs a bad message and copies it to the dead-letter stream; the
// tracker never sees it. Called with mu held.
func (s *Service) reject(ctx context.Context, feed, stream string, m jetstream.Msg, md *jetstream.MsgMetadata,
	host, reason string, err error) {
	s.m.rejected.WithLabelValues(feed, reason).Inc()
	if feed == FeedTelemetry {
		s.m.samples.WithLabelValues("rejected").Inc()
	}
	if !s.live {
		// history: it was dead-lettered when it first arrived
		s.log.Debug().Err(err).Str("feed", feed).Str(obs.FieldHost, host).Msg("rejected during replay")
		return
	}
	key := feed + "|" + host + "|" + reason
	now := s.now()
	if last, ok := s.dlqLast[key]; ok && s.cfg.DeadLetterEvery > 0 && now.Sub(last) < s.cfg.DeadLetterEvery {
		s.dlqQuiet[key]++
		s.log.Debug().Err(err).Str("feed", feed).Str(obs.FieldHost, host).Msg("rejected again (dead letter rate-limited)")
		return
	}
	quiet := s.dlqQuiet[key]
	delete(s.dlqQuiet, key)
	s.dlqLast[key] = now
	ev := s.log.Warn().Err(err).Str("feed", feed).Str(obs.FieldHost, host).Str(obs.FieldSubject, m.Subject()).
		Str("reason", reason).Uint64("seq", md.Sequence.Stream)
	var ve *events.ValidationError
	if errors.As(err, &ve) {
		ev = ev.Str(obs.FieldEventType, ve.Type).Str(obs.FieldSchemaPath, ve.Path)
	}
	if quiet > 0 {
		ev = ev.Int("rejected_since_last_dead_letter", quiet)
	}
	ev.Msg("input rejected: sent to dead letters, the host's model is untouched")
	if derr := s.deadLetter(ctx, stream, m, md, err.Error()); derr != nil {
		s.log.Error().Err(derr).Str(obs.FieldSubject, m.Subject()).Msg("dead letter not written")
	}
}

// deadLetter copies m to ferry.dlq.<stream>.healthpredict with the reason
// and origin in headers (the format of bus's forwarder), with a message id
// every replica shares so it is stored once.
func (s *Service) deadLetter(ctx context.Context, stream string, m jetstream.Msg, md *jetstream.MsgMetadata, reason string) error {
	out := nats.NewMsg(subject.DeadLetter(stream, ConsumerName))
	out.Data = m.Data()
	for k, v := range m.Headers() {
		if k != jetstream.MsgIDHeader {
			out.Header[k] = v
		}
	}
	if len(reason) > 512 {
		reason = reason[:512]
	}
	seq := strconv.FormatUint(md.Sequence.Stream, 10)
	out.Header.Set(bus.HeaderDLQReason, reason)
	out.Header.Set(bus.HeaderDLQKind, "rejected")
	out.Header.Set(bus.HeaderDLQSubject, m.Subject())
	out.Header.Set(bus.HeaderDLQStream, stream)
	out.Header.Set(bus.HeaderDLQSeq, seq)
	out.Header.Set(bus.HeaderDLQConsumer, ConsumerName)
	out.Header.Set(bus.HeaderDLQDeliveries, "1")
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := s.js.PublishMsg(pctx, out, jetstream.WithMsgID("dlq:"+stream+":"+seq+":"+ConsumerName))
	return err
}

// ErrHostMismatch: the host in a message is not the one its subject names.
var ErrHostMismatch = errors.New("host does not match the subject")

func sameHost(data, subj string) error {
	if data != subj {
		return fmt.Errorf("%w: data host %q, subject host %q", ErrHostMismatch, data, subj)
	}
	return nil
}

func dataAs[T any](env events.Envelope) (T, error) {
	var v T
	if err := json.Unmarshal(env.Data, &v); err != nil {
		return v, fmt.Errorf("decode %s data: %w", env.Type, err)
	}
	return v, nil
}

func lastToken(subj string) string {
	return subj[strings.LastIndexByte(subj, '.')+1:]
}
