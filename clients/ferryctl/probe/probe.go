// Package probe is Ferry's viewer probe: an RTSP reader (gortsplib) that feeds
// every packet it receives to a media.Analyzer and reports what a viewer saw:
// frames, frames missing and duplicated (when the source carries Ferry's frame
// counters), SSRC changes, sequence gaps, timestamp jumps, the longest silence,
// packets the RTP receiver counted lost, and decode errors.
//
// `ferryctl probe` is a thin CLI over it; the demo and the end-to-end tests use
// it in process:
//
//	rep, err := probe.Run(ctx, probe.Config{URL: "rtsp://127.0.0.1:8554/cam-1", Duration: 10 * time.Second})
//	v := rep.Video() // the first video media
//	fmt.Println(v.Frames, v.FramesMissing)
//
// or, to watch while something else happens:
//
//	p, err := probe.Start(ctx, probe.Config{URL: url})
//	... p.Report() ...
//	rep := p.Close()
package probe

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/ferrystream/ferry/libs/media"
)

// Transports accepted by Config.Transport.
const (
	TransportTCP = "tcp"
	TransportUDP = "udp"
	// TransportAuto tries UDP, then falls back to TCP (gortsplib's default).
	TransportAuto = "auto"
)

// Config says what to probe and for how long.
type Config struct {
	// URL is the rtsp:// or rtsps:// URL to read.
	URL string
	// Transport is "tcp" (default), "udp" or "auto".
	Transport string
	// Duration bounds Run (0: until ctx ends or the server ends the session).
	Duration time.Duration
	// Interval is the period of OnTick (default 1s).
	Interval time.Duration
	// OnTick, if set, is called by Run every Interval with the report so far.
	OnTick func(Report)
	// ReadTimeout is the RTSP read timeout (default gortsplib's 10s).
	ReadTimeout time.Duration
	// MaxGap is the longest silence a clean stream may have: a media whose
	// packets stopped for longer (between two packets, or from its last
	// packet to the end of the probe) is stalled, and the report not clean.
	// 0 disables the check.
	MaxGap time.Duration
}

// ErrBadConfig is returned for an invalid Config.
var ErrBadConfig = errors.New("probe: bad config")

// ErrDisconnected is returned by Run when the server ended the session before
// Duration passed.
var ErrDisconnected = errors.New("session ended by the server")

// Validate checks c; errors name the setting.
func (c Config) Validate() error {
	var errs []error
	switch u, err := url.Parse(c.URL); {
	case c.URL == "":
		errs = append(errs, fmt.Errorf("%w: url: must not be empty", ErrBadConfig))
	case err != nil:
		errs = append(errs, fmt.Errorf("%w: url %q: %v", ErrBadConfig, c.URL, err))
	case u.Scheme != "rtsp" && u.Scheme != "rtsps":
		errs = append(errs, fmt.Errorf("%w: url %q: scheme must be rtsp or rtsps", ErrBadConfig, c.URL))
	case u.Host == "":
		errs = append(errs, fmt.Errorf("%w: url %q: no host", ErrBadConfig, c.URL))
	default:
		if _, err := base.ParseURL(c.URL); err != nil {
			errs = append(errs, fmt.Errorf("%w: url %q: %v", ErrBadConfig, c.URL, err))
		}
	}
	switch c.Transport {
	case "", TransportTCP, TransportUDP, TransportAuto:
	default:
		errs = append(errs, fmt.Errorf("%w: transport %q: must be tcp, udp or auto", ErrBadConfig, c.Transport))
	}
	if c.Duration < 0 {
		errs = append(errs, fmt.Errorf("%w: duration %v: must not be negative", ErrBadConfig, c.Duration))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("%w: interval %v: must not be negative", ErrBadConfig, c.Interval))
	}
	if c.MaxGap < 0 {
		errs = append(errs, fmt.Errorf("%w: max gap %v: must not be negative", ErrBadConfig, c.MaxGap))
	}
	return errors.Join(errs...)
}

