package service

import "github.com/prometheus/client_golang/prometheus"

// metrics are the service's collectors.
type metrics struct {
	samples   *prometheus.CounterVec // result: accepted, rejected, out_of_order
	rejected  *prometheus.CounterVec // feed, reason: schema, absurd, host_mismatch
	decisions *prometheus.CounterVec // kind, cause
	published *prometheus.CounterVec // type, result: stored, duplicate, skipped, error
	open      *prometheus.GaugeVec   // cause
	hosts     prometheus.Gauge
	outbox    prometheus.Gauge
	ready     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_healthpredict_samples_total",
			Help: "Telemetry samples by result (accepted, rejected, out_of_order)."}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_healthpredict_rejected_total",
			Help: "Rejected input messages by feed and reason."}, []string{"feed", "reason"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_healthpredict_decisions_total",
			Help: "Decisions made (open, update, clear, down) by cause."}, []string{"kind", "cause"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_healthpredict_published_total",
			Help: "Events published by type and result (stored, duplicate, skipped, error)."}, []string{"type", "result"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_healthpredict_open_predictions",
			Help: "Open predictions by cause."}, []string{"cause"}),
		hosts:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_healthpredict_hosts", Help: "Hosts tracked."}),
		outbox: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_healthpredict_outbox", Help: "Decisions waiting to be published."}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_healthpredict_ready",
			Help: "1 once the startup replay is done and predictions are published."}),
	}
	if reg != nil {
		reg.MustRegister(m.samples, m.rejected, m.decisions, m.published, m.open, m.hosts, m.outbox, m.ready)
	}
	return m
}
