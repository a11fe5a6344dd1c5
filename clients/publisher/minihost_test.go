package publisher_test

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/ferrystream/ferry/libs/media"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/libs/token"
)

// miniHost is a minimal RTSP server standing in for an ingest host where a
// test needs to control it directly: it checks publish tokens, records what
// publishers send (per frame counter), can send a raw REDIRECT to its
// publisher, can be killed, and can serve a stream to readers (a camera).
type miniHost struct {
	t   testing.TB
	id  string
	url string
	srv *gortsplib.Server

	mu       sync.Mutex
	frames   map[uint64]int
	an       *media.Analyzer
	conns    []*gortsplib.ServerConn
	sessions []*gortsplib.ServerSession
	refused  int
	stream   *gortsplib.ServerStream // served to readers when set
	tap      func(mi int, pkt *rtp.Packet)
}

func newMiniHost(t testing.TB, id string) *miniHost {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	h := &miniHost{t: t, id: id, url: "rtsp://" + addr, frames: map[uint64]int{}}
	h.srv = &gortsplib.Server{Handler: h, RTSPAddress: addr}
	if err := h.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.kill)
	return h
}

var killMu sync.Mutex

func (h *miniHost) kill() {
	killMu.Lock()
	defer killMu.Unlock()
	if h.srv != nil {
		h.srv.Close()
		h.srv = nil
	}
}

// OnAnnounce accepts a publisher with a valid token for this host.
func (h *miniHost) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	q, _ := parseQuery(ctx.Query)
	c, err := token.Verify([]byte(secret), q, time.Now())
	if err == nil {
		err = c.Check(ctx.Path[1:], h.id)
	}
	if err != nil {
		h.mu.Lock()
		h.refused++
		h.mu.Unlock()
		return &base.Response{StatusCode: base.StatusUnauthorized}, err
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func parseQuery(raw string) (string, error) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return "", err
	}
	return vals.Get(token.QueryParam), nil
}

// OnSetup accepts publishers' medias and readers of the served stream.
func (h *miniHost) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	h.mu.Lock()
	st := h.stream
	h.mu.Unlock()
	if st == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, fmt.Errorf("no stream")
	}
	return &base.Response{StatusCode: base.StatusOK}, st, nil
}

// OnDescribe serves the stream to readers.
func (h *miniHost) OnDescribe(*gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	h.mu.Lock()
	st := h.stream
	h.mu.Unlock()
	if st == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, fmt.Errorf("no stream")
	}
	return &base.Response{StatusCode: base.StatusOK}, st, nil
}

// OnPlay lets readers play.
func (h *miniHost) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnRecord records what the publisher sends.
func (h *miniHost) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	desc := ctx.Session.AnnouncedDescription()
	h.mu.Lock()
	if h.an == nil {
		h.an = media.NewAnalyzer(desc)
	}
	an, tap := h.an, h.tap
	h.conns = append(h.conns, ctx.Conn)
	h.sessions = append(h.sessions, ctx.Session)
	h.mu.Unlock()
	idx := map[*description.Media]int{}
	for i, m := range desc.Medias {
		idx[m] = i
	}
	ctx.Session.OnPacketRTPAny(func(medi *description.Media, _ format.Format, pkt *rtp.Packet) {
		an.Add(idx[medi], pkt, time.Now())
		if tap != nil {
			tap(idx[medi], pkt)
		}
		if n, ok := media.FrameCounter(pkt.Payload); ok {
			h.mu.Lock()
			h.frames[n]++
			h.mu.Unlock()
		}
	})
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (h *miniHost) publishers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

func (h *miniHost) frameSet() map[uint64]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[uint64]int, len(h.frames))
	for k, v := range h.frames {
		out[k] = v
	}
	return out
}

func (h *miniHost) report() media.MediaReport {
	h.mu.Lock()
	an := h.an
	h.mu.Unlock()
	if an == nil {
		return media.MediaReport{}
	}
	rep := an.Report()
	if len(rep.Medias) == 0 {
		return media.MediaReport{}
	}
	return rep.Medias[0]
}

// redirect writes a raw RTSP REDIRECT (RTSP 1.0 §10.10) to the latest
// publisher's connection.
func (h *miniHost) redirect(location string) {
	h.t.Helper()
	h.mu.Lock()
	conn := h.conns[len(h.conns)-1]
	h.mu.Unlock()
	u, err := base.ParseURL(h.url + "/cam-1")
	if err != nil {
		h.t.Fatal(err)
	}
	req := base.Request{Method: "REDIRECT", URL: u, Header: base.Header{"CSeq": base.HeaderValue{"9001"}, "Location": base.HeaderValue{location}}}
	b, err := req.Marshal()
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := conn.NetConn().Write(b); err != nil {
		h.t.Fatal(err)
	}
}

// serve makes the host serve src (a camera) to readers until stop is called;
// the stream's readers are disconnected on stop.
func (h *miniHost) serve(src media.Source) (stop func()) {
	h.t.Helper()
	st := &gortsplib.ServerStream{Server: h.srv, Desc: src.Description()}
	if err := st.Initialize(); err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.stream = st
	h.mu.Unlock()
	done := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-quit
			cancel()
		}()
		_ = media.Run(ctx, src, func(medi *description.Media, pkt *rtp.Packet) error {
			return st.WritePacketRTP(medi, pkt)
		})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(quit)
			<-done
			h.mu.Lock()
			h.stream = nil
			h.mu.Unlock()
			st.Close()
		})
	}
	h.t.Cleanup(stop)
	return stop
}

// contiguous reports the first hole in the frame counters of sets between
// their overall first and last, and the range.
func contiguous(sets ...map[uint64]int) (lo, hi uint64, missing []uint64) {
	all := map[uint64]bool{}
	first := true
	for _, s := range sets {
		for k := range s {
			all[k] = true
			if first || k < lo {
				lo = k
			}
			if first || k > hi {
				hi = k
			}
			first = false
		}
	}
	for k := lo; k <= hi && !first; k++ {
		if !all[k] {
			missing = append(missing, k)
		}
	}
	return lo, hi, missing
}
