// Package rtsptest holds RTSP test helpers for the ingest service: an
// agent-like publisher that writes one synthetic source (one sequence/timestamp
// space) to one or more hosts at once, a reader that measures what it receives
// with a media.Analyzer, and free UDP port pairs.
package rtsptest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/ferrystream/ferry/libs/media"
)

// UDPPair returns two consecutive free UDP addresses on 127.0.0.1, the first
// with an even port (gortsplib's RTP/RTCP pair).
func UDPPair(t testing.TB) (rtpAddr, rtcpAddr string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := c.LocalAddr().(*net.UDPAddr).Port
		_ = c.Close()
		if p%2 == 1 {
			p--
		}
		if p < 1024 {
			continue
		}
		a, err1 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err1 != nil {
			continue
		}
		b, err2 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p+1))
		_ = a.Close()
		if err2 != nil {
			continue
		}
		_ = b.Close()
		return fmt.Sprintf("127.0.0.1:%d", p), fmt.Sprintf("127.0.0.1:%d", p+1)
	}
	t.Fatal("no free UDP port pair")
	return "", ""
}

// Transport returns a pointer to a transport value.
func Transport(t gortsplib.Protocol) *gortsplib.Protocol { return &t }

// cloneDesc gives each client its own media objects (a client edits the
// description it announces) sharing the formats.
func cloneDesc(d *description.Session) *description.Session {
	out := &description.Session{}
	for _, m := range d.Medias {
		out.Medias = append(out.Medias, &description.Media{Type: m.Type, Formats: m.Formats})
	}
	return out
}

// Agent publishes one synthetic source, like Ferry's publisher agent: the same
// packets (one sequence/timestamp space) go to every connection it holds, so a
// move can be make-before-break. A connection the server closes is dropped.
type Agent struct {
	src media.Source

	// StartDelay, if set, holds back the packets of a new connection for that
	// long after RECORD succeeded (a publisher slow to start sending on its new
	// connection, as over a slow network); the old connections keep them.
	StartDelay time.Duration

	mu    sync.Mutex
	conns []*AgentConn
	sent  atomic.Uint64
}

// AgentConn is one recording connection of an Agent.
type AgentConn struct {
	URL  string
	c    *gortsplib.Client
	desc *description.Session
	done chan struct{}
	err  error

	mu  sync.Mutex
	raw net.Conn // the RTSP connection, for Vanish
}

// Vanish cuts the connection without a TEARDOWN, as a crashed publisher or a
// broken network does.
func (c *AgentConn) Vanish() {
	c.mu.Lock()
	raw := c.raw
	c.mu.Unlock()
	if raw != nil {
		if tc, ok := raw.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not FIN
		}
		_ = raw.Close()
	}
}

// Done is closed when the server ended the connection.
func (c *AgentConn) Done() <-chan struct{} { return c.done }

// Err is why the connection ended (after Done).
func (c *AgentConn) Err() error { return c.err }

// Close closes the connection.
func (c *AgentConn) Close() { c.c.Close() }

// NewAgent returns an agent for src.
func NewAgent(src media.Source) *Agent { return &Agent{src: src} }

// Connect starts recording to url (with its token) over transport tr; packets
// go to it from the next one written on.
func (a *Agent) Connect(url string, tr gortsplib.Protocol) (*AgentConn, error) {
	desc := cloneDesc(a.src.Description())
	ac := &AgentConn{URL: url, desc: desc, done: make(chan struct{})}
	var d net.Dialer
	c := &gortsplib.Client{Protocol: &tr, DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, address)
		if err == nil {
			ac.mu.Lock()
			ac.raw = conn
			ac.mu.Unlock()
		}
		return conn, err
	}}
	ac.c = c
	if err := c.StartRecording(url, desc); err != nil {
		return nil, err
	}
	add := func() {
		select {
		case <-ac.done: // closed before it started
			return
		default:
		}
		a.mu.Lock()
		a.conns = append(a.conns, ac)
		a.mu.Unlock()
	}
	if a.StartDelay > 0 {
		time.AfterFunc(a.StartDelay, add)
	} else {
		add()
	}
	go func() {
		ac.err = c.Wait()
		a.mu.Lock()
		for i, x := range a.conns {
			if x == ac {
				a.conns = append(a.conns[:i], a.conns[i+1:]...)
				break
			}
		}
		a.mu.Unlock()
		close(ac.done)
	}()
	return ac, nil
}

// Conns returns the number of live connections.
func (a *Agent) Conns() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.conns)
}

// Sent returns the number of packets written (to at least one connection).
func (a *Agent) Sent() uint64 { return a.sent.Load() }

// Run paces the source in real time, writing every packet to every
// connection, until ctx ends. Write errors on a connection are ignored (it is
// being closed).
func (a *Agent) Run(ctx context.Context) error {
	medias := a.src.Description().Medias
	index := map[*description.Media]int{}
	for i, m := range medias {
		index[m] = i
	}
	return media.Run(ctx, a.src, func(medi *description.Media, pkt *rtp.Packet) error {
		i := index[medi]
		a.mu.Lock()
		conns := append([]*AgentConn(nil), a.conns...)
		a.mu.Unlock()
		for _, c := range conns {
			_ = c.c.WritePacketRTP(c.desc.Medias[i], pkt)
		}
		a.sent.Add(1)
		return nil
	})
}

