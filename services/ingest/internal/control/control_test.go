package control

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
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

// movePlacement writes a placement as placement does: the record, then its
// notices (bus.NotifyPlacement).
func movePlacement(t *testing.T, env *testutil.Env, stream, from, to string) uint64 {
	t.Helper()
	pl := events.Placement{Stream: stream, Host: to, FromHost: from, Epoch: 2, Mode: "push"}
	b, _ := json.Marshal(pl)
	rev, err := env.Stores.Placements.Put(context.Background(), events.PlacementKey(stream), b)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.NotifyPlacement(env.NC, pl, rev); err != nil {
		t.Fatal(err)
	}
	return rev
}

// TestHostHubNotices: a host's hub follows placement's notices, not the
// bucket: its one subscription (ferry.placement.host.<host>.>) brings the
// changes of the streams that live here or leave, an edge follower (Watch)
// of a stream living elsewhere gets that stream's notices, and no other
// host's notice reaches the host's subscription.
func TestHostHubNotices(t *testing.T) {
	env := testutil.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	movePlacement(t, env, "cam-1", "", "ingest-1")
	movePlacement(t, env, "cam-2", "", "ingest-3")
	hub := NewHostHub(Placements{KV: env.Stores.Placements}, env.NC, "ingest-1")
	go hub.Run(ctx)

	var mu sync.Mutex
	var got []events.Placement
	hub.Follow(ctx, "cam-1", func(pl events.Placement) {
		mu.Lock()
		got = append(got, pl)
		mu.Unlock()
	})
	edge, _ := hub.Watch(ctx, "cam-2")
	if pl := next(t, edge); pl.Host != "ingest-3" {
		t.Fatalf("edge: current placement %+v", pl)
	}
	// every notice that reaches this host, on its own subject
	var mine atomic.Int32
	other := make(chan string, 16)
	sub, err := env.NC.Subscribe(subject.PlacementHostAll("ingest-1"), func(*nats.Msg) { mine.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	osub, _ := env.NC.Subscribe(subject.PlacementHostAll("ingest-9"), func(m *nats.Msg) { other <- m.Subject })
	defer func() { _ = osub.Unsubscribe() }()
	_ = env.NC.Flush()

	movePlacement(t, env, "cam-1", "ingest-1", "ingest-2") // leaves this host
	movePlacement(t, env, "cam-2", "ingest-3", "ingest-4") // the edge's stream, elsewhere
	movePlacement(t, env, "cam-3", "ingest-9", "ingest-8") // nothing to do with this host
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 || got[len(got)-1].Host != "ingest-2" {
			return fmt.Errorf("follower got %+v, want the move to ingest-2 last", got)
		}
		return nil
	})
	if pl := next(t, edge); pl.Host != "ingest-4" {
		t.Fatalf("edge: change %+v", pl)
	}
	if s := <-other; s != subject.PlacementHost("ingest-9", "cam-3") {
		t.Fatalf("other host's notice on %s", s)
	}
	if n := mine.Load(); n != 1 {
		t.Fatalf("%d notices on ingest-1's subject, want 1 (cam-1 leaving)", n)
	}
}

// TestHostHubResync: a change whose notice never came (placement died
// between its write and its notice) reaches the follower when the hub reads
// the bucket again, as it does after a reconnection.
func TestHostHubResync(t *testing.T) {
	env := testutil.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	movePlacement(t, env, "cam-1", "", "ingest-1")
	hub := NewHostHub(Placements{KV: env.Stores.Placements}, env.NC, "ingest-1")
	go hub.Run(ctx)
	ch, _ := hub.Watch(ctx, "cam-1")
	if pl := next(t, ch); pl.Host != "ingest-1" {
		t.Fatalf("current placement %+v", pl)
	}
	// Run's first resync must be behind us, or it rightly delivers the change
	select {
	case <-hub.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("the hub never subscribed to its notices")
	}
	putPlacement(t, env, "cam-1", "ingest-2") // no notice
	select {
	case pl := <-ch:
		t.Fatalf("a change without a notice delivered before any resync: %+v", pl)
	case <-time.After(100 * time.Millisecond):
	}
	hub.resync(ctx)
	if pl := next(t, ch); pl.Host != "ingest-2" {
		t.Fatalf("after resync %+v", pl)
	}
}
