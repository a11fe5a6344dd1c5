package edge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/ingest/internal/clock"
	"github.com/ferrystream/ferry/services/ingest/internal/stream"
	"github.com/ferrystream/ferry/services/ingest/internal/upstream/upstreamtest"
)

// movingPlacement is a placements bucket a test moves the stream in: Watch
// delivers the current placement, then every later one.
type movingPlacement struct {
	mu    sync.Mutex
	cur   events.Placement
	epoch uint64
	subs  map[chan events.Placement]bool
}

func newMovingPlacement(host string) *movingPlacement {
	p := &movingPlacement{subs: map[chan events.Placement]bool{}}
	p.place(host, "")
	return p
}

func (p *movingPlacement) Get(context.Context, string) (events.Placement, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur, nil
}

func (p *movingPlacement) Watch(ctx context.Context, _ string) (<-chan events.Placement, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan events.Placement, 16)
	ch <- p.cur
	p.subs[ch] = true
	go func() {
		<-ctx.Done()
		p.mu.Lock()
		delete(p.subs, ch)
		close(ch)
		p.mu.Unlock()
	}()
	return ch, nil
}

// place moves the stream to host (a push stream of session s-1: every host
// carries the same sequence space).
func (p *movingPlacement) place(host, migrationID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.epoch++
	p.cur = events.Placement{Stream: "cam-1", Host: host, Mode: "push", SessionID: "s-1", Epoch: p.epoch,
		MigrationID: migrationID}
	for ch := range p.subs {
		ch <- p.cur
	}
}

// hostURLs gives every host a URL with its name as the host part.
type hostURLs struct{}

func (hostURLs) URL(_ context.Context, host string) string { return "rtsp://" + host + ":8554" }

// output records the input sequence numbers of the packets a stream wrote.
type output struct {
	mu   sync.Mutex
	seqs []uint16
}

func (o *output) add(_ *stream.Stream, _ int, pkt *rtp.Packet, _ time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seqs = append(o.seqs, upstreamtest.Seq(pkt))
}

// is waits until the output is exactly want.
func (o *output) is(t *testing.T, want []uint16) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		o.mu.Lock()
		defer o.mu.Unlock()
		if !slices.Equal(o.seqs, want) {
			return fmt.Errorf("output %v, want %v", o.seqs, want)
		}
		return nil
	})
}

// seen waits until m's follower of cam-1 applied the placement naming host.
func seen(t *testing.T, m *Manager, host string) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if pl, ok := m.placement("cam-1"); !ok || pl.Host != host {
			return fmt.Errorf("follower placement %+v, want host %s", pl, host)
		}
		return nil
	})
}

func feedOf(t *testing.T, st *stream.Stream, host string) *stream.Feed {
	t.Helper()
	var f *stream.Feed
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		for _, o := range st.Feeds() {
			if o.Host == host && !o.Retired() {
				f = o
				return nil
			}
		}
		return fmt.Errorf("no live feed from %s", host)
	})
	return f
}

// followerEnv is one TestFollower case's manager and fakes; origin-a's pull
// (a) carried packets 1-5 when the case starts.
type followerEnv struct {
	m   *Manager
	clk *clock.Fake
	pl  *movingPlacement
	ups *upstreamtest.Dialer
	st  *stream.Stream
	out *output
	a   *upstreamtest.Conn
}

