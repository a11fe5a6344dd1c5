package lease

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/testutil"
)

// bucket returns a leases bucket with a short TTL (the behaviour under test
// is the bucket TTL, whatever its length).
func bucket(t *testing.T, ttl time.Duration) jetstream.KeyValue {
	t.Helper()
	env := testutil.NATS(t)
	kv, err := env.JS.CreateKeyValue(testutil.Context(t), jetstream.KeyValueConfig{Bucket: "test_leases", TTL: ttl, History: 1,
		LimitMarkerTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

type candidate struct {
	l       *Lease
	cancel  context.CancelFunc
	done    chan struct{}
	leading atomic.Int32
	terms   atomic.Int32
}

func run(t *testing.T, kv jetstream.KeyValue, id string, ttl time.Duration, release bool) *candidate {
	t.Helper()
	l, err := New(kv, Config{Key: "svc.leader", ID: id, TTL: ttl, Release: release}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{l: l, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_ = l.Run(ctx, func(ctx context.Context) {
			c.leading.Add(1)
			c.terms.Add(1)
			<-ctx.Done()
			c.leading.Add(-1)
		})
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *candidate) stop() {
	c.cancel()
	<-c.done
}

func leaders(cs ...*candidate) int {
	n := 0
	for _, c := range cs {
		if c.l.Held() {
			n++
		}
	}
	return n
}

func TestOneLeaderAndTakeoverAfterCrash(t *testing.T) {
	const ttl = 1500 * time.Millisecond
	kv := bucket(t, ttl)
	a := run(t, kv, "a", ttl, false)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !a.l.Held() {
			return errors.New("a not leading")
		}
		return nil
	})
	b := run(t, kv, "b", ttl, false)
	// a keeps renewing across several TTLs; b never leads meanwhile.
	deadline := time.Now().Add(3 * ttl)
	for time.Now().Before(deadline) {
		if b.l.Held() || b.leading.Load() != 0 {
			t.Fatal("b leads while a renews")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// a "crashes" without releasing: b takes over once the key expires.
	stopped := time.Now()
	a.stop()
	testutil.CheckFor(t, 3*ttl, 10*time.Millisecond, func() error {
		if !b.l.Held() || b.leading.Load() != 1 {
			return errors.New("b not leading")
		}
		return nil
	})
	if took := time.Since(stopped); took < ttl/2 {
		t.Fatalf("b took over after %v, before a's lease could expire", took)
	}
}

func TestReleaseHandsOverAtOnce(t *testing.T) {
	const ttl = 6 * time.Second
	kv := bucket(t, ttl)
	a := run(t, kv, "a", ttl, true)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !a.l.Held() {
			return errors.New("a not leading")
		}
		return nil
	})
	b := run(t, kv, "b", ttl, true)
	a.stop()
	start := time.Now()
	testutil.CheckFor(t, 3*time.Second, 10*time.Millisecond, func() error {
		if !b.l.Held() {
			return errors.New("b not leading")
		}
		return nil
	})
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("handover took %v despite release", el)
	}
}

func TestLostRenewalStopsLeading(t *testing.T) {
	const ttl = 1500 * time.Millisecond
	kv := bucket(t, ttl)
	a := run(t, kv, "a", ttl, false)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if a.leading.Load() != 1 {
			return errors.New("a not leading")
		}
		return nil
	})
	// Someone else takes the key: a's next renewal fails and a stops at once.
	if err := kv.Purge(context.Background(), "svc.leader"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(context.Background(), "svc.leader", []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 2*ttl, 10*time.Millisecond, func() error {
		if a.leading.Load() != 0 || a.l.Held() {
			return errors.New("a still leading")
		}
		return nil
	})
}

func TestManyCandidatesOneLeader(t *testing.T) {
	const ttl = 1500 * time.Millisecond
	kv := bucket(t, ttl)
	var cs []*candidate
	for _, id := range []string{"a", "b", "c", "d"} {
		cs = append(cs, run(t, kv, id, ttl, true))
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if leaders(cs...) != 1 {
			return errors.New("no single leader yet")
		}
		return nil
	})
	for i := 0; i < 50; i++ {
		if n := leaders(cs...); n > 1 {
			t.Fatalf("%d leaders", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
