// Package metrics holds the notifier's Prometheus metrics.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the notifier's counters, gauges and histograms.
type Metrics struct {
	// Outcomes counts notice outcomes by outcome (delivered, acked, failed) and
	// reason (failed only).
	Outcomes *prometheus.CounterVec
	// Attempts counts delivery attempts by channel and result (ok, error).
	Attempts *prometheus.CounterVec
	// AckLatency is the time from the reassigned event to the agent's ack.
	AckLatency prometheus.Histogram
	// InFlight is the number of notices this replica is delivering.
	InFlight prometheus.Gauge
	// SSEStreams is the number of open server-sent-events streams.
	SSEStreams prometheus.Gauge
	// AuthFailures counts refused SSE and ack requests by reason.
	AuthFailures *prometheus.CounterVec
}

// New creates the metrics and registers them on reg (nil: not registered).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_notifier_outcomes_total", Help: "Notice outcomes emitted, by outcome and reason.",
		}, []string{"outcome", "reason"}),
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_notifier_attempts_total", Help: "Delivery attempts, by channel and result.",
		}, []string{"channel", "result"}),
		AckLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ferry_notifier_ack_latency_seconds",
			Help:    "Time from the reassigned event to the agent's ack.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ferry_notifier_inflight_notices", Help: "Notices this replica is delivering.",
		}),
		SSEStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ferry_notifier_sse_streams", Help: "Open server-sent-events streams.",
		}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_notifier_auth_failures_total", Help: "Refused SSE and ack requests, by reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.Outcomes, m.Attempts, m.AckLatency, m.InFlight, m.SSEStreams, m.AuthFailures)
	}
	return m
}