// Close closes every connection.
func (a *Agent) Close() {
	a.mu.Lock()
	conns := append([]*AgentConn(nil), a.conns...)
	a.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Sample is one received packet's timing, for clock checks.
type Sample struct {
	Media   int
	Frame   uint64
	HasCnt  bool
	TS      uint32
	NTP     time.Time
	HasNTP  bool
	Arrival time.Time
}

// Reader plays a stream and measures it.
type Reader struct {
	// A measures continuity.
	A *media.Analyzer
	// Desc is the description the server sent.
	Desc *description.Session

	c         *gortsplib.Client
	done      chan struct{}
	err       error
	lost      atomic.Uint64
	decodeErr atomic.Uint64
	frames    atomic.Uint64

	mu        sync.Mutex
	redirects []string
	samples   []Sample
	keep      bool
}

// ReadOptions configure Read.
type ReadOptions struct {
	// KeepSamples records every packet's timing (Samples).
	KeepSamples bool
}

// Read plays url over transport tr and feeds an Analyzer.
func Read(url string, tr gortsplib.Protocol, o ReadOptions) (*Reader, error) {
	u, err := base.ParseURL(url)
	if err != nil {
		return nil, err
	}
	r := &Reader{done: make(chan struct{}), keep: o.KeepSamples}
	r.c = &gortsplib.Client{
		Scheme: u.Scheme, Host: u.Host, Protocol: &tr,
		OnPacketsLost: func(n uint64) { r.lost.Add(n) },
		OnDecodeError: func(error) { r.decodeErr.Add(1) },
		OnServerRequest: func(req *base.Request) {
			if req.Method == base.Method("REDIRECT") {
				r.mu.Lock()
				r.redirects = append(r.redirects, req.Header["Location"]...)
				r.mu.Unlock()
			}
		},
	}
	if err := r.c.Start(); err != nil {
		return nil, err
	}
	desc, _, err := r.c.Describe(u)
	if err != nil {
		r.c.Close()
		return nil, err
	}
	r.Desc = desc
	r.A = media.NewAnalyzer(desc)
	if err := r.c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		r.c.Close()
		return nil, err
	}
	index := map[*description.Media]int{}
	for i, m := range desc.Medias {
		index[m] = i
	}
	r.c.OnPacketRTPAny(func(medi *description.Media, _ format.Format, pkt *rtp.Packet) {
		now := time.Now()
		i := index[medi]
		r.A.Add(i, pkt, now)
		r.frames.Add(1)
		if r.keep {
			s := Sample{Media: i, TS: pkt.Timestamp, Arrival: now}
			s.Frame, s.HasCnt = media.FrameCounter(pkt.Payload)
			s.NTP, s.HasNTP = r.c.PacketNTP(medi, pkt)
			r.mu.Lock()
			r.samples = append(r.samples, s)
			r.mu.Unlock()
		}
	})
	if _, err := r.c.Play(nil); err != nil {
		r.c.Close()
		return nil, err
	}
	go func() {
		r.err = r.c.Wait()
		close(r.done)
	}()
	return r, nil
}

// Packets returns the number of packets received.
func (r *Reader) Packets() uint64 { return r.frames.Load() }

// Lost returns what gortsplib reported lost.
func (r *Reader) Lost() uint64 { return r.lost.Load() }

// DecodeErrors returns gortsplib's decode errors (wrong SSRC among them).
func (r *Reader) DecodeErrors() uint64 { return r.decodeErr.Load() }

// Done is closed when the reader's connection ended.
func (r *Reader) Done() <-chan struct{} { return r.done }

// Err returns why the connection ended (after Done).
func (r *Reader) Err() error { return r.err }

// Redirects returns the Location of every REDIRECT received.
func (r *Reader) Redirects() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.redirects...)
}

// Samples returns the recorded samples (KeepSamples).
func (r *Reader) Samples() []Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Sample(nil), r.samples...)
}

// Close ends the reader.
func (r *Reader) Close() { r.c.Close() }

// Continuity checks a report for a gap-free stream: frames counted and none
// missing or duplicated, one SSRC, no sequence gaps or repeats, no timestamp
// going backwards, on every media.
func Continuity(rep media.Report) error {
	var errs []error
	for _, m := range rep.Medias {
		if m.Frames == 0 {
			errs = append(errs, fmt.Errorf("media %d: no frame received", m.Media))
		}
		if m.FramesMissing != 0 || m.DuplicateFrames != 0 {
			errs = append(errs, fmt.Errorf("media %d: %d frames missing, %d duplicated", m.Media, m.FramesMissing, m.DuplicateFrames))
		}
		if m.SSRCChanges != 0 {
			errs = append(errs, fmt.Errorf("media %d: %d SSRC changes", m.Media, m.SSRCChanges))
		}
		if m.SeqGaps != 0 || m.SeqBackwards != 0 {
			errs = append(errs, fmt.Errorf("media %d: %d sequence gaps (%d packets), %d backwards", m.Media, m.SeqGaps, m.SeqGapPackets, m.SeqBackwards))
		}
		if m.TSBackwards != 0 {
			errs = append(errs, fmt.Errorf("media %d: %d timestamps backwards", m.Media, m.TSBackwards))
		}
	}
	return errors.Join(errs...)
}
