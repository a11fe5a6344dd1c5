package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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

func hb(host string, seq uint64) events.Heartbeat {
	return events.Heartbeat{Host: host, Seq: seq, At: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
}

func TestRetriedPublishIsDuplicate(t *testing.T) {
	env := testutil.NATS(t)
	ctx := testutil.Context(t)
	ev := events.DrainCommand{CommandID: "c-1", Host: "ingest-1", Reason: "deploy"}
	a1, err := events.Publish(ctx, env.JS, "test", ev)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := events.Publish(ctx, env.JS, "test", ev)
	if err != nil {
		t.Fatal(err)
	}
	if a1.Duplicate || !a2.Duplicate || a1.Sequence != a2.Sequence {
		t.Fatalf("acks %+v %+v: want the retry reported as a duplicate of the same sequence", a1, a2)
	}
	st, _ := env.JS.Stream(ctx, bus.StreamCommands)
	info, _ := st.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("stored %d messages, want 1", info.State.Msgs)
	}
}

func TestBootstrapIdempotent(t *testing.T) {
	env := testutil.NATS(t)
	if err := bus.Bootstrap(testutil.Context(t), env.JS, 1); err != nil {
		t.Fatalf("second bootstrap: %v", err)
	}
}

func TestStalePlacementWriteRefused(t *testing.T) {
	env := testutil.NATS(t)
	ctx := testutil.Context(t)
	kv := env.Stores.Placements
	key := events.PlacementKey("cam-1")
	v1, _ := json.Marshal(events.Placement{Stream: "cam-1", Host: "ingest-1", Epoch: 1})
	rev, err := kv.Create(ctx, key, v1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, key, v1); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("second create: %v", err)
	}
	v2, _ := json.Marshal(events.Placement{Stream: "cam-1", Host: "ingest-2", Epoch: 2})
	if _, err := kv.Update(ctx, key, v2, rev); err != nil {
		t.Fatal(err)
	}
	v3, _ := json.Marshal(events.Placement{Stream: "cam-1", Host: "ingest-3", Epoch: 2})
	if _, err := kv.Update(ctx, key, v3, rev); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("stale update: err = %v, want revision mismatch", err)
	}
	e, _ := kv.Get(ctx, key)
	var p events.Placement
	_ = json.Unmarshal(e.Value(), &p)
	if p.Host != "ingest-2" {
		t.Fatalf("home = %s, want ingest-2", p.Host)
	}
}

// dlqMessages returns the dead letters stored so far.
func dlqMessages(ctx context.Context, js jetstream.JetStream) ([]*jetstream.RawStreamMsg, error) {
	st, err := js.Stream(ctx, bus.StreamDeadLetter)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

func TestInvalidEventGoesToDeadLetters(t *testing.T) {
	env := testutil.NATS(t)
	ctx := testutil.Context(t)
	log := testutil.Logger(t)
	go func() { _ = bus.RunDeadLetters(ctx, env.JS, log, bus.DeadLetters) }()

	var handled, calls atomic.Int64
	spec := bus.ConsumerSpec{Stream: bus.StreamEvents, Durable: "t-consumer", Filters: []string{subject.AllEvents},
		BackOff: []time.Duration{10 * time.Millisecond}, Processed: env.Stores.Processed}
	go func() {
		_ = bus.Consume(ctx, env.JS, log, spec, func(ctx context.Context, m bus.Msg) error {
			calls.Add(1)
			handled.Add(1)
			return nil
		})
	}()

	bad := []struct {
		name, subj, body, wantReason string
	}{
		{"not json", subject.Draining("ingest-1"), "{nope", "not JSON"},
		{"unknown type", subject.Draining("ingest-1"), `{"specversion":"1.0","id":"x1","type":"io.ferry.nope.nope.v1","source":"s","time":"2026-11-23T10:00:00Z","data":{}}`, "unknown event type"},
		{"schema", subject.Draining("ingest-1"), `{"specversion":"1.0","id":"x2","type":"io.ferry.ingest.draining.v1","source":"s","time":"2026-11-23T10:00:00Z","data":{"host":"ingest-1"}}`, "/data"},
	}
	for _, b := range bad {
		if _, err := env.JS.Publish(ctx, b.subj, []byte(b.body)); err != nil {
			t.Fatal(err)
		}
	}
	good := events.Draining{Host: "ingest-1", Deadline: time.Now().Add(time.Minute).UTC(), Streams: 2}
	if _, err := events.Publish(ctx, env.JS, "test", good); err != nil {
		t.Fatal(err)
	}
	var dl []*jetstream.RawStreamMsg
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		var err error
		dl, err = dlqMessages(ctx, env.JS)
		if err != nil {
			return err
		}
		if len(dl) < len(bad) {
			return fmt.Errorf("%d dead letters, want %d", len(dl), len(bad))
		}
		return nil
	})
	for i, b := range bad {
		r := dl[i].Header.Get(bus.HeaderDLQReason)
		if !strings.Contains(r, b.wantReason) || dl[i].Header.Get(bus.HeaderDLQSubject) != b.subj || string(dl[i].Data) != b.body {
			t.Errorf("%s: dead letter reason %q subject %q body %q", b.name, r, dl[i].Header.Get(bus.HeaderDLQSubject), dl[i].Data)
		}
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if handled.Load() != 1 {
			return fmt.Errorf("handled %d", handled.Load())
		}
		return nil
	})
	// Terminated messages are not redelivered: the consumer has nothing pending.
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		cons, err := env.JS.Consumer(ctx, bus.StreamEvents, "t-consumer")
		if err != nil {
			return err // the consumer goroutine may not have created it yet
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.NumPending != 0 || info.NumRedelivered != 0 {
			return fmt.Errorf("pending %d ack-pending %d redelivered %d", info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
		return nil
	})
}

