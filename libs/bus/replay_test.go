package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/natsembed"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
)

// publishDraining publishes n draining events for host, numbered from first
// by their Streams field, and returns their stream sequences.
func publishDraining(t *testing.T, ctx context.Context, js jetstream.JetStream, host string, first, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := first; i < first+n; i++ {
		ack, err := events.Publish(ctx, js, "test", events.Draining{Host: host, Deadline: time.Unix(int64(i), 0).UTC(), Streams: i})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	return seqs
}

// streamsOf decodes the Streams field of a draining event.
func streamsOf(t *testing.T, m jetstream.Msg) int {
	_, ev, err := events.DecodeAs[events.Draining](m.Data())
	if err != nil {
		t.Errorf("decode: %v", err)
	}
	return ev.Streams
}

// recorder collects what a replay handled, and what it had handled when it
// was told it caught up.
type recorder struct {
	mu        sync.Mutex
	got       []int
	atCaught  int
	caught    chan struct{}
	caughtN   atomic.Int32
	onHandled func(int) error
}

func newRecorder() *recorder { return &recorder{caught: make(chan struct{}), atCaught: -1} }

func (r *recorder) caughtUp() {
	r.mu.Lock()
	r.atCaught = len(r.got)
	r.mu.Unlock()
	if r.caughtN.Add(1) == 1 {
		close(r.caught)
	}
}

// waitCaught waits until the replay calls CaughtUp; errc gets the
// replay's result should it end first.
func (r *recorder) waitCaught(t *testing.T, errc <-chan error) {
	t.Helper()
	select {
	case <-r.caught:
	case err := <-errc:
		t.Fatalf("replay ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not caught up after 10s")
	}
}

func (r *recorder) snapshot() ([]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.got...), r.atCaught
}

func (r *recorder) handler(t *testing.T) func(jetstream.Msg) error {
	return func(m jetstream.Msg) error {
		n := streamsOf(t, m)
		r.mu.Lock()
		r.got = append(r.got, n)
		r.mu.Unlock()
		if r.onHandled != nil {
			return r.onHandled(n)
		}
		return nil
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func equal(a, b []int) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestReplayStoredThenLive(t *testing.T) {
	env := testutil.NATS(t)
	ctx := testutil.Context(t)
	publishDraining(t, ctx, env.JS, "ingest-1", 1, 5)
	publishDraining(t, ctx, env.JS, "ingest-2", 100, 2) // not matched by the filter
	r := newRecorder()
	errc := make(chan error, 1)
	go func() {
		errc <- bus.Replay(ctx, env.JS, bus.ReplaySpec{Stream: bus.StreamEvents, Filters: []string{subject.Draining("ingest-1")},
			Follow: true, CaughtUp: r.caughtUp}, r.handler(t))
	}()
	r.waitCaught(t, errc)
	if got, at := r.snapshot(); at != 5 || !equal(got[:at], seq(1, 5)) {
		t.Fatalf("caught up after %v (%d handled), want 1..5", got, at)
	}
	publishDraining(t, ctx, env.JS, "ingest-1", 6, 3)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got, _ := r.snapshot(); !equal(got, seq(1, 8)) {
			return fmt.Errorf("handled %v, want 1..8", got)
		}
		return nil
	})
	if n := r.caughtN.Load(); n != 1 {
		t.Fatalf("CaughtUp called %d times", n)
	}
}

func TestReplayCaughtUp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stored  int
		spec    bus.ReplaySpec
		want    []int // handled when caught up (no follow: in all)
		follow  bool
		filters []string
	}{
		{name: "empty stream", want: nil},
		{name: "stored, no follow", stored: 4, want: seq(1, 4)},
		{name: "start time after all", stored: 3, spec: bus.ReplaySpec{DeliverPolicy: jetstream.DeliverByStartTimePolicy,
			StartTime: time.Now().Add(time.Hour)}, want: nil},
		{name: "deliver new", stored: 3, spec: bus.ReplaySpec{DeliverPolicy: jetstream.DeliverNewPolicy}, want: nil},
		{name: "last per subject", stored: 3, spec: bus.ReplaySpec{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}, want: []int{3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := testutil.NATS(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			publishDraining(t, ctx, env.JS, "ingest-1", 1, tc.stored)
			r := newRecorder()
			spec := tc.spec
			spec.Stream, spec.Filters, spec.CaughtUp = bus.StreamEvents, []string{subject.Draining("*")}, r.caughtUp
			if err := bus.Replay(ctx, env.JS, spec, r.handler(t)); err != nil {
				t.Fatalf("Replay: %v", err)
			}
			got, at := r.snapshot()
			if !equal(got, tc.want) || at != len(tc.want) || r.caughtN.Load() != 1 {
				t.Fatalf("handled %v, caught up after %d (%d calls); want %v", got, at, r.caughtN.Load(), tc.want)
			}
		})
	}
}

