package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/testutil"
)

// flakyKV is a bucket whose first `lose` Watch requests are never answered
// (like requests to a NATS node going away) and whose watchers the test can
// end (like a watcher whose subscription closed).
type flakyKV struct {
	jetstream.KeyValue
	lose  int32
	calls atomic.Int32

	mu       sync.Mutex
	watchers []jetstream.KeyWatcher
}

func (f *flakyKV) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	if f.calls.Add(1) <= f.lose {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	w, err := f.KeyValue.Watch(ctx, keys, opts...)
	if err == nil {
		f.mu.Lock()
		f.watchers = append(f.watchers, w)
		f.mu.Unlock()
	}
	return w, err
}

func (f *flakyKV) WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return f.Watch(ctx, ">", opts...)
}

// endWatcher stops the newest watcher: its Updates channel closes.
func (f *flakyKV) endWatcher() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.watchers) > 0 {
		_ = f.watchers[len(f.watchers)-1].Stop()
	}
	return len(f.watchers)
}

func (f *flakyKV) opened() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watchers)
}

// kvRecorder collects what a watch delivered.
type kvRecorder struct {
	mu      sync.Mutex
	vals    []string
	revs    []uint64
	atSync  int
	synced  chan struct{}
	started atomic.Int32
}

func newKVRecorder() *kvRecorder { return &kvRecorder{synced: make(chan struct{}), atSync: -1} }

func (r *kvRecorder) spec(s bus.WatchSpec) bus.WatchSpec {
	s.Synced = func() {
		r.mu.Lock()
		r.atSync = len(r.vals)
		r.mu.Unlock()
		close(r.synced)
	}
	s.Started = func() { r.started.Add(1) }
	s.RetryWait = 10 * time.Millisecond
	return s
}

func (r *kvRecorder) handle(e jetstream.KeyValueEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := string(e.Value())
	if e.Operation() != jetstream.KeyValuePut {
		v = "del:" + e.Key()
	}
	r.vals = append(r.vals, v)
	r.revs = append(r.revs, e.Revision())
}

func (r *kvRecorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.vals...)
}

func (r *kvRecorder) waitFor(t *testing.T, want ...string) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := r.got(); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		return nil
	})
}

func (r *kvRecorder) checkRevisions(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 1; i < len(r.revs); i++ {
		if r.revs[i] <= r.revs[i-1] {
			t.Fatalf("revisions %v: not increasing", r.revs)
		}
	}
}

func startWatch(t *testing.T, kv jetstream.KeyValue, spec bus.WatchSpec, r *kvRecorder) <-chan error {
	ctx := testutil.Context(t)
	errc := make(chan error, 1)
	go func() { errc <- bus.WatchKV(ctx, kv, spec, r.handle) }()
	select {
	case <-r.synced:
	case err := <-errc:
		t.Fatalf("watch ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not synced after 10s")
	}
	return errc
}

func put(t *testing.T, kv jetstream.KeyValue, k, v string) {
	t.Helper()
	if _, err := kv.Put(context.Background(), k, []byte(v)); err != nil {
		t.Fatal(err)
	}
}

func TestWatchKVCurrentThenChanges(t *testing.T) {
	env := testutil.NATS(t)
	kv := env.Stores.Hosts
	put(t, kv, "a", "a1")
	put(t, kv, "b", "b1")
	put(t, kv, "a", "a2")
	put(t, kv, "c", "c1")
	r := newKVRecorder()
	startWatch(t, kv, r.spec(bus.WatchSpec{Keys: []string{"a", "b"}}), r)
	if got := r.got(); fmt.Sprint(got) != "[b1 a2]" || r.atSync != 2 {
		t.Fatalf("current values %v (synced after %d), want [b1 a2]", got, r.atSync)
	}
	put(t, kv, "c", "c2")
	put(t, kv, "b", "b2")
	if err := kv.Delete(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "b1", "a2", "b2", "del:a")
	r.checkRevisions(t)
}

func TestWatchKVUpdatesOnly(t *testing.T) {
	env := testutil.NATS(t)
	kv := env.Stores.Hosts
	put(t, kv, "a", "a1")
	r := newKVRecorder()
	startWatch(t, kv, r.spec(bus.WatchSpec{UpdatesOnly: true}), r)
	put(t, kv, "a", "a2")
	r.waitFor(t, "a2")
}

// TestWatchKVResumesEndedWatcher: a watcher that ends is re-created from the
// revision after the last delivered: changes made in between arrive, none twice.
func TestWatchKVResumesEndedWatcher(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec bus.WatchSpec
		want []string
	}{
		{"current values", bus.WatchSpec{}, []string{"a1"}},
		{"updates only", bus.WatchSpec{UpdatesOnly: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := testutil.NATS(t)
			kv := &flakyKV{KeyValue: env.Stores.Hosts}
			put(t, kv, "a", "a1")
			r := newKVRecorder()
			startWatch(t, kv, r.spec(tc.spec), r)
			want := tc.want
			for round := 0; round < 3; round++ {
				v := fmt.Sprintf("b%d", round)
				put(t, kv, "b", v)
				want = append(want, v)
				r.waitFor(t, want...)
				n := kv.endWatcher()
				// Changes while no watcher runs.
				for _, k := range []string{"a", "b"} {
					v := fmt.Sprintf("%s-gap%d", k, round)
					put(t, kv, k, v)
					want = append(want, v)
				}
				testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
					if kv.opened() <= n {
						return errors.New("watcher not re-created")
					}
					return nil
				})
				r.waitFor(t, want...)
			}
			r.checkRevisions(t)
			if s := r.started.Load(); s != 4 {
				t.Fatalf("Started called %d times, want 4", s)
			}
		})
	}
}

// TestWatchKVSurvivesLostRequest: a Watch request that gets no answer is
// given up after AttemptTimeout and retried, instead of hanging the watch.
func TestWatchKVSurvivesLostRequest(t *testing.T) {
	env := testutil.NATS(t)
	kv := &flakyKV{KeyValue: env.Stores.Hosts, lose: 2}
	put(t, kv, "a", "a1")
	r := newKVRecorder()
	spec := r.spec(bus.WatchSpec{AttemptTimeout: 200 * time.Millisecond})
	start := time.Now()
	startWatch(t, kv, spec, r)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("synced after %v with two lost requests of 200ms", took)
	}
	put(t, kv, "a", "a2")
	r.waitFor(t, "a1", "a2")
	if c := kv.calls.Load(); c != 3 {
		t.Fatalf("watch requests %d, want 3", c)
	}
}

func TestWatchKVContextEnds(t *testing.T) {
	env := testutil.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- bus.WatchKV(ctx, env.Stores.Hosts, bus.WatchSpec{}, func(jetstream.KeyValueEntry) {}) }()
	time.Sleep(50 * time.Millisecond) // let it run; the result does not depend on it
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("WatchKV = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WatchKV did not return after its context ended")
	}
}
