package control

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
)

func TestStreamURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		pl      events.Placement
		hostURL string
		want    string
	}{
		{"base url", events.Placement{Stream: "cam-1", RTSPURL: "rtsp://10.0.0.1:8554"}, "", "rtsp://10.0.0.1:8554/cam-1"},
		{"trailing slash", events.Placement{Stream: "cam-1", RTSPURL: "rtsp://10.0.0.1:8554/"}, "", "rtsp://10.0.0.1:8554/cam-1"},
		{"already the stream", events.Placement{Stream: "cam-1", RTSPURL: "rtsp://10.0.0.1:8554/cam-1"}, "", "rtsp://10.0.0.1:8554/cam-1"},
		{"registry fallback", events.Placement{Stream: "cam-1"}, "rtsps://h:8322", "rtsps://h:8322/cam-1"},
		{"unknown", events.Placement{Stream: "cam-1"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := StreamURL(tc.pl, tc.hostURL); got != tc.want {
				t.Fatalf("StreamURL = %q, want %q", got, tc.want)
			}
		})
	}
}

// lostRequests is a JetStream whose first consumer-creating request is lost,
// as one sent to a NATS node that fails over: it never gets an answer and
// returns only when its context ends.
type lostRequests struct {
	jetstream.JetStream
	calls atomic.Int32
}

func (l *lostRequests) lose(ctx context.Context) error {
	if l.calls.Add(1) == 1 {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (l *lostRequests) OrderedConsumer(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	if err := l.lose(ctx); err != nil {
		return nil, err
	}
	return l.JetStream.OrderedConsumer(ctx, stream, cfg)
}

func (l *lostRequests) CreateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if err := l.lose(ctx); err != nil {
		return nil, err
	}
	return l.JetStream.CreateConsumer(ctx, stream, cfg)
}

func (l *lostRequests) CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if err := l.lose(ctx); err != nil {
		return nil, err
	}
	return l.JetStream.CreateOrUpdateConsumer(ctx, stream, cfg)
}

// TestWaitSurvivesLostRequest: the handover's wait for publisher_attached
// must not hang until the migration's deadline when its first request is lost
// (a NATS node failing over): each attempt is bounded and retried.
func TestWaitSurvivesLostRequest(t *testing.T) {
	t.Parallel()
	env := testutil.NATS(t)
	js := &lostRequests{JetStream: env.JS}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // the migration's deadline
	defer cancel()
	since := time.Now()
	go func() {
		time.Sleep(100 * time.Millisecond) // the new host reports a little later
		_, _ = events.Publish(ctx, env.JS, "ingest-2", events.PublisherAttached{Stream: "cam-1", Host: "ingest-2",
			SessionID: "s-1", MigrationID: "m-1", Mode: "push", At: time.Now().UTC()})
	}()
	start := time.Now()
	if err := (Attachments{JS: js}).Wait(ctx, "cam-1", "ingest-2", "m-1", since); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	took := time.Since(start)
	t.Logf("publisher_attached seen %v after the wait began (first request lost)", took)
	if took > 5*time.Second {
		t.Fatalf("Wait took %v: the lost request held it (want < 5s, deadline 30s)", took)
	}
	if js.calls.Load() < 2 {
		t.Fatalf("consumer requests: %d, want a retry", js.calls.Load())
	}
}

// lostWatch is a placements bucket whose first Watch request is never
// answered (it blocks until its context ends), like a request to a NATS node
// that is going away.
type lostWatch struct {
	jetstream.KeyValue
	calls atomic.Int64
}

func (l *lostWatch) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	if l.calls.Add(1) == 1 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return l.KeyValue.Watch(ctx, keys, opts...)
}

