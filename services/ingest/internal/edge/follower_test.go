package edge

import (
	"context"
	"errors"
	"fmt"
	"net/url"
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
	"github.com/ferrystream/ferry/services/ingest/internal/upstream"
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

// fakeUpstreams is the edge's dialer in these tests: every dial opens a
// fakeConn the test drives.
type fakeUpstreams struct {
	mu    sync.Mutex
	conns map[string][]*fakeConn // by host, in dial order
}

func (u *fakeUpstreams) dial(_ context.Context, rawURL string, _ upstream.Options) (upstream.Source, error) {
	pu, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	c := &fakeConn{host: pu.Hostname(), done: make(chan struct{})}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conns == nil {
		u.conns = map[string][]*fakeConn{}
	}
	u.conns[c.host] = append(u.conns[c.host], c)
	return c, nil
}

func (u *fakeUpstreams) dials(host string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns[host])
}

// playing waits for the n-th (from 0) connection to host to play.
func (u *fakeUpstreams) playing(t *testing.T, host string, n int) *fakeConn {
	t.Helper()
	var c *fakeConn
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		u.mu.Lock()
		defer u.mu.Unlock()
		if len(u.conns[host]) <= n {
			return fmt.Errorf("%d connections to %s", len(u.conns[host]), host)
		}
		c = u.conns[host][n]
		if !c.isPlaying() {
			return fmt.Errorf("connection %d to %s not playing", n, host)
		}
		return nil
	})
	return c
}

// fakeConn is one upstream connection: the test sends its packets (one H.264
// IDR packet per sequence number) and kills it.
type fakeConn struct {
	host string
	mu   sync.Mutex
	cb   func(int, *rtp.Packet)
	once sync.Once
	err  error
	done chan struct{}
}

func (c *fakeConn) Description() *sessionDesc { return h264Desc() }

func (c *fakeConn) Play(cb func(int, *rtp.Packet)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cb = cb
	return nil
}

func (c *fakeConn) Wait() error {
	<-c.done
	return c.err
}

func (c *fakeConn) Close() { c.die(errors.New("closed")) }

func (c *fakeConn) die(err error) {
	c.once.Do(func() {
		c.err = err
		close(c.done)
	})
}

func (c *fakeConn) isPlaying() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cb != nil
}

func (c *fakeConn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// send delivers the packets with sequence numbers seqs (a packet's payload
// carries its sequence number, so the output shows which input it was).
func (c *fakeConn) send(seqs ...uint16) {
	c.mu.Lock()
	cb := c.cb
	c.mu.Unlock()
	for _, seq := range seqs {
		cb(0, &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 7, Marker: true},
			Payload: []byte{0x65, 0x88, byte(seq >> 8), byte(seq)},
		})
	}
}

func seqs(from, to uint16) []uint16 {
	var out []uint16
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// output records the input sequence numbers of the packets a stream wrote.
type output struct {
	mu   sync.Mutex
	seqs []uint16
}

func (o *output) add(_ *stream.Stream, _ int, pkt *rtp.Packet, _ time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seqs = append(o.seqs, uint16(pkt.Payload[2])<<8|uint16(pkt.Payload[3]))
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
		run func(t *testing.T, m *Manager, clk *clock.Fake, pl *movingPlacement, ups *fakeUpstreams, st *stream.Stream, out *output, a *fakeConn)
	}{
		{"upstream dies mid-switch", func(t *testing.T, m *Manager, clk *clock.Fake, pl *movingPlacement, ups *fakeUpstreams, st *stream.Stream, out *output, a *fakeConn) {
			pl.place("origin-b", "m-1")
			seen(t, m, "origin-b")
			b := ups.playing(t, "origin-b", 0)
			b.die(errors.New("connection reset")) // before it caught up
			b2 := ups.playing(t, "origin-b", 1)   // re-dialled after the (fake) backoff
			if a.closed() {
				t.Fatal("the old upstream was let go while the new one had not caught up")
			}
			if w := clk.Waits(); !slices.Contains(w, 100*time.Millisecond) {
				t.Fatalf("backoffs %v, want the first re-pull after 100ms", w)
			}
			a.send(6)
			b2.send(6) // caught up: the pull from b carries the stream, a goes
			testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
				if !a.closed() {
					return errors.New("the pull from origin-a is still open")
				}
				return nil
			})
			b2.send(seqs(7, 10)...)
			out.is(t, seqs(1, 10))
			if b2.closed() {
				t.Fatal("the pull from origin-b was closed")
			}
		}},
		{"two moves in a row", func(t *testing.T, m *Manager, clk *clock.Fake, pl *movingPlacement, ups *fakeUpstreams, st *stream.Stream, out *output, a *fakeConn) {
			pl.place("origin-b", "m-1")
			seen(t, m, "origin-b")
			b := ups.playing(t, "origin-b", 0)
			pl.place("origin-c", "m-2") // before the pull from b caught up
			seen(t, m, "origin-c")
			c := ups.playing(t, "origin-c", 0)
			a.send(6)
			b.send(6) // b is ready, but no longer the placed host: nothing goes
			c.send(6) // c is ready and placed: a and b go
			testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
				if !a.closed() || !b.closed() {
					return fmt.Errorf("pulls still open: origin-a %v, origin-b %v", !a.closed(), !b.closed())
				}
				return nil
			})
			c.send(seqs(7, 10)...)
			out.is(t, seqs(1, 10))
			if c.closed() || ups.dials("origin-b") != 1 || ups.dials("origin-c") != 1 {
				t.Fatalf("origin-c closed %v; dials: origin-b %d, origin-c %d (want 1, 1)",
					c.closed(), ups.dials("origin-b"), ups.dials("origin-c"))
			}
		}},
		{"stream moved back", func(t *testing.T, m *Manager, clk *clock.Fake, pl *movingPlacement, ups *fakeUpstreams, st *stream.Stream, out *output, a *fakeConn) {
			pl.place("origin-b", "m-1")
			seen(t, m, "origin-b")
			b := ups.playing(t, "origin-b", 0)
			pl.place("origin-a", "m-2") // back before the pull from b caught up
			seen(t, m, "origin-a")
			a.send(6)
			b.send(6) // b is ready, but not placed: a stays
			b.die(errors.New("connection reset"))
			testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
				for _, f := range st.Feeds() {
					if f.Host == "origin-b" {
						return errors.New("the feed from origin-b is still there")
					}
				}
				return nil
			})
			a.send(seqs(7, 10)...)
			out.is(t, seqs(1, 10))
			if a.closed() || ups.dials("origin-b") != 1 || ups.dials("origin-a") != 1 {
				t.Fatalf("origin-a closed %v; dials: origin-a %d, origin-b %d (want 1, 1: no re-pull of a host no longer placed)",
					a.closed(), ups.dials("origin-a"), ups.dials("origin-b"))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pl := newMovingPlacement("origin-a")
			ups := &fakeUpstreams{}
			out := &output{}
			clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), true)
			m, _, _ := newManagerWith(t, Config{Self: "edge-1", UpstreamWait: 5 * time.Second},
				Deps{Placements: pl, Hosts: hostURLs{}, Dial: ups.dial, Clock: clk},
				stream.Options{Log: zerolog.Nop(), OnOutput: out.add})
			st, err := m.Serve(testutil.Context(t), "cam-1")
			if err != nil {
				t.Fatal(err)
			}
			a := ups.playing(t, "origin-a", 0)
			a.send(seqs(1, 5)...)
			out.is(t, seqs(1, 5))
			feedOf(t, st, "origin-a")
			tc.run(t, m, clk, pl, ups, st, out, a)
		})
	}
}