// Report is what the probe measured. The embedded media.Report has one entry
// per media of the stream (its index in the session description).
type Report struct {
	URL       string `json:"url"`
	Transport string `json:"transport"`
	// Started is when PLAY succeeded; ElapsedS is the seconds since (until Close).
	Started  time.Time `json:"started"`
	ElapsedS float64   `json:"elapsed_s"`
	media.Report
	// MarkerFrames counts packets with the RTP marker bit per media: frames
	// (access units) of video from any source, counters or not.
	MarkerFrames []uint64 `json:"marker_frames"`
	// PacketsLost is what gortsplib's RTP receiver counted lost.
	PacketsLost uint64 `json:"packets_lost"`
	// DecodeErrors counts gortsplib's non-fatal decode errors (wrong SSRC,
	// malformed packets, ...); LastDecodeError is the latest.
	DecodeErrors    uint64 `json:"decode_errors"`
	LastDecodeError string `json:"last_decode_error,omitempty"`
	// Disconnected is set when the server ended the session.
	Disconnected string `json:"disconnected,omitempty"`
	// SilenceMS is, per media, the time from its last packet to this report
	// (to Close for the final one): a stream that froze and never resumed.
	SilenceMS []float64 `json:"silence_ms"`
	// MaxGapMS is Config.MaxGap (0: stalls are not judged).
	MaxGapMS float64 `json:"max_gap_ms"`
}

// StallMS is the longest silence of media i: between two packets, or from
// its last packet to the report.
func (r Report) StallMS(i int) float64 {
	if i >= len(r.Medias) {
		return 0
	}
	g := r.Medias[i].LongestGapMS
	if i < len(r.SilenceMS) && r.Medias[i].Packets > 0 {
		g = max(g, r.SilenceMS[i])
	}
	return g
}

// Stalled reports whether a media that received packets was silent for
// longer than MaxGapMS (never when MaxGapMS is 0).
func (r Report) Stalled() bool {
	if r.MaxGapMS <= 0 {
		return false
	}
	for i := range r.Medias {
		if r.StallMS(i) > r.MaxGapMS {
			return true
		}
	}
	return false
}

// VideoIndex is the index of the first video media (0 when there is none).
func (r Report) VideoIndex() int {
	for i, m := range r.Medias {
		if isVideo(m.Codec) {
			return i
		}
	}
	return 0
}

// Video returns the report of the first video media (or of media 0, or a
// zero value when nothing was received).
func (r Report) Video() media.MediaReport {
	if i := r.VideoIndex(); i < len(r.Medias) {
		return r.Medias[i]
	}
	return media.MediaReport{}
}

// HasCounters reports whether media i carried Ferry frame counters.
func (r Report) HasCounters(i int) bool { return i < len(r.Medias) && r.Medias[i].Frames > 0 }

// Clean reports whether every media arrived without missing or duplicated
// frames, SSRC changes, sequence gaps or timestamps going backwards, no
// media stalled longer than MaxGap, and the session was not ended by the
// server.
func (r Report) Clean() bool {
	if r.Disconnected != "" || r.Stalled() {
		return false
	}
	for _, m := range r.Medias {
		if m.FramesMissing > 0 || m.DuplicateFrames > 0 || m.SSRCChanges > 0 || m.SeqGaps > 0 || m.TSBackwards > 0 {
			return false
		}
	}
	return true
}

func isVideo(codec string) bool {
	switch strings.ToUpper(codec) {
	case "H264", "H265", "AV1", "VP8", "VP9", "M-JPEG", "MJPEG", "MPEG-4 VIDEO", "MPEG-1/2 VIDEO":
		return true
	}
	return false
}

// Probe is a running reader. Its methods are safe for concurrent use.
type Probe struct {
	cfg     Config
	url     string
	tr      string
	c       *gortsplib.Client
	an      *media.Analyzer
	started time.Time
	markers []atomic.Uint64
	lastPkt []atomic.Int64 // unix nanoseconds of each media's latest packet
	lost    atomic.Uint64
	decErrs atomic.Uint64

	mu      sync.Mutex // guards lastErr, ended, endErr, final
	lastErr string
	ended   bool
	endErr  error
	final   *Report

	done      chan struct{} // closed when the session ends (server or Close)
	closeOnce sync.Once
}

