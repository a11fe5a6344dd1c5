package origin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/token"
	"github.com/ferrystream/ferry/services/ingest/internal/config"
	"github.com/ferrystream/ferry/services/ingest/internal/control"
	"github.com/ferrystream/ferry/services/ingest/internal/stream"
)

// placedHere places every stream on the host under test (and nothing else).
type placedHere string

func (p placedHere) Get(_ context.Context, stream string) (events.Placement, error) {
	if stream == "nowhere" {
		return events.Placement{}, control.ErrNotPlaced
	}
	return events.Placement{Stream: stream, Host: string(p), Mode: "push"}, nil
}

type noSessions struct{}

func (noSessions) Get(context.Context, string) (events.Session, bool) { return events.Session{}, false }

// resolveNothing is an edge resolver that knows no stream.
type resolveNothing struct{}

func (resolveNothing) Serve(context.Context, string) (*stream.Stream, error) {
	return nil, fmt.Errorf("%w: test", ErrUnknownStream)
}

var (
	fuzzOnce sync.Once
	fuzzNode *Node
	fuzzErr  error
	fuzzTok  string
)

const fuzzSecret = "fuzz-secret"

var sessionRe = regexp.MustCompile(`Session: ([0-9a-f]+)`)

func startFuzzNode() {
	cfg := config.Default()
	cfg.HostID = "ingest-f"
	cfg.RTSPAddr = "127.0.0.1:0"
	cfg.PublicURL = "rtsp://127.0.0.1:0"
	cfg.TokenSecret = fuzzSecret
	cfg.UpstreamWait = 100 * time.Millisecond
	fuzzNode, fuzzErr = New(cfg, Deps{Log: zerolog.New(io.Discard), Placements: placedHere("ingest-f"), Sessions: noSessions{},
		Resolver: resolveNothing{}})
	if fuzzErr != nil {
		return
	}
	fuzzErr = fuzzNode.Start()
	fuzzTok, _ = token.Sign([]byte(fuzzSecret), token.Claims{Stream: "cam", Host: "ingest-f", Session: "s-f", Expires: time.Now().Add(time.Hour)})
}

const sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n" +
	"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n"

func req(method, url string, cseq int, headers string, body string) string {
	s := fmt.Sprintf("%s %s RTSP/1.0\r\nCSeq: %d\r\n%s", method, url, cseq, headers)
	if body != "" {
		s += fmt.Sprintf("Content-Length: %d\r\n", len(body))
	}
	return s + "\r\n" + body
}

// seeds are valid and broken request sequences ({{addr}} and {{tok}} are
// replaced with the server's address and a valid publish token).
var seeds = []string{
	req("OPTIONS", "rtsp://{{addr}}/cam", 1, "", ""),
	req("DESCRIBE", "rtsp://{{addr}}/cam", 1, "", ""),
	req("DESCRIBE", "rtsp://{{addr}}/../../etc/passwd", 1, "", ""),
	req("ANNOUNCE", "rtsp://{{addr}}/cam?token={{tok}}", 1, "Content-Type: application/sdp\r\n", sdp) +
		req("SETUP", "rtsp://{{addr}}/cam?token={{tok}}/trackID=0", 2, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n", "") +
		"{{wait}}" + req("RECORD", "rtsp://{{addr}}/cam?token={{tok}}", 3, "Session: {{session}}\r\n", "") +
		"{{wait}}$\x00\x00\x10\x80\x60\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x65\x88\x84\x00" +
		"$\x00\x00\x0d\x80\x60\x00\x02\x00\x00\x0e\x10\x00\x00\x00\x01\x7c" +
		req("DESCRIBE", "rtsp://{{addr}}/cam", 4, "", ""),
	req("DESCRIBE", "rtsp://{{addr}}/cam", 1, "", "") +
		req("SETUP", "rtsp://{{addr}}/cam/trackID=0", 2, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n", "") +
		"{{wait}}" + req("PLAY", "rtsp://{{addr}}/cam", 3, "Session: {{session}}\r\n", "") +
		"{{wait}}" + req("PAUSE", "rtsp://{{addr}}/cam", 4, "Session: {{session}}\r\n", ""),
	req("ANNOUNCE", "rtsp://{{addr}}/cam", 1, "Content-Type: application/sdp\r\n", sdp),
	req("ANNOUNCE", "rtsp://{{addr}}/cam?token=v1.e30.AAAA", 1, "Content-Type: application/sdp\r\n", "v=0\r\nm=garbage\r\n"),
	req("SETUP", "rtsp://{{addr}}/cam/trackID=0", 1, "Transport: RTP/AVP;unicast;client_port=5000-5001\r\n", ""),
	req("SETUP", "rtsp://{{addr}}/cam/trackID=0", 1, "Transport: RTP/AVP/TCP;unicast;interleaved=300-301\r\n", ""),
	req("SETUP", "rtsp://{{addr}}/cam/trackID=0", 1, "Transport: RTP/AVP;unicast;client_port=0-1\r\n", ""),
	req("DESCRIBE", "rtsp://{{addr}}/ca%00m", 1, "", ""),
	"DESCRIBE rtsp://{{addr}}/cam RTSP/1.0\r\nCSeq: 1\r\n",
	req("PLAY", "rtsp://{{addr}}/cam", 1, "Session: 1234\r\n", ""),
	req("TEARDOWN", "rtsp://{{addr}}/cam", 1, "", ""),
	req("GET_PARAMETER", "rtsp://{{addr}}/cam", 1, "", ""),
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n",
	"$\x00\xff\xff",
	"\x00\x01\x02\x03",
	"OPTIONS * RTSP/1.0\r\nCSeq: 99999999999999999999\r\nContent-Length: -5\r\n\r\n",
	"DESCRIBE rtsp://{{addr}}/cam RTSP/1.0\r\n" + strings.Repeat("X-A: b\r\n", 300) + "\r\n",
}

func fuzzTarget(tb testing.TB, data []byte) {
	addr := fuzzNode.Addr()
	in := strings.NewReplacer("{{addr}}", addr, "{{tok}}", fuzzTok).Replace(string(data))
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		tb.Fatalf("server gone: %v", err)
	}
	// parts separated by {{wait}} are sent one after the other; the session id
	// of the responses so far replaces {{session}} in the later parts
	session := ""
	var got strings.Builder
	for i, part := range strings.Split(in, "{{wait}}") {
		part = strings.ReplaceAll(part, "{{session}}", session)
		_ = c.SetDeadline(time.Now().Add(150 * time.Millisecond))
		if _, err := c.Write([]byte(part)); err != nil {
			break
		}
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if m := sessionRe.FindStringSubmatch(got.String()); m != nil {
			session = m[1]
		}
		_ = i
	}
	_ = c.Close()
	// the server still answers
	if err := options(addr); err != nil {
		tb.Fatalf("server does not answer after input %q: %v", in, err)
	}
}

func options(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(req("OPTIONS", "rtsp://"+addr+"/", 1, "", ""))); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "RTSP/1.0 200") {
		return errors.New("unexpected status line " + line)
	}
	return nil
}

// FuzzRTSPRequest sends arbitrary bytes to a live RTSP server running this
// package's handler; the server must neither crash nor stop answering.
func FuzzRTSPRequest(f *testing.F) {
	fuzzOnce.Do(startFuzzNode)
	if fuzzErr != nil {
		f.Fatal(fuzzErr)
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzTarget(t, data) })
}
