package origin

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/libs/token"
	"github.com/ferrystream/ferry/services/ingest/internal/config"
)

const hygieneSecret = "hygiene-secret"

// startNode starts an origin+edge node on 127.0.0.1 whose placements put
// every stream here and whose edge resolver knows none; its log lines go to
// the returned buffer.
func startNode(t *testing.T, mut func(*config.Config)) (*Node, *testutil.Buffer) {
	t.Helper()
	cfg := config.Default()
	cfg.HostID = "ingest-h"
	cfg.RTSPAddr = "127.0.0.1:0"
	cfg.PublicURL = "rtsp://127.0.0.1:0"
	cfg.TokenSecret = hygieneSecret
	cfg.UpstreamWait = 100 * time.Millisecond
	if mut != nil {
		mut(&cfg)
	}
	logs := &testutil.Buffer{}
	n, err := New(cfg, Deps{Log: zerolog.New(logs), Placements: placedHere("ingest-h"), Sessions: noSessions{},
		Resolver: resolveNothing{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n, logs
}

// rawConn is an RTSP client that writes bytes as given.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) write(s string) {
	rc.t.Helper()
	if _, err := rc.c.Write([]byte(s)); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// do sends one request and returns the status code and the response head.
func (rc *rawConn) do(s string) (int, string, error) {
	rc.t.Helper()
	_ = rc.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := rc.c.Write([]byte(s)); err != nil {
		return 0, "", err
	}
	var head strings.Builder
	length := 0
	for {
		line, err := rc.r.ReadString('\n')
		if err != nil {
			return 0, head.String(), err
		}
		head.WriteString(line)
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if line == "\r\n" {
			break
		}
	}
	if length > 0 {
		if _, err := rc.r.Discard(length); err != nil {
			return 0, head.String(), err
		}
	}
	f := strings.Fields(head.String())
	if len(f) < 2 {
		return 0, head.String(), fmt.Errorf("bad status line %q", head.String())
	}
	code, err := strconv.Atoi(f[1])
	return code, head.String(), err
}

// closedByServer reports nil once the server has closed the connection (a
// read ends with EOF or a reset rather than the short deadline).
func (rc *rawConn) closedByServer() error {
	_ = rc.c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := rc.r.ReadByte()
	var ne net.Error
	switch {
	case err == nil:
		return errors.New("connection still sends data")
	case errors.As(err, &ne) && ne.Timeout():
		return errors.New("connection still open")
	}
	return nil
}

// pubURL is a stream's publish URL with a valid token.
func pubURL(addr, stream string) string {
	tok, _ := token.Sign([]byte(hygieneSecret), token.Claims{Stream: stream, Host: "ingest-h", Session: "s-" + stream,
		Expires: time.Now().Add(time.Hour)})
	return "rtsp://" + addr + "/" + stream + "?token=" + tok
}

func announceReq(addr, stream string, medias int, cseq int) string {
	return announceURL(pubURL(addr, stream), medias, cseq)
}

func announceURL(url string, medias int, cseq int) string {
	body := "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
	for i := 0; i < medias; i++ {
		body += fmt.Sprintf("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:trackID=%d\r\n", i)
	}
	return req("ANNOUNCE", url, cseq, "Content-Type: application/sdp\r\n", body)
}

// TestHandshakeTimeout: a connection that completes no request within
// INGEST_HANDSHAKE_TIMEOUT is closed, whatever it sent. (gortsplib v5 alone
// would hold the first three until its 60 s idle timeout, and the ones that
// stop before 4 bytes forever.)
func TestHandshakeTimeout(t *testing.T) {
	n, logs := startNode(t, func(c *config.Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	for _, tc := range []struct{ name, in string }{
		{"nothing sent", ""},
		{"two bytes", "OP"},
		{"half-sent request", "DESCRIBE rtsp://" + n.Addr() + "/cam RTSP/1.0\r\nCSeq: 1\r\n"},
		{"stray interleaved frame, cut short", "$\x00\x00\x10\x80\x60\x00\x01"},
		{"body shorter than its Content-Length", "ANNOUNCE rtsp://" + n.Addr() + "/cam RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 100\r\n\r\nv=0\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, n.Addr())
			rc.write(tc.in)
			start := time.Now()
			testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, rc.closedByServer)
			if d := time.Since(start); d < 250*time.Millisecond {
				t.Errorf("closed after %v, before the 300ms handshake timeout", d)
			}
		})
	}
	if !strings.Contains(logs.String(), `"reason":"handshake_timeout"`) {
		t.Errorf("no handshake_timeout log line:\n%s", logs.String())
	}
}

// TestHandshakeTimeoutSparesActiveConnsAndSessions: valid requests restart
// the timer, a connection holding a session is left to gortsplib's timeouts,
// and a connection that stops sending valid requests is closed.
func TestHandshakeTimeoutSparesActiveConnsAndSessions(t *testing.T) {
	n, _ := startNode(t, func(c *config.Config) { c.HandshakeTimeout = 400 * time.Millisecond })
	addr := n.Addr()

	// a publisher session (ANNOUNCE, SETUP; never RECORDs)
	pub := dialRaw(t, addr)
	u := pubURL(addr, "cam")
	if code, head, err := pub.do(announceURL(u, 1, 1)); err != nil || code != 200 {
		t.Fatalf("ANNOUNCE: %d %v\n%s", code, err, head)
	}
	code, head, err := pub.do(req("SETUP", u+"/trackID=0", 2, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n", ""))
	if err != nil || code != 200 {
		t.Fatalf("SETUP: %d %v\n%s", code, err, head)
	}
	session := sessionRe.FindStringSubmatch(head)
	if session == nil {
		t.Fatalf("no session in %s", head)
	}

	// a session-less connection that keeps asking: 12 OPTIONS 100 ms apart,
	// three times the handshake timeout in all
	active := dialRaw(t, addr)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < 12; i++ {
		<-tick.C
		if code, head, err := active.do(req("OPTIONS", "rtsp://"+addr+"/", 10+i, "", "")); err != nil || code != 200 {
			t.Fatalf("OPTIONS %d on an active connection: %d %v\n%s", i, code, err, head)
		}
	}
	// the session's connection has been silent for 1.2 s: still served
	if code, head, err := pub.do(req("OPTIONS", "rtsp://"+addr+"/cam", 3, "Session: "+session[1]+"\r\n", "")); err != nil || code != 200 {
		t.Fatalf("OPTIONS on the session's connection after 1.2 s: %d %v\n%s", code, err, head)
	}
	// the active connection, once silent, goes
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, active.closedByServer)
}

// TestPendingPerIPCap: one IP may hold MaxPendingPerIP connections without a
// session; more are closed on accept, and a connection that gets a session
// frees its place.
func TestPendingPerIPCap(t *testing.T) {
	n, logs := startNode(t, func(c *config.Config) { c.MaxPendingPerIP = 2 })
	addr := n.Addr()
	var held []*rawConn
	for i := 0; i < 2; i++ {
		rc := dialRaw(t, addr)
		if code, _, err := rc.do(req("OPTIONS", "rtsp://"+addr+"/", 1, "", "")); err != nil || code != 200 {
			t.Fatalf("conn %d: %d %v", i, code, err)
		}
		held = append(held, rc)
	}
	over := dialRaw(t, addr)
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, over.closedByServer)
	if !strings.Contains(logs.String(), `"reason":"per_ip_cap"`) {
		t.Errorf("no per_ip_cap log line:\n%s", logs.String())
	}
	for _, rc := range held {
		if code, _, err := rc.do(req("OPTIONS", "rtsp://"+addr+"/", 2, "", "")); err != nil || code != 200 {
			t.Fatalf("a held connection was closed: %d %v", code, err)
		}
	}

	// the first one becomes a publisher session: a place frees up
	if code, head, err := held[0].do(announceReq(addr, "cam", 1, 3)); err != nil || code != 200 {
		t.Fatalf("ANNOUNCE: %d %v\n%s", code, err, head)
	}
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		rc := dialRaw(t, addr)
		defer rc.c.Close()
		if code, _, err := rc.do(req("OPTIONS", "rtsp://"+addr+"/", 1, "", "")); err != nil || code != 200 {
			return fmt.Errorf("new connection after a session freed a place: %d %v", code, err)
		}
		return nil
	})
}

// evenPortPair returns two free UDP ports p, p+1 with p even.
func evenPortPair(t *testing.T) (int, int) {
	t.Helper()
	for i := 0; i < 50; i++ {
		p := testutil.FreePort(t) &^ 1
		a, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		b, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p+1))
		_ = a.Close()
		if err != nil {
			continue
		}
		_ = b.Close()
		return p, p + 1
	}
	t.Fatal("no free even UDP port pair")
	return 0, 0
}

