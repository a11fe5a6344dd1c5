package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
)

// result is one scenario's figures (a JSON object in the final line).
type result map[string]any

func (s *sim) want(name string) bool {
	if s.cfg.scenarios == "all" || name == "initial" {
		return true
	}
	for _, n := range strings.Split(s.cfg.scenarios, ",") {
		if strings.TrimSpace(n) == name {
			return true
		}
	}
	return false
}

// runScenarios runs every scenario in order and prints the report.
func (s *sim) runScenarios() error {
	rep := &report{cfg: s.cfg, started: s.started, scenarios: map[string]result{}}
	used := map[string]bool{}
	run := func(name string, f func(p *phase) (result, error)) error {
		if !s.want(name) || s.ctx.Err() != nil {
			return s.ctx.Err()
		}
		s.say("scenario %s", name)
		p := s.beginPhase(name)
		r, err := f(p)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", name, err)
		}
		for k, v := range s.endPhase(p) {
			r[k] = v
		}
		delete(r, "migration_ms")
		r["invariant_violations"] = s.violationCount() - p.viol0
		rep.scenarios[name] = r
		rep.order = append(rep.order, name)
		printResult(s.out, name, r)
		return nil
	}
	if err := run("initial", s.initial); err != nil {
		return err
	}
	if err := run("steady", func(p *phase) (result, error) {
		// nothing happens: every host keeps heartbeating, so healthpredict
		// must declare none down (a false host_down here means the
		// simulation or the services cannot keep up at this size)
		down0 := s.obs.countsCopy()[events.TypeHostDown]
		bus.Sleep(s.ctx, 10*time.Second)
		falseDown := s.obs.countsCopy()[events.TypeHostDown] - down0
		if falseDown > 0 {
			s.violation("steady: %d host_down events while every host was heartbeating", falseDown)
		}
		return result{"seconds": 10, "false_host_down": falseDown}, nil
	}); err != nil {
		return err
	}
	if err := run("maintenance", func(p *phase) (result, error) {
		hosts := s.pickHosts(1, used)
		return s.maintain(p, hosts, -1)
	}); err != nil {
		return err
	}
	if err := run("rolling", func(p *phase) (result, error) { return s.rolling(p, used) }); err != nil {
		return err
	}
	if err := run("lost", func(p *phase) (result, error) {
		return s.lose(p, s.pickHosts(s.cfg.lost, used))
	}); err != nil {
		return err
	}
	return rep.finish(s)
}

// initial places every stream: each agent asks placement.v1.choose and
// attaches on the host it was given.
func (s *sim) initial(p *phase) (result, error) {
	t0 := time.Now()
	err := parallel(s.ctx, s.cfg.chooseWorkers, len(s.agents), func(i int) error { return s.agents[i].publish(s.ctx) })
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	lat := s.chooseLat.take()
	// every host must report what it hosts
	err = s.waitFor(s.cfg.settle, func() error {
		n := 0
		for _, h := range s.hosts {
			n += h.hostedCount()
		}
		if n != len(s.agents) || s.obs.placedCount() != len(s.agents) {
			return fmt.Errorf("%d of %d streams hosted, %d placed", n, len(s.agents), s.obs.placedCount())
		}
		return nil
	})
	if err != nil {
		s.violation("initial placement: %v", err)
	}
	var per []int
	for _, h := range s.hosts {
		per = append(per, h.hostedCount())
	}
	sort.Ints(per)
	s.verifyHomes(s.cfg.settle)
	d := t1.Sub(t0)
	return result{"streams": len(s.agents), "seconds": d.Seconds(), "decisions_per_s": float64(len(s.agents)) / d.Seconds(),
		"choose_p50_ms": ms(pct(lat, 0.5)), "choose_p99_ms": ms(pct(lat, 0.99)),
		"streams_per_host_min": per[0], "streams_per_host_max": per[len(per)-1]}, nil
}

