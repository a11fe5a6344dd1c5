package upstream

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/ferrystream/ferry/libs/testutil"
)

// sdp describes one H.264 video media and one PCMU audio media.
const sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n" +
	"m=video 0 RTP/AVP 96\r\na=control:trackID=0\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n" +
	"m=audio 0 RTP/AVP 0\r\na=control:trackID=1\r\na=rtpmap:0 PCMU/8000\r\n"

// rtspServer is a hand-written RTSP server on 127.0.0.1 (no RTSP library):
// it answers DESCRIBE with status (200: the SDP above), SETUP over TCP and
// PLAY, then sends one RTP packet per media on its interleaved channels and
// closes the connection when the test says so. silent: it never answers.
type rtspServer struct {
	ln     net.Listener
	status int
	silent bool
	hangUp chan struct{}
	wg     sync.WaitGroup
}

func newRTSPServer(t *testing.T, status int, silent bool) *rtspServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rtspServer{ln: ln, status: status, silent: silent, hangUp: make(chan struct{})}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		select {
		case <-s.hangUp:
		default:
			close(s.hangUp)
		}
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *rtspServer) url() string { return "rtsp://" + s.ln.Addr().String() + "/cam-1" }

func (s *rtspServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				select {
				case <-s.hangUp:
					_ = c.Close()
				case <-stop:
				}
			}()
			s.conn(c)
		}()
	}
}

func (s *rtspServer) conn(c net.Conn) {
	r := textproto.NewReader(bufio.NewReader(c))
	for {
		line, err := r.ReadLine()
		if err != nil {
			return
		}
		hdr, err := r.ReadMIMEHeader()
		if err != nil {
			return
		}
		if s.silent {
			continue
		}
		method := strings.Fields(line)[0]
		cseq := hdr.Get("Cseq")
		status, extra, body := 200, "", ""
		switch method {
		case "OPTIONS":
			extra = "Public: DESCRIBE, SETUP, PLAY, TEARDOWN\r\n"
		case "DESCRIBE":
			status = s.status
			if status == 200 {
				extra = "Content-Type: application/sdp\r\nContent-Base: " + strings.Fields(line)[1] + "/\r\n"
				body = sdp
			}
		case "SETUP":
			extra = "Transport: " + hdr.Get("Transport") + "\r\nSession: 1234;timeout=60\r\n"
		case "PLAY":
			extra = "Session: 1234\r\n"
		case "TEARDOWN":
		}
		fmt.Fprintf(c, "RTSP/1.0 %d %s\r\nCSeq: %s\r\nContent-Length: %d\r\n%s\r\n%s", status, statusText(status),
			cseq, len(body), extra, body)
		if method == "PLAY" {
			for ch, pt := range []uint8{96, 0} {
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: 1, SSRC: 5, Marker: true},
					Payload: []byte{0x65, byte(ch)}}
				buf, _ := pkt.Marshal()
				frame := []byte{'$', byte(ch * 2), 0, 0}
				binary.BigEndian.PutUint16(frame[2:], uint16(len(buf)))
				_, _ = c.Write(append(frame, buf...))
			}
		}
	}
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 404:
		return "Not Found"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}

func TestDial(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		status    int
		silent    bool
		maxTracks int
		url       func(s *rtspServer) string
		want      func(error) bool
	}{
		{"404 is ErrNotFound", 404, false, 0, nil, IsNotFound},
		{"503 is ErrUnavailable (retry soon)", 503, false, 0, nil, func(err error) bool { return errors.Is(err, ErrUnavailable) }},
		{"500 is neither", 500, false, 0, nil, func(err error) bool {
			return err != nil && !errors.Is(err, ErrUnavailable) && !IsNotFound(err)
		}},
		{"no answer: the context ends the handshake", 200, true, 0, nil, func(err error) bool { return err != nil }},
		{"bad URL", 200, false, 0, func(*rtspServer) string { return "rtsp://[::1" }, func(err error) bool { return err != nil }},
		{"nothing listening", 200, false, 0, func(s *rtspServer) string {
			addr := s.ln.Addr().String()
			_ = s.ln.Close()
			return "rtsp://" + addr + "/cam-1"
		}, func(err error) bool { return err != nil }},
		{"two medias, at most one: ErrTooManyTracks", 200, false, 1, nil, func(err error) bool {
			return errors.Is(err, ErrTooManyTracks) && strings.Contains(err.Error(), "2 medias, at most 1")
		}},
		{"two medias, at most two: set up", 200, false, 2, nil, func(err error) bool { return err == nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newRTSPServer(t, tc.status, tc.silent)
			u := s.url()
			if tc.url != nil {
				u = tc.url(s)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			c, err := Dial(ctx, u, Options{Timeout: 2 * time.Second, MaxTracks: tc.maxTracks})
			if c != nil {
				c.Close()
			}
			if !tc.want(err) {
				t.Fatalf("Dial = %v", err)
			}
		})
	}
}

// TestPlay pulls a stream from the hand-written server: its packets arrive
// by media index, and Wait returns once the server hangs up.
func TestPlay(t *testing.T) {
	t.Parallel()
	s := newRTSPServer(t, 200, false)
	var src Source
	src, err := DialSource(context.Background(), s.url(), Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if d := src.Description(); len(d.Medias) != 2 {
		t.Fatalf("%d medias", len(d.Medias))
	}
	var mu sync.Mutex
	got := map[int][]byte{}
	if err := src.Play(func(mi int, pkt *rtp.Packet) {
		mu.Lock()
		got[mi] = pkt.Payload
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 2 || got[0][1] != 0 || got[1][1] != 1 {
			return fmt.Errorf("packets by media %v", got)
		}
		return nil
	})
	waited := make(chan error, 1)
	go func() { waited <- src.Wait() }()
	close(s.hangUp)
	select {
	case err := <-waited:
		if err == nil {
			t.Fatal("Wait returned nil after the server hung up")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after the server hung up")
	}
}

func TestDialSourceNil(t *testing.T) {
	t.Parallel()
	src, err := DialSource(context.Background(), "http://x", Options{})
	if err == nil || src != nil {
		t.Fatalf("DialSource = %v, %v; want a nil Source and an error", src, err)
	}
}