// TestSetupImpossibleTransport: SETUP with channels or ports that cannot
// carry RTP is answered 461 and the connection stays usable; possible ones
// get past the check (404: the stream does not exist).
func TestSetupImpossibleTransport(t *testing.T) {
	rtpPort, rtcpPort := evenPortPair(t)
	n, logs := startNode(t, func(c *config.Config) {
		c.UDPRTPAddr = fmt.Sprintf("127.0.0.1:%d", rtpPort)
		c.UDPRTCPAddr = fmt.Sprintf("127.0.0.1:%d", rtcpPort)
	})
	addr := n.Addr()
	for _, tc := range []struct {
		name, transport string
		want            int
	}{
		{"tcp 0-1", "RTP/AVP/TCP;unicast;interleaved=0-1", 404},
		{"tcp 254-255", "RTP/AVP/TCP;unicast;interleaved=254-255", 404},
		{"tcp channel 255-256", "RTP/AVP/TCP;unicast;interleaved=255-256", 461},
		{"tcp channels 300-301", "RTP/AVP/TCP;unicast;interleaved=300-301", 461},
		{"udp 5000-5001", "RTP/AVP;unicast;client_port=5000-5001", 404},
		{"udp port 0", "RTP/AVP;unicast;client_port=0-1", 461},
		{"udp port above 65535", "RTP/AVP;unicast;client_port=70000-70001", 461},
		{"udp odd rtp port", "RTP/AVP;unicast;client_port=5001-5002", 461},
		{"udp rtcp not next", "RTP/AVP;unicast;client_port=5000-5003", 461},
		{"udp single port 65535", "RTP/AVP;unicast;client_port=65535", 461},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			code, head, err := rc.do(req("SETUP", "rtsp://"+addr+"/cam/trackID=0", 1, "Transport: "+tc.transport+"\r\n", ""))
			if err != nil || code != tc.want {
				t.Fatalf("SETUP %s: got %d (%v), want %d\n%s", tc.transport, code, err, tc.want, head)
			}
			// still usable
			if code, _, err := rc.do(req("OPTIONS", "rtsp://"+addr+"/", 2, "", "")); err != nil || code != 200 {
				t.Fatalf("OPTIONS after the SETUP: %d %v", code, err)
			}
		})
	}
	if !strings.Contains(logs.String(), `"reason":"bad_transport"`) {
		t.Errorf("no bad_transport log line:\n%s", logs.String())
	}
}

