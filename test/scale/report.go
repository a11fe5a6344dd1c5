package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
)

// phase holds the counters at a scenario's start.
type phase struct {
	name   string
	start  time.Time
	varz   varz
	cpu    map[string]float64
	conns  map[string]nats.Statistics
	watchM map[string]int64
	watchB map[string]int64
	viol0  int
	pl0    int64
}

func (s *sim) procs() map[string]*usage {
	m := map[string]*usage{"nats": s.nats.usage}
	for n, c := range s.services {
		m[n] = c.usage
	}
	s.mu.Lock()
	if s.self != nil {
		m["simulation"] = s.self
	}
	s.mu.Unlock()
	return m
}

func (s *sim) beginPhase(name string) *phase {
	p := &phase{name: name, start: time.Now(), cpu: map[string]float64{}, conns: map[string]nats.Statistics{},
		watchM: map[string]int64{}, watchB: map[string]int64{}, viol0: s.violationCount(), pl0: s.obs.placementChanges()}
	p.varz, _ = s.nats.varz()
	for n, u := range s.procs() {
		p.cpu[n] = u.cpu()
		u.resetPeak()
	}
	for _, h := range s.hosts {
		if h.alive.Load() {
			p.conns[h.id] = h.nc.Stats()
			p.watchM[h.id], p.watchB[h.id] = h.watchMsgs.Load(), h.watchBytes.Load()
		}
	}
	return p
}

// endPhase returns the bus, per-host and per-process figures of the phase.
func (s *sim) endPhase(p *phase) result {
	d := time.Since(p.start).Seconds()
	r := result{"wall_s": d, "placement_changes": s.obs.placementChanges() - p.pl0}
	if v, err := s.nats.varz(); err == nil {
		r["bus"] = result{"in_msgs_per_s": float64(v.InMsgs-p.varz.InMsgs) / d, "out_msgs_per_s": float64(v.OutMsgs-p.varz.OutMsgs) / d,
			"in_bytes_per_s": float64(v.InBytes-p.varz.InBytes) / d, "out_bytes_per_s": float64(v.OutBytes-p.varz.OutBytes) / d,
			"connections": v.Conns, "subscriptions": v.Subs}
	}
	var in, inB, out, outB, wm, wb []float64
	for _, h := range s.hosts {
		st0, ok := p.conns[h.id]
		if !ok || !h.alive.Load() {
			continue
		}
		st := h.nc.Stats()
		in = append(in, float64(st.InMsgs-st0.InMsgs)/d)
		inB = append(inB, float64(st.InBytes-st0.InBytes)/d)
		out = append(out, float64(st.OutMsgs-st0.OutMsgs)/d)
		outB = append(outB, float64(st.OutBytes-st0.OutBytes)/d)
		wm = append(wm, float64(h.watchMsgs.Load()-p.watchM[h.id])/d)
		wb = append(wb, float64(h.watchBytes.Load()-p.watchB[h.id])/d)
	}
	if len(in) > 0 {
		r["per_host"] = result{"hosts": len(in), "in_msgs_per_s_mean": mean(in), "in_msgs_per_s_max": fmaxAll(in),
			"in_bytes_per_s_mean": mean(inB), "in_bytes_per_s_max": fmaxAll(inB),
			"out_msgs_per_s_mean": mean(out), "out_bytes_per_s_mean": mean(outB),
			"watch_msgs_per_s_mean": mean(wm), "watch_bytes_per_s_mean": mean(wb),
			"watch_bytes_total_all_hosts": sum(wb) * d}
	}
	procs := result{}
	for n, u := range s.procs() {
		cur, peak := u.rssNow()
		// a process killed during the phase (the placement replica in
		// "rolling") reads 0 CPU seconds afterwards: count what it used
		procs[n] = result{"cpu_s_per_s": max(0, u.cpu()-p.cpu[n]) / d, "rss_mb": mb(cur), "rss_peak_mb": mb(peak)}
	}
	r["processes"] = procs
	return r
}

// report is the whole run's output.
type report struct {
	cfg       config
	started   time.Time
	order     []string
	scenarios map[string]result
}