func TestFailingHandlerEndsInDeadLettersAfterMaxDeliver(t *testing.T) {
	env := testutil.NATS(t)
	ctx := testutil.Context(t)
	log := testutil.Logger(t)
	go func() { _ = bus.RunDeadLetters(ctx, env.JS, log, bus.DeadLetters) }()
	var calls atomic.Int64
	spec := bus.ConsumerSpec{Stream: bus.StreamEvents, Durable: "t-fail", Filters: []string{subject.AllEvents},
		MaxDeliver: 3, BackOff: []time.Duration{10 * time.Millisecond}}
	go func() {
		_ = bus.Consume(ctx, env.JS, log, spec, func(ctx context.Context, m bus.Msg) error {
			calls.Add(1)
			return errors.New("placement store unavailable")
		})
	}()
	if _, err := events.Publish(ctx, env.JS, "test", events.Draining{Host: "ingest-9", Deadline: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		dl, err := dlqMessages(ctx, env.JS)
		if err != nil {
			return err
		}
		if len(dl) != 1 {
			return fmt.Errorf("%d dead letters", len(dl))
		}
		if k := dl[0].Header.Get(bus.HeaderDLQKind); k != "max_deliveries" {
			return fmt.Errorf("kind %q", k)
		}
		return nil
	})
	if c := calls.Load(); c != 3 {
		t.Fatalf("handler called %d times, want MaxDeliver=3", c)
	}
}