// TestPathValidation: paths with dot segments, control bytes, too many bytes
// or another shape than a stream name, and announcements with too many
// tracks, are answered 400 with a log line naming the reason, for readers
// (DESCRIBE, SETUP) and publishers (ANNOUNCE) alike.
func TestPathValidation(t *testing.T) {
	n, logs := startNode(t, func(c *config.Config) { c.MaxTracks = 4 })
	addr := n.Addr()
	long := strings.Repeat("a", 300)
	for _, tc := range []struct {
		name, request, reason string
	}{
		{"describe dot dot", req("DESCRIBE", "rtsp://"+addr+"/cam/../../etc/passwd", 1, "", ""), "path_dot_segment"},
		{"describe dot", req("DESCRIBE", "rtsp://"+addr+"/./cam", 1, "", ""), "path_dot_segment"},
		{"describe NUL", req("DESCRIBE", "rtsp://"+addr+"/ca%00m", 1, "", ""), "path_control_byte"},
		{"describe escape", req("DESCRIBE", "rtsp://"+addr+"/ca%1bm", 1, "", ""), "path_control_byte"},
		{"describe too long", req("DESCRIBE", "rtsp://"+addr+"/"+long, 1, "", ""), "path_too_long"},
		{"describe nested", req("DESCRIBE", "rtsp://"+addr+"/a/b", 1, "", ""), "bad_path"},
		{"setup dot dot", req("SETUP", "rtsp://"+addr+"/../cam/trackID=0", 1, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n", ""), "path_dot_segment"},
		{"setup NUL", req("SETUP", "rtsp://"+addr+"/c%00am/trackID=0", 1, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n", ""), "path_control_byte"},
		{"announce dot dot", strings.Replace(announceReq(addr, "cam", 1, 1), "/cam?", "/../cam?", 1), "path_dot_segment"},
		{"announce too long", strings.Replace(announceReq(addr, "cam", 1, 1), "/cam?", "/"+long+"?", 1), "path_too_long"},
		{"announce too many tracks", announceReq(addr, "cam", 5, 1), "too_many_tracks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			code, head, err := rc.do(tc.request)
			if err != nil || code != 400 {
				t.Fatalf("got %d (%v), want 400\n%s", code, err, head)
			}
			testutil.CheckFor(t, 2*time.Second, 20*time.Millisecond, func() error {
				if !strings.Contains(logs.String(), `"reason":"`+tc.reason+`"`) {
					return fmt.Errorf("no log line with reason %s", tc.reason)
				}
				return nil
			})
		})
	}
	// a valid announcement within the bound is accepted
	rc := dialRaw(t, addr)
	if code, head, err := rc.do(announceReq(addr, "cam", 4, 1)); err != nil || code != 200 {
		t.Fatalf("ANNOUNCE with 4 tracks: %d %v\n%s", code, err, head)
	}
	if testing.Verbose() {
		fmt.Fprint(os.Stderr, logs.String())
	}
}

// TestHTTPTunnelRefused: gortsplib v5 serves RTSP over HTTP and WebSocket
// tunnels; Ferry never did (v4 had none) and the guard could not time the
// tunnelled requests, so such connections are closed at their first bytes.
func TestHTTPTunnelRefused(t *testing.T) {
	n, logs := startNode(t, nil)
	for _, tc := range []struct{ name, in string }{
		{"http get", "GET /cam HTTP/1.1\r\nHost: x\r\nAccept: application/x-rtsp-tunnelled\r\nx-sessioncookie: abc\r\n\r\n"},
		{"http post", "POST /cam HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-rtsp-tunnelled\r\nx-sessioncookie: abc\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, n.Addr())
			rc.write(tc.in)
			testutil.CheckFor(t, 2*time.Second, 20*time.Millisecond, rc.closedByServer)
		})
	}
	testutil.CheckFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), `"reason":"http_tunnel"`) {
			return errors.New("no http_tunnel log line")
		}
		return nil
	})
}