// pickHosts returns n alive hosts not used before, those with the most streams first.
func (s *sim) pickHosts(n int, used map[string]bool) []*simHost {
	var cand []*simHost
	for _, h := range s.hosts {
		if h.alive.Load() && !used[h.id] {
			cand = append(cand, h)
		}
	}
	sort.SliceStable(cand, func(i, j int) bool { return cand[i].hostedCount() > cand[j].hostedCount() })
	if len(cand) > n {
		cand = cand[:n]
	}
	for _, h := range cand {
		used[h.id] = true
	}
	return cand
}

// maintain schedules maintenance (window starting in 30 s) on hosts and
// waits until every stream left them; killAt >= 0 kills the active
// placement replica once killAt streams were reassigned.
func (s *sim) maintain(p *phase, hosts []*simHost, killAt int) (result, error) {
	set, streams := s.snapshot(hosts)
	t0 := time.Now().UTC()
	var ids []string
	for _, h := range hosts {
		mw := events.MaintenanceScheduled{MaintenanceID: fmt.Sprintf("mw-%s-%d", h.id, t0.UnixNano()), Host: h.id,
			StartAt: t0.Add(30 * time.Second), EndAt: t0.Add(time.Hour), Reason: "scale: maintenance", RequestedBy: "scale"}
		if _, err := events.Publish(s.ctx, s.js, "ferry/scale", mw); err != nil {
			return nil, err
		}
		ids = append(ids, mw.MaintenanceID)
	}
	var killed string
	if killAt >= 0 {
		_ = s.waitFor(30*time.Second, func() error {
			if n := len(s.obs.migrationsFrom(set, t0)); n < killAt {
				return fmt.Errorf("%d reassigned", n)
			}
			return nil
		})
		killed = s.killLeader()
	}
	r := s.evacuation(set, streams, t0, "prediction")
	for i, h := range hosts {
		_, _ = events.Publish(s.ctx, s.js, "ferry/scale", events.MaintenanceCancelled{MaintenanceID: ids[i], Host: h.id, Reason: "scale: maintenance done"})
	}
	if killed != "" {
		r["killed_replica"] = killed
		if err := s.startService(killed); err != nil {
			return nil, fmt.Errorf("restart %s: %w", killed, err)
		}
	}
	return r, nil
}

// killLeader kills -9 the placement replica holding the decider lease.
func (s *sim) killLeader() string {
	kv, err := s.js.KeyValue(s.ctx, bus.BucketLeases)
	if err != nil {
		s.violation("leases bucket: %v", err)
		return ""
	}
	e, err := kv.Get(s.ctx, "placement.leader")
	if err != nil {
		s.violation("no placement leader: %v", err)
		return ""
	}
	name := string(e.Value())
	s.mu.Lock()
	c := s.services[name]
	s.mu.Unlock()
	if c == nil {
		s.violation("leader %q is not a replica this simulation started", name)
		return ""
	}
	c.kill()
	s.say("killed the active placement replica %s (kill -9)", name)
	return name
}

// rolling puts rolling% of the fleet under maintenance, rolling-batch hosts
// at a time; the active placement replica is killed during the middle batch.
func (s *sim) rolling(p *phase, used map[string]bool) (result, error) {
	total := max(s.cfg.rollingBatch, int(float64(s.cfg.hosts)*s.cfg.rollingPct/100))
	batches := (total + s.cfg.rollingBatch - 1) / s.cfg.rollingBatch
	killBatch := batches / 2
	var per []result
	var decide, done []float64
	var migs []float64
	moved, failed := 0, 0
	t0 := time.Now()
	for b := 0; b < batches && s.ctx.Err() == nil; b++ {
		hosts := s.pickHosts(s.cfg.rollingBatch, used)
		if len(hosts) == 0 {
			break
		}
		kill := -1
		if b == killBatch {
			kill = len(hosts) * s.cfg.streams / s.cfg.hosts / 3
		}
		r, err := s.maintain(p, hosts, kill)
		if err != nil {
			return nil, err
		}
		r["batch"] = b + 1
		per = append(per, r)
		decide = append(decide, r["decide_ms"].(float64))
		done = append(done, r["completed_all_ms"].(float64))
		migs = append(migs, r["migration_ms"].([]float64)...)
		moved += r["completed"].(int)
		failed += r["failed"].(int)
		delete(r, "migration_ms")
		s.say("  batch %d/%d: %d streams off %d hosts, all reassigned %.0f ms after the predictions, all closed %.0f ms after the maintenance%s",
			b+1, batches, r["streams"], len(hosts), r["decide_ms"], r["completed_all_ms"], killedNote(r))
	}
	d := time.Since(t0)
	sort.Float64s(migs)
	return result{"hosts": total, "batches": per, "seconds": d.Seconds(), "completed": moved, "failed": failed,
		"decisions_per_s":  float64(moved+failed) / d.Seconds(),
		"migration_p50_ms": fpct(migs, 0.5), "migration_p99_ms": fpct(migs, 0.99),
		"decide_max_ms": fmax(decide), "completed_all_max_ms": fmax(done)}, nil
}