func TestReplayHandlerEnds(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		ret     error
		wantErr error
	}{
		{"stop", bus.ErrStop, nil},
		{"error", boom, boom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := testutil.NATS(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			publishDraining(t, ctx, env.JS, "ingest-1", 1, 5)
			r := newRecorder()
			r.onHandled = func(n int) error {
				if n == 3 {
					return tc.ret
				}
				return nil
			}
			// CaughtUp set: the replay waits for the fifth message when the
			// handler ends it at the third.
			err := bus.Replay(ctx, env.JS, bus.ReplaySpec{Stream: bus.StreamEvents, Follow: true, CaughtUp: r.caughtUp}, r.handler(t))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("Replay = %v, want %v", err, tc.wantErr)
			}
			if ctx.Err() != nil {
				t.Fatal("Replay returned only when its context ended")
			}
			if got, _ := r.snapshot(); !equal(got, seq(1, 3)) || r.caughtN.Load() != 0 {
				t.Fatalf("handled %v (caught up %d times)", got, r.caughtN.Load())
			}
		})
	}
}

func TestReplayBadSpec(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec bus.ReplaySpec
		want string
	}{
		{"no stream", bus.ReplaySpec{}, "bus: replay needs a stream"},
		{"start time", bus.ReplaySpec{Stream: "S", DeliverPolicy: jetstream.DeliverByStartTimePolicy}, "bus: replay by start time needs StartTime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := bus.Replay(context.Background(), nil, tc.spec, nil)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestReplayContextEnds(t *testing.T) {
	env := testutil.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := bus.Replay(ctx, env.JS, bus.ReplaySpec{Stream: bus.StreamEvents, Follow: true}, func(jetstream.Msg) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Replay = %v, want the context's error", err)
	}
}

// lostJS is a JetStream whose first n consumer-creating and stream requests
// are lost: no answer, they return only when their context ends.
type lostJS struct {
	jetstream.JetStream
	lose  int32
	calls atomic.Int32
}

func (l *lostJS) lost(ctx context.Context) error {
	if l.calls.Add(1) <= l.lose {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (l *lostJS) OrderedConsumer(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	if err := l.lost(ctx); err != nil {
		return nil, err
	}
	return l.JetStream.OrderedConsumer(ctx, stream, cfg)
}

func (l *lostJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if err := l.lost(ctx); err != nil {
		return nil, err
	}
	return l.JetStream.Stream(ctx, name)
}

// TestReplaySurvivesLostRequests: each request is bounded and retried, so a
// request lost in a NATS failover costs one attempt, not the caller's deadline.
func TestReplaySurvivesLostRequests(t *testing.T) {
	env := testutil.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publishDraining(t, ctx, env.JS, "ingest-1", 1, 2)
	js := &lostJS{JetStream: env.JS, lose: 2} // the stream read and the first consumer
	r := newRecorder()
	start := time.Now()
	err := bus.Replay(ctx, js, bus.ReplaySpec{Stream: bus.StreamEvents, CaughtUp: r.caughtUp,
		AttemptTimeout: 300 * time.Millisecond, RetryWait: 10 * time.Millisecond}, r.handler(t))
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v with two lost requests of 300ms", took)
	}
	if got, _ := r.snapshot(); !equal(got, seq(1, 2)) || js.calls.Load() < 4 {
		t.Fatalf("handled %v after %d requests", got, js.calls.Load())
	}
}

// TestReplayAgedOutMessages: messages stored at the start but removed before
// they are read (aged out, deleted) do not hold the replay: it catches up once
// the consumer has nothing left.
func TestReplayAgedOutMessages(t *testing.T) {
	env := testutil.NATS(t)
	ctx := testutil.Context(t)
	seqs := publishDraining(t, ctx, env.JS, "ingest-1", 1, 3)
	st, err := env.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	// The handler of the first message removes the rest: the replay's target
	// (the third) never arrives.
	r := newRecorder()
	r.onHandled = func(n int) error {
		if n == 1 {
			for _, s := range seqs[1:] {
				if err := st.DeleteMsg(ctx, s); err != nil {
					return err
				}
			}
		}
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		errc <- bus.Replay(ctx, env.JS, bus.ReplaySpec{Stream: bus.StreamEvents, Filters: []string{subject.Draining("*")},
			CaughtUp: r.caughtUp, CheckEvery: 50 * time.Millisecond}, r.handler(t))
	}()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Replay: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("replay of removed messages did not end")
	}
	if r.caughtN.Load() != 1 {
		t.Fatal("not caught up")
	}
}

// TestReplayAndWatchThroughNodeLoss follows events and a KV bucket on a
// 3-node cluster while the node the client is connected to, and the leader of
// both streams, is shut down: each sees every message published before,
// during and after the failover, once, in order.
func TestReplayAndWatchThroughNodeLoss(t *testing.T) {
	cl, nc, js, ctx := clusterClient(t, 15322)
	// A bucket that keeps every revision: a re-created watcher can then be
	// held to all of them (a bucket keeps History revisions a key).
	var kv jetstream.KeyValue
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		var err error
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t_watch", History: 64, Replicas: 3})
		return err
	})
	put := func(i int) error {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := kv.Put(pctx, fmt.Sprintf("h%d", i%3), []byte(fmt.Sprint(i)))
		return err
	}
	pub := func(i int) error {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := events.Publish(pctx, js, "test", events.Draining{Host: "ingest-1", Deadline: time.Unix(int64(i), 0).UTC(), Streams: i})
		return err
	}
	const before, total = 5, 30
	for i := 1; i <= before; i++ {
		if err := put(i); err != nil {
			t.Fatal(err)
		}
		if err := pub(i); err != nil {
			t.Fatal(err)
		}
	}

	r := newRecorder()
	var kvMu sync.Mutex
	var kvGot []string
	var kvRevs []uint64
	synced := make(chan struct{})
	var watchers atomic.Int32
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = bus.Replay(wctx, js, bus.ReplaySpec{Stream: bus.StreamEvents, Filters: []string{subject.Draining("ingest-1")},
			Follow: true, CaughtUp: r.caughtUp}, r.handler(t))
	}()
	go func() {
		defer wg.Done()
		_ = bus.WatchKV(wctx, kv, bus.WatchSpec{Synced: func() { close(synced) }, Started: func() { watchers.Add(1) }}, func(e jetstream.KeyValueEntry) {
			kvMu.Lock()
			kvGot = append(kvGot, string(e.Value()))
			kvRevs = append(kvRevs, e.Revision())
			kvMu.Unlock()
		})
	}()
	defer func() { stop(); wg.Wait() }()
	for _, c := range []chan struct{}{r.caught, synced} {
		select {
		case <-c:
		case <-time.After(20 * time.Second):
			t.Fatal("not synced before the node loss")
		}
	}

	// Shut down the node the client is connected to.
	connected := nc.ConnectedServerName()
	t.Logf("killing %s (events leader %s, %s leader %s)", connected, streamLeader(t, ctx, js, bus.StreamEvents),
		kv.Bucket(), streamLeader(t, ctx, js, "KV_"+kv.Bucket()))
	for _, s := range cl.Servers {
		if s.Name() == connected {
			s.Shutdown()
		}
	}
	// Whichever nodes lead the streams now, make both change leader too.
	stepDown(t, nc, bus.StreamEvents)
	stepDown(t, nc, "KV_"+kv.Bucket())
	start := time.Now()
	for i := before + 1; i <= total; i++ {
		testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error { return put(i) })
		testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error { return pub(i) })
	}
	t.Logf("published %d more through the failover in %v", total-before, time.Since(start).Round(time.Millisecond))

	// A retried publish can store an event twice (a lost ack): compare with
	// what the stream holds, not with the attempts.
	wantEv := storedDraining(t, ctx, js)
	testutil.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		if got, _ := r.snapshot(); !equal(got, wantEv) {
			return fmt.Errorf("replay handled %v, want %v", got, wantEv)
		}
		return nil
	})
	testutil.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		kvMu.Lock()
		defer kvMu.Unlock()
		// The current values first (h0..h2 = 3, 4, 5, in revision order),
		// then every change; a retried Put may store a value twice, in two
		// revisions, which the watch must deliver both.
		if got, want := collapse(kvGot), seq(3, total); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("watch got %v, want %v", kvGot, want)
		}
		return nil
	})
	kvMu.Lock()
	defer kvMu.Unlock()
	for i := 1; i < len(kvRevs); i++ {
		if kvRevs[i] <= kvRevs[i-1] {
			t.Fatalf("revisions out of order or repeated: %v", kvRevs)
		}
	}
	t.Logf("watchers run: %d", watchers.Load())
	if got := collapseInts(wantEv); !equal(got, seq(1, total)) {
		t.Fatalf("events stored %v", wantEv)
	}
}

