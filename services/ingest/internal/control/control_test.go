package control

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
)

func TestStreamURL(t *testing.T) {
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

// TestPlacementWatchSurvivesLostRequest: a lost watch request is retried, so
// a follower (edge or old host's relay) keeps following through a failover.
func TestPlacementWatchSurvivesLostRequest(t *testing.T) {
	env := testutil.NATS(t)
	kv := &lostWatch{KeyValue: env.Stores.Placements}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := (Placements{KV: kv}).Watch(ctx, "cam-1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(events.Placement{Stream: "cam-1", Host: "ingest-2", Epoch: 2, Mode: "push"})
	if _, err := env.Stores.Placements.Put(ctx, events.PlacementKey("cam-1"), b); err != nil {
		t.Fatal(err)
	}
	select {
	case pl := <-ch:
		if pl.Host != "ingest-2" {
			t.Fatalf("placement %+v", pl)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no placement 10 s after the first watch request was lost")
	}
	if kv.calls.Load() < 2 {
		t.Fatalf("watch requests: %d, want a retry", kv.calls.Load())
	}
}