func killedNote(r result) string {
	if k, ok := r["killed_replica"]; ok {
		return fmt.Sprintf(" (active placement replica %s killed mid-batch)", k)
	}
	return ""
}

// lose crashes hosts at once (no drain, no farewell) and waits until every
// stream they had publishes elsewhere.
func (s *sim) lose(p *phase, hosts []*simHost) (result, error) {
	set, streams := s.snapshot(hosts)
	t0 := time.Now().UTC()
	for _, h := range hosts {
		h.crash()
	}
	s.say("  %d hosts crashed with %d streams", len(hosts), len(streams))
	r := s.evacuation(set, streams, t0, "host_down")
	return r, nil
}

// snapshot returns the set of host ids and the streams they host now.
func (s *sim) snapshot(hosts []*simHost) (map[string]bool, []string) {
	set := map[string]bool{}
	var streams []string
	for _, h := range hosts {
		set[h.id] = true
		h.mu.Lock()
		for st := range h.streams {
			streams = append(streams, st)
		}
		h.mu.Unlock()
	}
	return set, streams
}

// evacuation waits until every one of streams publishes outside set and
// every migration away from set closed, then measures: trigger is
// "prediction" (outage_predicted) or "host_down".
func (s *sim) evacuation(set map[string]bool, streams []string, t0 time.Time, trigger string) result {
	err := s.waitFor(s.cfg.settle, func() error {
		for _, st := range streams {
			a := s.byStream(st)
			h := a.currentHost()
			if h == "" || set[h] {
				return fmt.Errorf("%s still on %q", st, h)
			}
		}
		for id := range set {
			if n := s.hostByID(id).hostedCount(); n > 0 {
				return fmt.Errorf("%s still hosts %d streams", id, n)
			}
		}
		if open := s.openFrom(set, t0); len(open) > 0 {
			return fmt.Errorf("%d migrations open, e.g. %v", len(open), open[0])
		}
		return nil
	})
	if err != nil {
		s.violation("evacuation of %d hosts not finished after %v: %v", len(set), s.cfg.settle, err)
	}
	migs := s.obs.migrationsFrom(set, t0)
	// the trigger of each host
	trig := map[string]time.Time{}
	var first, last time.Time
	for id := range set {
		var at time.Time
		var ok bool
		if trigger == "host_down" {
			at, ok = s.obs.downAt(id)
		} else {
			at, ok = s.obs.firstPrediction(id, t0)
		}
		if !ok {
			s.violation("no %s for %s", trigger, id)
			continue
		}
		trig[id] = at
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	var firstRe, lastRe, lastEnd time.Time
	var durs []float64
	completed, failed := 0, 0
	reasons := map[string]int{}
	lastReOf := map[string]time.Time{} // per host left: its last stream reassigned
	for _, g := range migs {
		if g.reassigned.After(lastReOf[g.from]) {
			lastReOf[g.from] = g.reassigned
		}
		if firstRe.IsZero() || g.reassigned.Before(firstRe) {
			firstRe = g.reassigned
		}
		if g.reassigned.After(lastRe) {
			lastRe = g.reassigned
		}
		end := g.completed
		if end.IsZero() {
			end = g.failed
			failed++
			reasons[g.failStep+": "+firstWords(g.failReason, 6)]++
		} else {
			completed++
			if at, ok := trig[g.from]; ok {
				durs = append(durs, float64(g.completed.Sub(at).Microseconds())/1000)
			}
		}
		if end.After(lastEnd) {
			lastEnd = end
		}
	}
	sort.Float64s(durs)
	// the triggers themselves are spread (each host's heartbeat TTL ends
	// at its own phase): how long placement took after each host's own
	// trigger, at worst
	perHost := -1.0
	for id, at := range trig {
		if re, ok := lastReOf[id]; ok {
			perHost = max(perHost, msSince(re, at))
		}
	}
	r := result{"decide_per_host_max_ms": perHost, "hosts_left": len(set), "streams": len(streams), "migrations": len(migs), "completed": completed, "failed": failed,
		"trigger": trigger, "first_trigger_ms": msSince(first, t0), "last_trigger_ms": msSince(last, t0),
		"decide_ms": msSince(lastRe, first), "reassigned_all_ms": msSince(lastRe, t0), "completed_all_ms": msSince(lastEnd, t0),
		"decisions_per_s":  float64(len(migs)) / max(lastRe.Sub(firstRe).Seconds(), 0.001),
		"migration_p50_ms": fpct(durs, 0.5), "migration_p99_ms": fpct(durs, 0.99), "migration_ms": durs,
		"no_capacity": s.obs.noCapacitySince(t0)}
	if len(reasons) > 0 {
		r["failure_reasons"] = reasons
	}
	s.verifyHomes(s.cfg.settle)
	return r
}

func (s *sim) byStream(stream string) *agent {
	var i int
	_, _ = fmt.Sscanf(stream, "cam-%d", &i)
	return s.agents[i-1]
}

func (s *sim) openFrom(set map[string]bool, since time.Time) []mig {
	var out []mig
	for _, g := range s.obs.openMigrations(since) {
		if set[g.from] {
			out = append(out, g)
		}
	}
	return out
}

// verifyHomes checks that every stream has exactly one home: one running
// host hosts it, that host is its placement, and its agent publishes there.
func (s *sim) verifyHomes(wait time.Duration) {
	var bad []string
	err := s.waitFor(wait, func() error {
		bad = bad[:0]
		count := map[string][]string{}
		for _, h := range s.hosts {
			if !h.alive.Load() {
				continue
			}
			h.mu.Lock()
			for st := range h.streams {
				count[st] = append(count[st], h.id)
			}
			h.mu.Unlock()
		}
		for _, a := range s.agents {
			pl, _ := s.obs.placementOf(a.stream)
			on := count[a.stream]
			cur := a.currentHost()
			if len(on) != 1 || on[0] != pl.host || cur != pl.host {
				bad = append(bad, fmt.Sprintf("%s: hosted on %v, placed on %s, agent on %s", a.stream, on, pl.host, cur))
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("%d streams without exactly one home, e.g. %s", len(bad), bad[0])
		}
		return nil
	})
	if err != nil {
		s.violation("%v", err)
	}
}

// waitFor polls f until it returns nil or wait passed, returning its last error.
func (s *sim) waitFor(wait time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(s.ctx, wait)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return nil
		}
		if !bus.Sleep(ctx, 50*time.Millisecond) {
			return err
		}
	}
}

func msSince(t, t0 time.Time) float64 {
	if t.IsZero() || t0.IsZero() {
		return -1
	}
	return float64(t.Sub(t0).Microseconds()) / 1000
}

func fpct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return -1
	}
	return sorted[int(p*float64(len(sorted)-1))]
}

func fmax(v []float64) float64 {
	m := -1.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	return strings.Join(f, " ")
}