// TestPlacementWatchSurvivesLostRequest: a lost watch request is retried, and
// a change made while no watch ran reaches the follower (the hub reads the
// followed streams again once a watch runs), so a follower (edge or old host's
// relay) keeps following through a failover.
func TestPlacementWatchSurvivesLostRequest(t *testing.T) {
	t.Parallel()
	env := testutil.NATS(t)
	kv := &lostWatch{KeyValue: env.Stores.Placements}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hub := NewHub(Placements{KV: kv})
	go hub.Run(ctx)
	ch, err := hub.Watch(ctx, "cam-1")
	if err != nil {
		t.Fatal(err)
	}
	putPlacement(t, env, "cam-1", "ingest-2")
	select {
	case pl := <-ch:
		if pl.Host != "ingest-2" {
			t.Fatalf("placement %+v", pl)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no placement 10 s after the first watch request was lost")
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := kv.calls.Load(); n < 2 {
			return fmt.Errorf("watch requests: %d, want a retry", n)
		}
		return nil
	})
	putPlacement(t, env, "cam-1", "ingest-3") // through the second watch
	select {
	case pl := <-ch:
		if pl.Host != "ingest-3" {
			t.Fatalf("placement %+v", pl)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no change through the re-created watch")
	}
}

func putPlacement(t *testing.T, env *testutil.Env, stream, host string) uint64 {
	t.Helper()
	b, _ := json.Marshal(events.Placement{Stream: stream, Host: host, Epoch: 2, Mode: "push"})
	rev, err := env.Stores.Placements.Put(context.Background(), events.PlacementKey(stream), b)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// next returns the next placement from ch, failing after 5 s.
func next(t *testing.T, ch <-chan events.Placement) events.Placement {
	t.Helper()
	select {
	case pl, ok := <-ch:
		if !ok {
			t.Fatal("follower channel closed")
		}
		return pl
	case <-time.After(5 * time.Second):
		t.Fatal("no placement within 5 s")
	}
	return events.Placement{}
}

// TestHubFollowers: one watch serves many followers; each gets its stream's
// current placement, then its changes and deletes, never another stream's;
// a follower whose context ends has its channel closed and is forgotten.
func TestHubFollowers(t *testing.T) {
	t.Parallel()
	env := testutil.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	putPlacement(t, env, "cam-1", "ingest-1")
	hub := NewHub(Placements{KV: env.Stores.Placements})
	go hub.Run(ctx)

	a, err := hub.Watch(ctx, "cam-1")
	if err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithCancel(ctx)
	b, _ := hub.Watch(bctx, "cam-1")
	c, _ := hub.Watch(ctx, "cam-2") // not placed yet: nothing until it is
	for name, ch := range map[string]<-chan events.Placement{"a": a, "b": b} {
		if pl := next(t, ch); pl.Host != "ingest-1" {
			t.Fatalf("%s: current placement %+v", name, pl)
		}
	}
	if n := hub.Followed(); n != 3 {
		t.Fatalf("followers %d, want 3", n)
	}
	putPlacement(t, env, "cam-1", "ingest-2")
	putPlacement(t, env, "cam-2", "ingest-3")
	if pl := next(t, a); pl.Host != "ingest-2" {
		t.Fatalf("a: change %+v", pl)
	}
	if pl := next(t, b); pl.Host != "ingest-2" {
		t.Fatalf("b: change %+v", pl)
	}
	if pl := next(t, c); pl.Host != "ingest-3" || pl.Stream != "cam-2" {
		t.Fatalf("c: %+v", pl)
	}
	bcancel()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := hub.Followed(); n != 2 {
			return fmt.Errorf("followers %d, want 2 after one left", n)
		}
		return nil
	})
	for range b { // drained, then closed
	}
	if err := env.Stores.Placements.Delete(ctx, events.PlacementKey("cam-1")); err != nil {
		t.Fatal(err)
	}
	if pl := next(t, a); pl.Host != "" {
		t.Fatalf("a: delete delivered as %+v, want an empty host", pl)
	}
	select {
	case pl := <-c:
		t.Fatalf("c got cam-1's delete: %+v", pl)
	default:
	}
}

// TestHubSlowFollower: a follower that does not read while its stream moves
// many times loses the older placements, never the newest, and never gets an
// older one after a newer one.
func TestHubSlowFollower(t *testing.T) {
	t.Parallel()
	env := testutil.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := NewHub(Placements{KV: env.Stores.Placements})
	go hub.Run(ctx)
	ch, _ := hub.Watch(ctx, "cam-1")
	putPlacement(t, env, "cam-1", "ingest-0")
	if pl := next(t, ch); pl.Host != "ingest-0" {
		t.Fatalf("first %+v", pl)
	}
	const moves = 50
	for i := 1; i <= moves; i++ {
		putPlacement(t, env, "cam-1", fmt.Sprintf("ingest-%d", i))
	}
	last := 0
	for last != moves {
		pl := next(t, ch)
		var i int
		if _, err := fmt.Sscanf(pl.Host, "ingest-%d", &i); err != nil {
			t.Fatal(err)
		}
		if i <= last {
			t.Fatalf("got %s after ingest-%d", pl.Host, last)
		}
		last = i
	}
}
