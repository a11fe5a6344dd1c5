package engine

import "github.com/prometheus/client_golang/prometheus"

// metrics are the service's Prometheus series.
type metrics struct {
	decisions   *prometheus.CounterVec
	conflicts   prometheus.Counter
	noCapacity  prometheus.Counter
	migrations  *prometheus.CounterVec
	leader      prometheus.Gauge
	evacuating  prometheus.Gauge
	chooseTime  prometheus.Histogram
	chooseCodes *prometheus.CounterVec
	released    prometheus.Counter
	writing     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_placement_decisions_total",
			Help: "Placement decisions written (compare-and-set succeeded), by kind: initial, evacuation, host_down, reconnect."}, []string{"kind"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_placement_cas_conflicts_total",
			Help: "Placement writes that lost a compare-and-set race to another writer."}),
		noCapacity: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_placement_no_capacity_total",
			Help: "Placements refused for lack of a healthy host with headroom."}),
		migrations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_placement_migrations_total",
			Help: "Migrations closed, by outcome (completed, failed) and make_before_break (true, false)."}, []string{"outcome", "make_before_break"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_placement_leader",
			Help: "1 while this replica holds the decider lease."}),
		evacuating: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_placement_evacuations_active",
			Help: "Hosts being evacuated by this replica."}),
		chooseTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ferry_placement_choose_seconds",
			Help: "Time to answer placement.v1.choose.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		chooseCodes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_placement_choose_total",
			Help: "placement.v1.choose answers by code (200, 400, 503, 500)."}, []string{"code"}),
		released: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_placement_released_total",
			Help: "Placements released because no publisher was attached for PLACEMENT_RELEASE_AFTER."}),
		writing: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_placement_moves_in_flight",
			Help: "Evacuation moves being written now (at most PLACEMENT_WORKERS: at the bound, moves queue)."}),
	}
	reg.MustRegister(m.decisions, m.conflicts, m.noCapacity, m.migrations, m.leader, m.evacuating, m.chooseTime, m.chooseCodes, m.released, m.writing)
	return m
}