func (rep *report) finish(s *sim) error {
	buckets := result{}
	for _, name := range []string{bus.BucketHosts, bus.BucketPlacements, bus.BucketSessions, bus.BucketLeases, bus.BucketProcessed,
		bus.BucketMigrations, bus.BucketMaintenance, bus.BucketNotices} {
		st, err := s.js.Stream(s.ctx, "KV_"+name)
		if err != nil {
			continue
		}
		info, err := st.Info(s.ctx)
		if err != nil {
			continue
		}
		buckets[name] = result{"keys_msgs": info.State.Msgs, "bytes": info.State.Bytes, "subjects": info.State.NumSubjects}
	}
	streams := result{}
	for _, name := range []string{bus.StreamEvents, bus.StreamTelemetry, bus.StreamHeartbeats, bus.StreamCommands, bus.StreamDeadLetter, bus.StreamAdvisories} {
		st, err := s.js.Stream(s.ctx, name)
		if err != nil {
			continue
		}
		if info, err := st.Info(s.ctx); err == nil {
			streams[name] = result{"msgs": info.State.Msgs, "bytes": info.State.Bytes, "consumers": info.State.Consumers}
		}
	}
	procs := result{}
	for n, u := range s.procs() {
		cur, peak := u.rssNow()
		procs[n] = result{"cpu_s_total": u.cpu(), "rss_mb": mb(cur)}
		_ = peak
	}
	var natsMem int64
	if v, err := s.nats.varz(); err == nil {
		natsMem = v.Mem
	}
	s.mu.Lock()
	counters := map[string]int64{}
	for k, v := range s.counters {
		counters[k] = v
	}
	viol := append([]string(nil), s.violations...)
	nviol := s.nviol
	s.mu.Unlock()

	wall := time.Since(rep.started)
	targets := result{}
	check := func(name string, ok bool, got string) {
		targets[name] = result{"met": ok, "got": got}
	}
	if r, ok := rep.scenarios["maintenance"]; ok {
		v := r["decide_ms"].(float64)
		check("one_host_reassigned_lt_200ms", v >= 0 && v < 200, fmt.Sprintf("%.1f ms (prediction -> last reassigned, %v streams)", v, r["streams"]))
	}
	if r, ok := rep.scenarios["lost"]; ok {
		v := r["decide_ms"].(float64)
		check("lost_hosts_replaced_lt_2s", v >= 0 && v < 2000, fmt.Sprintf("%.1f ms (first host_down -> last reassigned, %v streams)", v, r["streams"]))
	}
	peak := int64(0)
	for n, c := range s.services {
		if strings.HasPrefix(n, "placement") {
			_, p := c.usage.rssNow()
			peak = max(peak, p)
		}
	}
	// peaks were reset per phase: take the largest reported by any phase
	for _, r := range rep.scenarios {
		if pr, ok := r["processes"].(result); ok {
			for n, v := range pr {
				if strings.HasPrefix(n, "placement") {
					peak = max(peak, int64(v.(result)["rss_peak_mb"].(float64)*(1<<20)))
				}
			}
		}
	}
	check("placement_rss_lt_1GiB", peak < 1<<30, fmt.Sprintf("%.1f MB peak", mb(peak)))
	check("no_invariant_broken", nviol == 0, fmt.Sprintf("%d violations", nviol))
	// host_down events beyond the hosts the "lost" scenario killed
	falseDown := s.obs.countsCopy()[events.TypeHostDown]
	if _, ok := rep.scenarios["lost"]; ok {
		falseDown -= s.cfg.lost
	}
	check("no_false_host_down", falseDown <= 0, fmt.Sprintf("%d host_down beyond the hosts lost", max(falseDown, 0)))
	check("run_lt_15min", wall < 15*time.Minute, wall.Round(time.Second).String())

	fmt.Fprintf(s.out, "\nbuckets:\n")
	for _, k := range sortedKeys(buckets) {
		b := buckets[k].(result)
		fmt.Fprintf(s.out, "  %-12s %9v msgs %12v bytes %9v keys\n", k, b["keys_msgs"], b["bytes"], b["subjects"])
	}
	fmt.Fprintf(s.out, "streams:\n")
	for _, k := range sortedKeys(streams) {
		b := streams[k].(result)
		fmt.Fprintf(s.out, "  %-22s %9v msgs %12v bytes %6v consumers\n", k, b["msgs"], b["bytes"], b["consumers"])
	}
	fmt.Fprintf(s.out, "nats server memory (varz mem): %.1f MB\n", mb(natsMem))
	fmt.Fprintf(s.out, "counters: %v\nobserved events: %v\n", counters, s.obs.countsCopy())
	fmt.Fprintf(s.out, "invariants: %d violations\n", nviol)
	for _, v := range viol {
		fmt.Fprintf(s.out, "  VIOLATION %s\n", v)
	}
	fmt.Fprintf(s.out, "targets:\n")
	for _, k := range sortedKeys(targets) {
		t := targets[k].(result)
		mark := "met"
		if !t["met"].(bool) {
			mark = "MISSED"
		}
		fmt.Fprintf(s.out, "  %-32s %-6s %s\n", k, mark, t["got"])
	}
	res := "ok"
	if nviol > 0 {
		res = "invariant_broken"
	}
	line, _ := json.Marshal(result{"result": res, "hosts": rep.cfg.hosts, "streams": rep.cfg.streams, "capacity": rep.cfg.capacity,
		"nats_nodes": rep.cfg.natsNodes, "watch": rep.cfg.watch, "wall_s": wall.Seconds(), "scenarios": rep.scenarios,
		"buckets": buckets, "streams_info": streams, "processes": procs, "nats_varz_mem_mb": mb(natsMem), "counters": counters,
		"violations": nviol, "violation_examples": viol, "targets": targets})
	fmt.Fprintln(s.out, string(line))
	if nviol > 0 {
		return fmt.Errorf("%d invariant violations", nviol)
	}
	return nil
}

func printResult(w io.Writer, name string, r result) {
	keys := sortedKeys(r)
	fmt.Fprintf(w, "  %s:\n", name)
	for _, k := range keys {
		switch v := r[k].(type) {
		case result:
			fmt.Fprintf(w, "    %-22s %s\n", k, flat(v))
		case []result:
			continue
		case float64:
			fmt.Fprintf(w, "    %-22s %.1f\n", k, v)
		default:
			fmt.Fprintf(w, "    %-22s %v\n", k, v)
		}
	}
}

func flat(r result) string {
	var parts []string
	for _, k := range sortedKeys(r) {
		switch v := r[k].(type) {
		case result:
			parts = append(parts, k+"{"+flat(v)+"}")
		case float64:
			parts = append(parts, fmt.Sprintf("%s=%.1f", k, v))
		default:
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, " ")
}

func sortedKeys(r result) []string {
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return sum(v) / float64(len(v))
}

func sum(v []float64) float64 {
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t
}

func fmaxAll(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}
