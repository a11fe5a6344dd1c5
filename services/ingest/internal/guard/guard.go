// Package guard wraps the RTSP server's TCP listener with the connection
// hygiene gortsplib does not have: a connection that does not complete a
// request within the handshake timeout while it holds no session is closed,
// and one remote IP may hold only so many connections without a session.
//
// gortsplib has no hook between accepting a connection and parsing its first
// request, so the guard sits below it, as the net.Listener the server's Listen
// function returns. The server's handler tells the guard when a request has
// been read (RequestStarted) and answered (RequestDone, with whether the
// connection now holds a session and whether the answer was a success); the
// guard owns the timer and the counts.
//
// Only a successful answer (status below 400) restarts the handshake timer: a
// connection that keeps sending requests that are refused (404 DESCRIBE, 501
// GET_PARAMETER without a session, 461 SETUP) spends the same timeout as a
// silent one, the time its requests are being handled excepted.
package guard

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Reasons a connection is closed by the guard, as logged and counted.
const (
	ReasonHandshakeTimeout = "handshake_timeout"
	ReasonPerIPCap         = "per_ip_cap"
	ReasonHTTPTunnel       = "http_tunnel"
)

// ErrHTTPTunnel is returned by a connection's Read when it opens with an HTTP
// request (RTSP over HTTP or WebSocket tunnelling, which Ferry does not offer).
var ErrHTTPTunnel = errors.New("RTSP over HTTP tunnelling is not served")

// Config configures a Listener.
type Config struct {
	// HandshakeTimeout is how long a connection without a session may go
	// without completing a request; 0 disables the timer.
	HandshakeTimeout time.Duration
	// MaxPendingPerIP caps the connections without a session per remote IP;
	// 0 = no cap.
	MaxPendingPerIP int
	// Log receives one line per closed connection (the per-IP refusals at
	// most once a second per IP).
	Log zerolog.Logger
	// OnClose is called with the reason of every connection the guard closes
	// (metrics); optional.
	OnClose func(reason string)
}

// Listener is a net.Listener whose connections are guarded.
type Listener struct {
	net.Listener
	cfg Config

	// mu guards pending and lastCapLog.
	mu         sync.Mutex
	pending    map[string]int // remote IP -> connections without a session
	lastCapLog map[string]time.Time
}

// New wraps ln.
func New(ln net.Listener, cfg Config) *Listener {
	return &Listener{Listener: ln, cfg: cfg, pending: map[string]int{}, lastCapLog: map[string]time.Time{}}
}

// Accept returns the next connection that the per-IP cap admits; the others
// are closed at once.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(nc)
		l.mu.Lock()
		if l.cfg.MaxPendingPerIP > 0 && l.pending[ip] >= l.cfg.MaxPendingPerIP {
			logIt := time.Since(l.lastCapLog[ip]) >= time.Second
			if logIt {
				l.lastCapLog[ip] = time.Now()
			}
			n := l.pending[ip]
			l.mu.Unlock()
			// logged and counted before the close, so whoever sees the close
			// finds both (as for the other reasons)
			if logIt {
				l.cfg.Log.Warn().Str("remote", nc.RemoteAddr().String()).Str("reason", ReasonPerIPCap).Int("pending", n).
					Msg("connection refused: too many connections without a session from this IP")
			}
			l.closed(ReasonPerIPCap)
			_ = nc.Close()
			continue
		}
		l.pending[ip]++
		l.mu.Unlock()
		c := &Conn{Conn: nc, l: l, ip: ip, pending: true}
		if l.cfg.HandshakeTimeout > 0 {
			c.mu.Lock() // expire takes it: the timer is set before it can fire
			c.left, c.armed = l.cfg.HandshakeTimeout, time.Now()
			c.timer = time.AfterFunc(l.cfg.HandshakeTimeout, c.expire)
			c.mu.Unlock()
		}
		return c, nil
	}
}

// Pending returns the number of connections without a session from ip.
func (l *Listener) Pending(ip string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending[ip]
}

func (l *Listener) closed(reason string) {
	if l.cfg.OnClose != nil {
		l.cfg.OnClose(reason)
	}
}

func (l *Listener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending[ip]--; l.pending[ip] <= 0 {
		delete(l.pending, ip)
		delete(l.lastCapLog, ip)
	}
}

