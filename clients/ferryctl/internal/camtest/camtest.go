// Package camtest is an in-process RTSP camera for tests: a gortsplib server
// with one path fed by libs/media's FakeH264 (frame counters, 100 fps, GOP
// 25) from the first PLAY on, that can drop a frame or pause (a frozen
// source: no packets, no frame counted missing) on request.
package camtest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/ferrystream/ferry/libs/media"
)

// Cam is a running test camera. URL is rtsp://127.0.0.1:<port>/cam.
type Cam struct {
	URL string

	server *gortsplib.Server
	stream *gortsplib.ServerStream

	drop    atomic.Bool
	dropped atomic.Int64 // counter of the dropped frame, -1 if none
	paused  atomic.Bool
	written atomic.Int64 // frames written so far

	playOnce  sync.Once
	playing   chan struct{}
	stopOnce  sync.Once
	stop      chan struct{}
	closeOnce sync.Once
	done      chan struct{}
}

// OnDescribe serves the camera's stream on any path.
func (c *Cam) OnDescribe(*gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

// OnSetup serves the camera's stream on any path.
func (c *Cam) OnSetup(*gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return &base.Response{StatusCode: base.StatusOK}, c.stream, nil
}

// OnPlay starts the frames at the first PLAY.
func (c *Cam) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	c.playOnce.Do(func() { close(c.playing) })
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// Start runs a camera until the test ends; udp also serves RTP over UDP.
func Start(t testing.TB, udp bool) *Cam {
	t.Helper()
	src, err := media.NewFakeH264(media.FakeConfig{FPS: 100, GOP: 25})
	if err != nil {
		t.Fatal(err)
	}
	c := &Cam{playing: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	c.dropped.Store(-1)
	addrCh := make(chan string, 1)
	var once sync.Once
	c.server = &gortsplib.Server{
		Handler:     c,
		RTSPAddress: "127.0.0.1:0",
		Listen: func(network, address string) (net.Listener, error) {
			l, err := net.Listen(network, address)
			if err == nil {
				once.Do(func() { addrCh <- l.Addr().String() })
			}
			return l, err
		},
	}
	if udp {
		p, err := freeUDPPair()
		if err != nil {
			t.Fatal(err)
		}
		c.server.UDPRTPAddress = fmt.Sprintf("127.0.0.1:%d", p)
		c.server.UDPRTCPAddress = fmt.Sprintf("127.0.0.1:%d", p+1)
	}
	if err := c.server.Start(); err != nil {
		t.Fatal(err)
	}
	c.stream = &gortsplib.ServerStream{Server: c.server, Desc: src.Description()}
	if err := c.stream.Initialize(); err != nil {
		t.Fatal(err)
	}
	c.URL = "rtsp://" + <-addrCh + "/cam"
	t.Cleanup(func() {
		c.Halt()
		<-c.done
		c.CloseStream()
		c.server.Close()
	})
	go func() {
		defer close(c.done)
		select {
		case <-c.playing:
		case <-c.stop:
			return
		}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-tick.C:
			}
			if c.paused.Load() {
				continue
			}
			frame, pkts, _ := src.NextFrame()
			if c.drop.CompareAndSwap(true, false) {
				c.dropped.Store(int64(frame))
				continue
			}
			for _, pkt := range pkts {
				_ = c.stream.WritePacketRTP(c.stream.Desc.Medias[0], pkt)
			}
			c.written.Add(1)
		}
	}()
	return c
}

// DropNext makes the camera skip its next frame (every packet of it).
func (c *Cam) DropNext() { c.drop.Store(true) }

// Dropped is the counter of the dropped frame, or -1 before it was dropped.
func (c *Cam) Dropped() int64 { return c.dropped.Load() }

// Pause freezes the camera: it writes nothing until Resume, and then goes
// on with the next frame counter (nothing is missing, the stream stalled).
func (c *Cam) Pause() { c.paused.Store(true) }

// Resume ends a Pause.
func (c *Cam) Resume() { c.paused.Store(false) }

// Written is the number of frames written so far.
func (c *Cam) Written() int64 { return c.written.Load() }

// Halt stops writing frames.
func (c *Cam) Halt() { c.stopOnce.Do(func() { close(c.stop) }) }

// CloseStream ends every reader session (once).
func (c *Cam) CloseStream() { c.closeOnce.Do(c.stream.Close) }

func freeUDPPair() (int, error) {
	for range 50 {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		if p%2 == 1 || p >= 65535 {
			continue
		}
		c1, err1 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		c2, err2 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p+1))
		if c1 != nil {
			c1.Close()
		}
		if c2 != nil {
			c2.Close()
		}
		if err1 == nil && err2 == nil {
			return p, nil
		}
	}
	return 0, errors.New("no free UDP port pair")
}
