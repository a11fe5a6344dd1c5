package publisher

import "github.com/prometheus/client_golang/prometheus"

// metrics are the agent's Prometheus metrics.
type metrics struct {
	moves       *prometheus.CounterVec
	gaps        prometheus.Counter
	gapSeconds  prometheus.Histogram
	notices     *prometheus.CounterVec
	uplinks     prometheus.GaugeFunc
	framesSent  prometheus.CounterFunc
	framesDrop  prometheus.CounterFunc
	packetsSent prometheus.CounterFunc
}

func newMetrics(reg prometheus.Registerer, f *fanout, stream string) *metrics {
	labels := prometheus.Labels{"stream": stream}
	m := &metrics{
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_publish_moves_total", Help: "Moves to another host, by trigger (notice, redirect) and result (ok, failed).",
			ConstLabels: labels,
		}, []string{"trigger", "result"}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_publish_gaps_total", Help: "Times the stream had no host (connection lost without notice).",
			ConstLabels: labels,
		}),
		gapSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ferry_publish_gap_seconds", Help: "Length of the gaps.", ConstLabels: labels,
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60},
		}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_publish_notices_total", Help: "Move notices received, by channel and result (accepted, duplicate, ignored, rejected).",
			ConstLabels: labels,
		}, []string{"channel", "result"}),
		uplinks: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_publish_uplinks", Help: "Ingest connections being written (2 during a move).", ConstLabels: labels,
		}, func() float64 { return float64(f.count()) }),
		framesSent: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ferry_publish_frames_sent_total", Help: "Video frames written to at least one host.", ConstLabels: labels,
		}, func() float64 { return float64(f.frames.Load()) }),
		framesDrop: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ferry_publish_frames_dropped_total", Help: "Video frames no host took (gaps).", ConstLabels: labels,
		}, func() float64 { return float64(f.dropped.Load()) }),
		packetsSent: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ferry_publish_packets_sent_total", Help: "RTP packets written to at least one host.", ConstLabels: labels,
		}, func() float64 { return float64(f.packets.Load()) }),
	}
	if reg != nil {
		reg.MustRegister(m.moves, m.gaps, m.gapSeconds, m.notices, m.uplinks, m.framesSent, m.framesDrop, m.packetsSent)
	}
	return m
}