// stepDown asks the leader of a stream to hand over, until one does.
func stepDown(t *testing.T, nc *nats.Conn, stream string) {
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		m, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil, time.Second)
		if err != nil {
			return err
		}
		if !strings.Contains(string(m.Data), `"success":true`) {
			return fmt.Errorf("step down %s: %s", stream, m.Data)
		}
		return nil
	})
}

// collapse turns values into numbers, dropping repeats in a row.
func collapse(vs []string) []int {
	var out []int
	for _, v := range vs {
		var n int
		_, _ = fmt.Sscan(v, &n)
		out = append(out, n)
	}
	return collapseInts(out)
}

func collapseInts(ns []int) []int {
	var out []int
	for _, n := range ns {
		if len(out) == 0 || out[len(out)-1] != n {
			out = append(out, n)
		}
	}
	return out
}

// streamLeader returns the leader of a stream.
func streamLeader(t *testing.T, ctx context.Context, js jetstream.JetStream, name string) string {
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.CachedInfo().Cluster; c != nil {
		return c.Leader
	}
	return ""
}

// storedDraining returns the Streams fields of the draining events stored, in order.
func storedDraining(t *testing.T, ctx context.Context, js jetstream.JetStream) []int {
	var out []int
	err := bus.Replay(ctx, js, bus.ReplaySpec{Stream: bus.StreamEvents, Filters: []string{subject.Draining("ingest-1")}},
		func(m jetstream.Msg) error { out = append(out, streamsOf(t, m)); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReplayAttempts: with Attempts, a request that keeps failing is
// reported instead of retried until the context ends.
func TestReplayAttempts(t *testing.T) {
	env := testutil.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := &lostJS{JetStream: env.JS, lose: 100}
	err := bus.Replay(ctx, js, bus.ReplaySpec{Stream: bus.StreamEvents, Attempts: 2,
		AttemptTimeout: 100 * time.Millisecond, RetryWait: 10 * time.Millisecond}, func(jetstream.Msg) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || js.calls.Load() != 2 {
		t.Fatalf("Replay = %v after %d requests, want the second attempt's timeout", err, js.calls.Load())
	}
}

// TestReplayFollowsPastLeaderLoss: the node that leads the stream (and so
// holds the replay's consumer) stops while the client stays connected to
// another node. The replay must notice within a few seconds, not after the
// client library's default heartbeat of an ordered consumer (5 s, two missed:
// 10 s) — that delay held a handover's cease for 10 s in the compose test's
// NATS node stop.
func TestReplayFollowsPastLeaderLoss(t *testing.T) {
	cl, nc, js, ctx := clusterClient(t, 15422)
	connected := nc.ConnectedServerName()
	// The stream's leader must be another node than the client's.
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if l := streamLeader(t, ctx, js, bus.StreamEvents); l != "" && l != connected {
			return nil
		}
		stepDown(t, nc, bus.StreamEvents)
		return fmt.Errorf("leader is the connected node %s", connected)
	})
	leader := streamLeader(t, ctx, js, bus.StreamEvents)
	pub := func(i int) error {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := events.Publish(pctx, js, "test", events.Draining{Host: "ingest-1", Deadline: time.Unix(int64(i), 0).UTC(), Streams: i})
		return err
	}
	if err := pub(1); err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = bus.Replay(rctx, js, bus.ReplaySpec{Stream: bus.StreamEvents, Filters: []string{subject.Draining("ingest-1")},
			Follow: true, CaughtUp: r.caughtUp}, r.handler(t))
	}()
	defer func() { stop(); <-done }()
	select {
	case <-r.caught:
	case <-time.After(20 * time.Second):
		t.Fatal("not caught up")
	}
	for _, s := range cl.Servers {
		if s.Name() == leader {
			s.Shutdown()
		}
	}
	testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error { return pub(2) })
	published := time.Now()
	testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got, _ := r.snapshot(); len(got) == 0 || got[len(got)-1] != 2 {
			return fmt.Errorf("replay handled %v", got)
		}
		return nil
	})
	took := time.Since(published)
	t.Logf("client on %s, leader %s stopped: the event published after the new leader was elected reached the replay %v later", connected, leader, took.Round(time.Millisecond))
	if took > 6*time.Second {
		t.Fatalf("the replay took %v to follow past the leader's loss (want well under 10 s)", took)
	}
}