// refusedSetups are SETUPs the handler refuses after gortsplib has created
// their session (it keeps it, with a Session header in the answer).
var refusedSetups = []struct{ name, transport string }{
	{"461 impossible channels", "RTP/AVP/TCP;unicast;interleaved=300-301"},
	{"404 no such stream", "RTP/AVP/TCP;unicast;interleaved=0-1"},
}

// TestRefusedSetupHoldsNoSession: a connection whose SETUP was refused holds
// no session for the guard: it is closed at the handshake timeout and keeps
// its place in the per-IP count.
func TestRefusedSetupHoldsNoSession(t *testing.T) {
	t.Run("handshake timeout", func(t *testing.T) {
		n, _ := startNode(t, func(c *config.Config) { c.HandshakeTimeout = 300 * time.Millisecond })
		addr := n.Addr()
		for _, tc := range refusedSetups {
			t.Run(tc.name, func(t *testing.T) {
				rc := dialRaw(t, addr)
				code, head, err := rc.do(req("SETUP", "rtsp://"+addr+"/nosuch/trackID=0", 1, "Transport: "+tc.transport+"\r\n", ""))
				if err != nil || code < 400 {
					t.Fatalf("SETUP: %d %v\n%s", code, err, head)
				}
				// gortsplib alone would keep it until its 60 s idle timeout
				testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, rc.closedByServer)
			})
		}
	})
	t.Run("per-IP cap", func(t *testing.T) {
		n, logs := startNode(t, func(c *config.Config) { c.MaxPendingPerIP = 2; c.HandshakeTimeout = time.Minute })
		addr := n.Addr()
		for i, tc := range refusedSetups {
			rc := dialRaw(t, addr)
			code, head, err := rc.do(req("SETUP", "rtsp://"+addr+"/nosuch/trackID=0", 1, "Transport: "+tc.transport+"\r\n", ""))
			if err != nil || code < 400 {
				t.Fatalf("conn %d SETUP: %d %v\n%s", i, code, err, head)
			}
		}
		over := dialRaw(t, addr)
		testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, over.closedByServer)
		testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			if !strings.Contains(logs.String(), `"reason":"per_ip_cap"`) {
				return fmt.Errorf("no per_ip_cap log line:\n%s", logs.String())
			}
			return nil
		})
	})
}

