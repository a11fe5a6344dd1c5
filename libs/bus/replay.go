package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Defaults of ReplaySpec and WatchSpec.
const (
	// DefaultAttemptTimeout bounds one JetStream API request (creating a
	// consumer or a watcher, reading a last sequence): a request lost while a
	// NATS node fails over is retried instead of holding the caller.
	DefaultAttemptTimeout = 2 * time.Second
	// DefaultRetryWait is the pause between failed attempts.
	DefaultRetryWait = 200 * time.Millisecond
	// DefaultCheckEvery is how often a replay asks the server whether the
	// messages it waits for still exist.
	DefaultCheckEvery = time.Second
	// DefaultHeartbeat is the idle heartbeat a following replay asks of the
	// server; two missed ones make the client re-create the consumer. The
	// client library's default for an ordered consumer (5 s) let a replay sit
	// 10 s on a consumer whose node had stopped.
	DefaultHeartbeat = time.Second
)

// ErrStop, returned by a Replay handler, ends the replay without error.
var ErrStop = errors.New("bus: stop")

// ReplaySpec says what Replay reads.
type ReplaySpec struct {
	Stream string
	// Filters are subject filters (empty: the whole stream).
	Filters []string
	// DeliverPolicy defaults to DeliverAllPolicy. DeliverByStartTimePolicy
	// needs StartTime; DeliverNewPolicy replays nothing (caught up at once).
	DeliverPolicy jetstream.DeliverPolicy
	StartTime     time.Time
	// Follow keeps delivering live messages once caught up, until ctx ends or
	// the handler returns an error; without it Replay returns nil once caught up.
	Follow bool
	// CaughtUp, when set, is called once, when every matching message stored
	// when Replay started has been handled or is gone (aged out, deleted):
	// the state built from the replay is current. With DeliverNewPolicy it is
	// called as soon as the consumer exists, so nothing published after that
	// is missed. It may run on another goroutine than the handler, but only
	// after the handler returned for every replayed message.
	CaughtUp func()
	// AttemptTimeout bounds each request (DefaultAttemptTimeout); RetryWait
	// is the pause after a failed one (DefaultRetryWait); CheckEvery is how
	// often a replay that has not caught up asks the server whether the
	// messages it waits for were removed (DefaultCheckEvery).
	AttemptTimeout, RetryWait, CheckEvery time.Duration
	// Heartbeat is the idle heartbeat of the consumer's pulls
	// (DefaultHeartbeat, at least 500 ms): a consumer whose node stopped is
	// re-created after two missed ones.
	Heartbeat time.Duration
	// Attempts caps the attempts of each request (0: until ctx ends), for
	// callers that would rather report a failure (a command line tool).
	Attempts int
	// Log receives failed attempts (zero value: silent).
	Log zerolog.Logger
}

func (s *ReplaySpec) defaults() {
	if s.AttemptTimeout <= 0 {
		s.AttemptTimeout = DefaultAttemptTimeout
	}
	if s.RetryWait <= 0 {
		s.RetryWait = DefaultRetryWait
	}
	if s.CheckEvery <= 0 {
		s.CheckEvery = DefaultCheckEvery
	}
	if s.Heartbeat <= 0 {
		s.Heartbeat = DefaultHeartbeat
	}
	s.Heartbeat = max(s.Heartbeat, 500*time.Millisecond) // the client's minimum
}

// errCaughtUp cancels the reading of a replay that does not follow.
var errCaughtUp = errors.New("caught up")

// Replay delivers the stream's messages matching spec, in stream order, one
// at a time on the calling goroutine, through an ordered consumer: first what
// is stored (from spec.DeliverPolicy on), then, with spec.Follow, what arrives
// live. spec.CaughtUp says when the stored part is done.
//
// Every request is bounded by spec.AttemptTimeout and retried until ctx ends,
// so a NATS node failing over delays the replay instead of hanging it; once
// the consumer exists, the client re-creates it after gaps and server changes
// without redelivering what was handled.
//
// Replay returns nil when the handler returns ErrStop or, without Follow, once
// caught up; the handler's other errors as they are; ctx's error (wrapped,
// with the last failed request when there was one) when ctx ends.
func Replay(ctx context.Context, js jetstream.JetStream, spec ReplaySpec, h func(jetstream.Msg) error) error {
	spec.defaults()
	if spec.Stream == "" {
		return errors.New("bus: replay needs a stream")
	}
	if spec.DeliverPolicy == jetstream.DeliverByStartTimePolicy && spec.StartTime.IsZero() {
		return errors.New("bus: replay by start time needs StartTime")
	}
	r := &replay{spec: spec, js: js}
	if spec.DeliverPolicy == jetstream.DeliverNewPolicy {
		if err := r.retry(ctx, "last sequence", r.readNext); err != nil {
			return err
		}
	}
	if spec.CaughtUp != nil || !spec.Follow {
		if err := r.retry(ctx, "last sequence", r.readTarget); err != nil {
			return err
		}
	}
	var cons jetstream.Consumer
	if err := r.retry(ctx, "create consumer", func(actx context.Context) error {
		c, err := js.OrderedConsumer(actx, spec.Stream, r.config())
		cons = c
		return err
	}); err != nil {
		return err
	}
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.onCaughtUp = func() {
		if spec.CaughtUp != nil {
			spec.CaughtUp()
		}
		if !spec.Follow {
			cancel(errCaughtUp)
		}
	}
	if info := cons.CachedInfo(); r.target == 0 || (info != nil && info.NumPending == 0) {
		r.caughtUp()
	}
	if !spec.Follow && r.done.Load() {
		return nil
	}
	// Each pull lasts ten heartbeats; a pull answered by nothing for two
	// heartbeats is a lost consumer, re-created by the client.
	it, err := cons.Messages(jetstream.PullHeartbeat(spec.Heartbeat), jetstream.PullExpiry(10*spec.Heartbeat))
	if err != nil {
		return fmt.Errorf("bus: replay %s: %w", spec.Stream, err)
	}
	defer it.Stop()
	var wg sync.WaitGroup
	defer func() {
		cancel(nil) // ends the checker
		wg.Wait()
	}()
	if !r.done.Load() {
		wg.Add(1)
		go func() { defer wg.Done(); r.check(rctx, cons) }()
	}
	for {
		m, err := it.Next(jetstream.NextContext(rctx))
		if err != nil {
			if rctx.Err() != nil {
				if errors.Is(context.Cause(rctx), errCaughtUp) {
					return nil
				}
				return fmt.Errorf("bus: replay %s: %w", spec.Stream, ctx.Err())
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return fmt.Errorf("bus: replay %s: %w", spec.Stream, err)
			}
			spec.Log.Debug().Err(err).Str("stream", spec.Stream).Msg("replay: next")
			Sleep(rctx, spec.RetryWait) // an ended rctx is handled by the next Next
			continue
		}
		var seq, pending uint64
		if md, err := m.Metadata(); err == nil {
			seq, pending = md.Sequence.Stream, md.NumPending
		}
		if err := h(m); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
		r.handled.Store(seq)
		if !r.done.Load() && (seq >= r.target || pending == 0) {
			r.caughtUp()
		}
		if !spec.Follow && r.done.Load() {
			return nil
		}
	}
}

