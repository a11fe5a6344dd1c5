package stack

import (
	"context"

	"github.com/ferrystream/ferry/clients/ferryctl/probe"
)

// Viewer is a probe (an RTSP reader measuring continuity) with the figures
// the demo and the end-to-end tests check, taken from its video media.
type Viewer struct {
	p *probe.Probe
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
	Full         probe.Report `json:"full"`
}

// WatchOptions tunes Watch.
type WatchOptions struct {
	// UDP reads over UDP instead of TCP.
	UDP bool
}

// Watch connects to url and starts measuring.
func Watch(ctx context.Context, url string, opts ...WatchOptions) (*Viewer, error) {
	cfg := probe.Config{URL: url, Transport: probe.TransportTCP}
	if len(opts) > 0 && opts[0].UDP {
		cfg.Transport = probe.TransportUDP
	}
	p, err := probe.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Viewer{p: p}, nil
}

// Packets returns the video packets received so far.
func (v *Viewer) Packets() int64 { return int64(v.p.Report().Video().Packets) }

// Frames returns the video frames (by counter) received so far.
func (v *Viewer) Frames() int64 { return int64(v.p.Report().Video().Frames) }

// Report returns the measurements so far.
func (v *Viewer) Report() ViewReport { return summarise(v.p.Report()) }

// Close stops the viewer and returns its final report.
func (v *Viewer) Close() ViewReport { return summarise(v.p.Close()) }

func summarise(full probe.Report) ViewReport {
	m := full.Video()
	r := ViewReport{
		Packets: int64(m.Packets), Frames: int64(m.Frames),
		Missing: int64(m.FramesMissing), Duplicates: int64(m.DuplicateFrames),
		MaxGapMS: m.LongestGapMS, SSRCChanges: int64(m.SSRCChanges),
		SeqGaps: int64(m.SeqGaps), TSBackwards: int64(m.TSBackwards),
		Disconnected: full.Disconnected, Full: full,
	}
	if m.Frames > 0 {
		r.FramesSent = int64(m.LastFrame - m.FirstFrame + 1)
	}
	return r
}
