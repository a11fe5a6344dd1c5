// Package upstreamtest is an in-memory upstream for the tests of the
// packages that pull (edge, camera): a dialer whose connections the test
// drives packet by packet and kills at will.
package upstreamtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/ingest/internal/upstream"
)

// ErrRefused is the error of a dial the test refused.
var ErrRefused = errors.New("upstreamtest: connection refused")

// H264 returns a description of one H.264 video media.
func H264() *description.Session {
	return &description.Session{Medias: []*description.Media{{
		Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}},
	}}}
}

// Dialer opens Conns; its Dial is an upstream.DialFunc. The zero value is
// ready to use.
type Dialer struct {
	mu     sync.Mutex
	conns  map[string][]*Conn // by URL host name, in dial order
	refuse int
	dials  int
	opts   upstream.Options // of the last dial
}

var _ upstream.DialFunc = (*Dialer)(nil).Dial

// Dial implements upstream.DialFunc.
func (d *Dialer) Dial(_ context.Context, rawURL string, o upstream.Options) (upstream.Source, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dials++
	d.opts = o
	if d.refuse > 0 {
		d.refuse--
		return nil, ErrRefused
	}
	c := &Conn{Host: u.Hostname(), done: make(chan struct{})}
	if d.conns == nil {
		d.conns = map[string][]*Conn{}
	}
	d.conns[c.Host] = append(d.conns[c.Host], c)
	return c, nil
}

// Refuse makes the next n dials fail with ErrRefused.
func (d *Dialer) Refuse(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refuse = n
}

// Dials returns the number of dials so far, refused ones included.
func (d *Dialer) Dials() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials
}

// Options returns the options of the last dial.
func (d *Dialer) Options() upstream.Options {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.opts
}

// Conns returns the number of connections opened to host.
func (d *Dialer) Conns(host string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.conns[host])
}

// Playing waits for the n-th (from 0) connection to host to play.
func (d *Dialer) Playing(t testing.TB, host string, n int) *Conn {
	t.Helper()
	var c *Conn
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.conns[host]) <= n {
			return fmt.Errorf("%d connections to %s, waiting for #%d", len(d.conns[host]), host, n+1)
		}
		c = d.conns[host][n]
		if !c.playing() {
			return fmt.Errorf("connection #%d to %s not playing", n+1, host)
		}
		return nil
	})
	return c
}

// Conn is one fake connection (an upstream.Source): the test sends its
// packets and kills it; Close ends it too.
type Conn struct {
	// Host is the host name of the URL dialled.
	Host string

	mu   sync.Mutex
	cb   func(int, *rtp.Packet)
	once sync.Once
	err  error
	done chan struct{}
}

// Description implements upstream.Source (H264).
func (c *Conn) Description() *description.Session { return H264() }

// Play implements upstream.Source.
func (c *Conn) Play(cb func(int, *rtp.Packet)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cb = cb
	return nil
}

// Wait implements upstream.Source.
func (c *Conn) Wait() error {
	<-c.done
	return c.err
}

// Close implements upstream.Source.
func (c *Conn) Close() { c.Die(errors.New("closed")) }

// Die ends the connection with err (the upstream went away).
func (c *Conn) Die(err error) {
	c.once.Do(func() {
		c.err = err
		close(c.done)
	})
}

// Closed reports whether the connection ended.
func (c *Conn) Closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *Conn) playing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cb != nil
}

// Send delivers one H.264 IDR packet per sequence number to the player;
// Seq tells the input sequence number of an output packet.
func (c *Conn) Send(seqs ...uint16) {
	c.mu.Lock()
	cb := c.cb
	c.mu.Unlock()
	for _, seq := range seqs {
		cb(0, Packet(seq))
	}
}

// Packet returns an H.264 IDR packet whose payload carries seq.
func Packet(seq uint16) *rtp.Packet {
	return &rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 7, Marker: true},
		Payload: []byte{0x65, 0x88, byte(seq >> 8), byte(seq)},
	}
}

// Seq returns the input sequence number a Packet carries.
func Seq(pkt *rtp.Packet) uint16 { return uint16(pkt.Payload[2])<<8 | uint16(pkt.Payload[3]) }

// Seqs returns from, from+1, ..., to.
func Seqs(from, to uint16) []uint16 {
	var out []uint16
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}
