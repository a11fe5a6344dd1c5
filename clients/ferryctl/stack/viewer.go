package stack

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"

	"github.com/ferrystream/ferry/libs/media"
)

// Viewer is an RTSP reader that measures what it receives with media.Analyzer.
type Viewer struct {
	c      *gortsplib.Client
	an     *media.Analyzer
	video  int
	mu     sync.Mutex // guards ended, endErr
	ended  bool
	endErr error
	closed sync.Once
	rep    ViewReport
}

// ViewReport summarises the video media of a viewer's session.
type ViewReport struct {
	Packets     int64   `json:"packets"`
	Frames      int64   `json:"frames"`
	FramesSent  int64   `json:"frames_sent"` // counter span seen: last - first + 1
	Missing     int64   `json:"missing"`
	Duplicates  int64   `json:"duplicates"`
	MaxGapMS    float64 `json:"max_gap_ms"`
	SSRCChanges int64   `json:"ssrc_changes"`
	SeqGaps     int64   `json:"seq_gaps"`
	TSBackwards int64   `json:"ts_backwards"`
	// Disconnected is set when the server ended the session before Close.
	Disconnected string       `json:"disconnected,omitempty"`
	Full         media.Report `json:"full"`
}

// WatchOptions tunes Watch.
type WatchOptions struct {
	// UDP reads over UDP instead of TCP.
	UDP bool
}

// Watch connects to url and starts measuring.
func Watch(ctx context.Context, url string, opts ...WatchOptions) (*Viewer, error) {
	var o WatchOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	u, err := base.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("viewer %s: %w", url, err)
	}
	tr := gortsplib.TransportTCP
	if o.UDP {
		tr = gortsplib.TransportUDP
	}
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Transport: &tr}
	if err := c.Start2(); err != nil {
		return nil, fmt.Errorf("viewer %s: %w", url, err)
	}
	desc, _, err := c.Describe(u)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("viewer describe %s: %w", url, err)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		c.Close()
		return nil, fmt.Errorf("viewer setup %s: %w", url, err)
	}
	v := &Viewer{c: c, an: media.NewAnalyzer(desc)}
	idx := map[*description.Media]int{}
	for i, m := range desc.Medias {
		idx[m] = i
		if m.Type == description.MediaTypeVideo && v.video == 0 && i != 0 {
			v.video = i
		}
	}
	c.OnPacketRTPAny(func(m *description.Media, _ format.Format, pkt *rtp.Packet) {
		v.an.Add(idx[m], pkt, time.Now())
	})
	if _, err := c.Play(nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("viewer play %s: %w", url, err)
	}
	go func() {
		err := c.Wait()
		v.mu.Lock()
		if !v.ended {
			v.ended, v.endErr = true, err
		}
		v.mu.Unlock()
	}()
	return v, nil
}

// Packets returns the video packets received so far.
func (v *Viewer) Packets() int64 {
	r := v.an.Report()
	if len(r.Medias) <= v.video {
		return 0
	}
	return int64(r.Medias[v.video].Packets)
}

// Frames returns the video frames received so far.
func (v *Viewer) Frames() int64 {
	r := v.an.Report()
	if len(r.Medias) <= v.video {
		return 0
	}
	return int64(r.Medias[v.video].Frames)
}

// Ended returns the session's end, if the server ended it.
func (v *Viewer) Ended() (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.ended, v.endErr
}

// Report returns the current measurements without closing.
func (v *Viewer) Report() ViewReport {
	full := v.an.Report()
	r := ViewReport{Full: full}
	if len(full.Medias) > v.video {
		m := full.Medias[v.video]
		r.Packets = int64(m.Packets)
		r.Frames = int64(m.Frames)
		if m.Frames > 0 {
			r.FramesSent = int64(m.LastFrame - m.FirstFrame + 1)
		}
		r.Missing = int64(m.FramesMissing)
		r.Duplicates = int64(m.DuplicateFrames)
		r.MaxGapMS = m.LongestGapMS
		r.SSRCChanges = int64(m.SSRCChanges)
		r.SeqGaps = int64(m.SeqGaps)
		r.TSBackwards = int64(m.TSBackwards)
	}
	if ended, err := v.Ended(); ended {
		r.Disconnected = fmt.Sprint(err)
	}
	return r
}

// Close stops the viewer and returns its final report.
func (v *Viewer) Close() ViewReport {
	v.closed.Do(func() {
		v.rep = v.Report()
		v.mu.Lock()
		v.ended = true
		v.mu.Unlock()
		v.c.Close()
	})
	return v.rep
}