// TestFollower moves a pulled stream between upstream hosts on fakes: a
// placements bucket the test moves, upstream connections it drives, and a
// clock that spends no time on the pull's backoff. Every case checks that the
// readers got each packet once, in order, and which upstream connections
// were let go.
func TestFollower(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// run moves the stream and drives the connections (origin-a's pull
		// carries packets 1-5 when it starts).
		run func(t *testing.T, e *followerEnv)
	}{
		{"upstream dies mid-switch", func(t *testing.T, e *followerEnv) {
			e.pl.place("origin-b", "m-1")
			seen(t, e.m, "origin-b")
			b := e.ups.Playing(t, "origin-b", 0)
			b.Die(errors.New("connection reset")) // before it caught up
			b2 := e.ups.Playing(t, "origin-b", 1) // re-dialled after the (fake) backoff
			if e.a.Closed() {
				t.Fatal("the old upstream was let go while the new one had not caught up")
			}
			if w := e.clk.Waits(); !slices.Contains(w, 100*time.Millisecond) {
				t.Fatalf("backoffs %v, want the first re-pull after 100ms", w)
			}
			e.a.Send(6)
			b2.Send(6) // caught up: the pull from b carries the stream, a goes
			testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
				if !e.a.Closed() {
					return errors.New("the pull from origin-a is still open")
				}
				return nil
			})
			b2.Send(upstreamtest.Seqs(7, 10)...)
			e.out.is(t, upstreamtest.Seqs(1, 10))
			if b2.Closed() {
				t.Fatal("the pull from origin-b was closed")
			}
		}},
		{"two moves in a row", func(t *testing.T, e *followerEnv) {
			e.pl.place("origin-b", "m-1")
			seen(t, e.m, "origin-b")
			b := e.ups.Playing(t, "origin-b", 0)
			e.pl.place("origin-c", "m-2") // before the pull from b caught up
			seen(t, e.m, "origin-c")
			c := e.ups.Playing(t, "origin-c", 0)
			e.a.Send(6)
			b.Send(6) // b is ready, but no longer the placed host: nothing goes
			c.Send(6) // c is ready and placed: a and b go
			testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
				if !e.a.Closed() || !b.Closed() {
					return fmt.Errorf("pulls still open: origin-a %v, origin-b %v", !e.a.Closed(), !b.Closed())
				}
				return nil
			})
			c.Send(upstreamtest.Seqs(7, 10)...)
			e.out.is(t, upstreamtest.Seqs(1, 10))
			if c.Closed() || e.ups.Conns("origin-b") != 1 || e.ups.Conns("origin-c") != 1 {
				t.Fatalf("origin-c closed %v; dials: origin-b %d, origin-c %d (want 1, 1)",
					c.Closed(), e.ups.Conns("origin-b"), e.ups.Conns("origin-c"))
			}
		}},
		{"stream moved back", func(t *testing.T, e *followerEnv) {
			e.pl.place("origin-b", "m-1")
			seen(t, e.m, "origin-b")
			b := e.ups.Playing(t, "origin-b", 0)
			e.pl.place("origin-a", "m-2") // back before the pull from b caught up
			seen(t, e.m, "origin-a")
			e.a.Send(6)
			b.Send(6) // b is ready, but not placed: a stays
			b.Die(errors.New("connection reset"))
			testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
				for _, f := range e.st.Feeds() {
					if f.Host == "origin-b" {
						return errors.New("the feed from origin-b is still there")
					}
				}
				return nil
			})
			e.a.Send(upstreamtest.Seqs(7, 10)...)
			e.out.is(t, upstreamtest.Seqs(1, 10))
			if e.a.Closed() || e.ups.Conns("origin-b") != 1 || e.ups.Conns("origin-a") != 1 {
				t.Fatalf("origin-a closed %v; dials: origin-a %d, origin-b %d (want 1, 1: no re-pull of a host no longer placed)",
					e.a.Closed(), e.ups.Conns("origin-a"), e.ups.Conns("origin-b"))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pl := newMovingPlacement("origin-a")
			ups := &upstreamtest.Dialer{}
			out := &output{}
			clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), true)
			m, _, _ := newManagerWith(t, Config{Self: "edge-1", UpstreamWait: 5 * time.Second},
				Deps{Placements: pl, Hosts: hostURLs{}, Dial: ups.Dial, Clock: clk},
				stream.Options{Log: zerolog.Nop(), OnOutput: out.add})
			st, err := m.Serve(testutil.Context(t), "cam-1")
			if err != nil {
				t.Fatal(err)
			}
			a := ups.Playing(t, "origin-a", 0)
			a.Send(upstreamtest.Seqs(1, 5)...)
			out.is(t, upstreamtest.Seqs(1, 5))
			feedOf(t, st, "origin-a")
			tc.run(t, &followerEnv{m: m, clk: clk, pl: pl, ups: ups, st: st, out: out, a: a})
		})
	}
}
