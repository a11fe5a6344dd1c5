// Package delivery is the notifier's core. It turns each `reassigned` event
// into one move notice per (migration, client), delivers it over every
// channel the client declared with retries and backoff until the client acks
// or the deadline passes, and emits `delivered`, `acked` and `failed`.
//
// Several replicas share the work. The reassigned message itself is the unit
// of work (a replica keeps it in progress while it delivers; if the replica
// dies, JetStream redelivers it elsewhere), and the notice's state lives in
// the `notices` bucket under a deterministic id, changed only by
// compare-and-set, with an owner lease: a redelivered event, a second replica
// or a restarted one resumes the same notice instead of sending a second one,
// and skips the channels it was already delivered on.
package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/obs"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/token"
	"github.com/ferrystream/ferry/services/notifier/internal/metrics"
)

// Durable is the name of the notifier's consumer of reassigned events, shared
// by every replica.
const Durable = "notifier-reassigned"

// AckQueue is the queue group of the replicas' ack subscriptions.
const AckQueue = "notifier"

// Config configures an Engine.
type Config struct {
	// Instance names this replica (lease owner, event source).
	Instance string
	// TokenSecret signs the new URL's publish token.
	TokenSecret []byte
	// TokenGrace is added to the deadline for the token's expiry.
	TokenGrace time.Duration
	// RetryMin and RetryMax bound the backoff between attempts on one channel.
	RetryMin, RetryMax time.Duration
	// Lease is the consumer's AckWait and the owner lease of a notice.
	Lease time.Duration
	// Lookback is where a newly created consumer starts (now - Lookback).
	Lookback time.Duration
	// UrgentWindow: a reassignment whose deadline has already passed (a host
	// declared down, or cut off from NATS while its RTSP side still runs) is
	// still sent, as a "move now" notice whose offline time is now +
	// UrgentWindow. 0 fails such notices at once with reason "deadline".
	UrgentWindow time.Duration
}

// WebhookFunc POSTs a signed notice body to a client's webhook.
type WebhookFunc func(ctx context.Context, url, noticeID string, secret, body []byte) error

// SSEFunc hands a notice body to the client's open server-sent-events stream.
type SSEFunc func(ctx context.Context, client string, body []byte) error

// Deps are the Engine's collaborators.
type Deps struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Sessions jetstream.KeyValue
	// Secrets is the session_secrets bucket (webhook signing keys).
	Secrets   jetstream.KeyValue
	Notices   jetstream.KeyValue
	Processed jetstream.KeyValue
	Webhook   WebhookFunc
	SSE       SSEFunc
	Metrics   *metrics.Metrics
	Log       zerolog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Engine delivers move notices. Its mutable state is the set of notices this
// replica is driving and their wake-up channels, guarded by mu; notice state
// itself lives in the notices bucket.
type Engine struct {
	cfg    Config
	d      Deps
	st     store
	source string
	log    zerolog.Logger

	mu      sync.Mutex
	waiters map[string]chan struct{}

	ready atomic.Bool
	wg    sync.WaitGroup
}

// New returns an Engine.
func New(cfg Config, d Deps) (*Engine, error) {
	if d.NC == nil || d.JS == nil || d.Sessions == nil || d.Secrets == nil || d.Notices == nil || d.Processed == nil {
		return nil, errors.New("delivery: NC, JS and the sessions, session_secrets, notices and processed buckets are required")
	}
	if len(cfg.TokenSecret) == 0 {
		return nil, errors.New("delivery: token secret is required")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New(nil)
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = cfg.RetryMin
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 10 * time.Second
	}
	return &Engine{
		cfg:     cfg,
		d:       d,
		st:      store{kv: d.Notices, now: d.Now},
		source:  "ferry/notifier/" + cfg.Instance,
		log:     d.Log.With().Str(obs.FieldComponent, "delivery").Logger(),
		waiters: map[string]chan struct{}{},
	}, nil
}