// TestConsumeFollowsPastLeaderLoss: the node that leads a durable consumer
// stops while the client stays connected to another node. The consumer must
// deliver again within seconds; with the client library's defaults (30 s
// pulls, 15 s heartbeats) its pending pull was lost for up to 30 s.
func TestConsumeFollowsPastLeaderLoss(t *testing.T) {
	cl, nc, js, ctx := clusterClient(t, 15522)
	spec := bus.ConsumerSpec{Stream: bus.StreamEvents, Durable: "t-follow", Filters: []string{subject.Draining("ingest-1")}}
	got := make(chan int, 16)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = bus.Consume(cctx, js, testutil.Logger(t), spec, func(ctx context.Context, m bus.Msg) error {
			var d events.Draining
			if err := json.Unmarshal(m.Env.Data, &d); err != nil {
				return err
			}
			got <- d.Streams
			return nil
		})
	}()
	defer func() { stop(); <-done }()
	pub := func(i int) error {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := events.Publish(pctx, js, "test", events.Draining{Host: "ingest-1", Deadline: time.Unix(int64(i), 0).UTC(), Streams: i})
		return err
	}
	if err := pub(1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("first event not consumed")
	}
	connected := nc.ConnectedServerName()
	leader := func() string {
		c, err := js.Consumer(ctx, bus.StreamEvents, spec.Durable)
		if err != nil {
			return ""
		}
		if ci := c.CachedInfo().Cluster; ci != nil {
			return ci.Leader
		}
		return ""
	}
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if l := leader(); l != "" && l != connected {
			return nil
		}
		_, _ = nc.Request("$JS.API.CONSUMER.LEADER.STEPDOWN."+bus.StreamEvents+"."+spec.Durable, nil, time.Second)
		return fmt.Errorf("consumer leader is the connected node %s", connected)
	})
	victim := leader()
	for _, s := range cl.Servers {
		if s.Name() == victim {
			s.Shutdown()
		}
	}
	testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error { return pub(2) })
	published := time.Now()
	for {
		select {
		case n := <-got:
			if n != 2 {
				continue
			}
			took := time.Since(published)
			t.Logf("client on %s, consumer leader %s stopped: the next event was consumed %v after it was stored", connected, victim, took.Round(time.Millisecond))
			if took > 8*time.Second {
				t.Fatalf("the consumer took %v to deliver past its leader's loss", took)
			}
			return
		case <-time.After(60 * time.Second):
			t.Fatal("event not consumed after the consumer leader's loss")
		}
	}
}

