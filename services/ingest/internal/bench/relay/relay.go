// Package relay is the baseline Ferry's ingest is measured against: a plain
// gortsplib relay (gortsplib's examples/server) with one stream per path, no
// control plane, no metrics.
package relay

import (
	"sync"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
)

// Relay hosts what publishers ANNOUNCE and serves it to readers.
type Relay struct {
	srv     *gortsplib.Server
	mu      sync.RWMutex
	streams map[string]*gortsplib.ServerStream
}

// Start listens on addr (TCP only, like the benchmark's clients). The write
// queue is Ferry's default, so both servers buffer the same per reader.
func Start(addr string) (*Relay, error) {
	r := &Relay{streams: map[string]*gortsplib.ServerStream{}}
	r.srv = &gortsplib.Server{Handler: r, RTSPAddress: addr, WriteQueueSize: 512}
	if err := r.srv.Start(); err != nil {
		return nil, err
	}
	return r, nil
}

// Close stops the server.
func (r *Relay) Close() { r.srv.Close() }

func (r *Relay) stream(path string) *gortsplib.ServerStream {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.streams[path]
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (r *Relay) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if st := r.stream(ctx.Path); st != nil {
		return &base.Response{StatusCode: base.StatusOK}, st, nil
	}
	return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
}

// OnAnnounce implements gortsplib.ServerHandlerOnAnnounce.
func (r *Relay) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	st := &gortsplib.ServerStream{Server: r.srv, Desc: ctx.Description}
	if err := st.Initialize(); err != nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, err
	}
	r.mu.Lock()
	r.streams[ctx.Path] = st
	r.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSetup implements gortsplib.ServerHandlerOnSetup.
func (r *Relay) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	if st := r.stream(ctx.Path); st != nil {
		return &base.Response{StatusCode: base.StatusOK}, st, nil
	}
	return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
}

// OnPlay implements gortsplib.ServerHandlerOnPlay.
func (r *Relay) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnRecord implements gortsplib.ServerHandlerOnRecord.
func (r *Relay) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	st := r.stream(ctx.Path)
	ctx.Session.OnPacketRTPAny(func(medi *description.Media, _ format.Format, pkt *rtp.Packet) {
		_ = st.WritePacketRTP(medi, pkt)
	})
	return &base.Response{StatusCode: base.StatusOK}, nil
}