// Ready reports whether the consumer and the ack subscription are running.
func (e *Engine) Ready() error {
	if !e.ready.Load() {
		return errors.New("delivery not started")
	}
	return nil
}

// Run consumes reassigned events and acks until ctx ends, then hands the
// notices it was delivering back (their messages are nak'ed and their leases
// released, so another replica resumes them at once).
func (e *Engine) Run(ctx context.Context) error {
	// Changes to notices wake their drivers; the watch is re-created, from
	// the last revision seen, when it breaks (bus.WatchKV).
	watching := make(chan struct{})
	var watch sync.WaitGroup
	defer watch.Wait()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch.Add(1)
	go func() {
		defer watch.Done()
		_ = bus.WatchKV(wctx, e.d.Notices, bus.WatchSpec{UpdatesOnly: true, Synced: func() { close(watching) },
			Log: e.log}, func(ent jetstream.KeyValueEntry) { e.wake(ent.Key()) })
	}()
	select {
	case <-watching:
	case <-ctx.Done():
		return nil
	}

	sub, err := e.d.NC.QueueSubscribe(subject.NoticeAckAll, AckQueue, func(m *nats.Msg) {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.handleAckMsg(ctx, m)
		}()
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject.NoticeAckAll, err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	cons, err := e.consumer(ctx)
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.handle(ctx, m)
		}()
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if ctx.Err() == nil {
			e.log.Debug().Err(err).Msg("consume")
		}
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", Durable, err)
	}
	e.ready.Store(true)
	e.log.Info().Str("consumer", Durable).Msg("delivering move notices")
	<-ctx.Done()
	e.ready.Store(false)
	cc.Stop()
	_ = sub.Unsubscribe()
	e.wg.Wait()
	return nil
}

// spec is the consumer of reassigned events. Processed records every event
// whose notice reached a final state, so a redelivered event is acked at once.
func (e *Engine) spec() bus.ConsumerSpec {
	return bus.ConsumerSpec{
		Stream:        bus.StreamEvents,
		Durable:       Durable,
		Filters:       []string{subject.Reassigned("*")},
		AckWait:       e.cfg.Lease,
		MaxDeliver:    -1,
		MaxAckPending: 4096,
		Processed:     e.d.Processed,
	}
}

// consumer binds the durable consumer, creating it (starting Lookback ago)
// when it does not exist yet.
func (e *Engine) consumer(ctx context.Context) (jetstream.Consumer, error) {
	spec := e.spec()
	cfg := spec.Config()
	if c, err := e.d.JS.Consumer(ctx, spec.Stream, spec.Durable); err == nil {
		info := c.CachedInfo()
		cfg.DeliverPolicy = info.Config.DeliverPolicy
		cfg.OptStartTime = info.Config.OptStartTime
		cfg.OptStartSeq = info.Config.OptStartSeq
		if _, err := e.d.JS.UpdateConsumer(ctx, spec.Stream, cfg); err != nil {
			return nil, fmt.Errorf("update consumer %s: %w", spec.Durable, err)
		}
		return c, nil
	}
	start := e.d.Now().Add(-e.cfg.Lookback)
	cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
	cfg.OptStartTime = &start
	c, err := e.d.JS.CreateOrUpdateConsumer(ctx, spec.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", spec.Durable, err)
	}
	return c, nil
}