// clusterClient starts a 3-node cluster (cluster ports from basePort), connects
// a client that stays on the first node while it lives, and bootstraps Ferry's
// streams and buckets at R3. It skips under -short.
func clusterClient(t *testing.T, basePort int) (*natsembed.Cluster, *nats.Conn, jetstream.JetStream, context.Context) {
	t.Helper()
	if testing.Short() {
		t.Skip("cluster test")
	}
	cl, err := natsembed.RunCluster(t.TempDir(), 3, basePort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Shutdown)
	ctx := testutil.Context(t)
	nc, err := nats.Connect(cl.URLs(), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error { return bus.Bootstrap(ctx, js, 3) })
	return cl, nc, js, ctx
}

// TestReplayNewSurvivesEarlyReset: a following replay from DeliverNewPolicy
// whose consumer is lost before it delivered anything (its node failing
// over just after it was created) still delivers what was published
// meanwhile. The client re-creates a lost ordered consumer with its first
// deliver policy while it has delivered nothing, and DeliverNew would then
// skip that message; the replay pins "new" to a start sequence.
func TestReplayNewSurvivesEarlyReset(t *testing.T) {
	env := testutil.NATS(t)
	ctx := testutil.Context(t)
	publishDraining(t, ctx, env.JS, "ingest-1", 1, 3) // before the replay: not delivered
	r := newRecorder()
	errc := make(chan error, 1)
	go func() {
		errc <- bus.Replay(ctx, env.JS, bus.ReplaySpec{Stream: bus.StreamEvents, DeliverPolicy: jetstream.DeliverNewPolicy,
			Follow: true, CaughtUp: r.caughtUp}, r.handler(t))
	}()
	r.waitCaught(t, errc)
	st, err := env.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	names := st.ConsumerNames(ctx)
	deleted := 0
	for name := range names.Name() {
		if err := st.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
		deleted++
	}
	if deleted != 1 {
		t.Fatalf("deleted %d consumers, want the replay's one", deleted)
	}
	publishDraining(t, ctx, env.JS, "ingest-1", 4, 1)
	testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if got, _ := r.snapshot(); !equal(got, []int{4}) {
			return fmt.Errorf("handled %v, want [4]", got)
		}
		return nil
	})
	publishDraining(t, ctx, env.JS, "ingest-1", 5, 1)
	testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if got, _ := r.snapshot(); !equal(got, []int{4, 5}) {
			return fmt.Errorf("handled %v, want [4 5]", got)
		}
		return nil
	})
}