func TestPermanentErrorNotRetried(t *testing.T) {
	env := testutil.NATS(t)
	ctx := testutil.Context(t)
	var calls atomic.Int64
	spec := bus.ConsumerSpec{Stream: bus.StreamEvents, Durable: "t-perm", Filters: []string{subject.AllEvents}}
	go func() {
		_ = bus.Consume(ctx, env.JS, testutil.Logger(t), spec, func(ctx context.Context, m bus.Msg) error {
			calls.Add(1)
			return bus.Permanent(errors.New("capacity 1e12 is absurd"))
		})
	}()
	if _, err := events.Publish(ctx, env.JS, "test", events.Draining{Host: "ingest-9", Deadline: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	waitAckFloor(t, env, "t-perm", 1)
	if calls.Load() != 1 {
		t.Fatalf("calls %d", calls.Load())
	}
}

// waitAckFloor waits until the durable consumer of FERRY_EVENTS acked the
// stream's first n messages.
func waitAckFloor(t *testing.T, env *testutil.Env, durable string, n uint64) {
	t.Helper()
	ctx := testutil.Context(t)
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		cons, err := env.JS.Consumer(ctx, bus.StreamEvents, durable)
		if err != nil {
			return err // the consumer goroutine may not have created it yet
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.AckFloor.Stream != n {
			return fmt.Errorf("ack floor %d, want %d", info.AckFloor.Stream, n)
		}
		return nil
	})
}

func TestIdempotentConsumerSkipsRepublished(t *testing.T) {
	env := testutil.NATS(t)
	ctx := testutil.Context(t)
	var calls atomic.Int64
	spec := bus.ConsumerSpec{Stream: bus.StreamEvents, Durable: "t-idem", Filters: []string{subject.AllEvents}, Processed: env.Stores.Processed}
	go func() {
		_ = bus.Consume(ctx, env.JS, testutil.Logger(t), spec, func(ctx context.Context, m bus.Msg) error {
			calls.Add(1)
			return nil
		})
	}()
	// The same event published twice beyond dedup (a second raw copy with no msg id).
	_, body, _ := events.Marshal("test", events.Draining{Host: "ingest-3", Deadline: time.Now().UTC()})
	for i := 0; i < 2; i++ {
		if _, err := env.JS.Publish(ctx, subject.Draining("ingest-3"), body); err != nil {
			t.Fatal(err)
		}
	}
	waitAckFloor(t, env, "t-idem", 2)
	if calls.Load() != 1 {
		t.Fatalf("handled %d times, want 1", calls.Load())
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"default ok", nil, ""},
		{"bad url", map[string]string{"FERRY_NATS_URL": "localhost:4222"}, `FERRY_NATS_URL: "localhost:4222" must be a URL like nats://127.0.0.1:4222`},
		{"not a nats scheme", map[string]string{"FERRY_NATS_URL": "http://127.0.0.1:4222"}, `FERRY_NATS_URL: "http://127.0.0.1:4222": scheme "http" is not a NATS scheme (nats, tls, ws or wss), e.g. nats://127.0.0.1:4222`},
		{"cluster list, tls", map[string]string{"FERRY_NATS_URL": "nats://a:4222, tls://b:4222,ws://c:80"}, ""},
		{"bad replicas", map[string]string{"FERRY_NATS_REPLICAS": "7"}, "FERRY_NATS_REPLICAS: must be 1..5, got 7"},
		{"cert without key", map[string]string{"FERRY_NATS_CERT": "c.pem"}, "FERRY_NATS_CERT, FERRY_NATS_KEY: set both or neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := bus.ConfigFromEnv(func(k string) string { return tc.env[k] }, bus.Config{})
			err := c.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConnectUnreachable(t *testing.T) {
	_, _, err := bus.Connect(context.Background(), bus.Config{URL: "nats://127.0.0.1:1", Replicas: 1}, testutil.Logger(t))
	if !errors.Is(err, bus.ErrUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("err = %v", err)
	}
}

func TestClusterSurvivesStreamLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	cl, err := natsembed.RunCluster(t.TempDir(), 3, 14222)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Shutdown)
	nc, err := nats.Connect(cl.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := testutil.Context(t)
	testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error { return bus.Bootstrap(ctx, js, 3) })
	st, _ := js.Stream(ctx, bus.StreamEvents)
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("stream not replicated: %+v", info.Cluster)
	}
	if _, err := events.Publish(ctx, js, "test", events.Draining{Host: "ingest-1", Deadline: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	leader := info.Cluster.Leader
	for _, s := range cl.Servers {
		if s.Name() == leader {
			s.Shutdown()
		}
	}
	start := time.Now()
	var n int
	testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		n++
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := events.Publish(pctx, js, "test", events.Draining{Host: "ingest-2", Deadline: start.UTC(), Streams: n})
		return err
	})
	recovered := time.Since(start)
	info, _ = st.Info(ctx)
	t.Logf("stream leader %s killed; publishing worked again after %v (new leader %s)", leader, recovered.Round(time.Millisecond), info.Cluster.Leader)
	fmt.Printf("cluster-failover: stream leader loss -> publish ok after %d ms\n", recovered.Milliseconds())
	if info.State.Msgs < 2 {
		t.Fatalf("msgs %d", info.State.Msgs)
	}
}
