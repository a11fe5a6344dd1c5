package bus

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// WatchSpec says what WatchKV watches.
type WatchSpec struct {
	// Keys are key filters, wildcards allowed (empty: every key).
	Keys []string
	// UpdatesOnly skips the current values: only changes made after WatchKV
	// was called are delivered.
	UpdatesOnly bool
	// Synced, when set, is called once, after the current values are
	// delivered (UpdatesOnly: once the first watcher runs).
	Synced func()
	// Started, when set, is called each time a watcher runs (the first and
	// every re-created one), before it delivers anything: the place to read
	// again what a watcher does not cover (e.g. keys read with Get before it).
	Started func()
	// AttemptTimeout bounds each request (DefaultAttemptTimeout); RetryWait
	// is the pause after a failed one (DefaultRetryWait).
	AttemptTimeout, RetryWait time.Duration
	// Log receives failed attempts (zero value: silent).
	Log zerolog.Logger
}

// WatchKV calls h with every matching entry of kv (the current values unless
// spec.UpdatesOnly, then every change), in revision order, one at a time on
// the calling goroutine, until ctx ends; then it returns ctx's error.
//
// The watch survives the bus: creating a watcher is bounded by
// spec.AttemptTimeout (a request lost while a NATS node fails over would
// otherwise hang the caller until ctx ends), and a watcher that fails or ends
// is re-created after spec.RetryWait. A re-created watcher resumes after the
// last revision delivered, so no change is lost and none is delivered twice;
// keys whose intermediate revisions are still stored get those before their
// newest one. Deletes and purges are delivered (check Operation).
func WatchKV(ctx context.Context, kv jetstream.KeyValue, spec WatchSpec, h func(jetstream.KeyValueEntry)) error {
	if spec.AttemptTimeout <= 0 {
		spec.AttemptTimeout = DefaultAttemptTimeout
	}
	if spec.RetryWait <= 0 {
		spec.RetryWait = DefaultRetryWait
	}
	w := &kvWatch{kv: kv, spec: spec, keys: spec.Keys}
	if spec.UpdatesOnly {
		// Resume from the bucket's newest revision rather than using
		// UpdatesOnly, so a first watcher that fails loses nothing either.
		if err := retry(ctx, 0, spec.AttemptTimeout, spec.RetryWait, w.readStart, "watch "+kv.Bucket()+": status"); err != nil {
			return err
		}
	}
	for {
		resumed := w.next > 0
		kw, wctx, cancel, err := w.open(ctx)
		if err != nil {
			if ctx.Err() == nil {
				spec.Log.Warn().Err(err).Str("bucket", kv.Bucket()).Msg("watch")
			}
			if !Sleep(ctx, spec.RetryWait) {
				return fmt.Errorf("bus: watch %s: %w (last: %v)", kv.Bucket(), ctx.Err(), err)
			}
			continue
		}
		if spec.UpdatesOnly {
			w.synced()
		}
		if spec.Started != nil {
			spec.Started()
		}
		w.forward(wctx, kw, resumed, h)
		_ = kw.Stop()
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		spec.Log.Debug().Str("bucket", kv.Bucket()).Msg("watcher ended: re-created")
		if !Sleep(ctx, spec.RetryWait) {
			return ctx.Err()
		}
	}
}

type kvWatch struct {
	kv   jetstream.KeyValue
	spec WatchSpec
	keys []string
	// next is the revision the next watcher starts at (0: the current values).
	next     uint64
	isSynced bool
}

func (w *kvWatch) synced() {
	if !w.isSynced {
		w.isSynced = true
		if w.spec.Synced != nil {
			w.spec.Synced()
		}
	}
}

// readStart sets next to the revision after the bucket's newest.
func (w *kvWatch) readStart(ctx context.Context) error {
	st, err := w.kv.Status(ctx)
	if err != nil {
		return err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return fmt.Errorf("bucket %s: status %T has no stream info", w.kv.Bucket(), st)
	}
	w.next = bs.StreamInfo().State.LastSeq + 1
	return nil
}

// open starts a watcher, giving up after AttemptTimeout. The watcher lives
// as long as the returned context (a child of ctx), which the caller cancels
// after stopping it: the client uses it to re-create its consumer.
func (w *kvWatch) open(ctx context.Context) (jetstream.KeyWatcher, context.Context, context.CancelFunc, error) {
	wctx, cancel := context.WithCancel(ctx)
	var opts []jetstream.WatchOpt
	if w.next > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(w.next))
	}
	type result struct {
		kw  jetstream.KeyWatcher
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		switch len(w.keys) {
		case 0:
			r.kw, r.err = w.kv.WatchAll(wctx, opts...)
		case 1:
			r.kw, r.err = w.kv.Watch(wctx, w.keys[0], opts...)
		default:
			// WatchFiltered prefixes the slice it is given in place.
			r.kw, r.err = w.kv.WatchFiltered(wctx, append([]string(nil), w.keys...), opts...)
		}
		done <- r
	}()
	t := time.NewTimer(w.spec.AttemptTimeout)
	defer t.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			cancel()
			return nil, nil, nil, r.err
		}
		return r.kw, wctx, cancel, nil
	case <-t.C:
		cancel()
		if r := <-done; r.kw != nil {
			_ = r.kw.Stop()
		}
		return nil, nil, nil, fmt.Errorf("watch %s [%s]: no answer within %v", w.kv.Bucket(),
			strings.Join(w.keys, " "), w.spec.AttemptTimeout)
	}
}

// forward hands kw's entries to h until kw or ctx ends. A resumed watcher
// delivers by revision; the current values of a first one come in revision
// order too, but are never skipped.
func (w *kvWatch) forward(ctx context.Context, kw jetstream.KeyWatcher, resumed bool, h func(jetstream.KeyValueEntry)) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-kw.Updates():
			if !ok {
				return
			}
			if e == nil {
				w.synced()
				continue
			}
			if resumed && e.Revision() < w.next {
				continue // delivered by an earlier watcher
			}
			w.next = max(w.next, e.Revision()+1)
			h(e)
		}
	}
}
