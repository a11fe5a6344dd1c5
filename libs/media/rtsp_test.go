package media_test

import (
	"errors"
	"fmt"
	"net"
	"slices"
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
	"github.com/ferrystream/ferry/libs/testutil"
)

// relay is a minimal ingest: one path, one ServerStream kept across publishers,
// every publisher a SameSeqSpace feed of one Splicer.
type relay struct {
	server *gortsplib.Server
	addr   string

	mu     sync.Mutex
	stream *gortsplib.ServerStream
	sp     *media.Splicer
}

func (r *relay) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream == nil {
		r.stream = &gortsplib.ServerStream{Server: r.server, Desc: ctx.Description}
		if err := r.stream.Initialize(); err != nil {
			return &base.Response{StatusCode: base.StatusInternalServerError}, err
		}
		st := r.stream
		r.sp = media.NewSplicer(st.Desc, func(i int, pkt *rtp.Packet, ntp time.Time) {
			_ = st.WritePacketRTPWithNTP(st.Desc.Medias[i], pkt, ntp)
		}, media.SplicerOptions{})
	}
	if err := r.sp.AddFeed(feedID(ctx.Session), media.SameSeqSpace, ctx.Description); err != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, err
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func feedID(s *gortsplib.ServerSession) string { return fmt.Sprintf("%p", s) }

func (r *relay) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	return r.describe()
}

func (r *relay) OnDescribe(*gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return r.describe()
}

func (r *relay) describe() (*base.Response, *gortsplib.ServerStream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, r.stream, nil
}

func (r *relay) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (r *relay) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	id := feedID(ctx.Session)
	sess := ctx.Session
	for i, medi := range ctx.Session.AnnouncedDescription().Medias {
		ctx.Session.OnPacketRTP(medi, medi.Formats[0], func(pkt *rtp.Packet) {
			if errors.Is(r.sp.Write(id, i, pkt), media.ErrFeedRetired) {
				go sess.Close()
			}
		})
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (r *relay) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	r.mu.Lock()
	sp := r.sp
	r.mu.Unlock()
	if sp != nil {
		_ = sp.RemoveFeed(feedID(ctx.Session)) // readers' sessions are no feeds
	}
}

func startRelay(t *testing.T) *relay {
	t.Helper()
	r := &relay{}
	var once sync.Once
	addrCh := make(chan string, 1)
	r.server = &gortsplib.Server{
		Handler:     r,
		RTSPAddress: "127.0.0.1:0",
		Listen: func(network, address string) (net.Listener, error) {
			l, err := net.Listen(network, address)
			if err == nil {
				once.Do(func() { addrCh <- l.Addr().String() })
			}
			return l, err
		},
	}
	if err := r.server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.server.Close)
	r.addr = <-addrCh
	return r
}

// TestRTSPMakeBeforeBreak runs the whole media path on loopback: a synthetic
// camera published over RTSP, a second connection of the same agent overlapping
// it, the first closed; a reader attached throughout counts every frame.
func TestRTSPMakeBeforeBreak(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time RTSP test")
	}
	r := startRelay(t)
	url := "rtsp://" + r.addr + "/cam"
	cam, err := media.NewCameraSource(media.FakeConfig{FPS: 100, GOP: 50, Bitrate: 1_000_000}, media.FakeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.ProtocolTCP

	type pub struct {
		c    *gortsplib.Client
		desc *description.Session
	}
	startPub := func() *pub {
		p := &pub{c: &gortsplib.Client{Protocol: &tcp}, desc: media.CloneDescription(cam.Description())}
		if err := p.c.StartRecording(url, p.desc); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var pubs atomic.Pointer[[]*pub]
	first := startPub()
	pubs.Store(&[]*pub{first})

	// the reader
	u, err := base.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	reader := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	desc, _, err := reader.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := reader.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	an := media.NewAnalyzer(desc)
	reader.OnPacketRTPAny(func(medi *description.Media, _ format.Format, pkt *rtp.Packet) {
		an.Add(slices.Index(desc.Medias, medi), pkt, time.Now())
	})
	if _, err := reader.Play(nil); err != nil {
		t.Fatal(err)
	}

	// the agent: every packet to every open connection, in time order
	var sent [2]atomic.Uint64
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		for !stop.Load() {
			due, mi, pkts := cam.Next()
			time.Sleep(time.Until(start.Add(due)))
			for _, p := range *pubs.Load() {
				for _, pkt := range pkts {
					_ = p.c.WritePacketRTP(p.desc.Medias[mi], pkt)
				}
			}
			sent[mi].Add(1)
		}
	}()
	waitSent := func(video uint64) {
		t.Helper()
		testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			if n := sent[0].Load(); n < video {
				return fmt.Errorf("%d video frames sent", n)
			}
			return nil
		})
	}

	waitSent(50)
	second := startPub() // make: the new connection records
	pubs.Store(&[]*pub{first, second})
	waitSent(120)
	pubs.Store(&[]*pub{second}) // break: the old one goes
	first.c.Close()
	waitSent(200)
	stop.Store(true)
	<-done
	defer second.c.Close()

	want := [2]uint64{sent[0].Load(), sent[1].Load()}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		rep := an.Report()
		for i := range 2 {
			if got := rep.Medias[i].LastFrame + 1; got != want[i] {
				return fmt.Errorf("media %d: last frame %d of %d", i, got-1, want[i])
			}
		}
		return nil
	})
	st := r.sp.Stats()
	if st.Switches != 1 || st.Recent[0].Mode != media.SwitchSequence || st.Duplicates == 0 {
		t.Errorf("splicer stats %+v", st)
	}
	for _, m := range an.Report().Medias {
		t.Logf("media %d: %+v", m.Media, m)
		if m.FramesMissing != 0 || m.DuplicateFrames != 0 || m.SeqGaps != 0 || m.SeqBackwards != 0 ||
			m.SSRCChanges != 0 || m.TSBackwards != 0 {
			t.Errorf("media %d not continuous: %+v", m.Media, m)
		}
	}
}
