// Package upstream pulls one RTSP stream (another Ferry host's, or a camera's)
// with a gortsplib client and hands its packets to a callback by media index.
// Reconnecting is the caller's job: each Conn is one connection.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
)

// ErrNotFound is returned when the upstream answers 404 to DESCRIBE.
var ErrNotFound = errors.New("upstream has no such stream")

// ErrUnavailable is returned when the upstream answers 503 to DESCRIBE (for
// example a host that is not the stream's origin yet); retry soon.
var ErrUnavailable = errors.New("upstream unavailable")

// ErrTooManyTracks is returned when the upstream describes more medias than
// Options.MaxTracks (INGEST_MAX_TRACKS, the bound an ANNOUNCE gets).
var ErrTooManyTracks = errors.New("too many tracks")

// UserAgent is the User-Agent of every pull between Ferry hosts; a host tells
// such pulls from viewers by it.
const UserAgent = "ferry-ingest"

// Options configure a connection.
type Options struct {
	// Protocol defaults to TCP (interleaved), the reliable choice between hosts.
	Protocol *gortsplib.Protocol
	// Timeout bounds each RTSP request and the read silence (default 5s).
	Timeout time.Duration
	// MaxTracks refuses a description with more medias (0 = no bound).
	MaxTracks int
	// OnPacketsLost and OnDecodeError count problems (optional).
	OnPacketsLost func(uint64)
	OnDecodeError func(error)
}

// Conn is one pull connection, described and set up but not yet playing.
type Conn struct {
	// URL is the stream URL pulled.
	URL string
	// Desc is the upstream's description.
	Desc *description.Session

	c      *gortsplib.Client
	index  map[*description.Media]int
	formas []format.Format
}

// Dial connects to url, describes it and sets up every media. ctx bounds the
// whole handshake.
func Dial(ctx context.Context, url string, o Options) (*Conn, error) {
	u, err := base.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	tr := o.Protocol
	if tr == nil {
		t := gortsplib.ProtocolTCP
		tr = &t
	}
	c := &gortsplib.Client{
		Scheme:      u.Scheme,
		Host:        u.Host,
		Protocol:    tr,
		ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
		UserAgent: UserAgent,
	}
	if o.OnPacketsLost != nil {
		c.OnPacketsLost = func(lost uint64) { o.OnPacketsLost(lost) }
	}
	if o.OnDecodeError != nil {
		c.OnDecodeError = func(err error) { o.OnDecodeError(err) }
	}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", u.Host, err)
	}
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	desc, _, err := c.Describe(u)
	if err != nil {
		c.Close()
		if isStatus(err, base.StatusNotFound) {
			return nil, fmt.Errorf("describe %s: %w", url, ErrNotFound)
		}
		if isStatus(err, base.StatusServiceUnavailable) {
			return nil, fmt.Errorf("describe %s: %w: %w", url, ErrUnavailable, err)
		}
		return nil, fmt.Errorf("describe %s: %w", url, err)
	}
	if o.MaxTracks > 0 && len(desc.Medias) > o.MaxTracks {
		c.Close()
		return nil, fmt.Errorf("describe %s: %w: %d medias, at most %d allowed (INGEST_MAX_TRACKS)", url, ErrTooManyTracks,
			len(desc.Medias), o.MaxTracks)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		c.Close()
		return nil, fmt.Errorf("setup %s: %w", url, err)
	}
	if ctx.Err() != nil {
		c.Close()
		return nil, ctx.Err()
	}
	cn := &Conn{URL: url, Desc: desc, c: c, index: map[*description.Media]int{}}
	for i, m := range desc.Medias {
		cn.index[m] = i
		cn.formas = append(cn.formas, m.Formats[0])
	}
	return cn, nil
}

// Play starts the stream; cb gets every packet of each media's first format.
func (c *Conn) Play(cb func(mediaIndex int, pkt *rtp.Packet)) error {
	c.c.OnPacketRTPAny(func(medi *description.Media, forma format.Format, pkt *rtp.Packet) {
		i, ok := c.index[medi]
		if !ok || forma != c.formas[i] {
			return
		}
		cb(i, pkt)
	})
	if _, err := c.c.Play(nil); err != nil {
		c.c.Close()
		return fmt.Errorf("play %s: %w", c.URL, err)
	}
	return nil
}

// Wait blocks until the connection ends and returns why.
func (c *Conn) Wait() error { return c.c.Wait() }

// Close ends the connection.
func (c *Conn) Close() { c.c.Close() }
