package guard

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/testutil"
)

// TestPendingCount: a connection leaves the per-IP count when it gets a
// session, comes back when it loses it, and leaves for good when it closes
// (twice, as gortsplib and a TLS layer may both close it).
func TestPendingCount(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, Config{HandshakeTimeout: time.Minute, MaxPendingPerIP: 8, Log: zerolog.Nop()})
	defer l.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var conns []*Conn
	for i := 0; i < 3; i++ {
		cc, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		conns = append(conns, Of(<-accepted))
	}
	check := func(want int) {
		t.Helper()
		if got := l.Pending("127.0.0.1"); got != want {
			t.Fatalf("pending %d, want %d", got, want)
		}
	}
	check(3)
	conns[0].RequestStarted()
	conns[0].RequestDone(true, true)
	check(2)
	conns[0].RequestDone(true, true)
	check(2)
	conns[0].RequestDone(false, true) // session gone, connection kept
	check(3)
	conns[1].RequestDone(true, true)
	check(2)
	for _, c := range conns {
		_ = c.Close()
		_ = c.Close()
	}
	check(0)
}

// TestTimeoutStopsWhileHandled: a request being handled is not cut by the
// handshake timer; once answered without a session, the timer runs again.
func TestTimeoutStopsWhileHandled(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, Config{HandshakeTimeout: 100 * time.Millisecond, Log: zerolog.Nop()})
	defer l.Close()
	cc, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	nc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := Of(nc)
	c.RequestStarted()
	// handled for three timeouts: still open (the handler's own clock, a
	// ticker, decides when it answers; the test checks the state after)
	tick := time.NewTicker(100 * time.Millisecond)
	for i := 0; i < 3; i++ {
		<-tick.C
	}
	tick.Stop()
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		t.Fatal("closed while a request was handled")
	}
	c.RequestDone(false, true)
	testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.closed {
			return errors.New("not closed after the request was answered")
		}
		return nil
	})
}