// TestRefusedRequestsDoNotRestartTimer: only a successful answer restarts
// the handshake timer; a session-less connection repeating requests that are
// refused is closed as if it were silent.
func TestRefusedRequestsDoNotRestartTimer(t *testing.T) {
	n, _ := startNode(t, func(c *config.Config) { c.HandshakeTimeout = 400 * time.Millisecond })
	addr := n.Addr()
	for _, tc := range []struct {
		name, method, url string
		code              int
	}{
		{"404 DESCRIBE", "DESCRIBE", "rtsp://" + addr + "/nosuch", 404},
		{"501 GET_PARAMETER without a session", "GET_PARAMETER", "rtsp://" + addr + "/cam", 501},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			// a request every 100 ms, four per timeout, until the server
			// closes the connection; 3 s is over seven timeouts
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			deadline := time.Now().Add(3 * time.Second)
			for i := 1; ; i++ {
				code, _, err := rc.do(req(tc.method, tc.url, i, "", ""))
				if err != nil {
					if i < 3 {
						t.Fatalf("closed after %d requests, before the timeout", i-1)
					}
					return
				}
				if code != tc.code {
					t.Fatalf("request %d: got %d, want %d", i, code, tc.code)
				}
				if time.Now().After(deadline) {
					t.Fatalf("still open after %d refused requests over 3 s (timeout 400 ms)", i)
				}
				<-tick.C
			}
		})
	}
}

// TestUnparsableRequestLogged: gortsplib answers a request line it cannot
// parse (a raw control byte in the path) with nothing and closes the
// connection; the node logs and counts it (a percent-encoded one gets 400
// from checkPath). A client that just hangs up is neither.
func TestUnparsableRequestLogged(t *testing.T) {
	n, logs := startNode(t, nil)
	addr := n.Addr()
	quiet := dialRaw(t, addr)
	if code, _, err := quiet.do(req("OPTIONS", "rtsp://"+addr+"/", 1, "", "")); err != nil || code != 200 {
		t.Fatalf("OPTIONS: %d %v", code, err)
	}
	_ = quiet.c.Close()
	paths := []string{"/ca\x00m", "/ca\x01m", "/ca\x7fm"}
	for _, p := range paths {
		rc := dialRaw(t, addr)
		rc.write("DESCRIBE rtsp://" + addr + p + " RTSP/1.0\r\nCSeq: 1\r\n\r\n")
		testutil.CheckFor(t, 2*time.Second, 20*time.Millisecond, rc.closedByServer)
	}
	refused := n.d.Metrics.Refused.WithLabelValues("CONN", reasonBadRequest)
	testutil.CheckFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		if got := promtest.ToFloat64(refused); got != float64(len(paths)) {
			return fmt.Errorf("refused{CONN,%s} = %v, want %d", reasonBadRequest, got, len(paths))
		}
		if !strings.Contains(logs.String(), `"reason":"bad_request"`) {
			return errors.New("no bad_request log line")
		}
		return nil
	})
	if strings.Count(logs.String(), "before it held a session") != 1 {
		t.Errorf("want one log line (the others within the second suppressed):\n%s", logs.String())
	}
	if testing.Verbose() {
		fmt.Fprint(os.Stderr, logs.String())
	}
}