func (l *Listener) hold(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending[ip]++
}

func remoteIP(nc net.Conn) string {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(nc.RemoteAddr().String())
	if err != nil {
		return nc.RemoteAddr().String()
	}
	return host
}

// Conn is a guarded connection. Its RemoteAddr is the accepted one (a
// *net.TCPAddr, which gortsplib relies on).
type Conn struct {
	net.Conn
	l  *Listener
	ip string

	// mu guards everything below.
	mu      sync.Mutex
	timer   *time.Timer
	left    time.Duration // handshake time left when the timer was last armed
	armed   time.Time     // when the timer was last armed; zero while stopped
	pending bool          // counted in l.pending
	closed  bool

	// head holds the first bytes read, to refuse HTTP tunnelling; only Read
	// touches it (gortsplib reads a connection from one goroutine).
	head  [4]byte
	nhead int
}

// Of returns the guarded connection below nc (a gortsplib ServerConn's
// NetConn, TLS or not), or nil.
func Of(nc net.Conn) *Conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*Conn)
	return c
}

// Read reads from the connection; a connection that opens with an HTTP
// request is closed (gortsplib would otherwise start a tunnel whose RTSP
// requests the guard cannot attribute to this connection).
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.nhead < len(c.head) && n > 0 {
		c.nhead += copy(c.head[c.nhead:], b[:n])
		if c.nhead == len(c.head) && (bytes.Equal(c.head[:], []byte("GET ")) || bytes.Equal(c.head[:], []byte("POST"))) {
			c.l.cfg.Log.Warn().Str("remote", c.RemoteAddr().String()).Str("reason", ReasonHTTPTunnel).
				Msg("connection closed: RTSP over HTTP tunnelling is not served")
			c.l.closed(ReasonHTTPTunnel)
			_ = c.Close()
			return 0, ErrHTTPTunnel
		}
	}
	return n, err
}

// RequestStarted tells the guard a complete request has been read: the
// timer stops while it is handled (an edge's DESCRIBE may wait for its
// upstream), keeping the time that was left.
func (c *Conn) RequestStarted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer == nil || c.armed.IsZero() {
		return
	}
	c.timer.Stop()
	c.left -= time.Since(c.armed)
	c.armed = time.Time{}
}

// minLeft is the least time a refused request leaves a connection whose
// handshake time has run out: its answer is written before it is closed.
const minLeft = 10 * time.Millisecond

// RequestDone tells the guard a request has been answered, whether the
// connection now holds a session and whether the answer was a success
// (status below 400). With a session, the connection is no longer counted
// and gortsplib's own timeouts apply; without one, the handshake timer runs
// again: from the full timeout after a success, from what was left after a
// refusal.
func (c *Conn) RequestDone(hasSession, success bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	switch {
	case hasSession && c.pending:
		c.pending = false
		c.l.release(c.ip)
	case !hasSession && !c.pending:
		c.pending = true
		c.l.hold(c.ip)
	}
	if c.timer == nil {
		return
	}
	c.timer.Stop()
	if hasSession {
		c.armed = time.Time{}
		return
	}
	if success || c.left > c.l.cfg.HandshakeTimeout {
		c.left = c.l.cfg.HandshakeTimeout
	} else if !c.armed.IsZero() {
		// answered without RequestStarted (gortsplib refused it itself)
		c.left -= time.Since(c.armed)
	}
	c.left = max(c.left, minLeft)
	c.armed = time.Now()
	c.timer.Reset(c.left)
}

func (c *Conn) expire() {
	c.mu.Lock()
	if c.closed || !c.pending {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.l.cfg.Log.Info().Str("remote", c.RemoteAddr().String()).Str("reason", ReasonHandshakeTimeout).
		Dur("timeout", c.l.cfg.HandshakeTimeout).Msg("connection closed: no complete request and no session within the handshake timeout")
	c.l.closed(ReasonHandshakeTimeout)
	_ = c.Close()
}

// Close closes the connection and releases its place in the per-IP count.
func (c *Conn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		if c.timer != nil {
			c.timer.Stop()
		}
		if c.pending {
			c.pending = false
			c.l.release(c.ip)
		}
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