type replay struct {
	spec ReplaySpec
	js   jetstream.JetStream
	// target is the sequence of the newest matching message stored at the
	// start (0: none); caught up once it is handled.
	target uint64
	// next is where a DeliverNewPolicy replay starts: the sequence after
	// the stream's last message when it started.
	next uint64
	// handled is the stream sequence of the last handled message.
	handled    atomic.Uint64
	done       atomic.Bool
	once       sync.Once
	onCaughtUp func()
}

func (r *replay) caughtUp() {
	r.once.Do(func() {
		r.done.Store(true)
		r.onCaughtUp()
	})
}

func (r *replay) config() jetstream.OrderedConsumerConfig {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: r.spec.Filters, DeliverPolicy: r.spec.DeliverPolicy}
	switch r.spec.DeliverPolicy {
	case jetstream.DeliverByStartTimePolicy:
		t := r.spec.StartTime
		cfg.OptStartTime = &t
	case jetstream.DeliverNewPolicy:
		// "new" as a sequence: the client re-creates a lost ordered
		// consumer from the sequence after the last message it delivered,
		// but one that delivered nothing yet with its first policy again,
		// and DeliverNew would then skip what was published in between
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, r.next
	}
	return cfg
}

// readNext sets next: the sequence after the stream's last message now.
func (r *replay) readNext(ctx context.Context) error {
	st, err := r.js.Stream(ctx, r.spec.Stream)
	if err != nil {
		return err
	}
	r.next = st.CachedInfo().State.LastSeq + 1
	return nil
}

// readTarget sets target: the newest matching message stored now.
func (r *replay) readTarget(ctx context.Context) error {
	if r.spec.DeliverPolicy == jetstream.DeliverNewPolicy {
		r.target = 0
		return nil
	}
	st, err := r.js.Stream(ctx, r.spec.Stream)
	if err != nil {
		return err
	}
	if len(r.spec.Filters) == 0 {
		r.target = st.CachedInfo().State.LastSeq
		return nil
	}
	var last uint64
	for _, f := range r.spec.Filters {
		m, err := st.GetLastMsgForSubject(ctx, f)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("last message on %s: %w", f, err)
		}
		last = max(last, m.Sequence)
	}
	r.target = last
	return nil
}

// check ends the replay when the consumer has nothing pending and nothing
// delivered that is not handled: the messages it waited for were removed
// before they could be read.
func (r *replay) check(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(r.spec.CheckEvery)
	defer t.Stop()
	for !r.done.Load() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		actx, cancel := context.WithTimeout(ctx, r.spec.AttemptTimeout)
		info, err := cons.Info(actx)
		cancel()
		if err == nil && info.NumPending == 0 && info.Delivered.Stream <= r.handled.Load() {
			r.caughtUp()
		}
	}
}

// retry runs f with a context bounded by AttemptTimeout until it succeeds
// or ctx ends.
func (r *replay) retry(ctx context.Context, what string, f func(context.Context) error) error {
	return retry(ctx, r.spec.Attempts, r.spec.AttemptTimeout, r.spec.RetryWait, func(actx context.Context) error {
		err := f(actx)
		if err != nil && ctx.Err() == nil {
			r.spec.Log.Warn().Err(err).Str("stream", r.spec.Stream).Msg("replay: " + what)
		}
		return err
	}, "replay "+r.spec.Stream+": "+what)
}

// retry calls f, each call bounded by timeout, until it returns nil, it was
// called attempts times (0: no limit) or ctx ends; then the error wraps f's
// last, or ctx's naming f's last.
func retry(ctx context.Context, attempts int, timeout, wait time.Duration, f func(context.Context) error, what string) error {
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, timeout)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		if attempts > 0 && n >= attempts && ctx.Err() == nil {
			return fmt.Errorf("bus: %s: %w", what, err)
		}
		if !Sleep(ctx, wait) {
			return fmt.Errorf("bus: %s: %w (last: %v)", what, ctx.Err(), err)
		}
	}
}

// Sleep waits d; false when ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