func (e *Engine) wake(key string) {
	e.mu.Lock()
	ch := e.waiters[key]
	e.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// register makes key driven by this replica; false if it already is.
func (e *Engine) register(key string) (chan struct{}, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.waiters[key]; ok {
		return nil, false
	}
	ch := make(chan struct{}, 1)
	e.waiters[key] = ch
	return ch, true
}

func (e *Engine) unregister(key string) {
	e.mu.Lock()
	delete(e.waiters, key)
	e.mu.Unlock()
}

func (e *Engine) processedKey(eventID string) string { return Durable + "." + eventID }

// handle processes one reassigned message to the end of its notice.
func (e *Engine) handle(ctx context.Context, m jetstream.Msg) {
	env, r, err := events.DecodeAs[events.Reassigned](m.Data())
	if err != nil {
		ev := e.log.Error().Err(err).Str(obs.FieldSubject, m.Subject())
		var ve *events.ValidationError
		if errors.As(err, &ve) {
			ev = ev.Str(obs.FieldSchemaPath, ve.Path)
		}
		ev.Msg("invalid reassigned event: sent to dead letters")
		_ = m.TermWithReason(truncate("invalid event: "+err.Error(), 200))
		return
	}
	l := e.log.With().Str(obs.FieldMigration, r.MigrationID).Str(obs.FieldStream, r.Stream).
		Str(obs.FieldHost, r.ToHost).Str(obs.FieldSession, r.SessionID).Str(obs.FieldEventID, env.ID).Logger()
	if r.Mode == "pull" {
		l.Debug().Msg("pull-mode stream: moved by the hosts, no notice")
		_ = m.Ack()
		return
	}
	if _, err := e.d.Processed.Get(ctx, e.processedKey(env.ID)); err == nil {
		l.Debug().Msg("reassigned event already handled: acked")
		_ = m.Ack()
		return
	}
	key, rec, err := e.prepare(ctx, env, r, l)
	if err != nil {
		if ctx.Err() != nil {
			_ = m.Nak()
			return
		}
		if bus.IsPermanent(err) {
			l.Error().Err(err).Msg("reassigned event rejected: sent to dead letters")
			_ = m.TermWithReason(truncate(err.Error(), 200))
			return
		}
		l.Warn().Err(err).Msg("prepare notice: will retry")
		_ = m.NakWithDelay(time.Second)
		return
	}
	l = l.With().Str("notice_id", key).Str(obs.FieldClient, rec.Notice.ClientID).Logger()
	e.drive(ctx, m, env, key, l)
}

// prepare creates the notice record for a reassigned event, or finds the one
// a previous delivery of the event (on any replica) created.
func (e *Engine) prepare(ctx context.Context, env events.Envelope, r events.Reassigned, l zerolog.Logger) (string, Record, error) {
	var sess *events.Session
	if r.SessionID != "" {
		ent, err := e.d.Sessions.Get(ctx, r.SessionID)
		switch {
		case err == nil:
			var s events.Session
			if err := json.Unmarshal(ent.Value(), &s); err != nil {
				return "", Record{}, bus.Permanent(fmt.Errorf("decode session %s: %w", r.SessionID, err))
			}
			sess = &s
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			return "", Record{}, fmt.Errorf("get session %s: %w", r.SessionID, err)
		}
	}
	client := r.ClientID
	if sess != nil && sess.ClientID != "" {
		client = sess.ClientID
	}
	if client == "" {
		client = "unknown"
	}
	key := NoticeID(r.MigrationID, client)
	if cur, _, err := e.st.get(ctx, key); err == nil {
		return key, cur, nil
	} else if !errors.Is(err, ErrUnknownNotice) {
		return "", Record{}, err
	}
	now := e.d.Now()
	rec := Record{
		Notice: events.MoveNotice{
			NoticeID:    key,
			MigrationID: r.MigrationID,
			ClientID:    client,
			Stream:      r.Stream,
			SessionID:   r.SessionID,
			FromHost:    r.FromHost,
			ToHost:      r.ToHost,
			OfflineAt:   r.Deadline,
			Reason:      nonEmpty(r.Reason, "reassigned"),
		},
		State:        StatePending,
		ReassignedAt: env.Time,
		CreatedAt:    now,
	}
	switch {
	case sess == nil:
		rec.State, rec.Reason = StateFailed, ReasonUnknownSession
	case !now.Before(r.Deadline) && e.cfg.UrgentWindow <= 0:
		rec.State, rec.Reason = StateFailed, ReasonDeadline
	default:
		if !now.Before(r.Deadline) {
			rec.Notice.OfflineAt = now.Add(e.cfg.UrgentWindow).UTC()
			rec.Notice.Reason = truncateReason("move now: " + rec.Notice.Reason)
		}
		rec.Channels, rec.WebhookURL = usableChannels(sess.Capabilities)
		if len(rec.Channels) == 0 {
			rec.State, rec.Reason = StateFailed, ReasonNotCapable
			break
		}
		u, err := e.newURL(r, client, rec.Notice.OfflineAt)
		if err != nil {
			return "", Record{}, err
		}
		rec.Notice.NewURL = u
	}
	stored, created, err := e.st.create(ctx, key, rec)
	if err != nil {
		return "", Record{}, err
	}
	if created {
		l.Info().Str("notice_id", key).Strs("channels", rec.Channels).Str("state", rec.State).
			Str("reason", rec.Reason).Msg("move notice created")
	}
	return key, stored, nil
}

// usableChannels returns the declared channels the notifier can use, in a
// fixed order, and the webhook URL. A client that cannot move has none.
func usableChannels(c events.Capabilities) ([]string, string) {
	if !c.CanMove {
		return nil, ""
	}
	var out []string
	for _, ch := range []string{ChannelNATS, ChannelSSE, ChannelWebhook} {
		if !slices.Contains(c.Channels, ch) {
			continue
		}
		if ch == ChannelWebhook && c.WebhookURL == "" {
			continue
		}
		out = append(out, ch)
	}
	return out, c.WebhookURL
}

// newURL is the reassigned ToURL with a fresh publish token for the new host,
// valid until TokenGrace after the notice's offline time (for a move decided
// after its deadline, the urgent window's end: the deadline itself is past).
func (e *Engine) newURL(r events.Reassigned, client string, offlineAt time.Time) (string, error) {
	tok, err := token.Sign(e.cfg.TokenSecret, token.Claims{
		Stream:      r.Stream,
		Host:        r.ToHost,
		Session:     r.SessionID,
		ClientID:    client,
		Expires:     offlineAt.Add(e.cfg.TokenGrace),
		MigrationID: r.MigrationID,
	})
	if err != nil {
		return "", bus.Permanent(err)
	}
	u, err := url.Parse(r.ToURL)
	if err != nil {
		return "", bus.Permanent(fmt.Errorf("to_url %q: %w", r.ToURL, err))
	}
	q := u.Query()
	q.Set(token.QueryParam, tok)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

var errLeased = errors.New("notice leased by another replica")

// drive delivers one notice until it is final, keeping m in progress.
func (e *Engine) drive(ctx context.Context, m jetstream.Msg, env events.Envelope, key string, l zerolog.Logger) {
	wakeup, ok := e.register(key)
	if !ok {
		// this replica is already driving it (the same message redelivered, or a copy)
		_ = m.NakWithDelay(e.cfg.Lease)
		return
	}
	defer e.unregister(key)

	var leaseEnd time.Time
	rec, _, err := e.st.update(ctx, key, func(r *Record) error {
		if r.Terminal() {
			return errNoChange
		}
		now := e.d.Now()
		if r.Owner != "" && r.Owner != e.cfg.Instance && now.Before(r.LeaseUntil) {
			leaseEnd = r.LeaseUntil
			return errLeased
		}
		r.Owner, r.LeaseUntil = e.cfg.Instance, now.Add(e.cfg.Lease)
		return nil
	})
	switch {
	case errors.Is(err, errLeased):
		l.Debug().Time("lease_until", leaseEnd).Msg("notice leased by another replica: retry after its lease")
		_ = m.NakWithDelay(time.Until(leaseEnd) + 100*time.Millisecond)
		return
	case err != nil:
		if ctx.Err() == nil {
			l.Warn().Err(err).Msg("claim notice: will retry")
		}
		_ = m.NakWithDelay(time.Second)
		return
	}
	if rec.Terminal() {
		e.finish(ctx, m, env, key, rec, l)
		return
	}

	e.d.Metrics.InFlight.Inc()
	defer e.d.Metrics.InFlight.Dec()

	var secret []byte
	if slices.Contains(rec.Channels, ChannelWebhook) {
		if sec, err := bus.NoticeSecret(ctx, e.d.Secrets, e.d.Sessions, rec.Notice.SessionID); err == nil {
			secret = []byte(sec)
		}
	}
	_, body, err := events.Marshal(e.source, rec.Notice)
	if err != nil {
		l.Error().Err(err).Msg("notice does not validate: failing it")
		e.fail(ctx, key, "invalid-notice", l)
		e.release(key)
		_ = m.Ack()
		return
	}

	tries := map[string]int{}
	for ch, n := range rec.Attempts {
		tries[ch] = n
	}
	backoff := map[string]time.Duration{}
	next := map[string]time.Time{}
	renew := time.NewTicker(e.cfg.Lease / 3)
	defer renew.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	for {
		if rec.Terminal() {
			e.finish(ctx, m, env, key, rec, l)
			return
		}
		now := e.d.Now()
		if !now.Before(rec.Notice.OfflineAt) {
			e.fail(ctx, key, ReasonDeadline, l)
			if r, _, err := e.st.get(ctx, key); err == nil {
				rec = r
				continue
			}
			_ = m.NakWithDelay(time.Second)
			return
		}

		// attempt every channel that is due, in parallel
		var due []string
		for _, ch := range rec.Channels {
			if _, done := rec.Delivered[ch]; !done && !now.Before(next[ch]) {
				due = append(due, ch)
			}
		}
		if len(due) > 0 {
			errs := make([]error, len(due))
			var wg sync.WaitGroup
			for i, ch := range due {
				wg.Go(func() {
					actx, cancel := context.WithDeadline(ctx, rec.Notice.OfflineAt)
					defer cancel()
					errs[i] = e.send(actx, ch, rec, secret, body)
				})
			}
			wg.Wait()
			if ctx.Err() != nil {
				e.handBack(m, key, l)
				return
			}
			var delivered []string
			for i, ch := range due {
				tries[ch]++
				if errs[i] == nil {
					e.d.Metrics.Attempts.WithLabelValues(ch, "ok").Inc()
					delivered = append(delivered, ch)
					continue
				}
				e.d.Metrics.Attempts.WithLabelValues(ch, "error").Inc()
				b := backoff[ch]
				if b == 0 {
					b = e.cfg.RetryMin
				} else {
					b = min(2*b, e.cfg.RetryMax)
				}
				backoff[ch] = b
				next[ch] = e.d.Now().Add(b)
				l.Warn().Err(errs[i]).Str("channel", ch).Int("attempt", tries[ch]).Dur("retry_in", b).Msg("notice not delivered: will retry")
			}
			if len(delivered) > 0 {
				r, _, err := e.st.update(ctx, key, func(r *Record) error {
					if r.Delivered == nil {
						r.Delivered = map[string]time.Time{}
					}
					r.Attempts = copyTries(tries)
					for _, ch := range delivered {
						if _, ok := r.Delivered[ch]; !ok {
							r.Delivered[ch] = now
						}
					}
					return nil
				})
				if err != nil {
					if ctx.Err() != nil {
						e.handBack(m, key, l)
						return
					}
					l.Warn().Err(err).Msg("record delivery")
				} else {
					rec = r
					for _, ch := range delivered {
						l.Info().Str("channel", ch).Int("attempt", tries[ch]).Msg("notice delivered")
						e.emit(ctx, rec, "delivered", ch, "", l)
					}
				}
			}
			continue
		}

		// wait for the next due attempt, the deadline, an ack, or a lease renewal
		wait := time.Until(rec.Notice.OfflineAt)
		for _, ch := range rec.Channels {
			if _, done := rec.Delivered[ch]; !done {
				wait = min(wait, time.Until(next[ch]))
			}
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			e.handBack(m, key, l)
			return
		case <-wakeup:
			if r, _, err := e.st.get(ctx, key); err == nil {
				rec = r
			}
		case <-renew.C:
			_ = m.InProgress()
			r, _, err := e.st.update(ctx, key, func(r *Record) error {
				if r.Terminal() {
					return errNoChange
				}
				r.Owner, r.LeaseUntil = e.cfg.Instance, e.d.Now().Add(e.cfg.Lease)
				r.Attempts = copyTries(tries)
				return nil
			})
			if err == nil {
				rec = r
			}
		case <-timer.C:
		}
	}
}

func copyTries(t map[string]int) map[string]int {
	out := make(map[string]int, len(t))
	for k, v := range t {
		out[k] = v
	}
	return out
}

// send makes one delivery attempt on one channel.
func (e *Engine) send(ctx context.Context, ch string, rec Record, secret, body []byte) error {
	switch ch {
	case ChannelNATS:
		_, err := events.Publish(ctx, e.d.JS, e.source, rec.Notice)
		return err
	case ChannelWebhook:
		if e.d.Webhook == nil {
			return errors.New("webhook sender not configured")
		}
		if len(secret) == 0 {
			return errors.New("no notice secret for the session")
		}
		return e.d.Webhook(ctx, rec.WebhookURL, rec.Notice.NoticeID, secret, body)
	case ChannelSSE:
		if e.d.SSE == nil {
			return errors.New("sse not configured")
		}
		return e.d.SSE(ctx, rec.Notice.ClientID, body)
	}
	return fmt.Errorf("unknown channel %q", ch)
}

// handBack gives the notice back at shutdown: releases the lease and naks the
// message so another replica (or this one, restarted) resumes it at once.
func (e *Engine) handBack(m jetstream.Msg, key string, l zerolog.Logger) {
	e.release(key)
	_ = m.Nak()
	l.Info().Msg("shutting down: notice handed back")
}

func (e *Engine) release(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _, _ = e.st.update(ctx, key, func(r *Record) error {
		if r.Owner != e.cfg.Instance {
			return errNoChange
		}
		r.Owner, r.LeaseUntil = "", time.Time{}
		return nil
	})
}

// fail moves a pending notice to failed with reason and emits `failed`.
func (e *Engine) fail(ctx context.Context, key, reason string, l zerolog.Logger) {
	rec, changed, err := e.st.update(ctx, key, func(r *Record) error {
		if r.Terminal() {
			return errNoChange
		}
		r.State, r.Reason = StateFailed, reason
		return nil
	})
	if err != nil {
		l.Warn().Err(err).Str("reason", reason).Msg("record failure")
		return
	}
	if changed {
		l.Warn().Str("reason", reason).Int("attempts", rec.TotalAttempts()).Msg("notice failed")
		e.emit(ctx, rec, "failed", "", reason, l)
	}
}

// finish makes sure the outcome events of a final notice exist (publishing
// them again is deduplicated by event id), records the reassigned event as
// processed, and acks its message.
func (e *Engine) finish(ctx context.Context, m jetstream.Msg, env events.Envelope, key string, rec Record, l zerolog.Logger) {
	for _, ch := range rec.Channels {
		if _, ok := rec.Delivered[ch]; ok {
			e.emit(ctx, rec, "delivered", ch, "", l)
		}
	}
	switch rec.State {
	case StateAcked:
		e.emit(ctx, rec, "acked", rec.AckChannel, "", l)
	case StateFailed:
		e.emit(ctx, rec, "failed", "", rec.Reason, l)
	}
	if _, err := e.d.Processed.Create(ctx, e.processedKey(env.ID), []byte(e.d.Now().UTC().Format(time.RFC3339Nano))); err != nil &&
		!errors.Is(err, jetstream.ErrKeyExists) {
		l.Warn().Err(err).Msg("record processed")
	}
	if err := m.Ack(); err != nil && ctx.Err() == nil {
		l.Debug().Err(err).Msg("ack reassigned")
	}
}

// emit publishes a NoticeOutcome. Its id derives from (notice, outcome,
// channel), so emitting it again is a duplicate, not a second event.
func (e *Engine) emit(ctx context.Context, rec Record, outcome, channel, reason string, l zerolog.Logger) {
	ev := events.NoticeOutcome{
		NoticeID:    rec.Notice.NoticeID,
		MigrationID: rec.Notice.MigrationID,
		Stream:      rec.Notice.Stream,
		ClientID:    rec.Notice.ClientID,
		Channel:     channel,
		Attempts:    rec.TotalAttempts(),
		Reason:      reason,
		At:          e.d.Now().UTC(),
		Outcome:     outcome,
	}
	if channel != "" {
		ev.Attempts = rec.Attempts[channel]
	}
	pctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
	}
	ack, err := events.Publish(pctx, e.d.JS, e.source, ev)
	if err != nil {
		l.Warn().Err(err).Str("outcome", outcome).Msg("emit notice outcome")
		return
	}
	if !ack.Duplicate {
		e.d.Metrics.Outcomes.WithLabelValues(outcome, reason).Inc()
	}
}

// Ack records a client's acknowledgement of a notice and emits `acked` once.
// It is called for acks arriving over NATS and (authenticated) HTTP.
func (e *Engine) Ack(ctx context.Context, a events.NoticeAck) events.NoticeAckReply {
	if a.NoticeID == "" || a.ClientID == "" {
		return events.NoticeAckReply{Error: "notice_id and client_id are required"}
	}
	if a.Channel != "" && a.Channel != ChannelNATS && a.Channel != ChannelSSE && a.Channel != ChannelWebhook {
		a.Channel = ""
	}
	errNotYours := errors.New("notice is not for this client or session")
	rec, changed, err := e.st.update(ctx, a.NoticeID, func(r *Record) error {
		if r.Notice.ClientID != a.ClientID || (a.SessionID != "" && r.Notice.SessionID != a.SessionID) {
			return errNotYours
		}
		if r.Terminal() {
			return errNoChange
		}
		r.State, r.AckChannel, r.AckedAt = StateAcked, a.Channel, e.d.Now()
		return nil
	})
	l := e.log.With().Str("notice_id", a.NoticeID).Str(obs.FieldClient, a.ClientID).Logger()
	switch {
	case errors.Is(err, ErrUnknownNotice):
		return events.NoticeAckReply{Error: ErrUnknownNotice.Error()}
	case errors.Is(err, errNotYours):
		l.Warn().Str(obs.FieldSession, a.SessionID).Msg("ack refused: " + err.Error())
		return events.NoticeAckReply{Error: err.Error()}
	case err != nil:
		l.Warn().Err(err).Msg("record ack")
		return events.NoticeAckReply{Error: "could not record the ack, retry"}
	}
	if changed {
		lat := rec.AckedAt.Sub(rec.ReassignedAt)
		e.d.Metrics.AckLatency.Observe(lat.Seconds())
		l.Info().Str(obs.FieldMigration, rec.Notice.MigrationID).Str(obs.FieldStream, rec.Notice.Stream).
			Str("channel", a.Channel).Dur("latency", lat).Msg("notice acked")
		e.emit(ctx, rec, "acked", rec.AckChannel, "", l)
	}
	return events.NoticeAckReply{OK: rec.State == StateAcked, State: rec.State}
}

// handleAckMsg answers a NoticeAck request on ferry.ack.client.<client>.
func (e *Engine) handleAckMsg(ctx context.Context, m *nats.Msg) {
	var a events.NoticeAck
	reply := events.NoticeAckReply{}
	if err := json.Unmarshal(m.Data, &a); err != nil {
		reply.Error = "bad ack: " + err.Error()
	} else if m.Subject != subject.NoticeAck(a.ClientID) {
		reply.Error = "client_id does not match the subject"
	} else {
		reply = e.Ack(ctx, a)
	}
	if m.Reply == "" {
		return
	}
	b, _ := json.Marshal(reply)
	_ = m.Respond(b)
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// truncateReason keeps a reason within the schema's 1024 characters.
func truncateReason(s string) string {
	if len(s) > 1024 {
		return s[:1024]
	}
	return s
}
