// Package metrics holds the ingest service's Prometheus collectors. One
// Metrics value is shared by every component of a node; tests give each node
// its own registry.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ingest node's collectors.
type Metrics struct {
	// Publishers is the number of recording publisher sessions.
	Publishers prometheus.Gauge
	// Readers is the number of playing reader sessions.
	Readers prometheus.Gauge
	// Streams is the number of streams on this node.
	Streams prometheus.Gauge
	// Conns is the number of open RTSP connections.
	Conns prometheus.Gauge
	// RTPLost counts RTP packets reported lost by the RTSP layer.
	RTPLost prometheus.Counter
	// WriteErrors counts stream write errors (slow readers, closed streams).
	WriteErrors prometheus.Counter
	// DecodeErrors counts non-fatal RTP/RTCP decode errors.
	DecodeErrors prometheus.Counter
	// Refused counts refused requests by method and reason.
	Refused *prometheus.CounterVec
	// Switches counts source switches by stream, role (origin/edge) and mode.
	Switches *prometheus.CounterVec
	// SwitchGap is the longest output gap across a switch, seconds.
	SwitchGap *prometheus.HistogramVec
	// SwitchFramesMissing counts frames missing across switches (frame-counter sources only).
	SwitchFramesMissing *prometheus.CounterVec
	// SwitchFramesDuplicated counts frames duplicated across switches.
	SwitchFramesDuplicated *prometheus.CounterVec
	// LongestGap is the longest output gap seen across any switch, per stream, seconds.
	LongestGap *prometheus.GaugeVec
	// Handovers counts old-host handovers by result.
	Handovers *prometheus.CounterVec
	// UpstreamErrors counts failed upstream (edge/relay/camera) connections by kind.
	UpstreamErrors *prometheus.CounterVec
	// Draining is 1 while the node drains.
	Draining prometheus.Gauge
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Publishers:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_ingest_publishers", Help: "Recording publisher sessions."}),
		Readers:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_ingest_readers", Help: "Playing reader sessions."}),
		Streams:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_ingest_streams", Help: "Streams on this node."}),
		Conns:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_ingest_rtsp_conns", Help: "Open RTSP connections."}),
		RTPLost:      prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_ingest_rtp_lost_total", Help: "RTP packets lost on the way in."}),
		WriteErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_ingest_write_errors_total", Help: "Stream write errors."}),
		DecodeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_ingest_decode_errors_total", Help: "Non-fatal decode errors."}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_ingest_refused_total",
			Help: "Refused RTSP requests by method and reason."}, []string{"method", "reason"}),
		Switches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_ingest_switches_total",
			Help: "Source switches of a stream by role and mode."}, []string{"stream", "role", "mode"}),
		SwitchGap: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_ingest_switch_gap_seconds",
			Help:    "Longest output gap of the lead media across a switch.",
			Buckets: []float64{.02, .04, .06, .08, .1, .15, .25, .5, 1, 2, 5, 10}}, []string{"role"}),
		SwitchFramesMissing: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_ingest_switch_frames_missing_total",
			Help: "Frames missing across switches (sources with frame counters)."}, []string{"stream", "role"}),
		SwitchFramesDuplicated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_ingest_switch_frames_duplicated_total",
			Help: "Frames duplicated across switches (sources with frame counters)."}, []string{"stream", "role"}),
		LongestGap: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_ingest_switch_longest_gap_seconds",
			Help: "Longest output gap across any switch of a stream."}, []string{"stream", "role"}),
		Handovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_ingest_handovers_total",
			Help: "Old-host handovers by result."}, []string{"result"}),
		UpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_ingest_upstream_errors_total",
			Help: "Failed upstream connections by kind (edge, relay, camera)."}, []string{"kind"}),
		Draining: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_ingest_draining", Help: "1 while draining."}),
	}
	reg.MustRegister(m.Publishers, m.Readers, m.Streams, m.Conns, m.RTPLost, m.WriteErrors,
		m.DecodeErrors, m.Refused, m.Switches, m.SwitchGap, m.SwitchFramesMissing, m.SwitchFramesDuplicated,
		m.LongestGap, m.Handovers, m.UpstreamErrors, m.Draining)
	return m
}

// Nop returns collectors registered nowhere: a component given no Metrics
// uses them, so that its code never checks for nil.
func Nop() *Metrics { return New(prometheus.NewRegistry()) }

// OrNop returns m, or Nop() when m is nil.
func OrNop(m *Metrics) *Metrics {
	if m == nil {
		return Nop()
	}
	return m
}

// RegisterTraffic registers the byte and packet counters of the media path,
// read from the node's own atomic counters at scrape time (no per-packet
// metric updates).
func RegisterTraffic(reg prometheus.Registerer, bytesIn, bytesOut, packetsIn func() float64) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ferry_ingest_rtp_bytes_in_total",
			Help: "RTP bytes received from sources (publishers, camera and upstream pulls)."}, bytesIn),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ferry_ingest_rtp_bytes_out_total",
			Help: "Bytes sent to readers."}, bytesOut),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ferry_ingest_rtp_packets_in_total",
			Help: "RTP packets received from sources."}, packetsIn),
	)
}