// Start connects, sets up every media, starts playing and measuring.
func Start(ctx context.Context, cfg Config) (*Probe, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Transport == "" {
		cfg.Transport = TransportTCP
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	u, err := base.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("probe %s: %w", cfg.URL, err)
	}
	p := &Probe{cfg: cfg, url: cfg.URL, tr: cfg.Transport, done: make(chan struct{})}
	c := &gortsplib.Client{
		Scheme:      u.Scheme,
		Host:        u.Host,
		ReadTimeout: cfg.ReadTimeout,
		OnPacketsLost: func(n uint64) {
			p.lost.Add(n)
		},
		OnDecodeError: func(err error) {
			p.decErrs.Add(1)
			p.mu.Lock()
			p.lastErr = err.Error()
			p.mu.Unlock()
		},
		OnTransportSwitch: func(error) {
			p.mu.Lock()
			p.tr = TransportTCP + " (switched from udp)"
			p.mu.Unlock()
		},
	}
	switch cfg.Transport {
	case TransportTCP:
		t := gortsplib.ProtocolTCP
		c.Protocol = &t
	case TransportUDP:
		t := gortsplib.ProtocolUDP
		c.Protocol = &t
	}
	p.c = c
	// gortsplib's client calls have no context: close the client if ctx ends
	// while connecting.
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("probe %s: connect: %w", cfg.URL, err)
	}
	desc, _, err := c.Describe(u)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("probe %s: describe: %w", cfg.URL, ctxErr(ctx, err))
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		c.Close()
		return nil, fmt.Errorf("probe %s: setup: %w", cfg.URL, ctxErr(ctx, err))
	}
	p.an = media.NewAnalyzer(desc)
	p.markers = make([]atomic.Uint64, len(desc.Medias))
	p.lastPkt = make([]atomic.Int64, len(desc.Medias))
	c.OnPacketRTPAny(func(medi *description.Media, _ format.Format, pkt *rtp.Packet) {
		now := time.Now()
		i := slices.Index(desc.Medias, medi)
		p.an.Add(i, pkt, now)
		if i >= 0 {
			p.lastPkt[i].Store(now.UnixNano())
		}
		if pkt.Marker && i >= 0 {
			p.markers[i].Add(1)
		}
	})
	if _, err := c.Play(nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("probe %s: play: %w", cfg.URL, ctxErr(ctx, err))
	}
	p.started = time.Now()
	go func() {
		err := c.Wait()
		p.mu.Lock()
		if !p.ended {
			p.ended, p.endErr = true, err
		}
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Done is closed when the session has ended (the server ended it, or Close).
func (p *Probe) Done() <-chan struct{} { return p.done }

// Report returns the measurements so far.
func (p *Probe) Report() Report {
	p.mu.Lock()
	if p.final != nil {
		r := *p.final
		p.mu.Unlock()
		return r
	}
	r := Report{
		URL: p.url, Transport: p.tr, Started: p.started,
		LastDecodeError: p.lastErr,
	}
	if p.ended && p.endErr != nil {
		r.Disconnected = p.endErr.Error()
	}
	p.mu.Unlock()
	now := time.Now()
	r.ElapsedS = now.Sub(p.started).Seconds()
	r.Report = p.an.Report()
	r.MaxGapMS = float64(p.cfg.MaxGap) / float64(time.Millisecond)
	r.SilenceMS = make([]float64, len(p.lastPkt))
	for i := range p.lastPkt {
		if t := p.lastPkt[i].Load(); t > 0 {
			r.SilenceMS[i] = float64(now.UnixNano()-t) / float64(time.Millisecond)
		}
	}
	r.MarkerFrames = make([]uint64, len(p.markers))
	for i := range p.markers {
		r.MarkerFrames[i] = p.markers[i].Load()
	}
	r.PacketsLost = p.lost.Load()
	r.DecodeErrors = p.decErrs.Load()
	return r
}

// Close ends the session and returns the final report; later calls return
// the same report.
func (p *Probe) Close() Report {
	p.closeOnce.Do(func() {
		r := p.Report()
		p.mu.Lock()
		p.ended = true // a session we close is not "disconnected"
		p.final = &r
		p.mu.Unlock()
		p.c.Close()
		<-p.done
	})
	return p.Report()
}

// Run probes cfg.URL until cfg.Duration passes, ctx ends, or the server ends
// the session (then the report comes with an error wrapping ErrDisconnected).
// OnTick is called every Interval.
func Run(ctx context.Context, cfg Config) (Report, error) {
	p, err := Start(ctx, cfg)
	if err != nil {
		return Report{URL: cfg.URL, Transport: cfg.Transport}, err
	}
	var limit <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		limit = t.C
	}
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return p.Close(), nil
		case <-limit:
			return p.Close(), nil
		case <-p.Done():
			rep := p.Close()
			return rep, fmt.Errorf("probe %s: %w: %s", cfg.URL, ErrDisconnected, rep.Disconnected)
		case <-tick.C:
			if cfg.OnTick != nil {
				cfg.OnTick(p.Report())
			}
		}
	}
}
