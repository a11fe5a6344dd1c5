package predict

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Maintenance is a scheduled maintenance window.
type Maintenance struct {
	ID          string
	Host        string
	Start, End  time.Time
	Reason      string
	RequestedBy string
}

// Drain is a drain notice: the host takes no new publishers and goes
// offline at Deadline.
type Drain struct {
	Host     string
	Deadline time.Time
	Reason   string
	Streams  int
}

// Tracker owns the state of every host and turns inputs into decisions:
// one open prediction per host and cause, revised only when its expected
// time moves materially, cleared (with hysteresis) when its cause goes away.
// No prediction is made for a host that has not reported (telemetry,
// heartbeat or drain); a maintenance window for such a host waits until it
// does. A Tracker is not safe for concurrent use.
type Tracker struct {
	cfg   Config
	hosts map[string]*host
}

// causeOrder fixes the order in which one input's decisions are emitted.
var causeOrder = []string{CauseMaintenance, CauseDrain, CauseMemory, CauseFDs, CauseDisk, CauseErrors, CauseLoss}

type host struct {
	name       string
	reported   bool
	lastT      time.Time // last accepted sample
	lastHB     time.Time // last heartbeat
	down       bool
	downAt     time.Time
	downReason string
	// left: the host announced its departure at leftAt (host_left) and has
	// not sent a heartbeat since; its silence is not a failure.
	left   bool
	leftAt time.Time

	trends   []*trend
	surges   []*surge
	episodes map[string]*episode
	windows  map[string]Maintenance
	drain    *Drain
}

// NewTracker returns a Tracker; cfg must be valid.
func NewTracker(cfg Config) *Tracker {
	return &Tracker{cfg: cfg, hosts: map[string]*host{}}
}

// Config returns the tracker's configuration.
func (tr *Tracker) Config() Config { return tr.cfg }

func (tr *Tracker) host(name string) *host {
	h := tr.hosts[name]
	if h == nil {
		h = &host{
			name:     name,
			trends:   []*trend{newTrend(CauseMemory, "memory"), newTrend(CauseFDs, "descriptors"), newTrend(CauseDisk, "disk")},
			surges:   []*surge{newSurge(CauseErrors, "errors", tr.cfg.SurgeMinErrorRate), newSurge(CauseLoss, "lost packets", tr.cfg.SurgeMinLossRate)},
			episodes: map[string]*episode{},
			windows:  map[string]Maintenance{},
		}
		tr.hosts[name] = h
	}
	return h
}

func (h *host) episode(cause string) *episode {
	e := h.episodes[cause]
	if e == nil {
		e = &episode{host: h.name, cause: cause, fixed: cause == CauseErrors || cause == CauseLoss}
		h.episodes[cause] = e
	}
	return e
}

// Known reports whether host has reported.
func (tr *Tracker) Known(host string) bool {
	h := tr.hosts[host]
	return h != nil && h.reported
}

// LastSample returns the time of host's last accepted sample (zero if none).
func (tr *Tracker) LastSample(host string) time.Time {
	if h := tr.hosts[host]; h != nil {
		return h.lastT
	}
	return time.Time{}
}

// ErrOutOfOrder is returned by Observe for a sample not after the host's last one.
var ErrOutOfOrder = fmt.Errorf("%w: not after the host's last sample", ErrInvalidSample)

// Observe feeds one telemetry sample (already checked with Sample.Check). A
// sample at or before the host's last one is refused with ErrOutOfOrder and
// changes nothing.
func (tr *Tracker) Observe(s Sample) ([]Decision, error) {
	h := tr.host(s.Host)
	if !h.lastT.IsZero() && !s.T.After(h.lastT) {
		return nil, fmt.Errorf("%w: %s ≤ %s", ErrOutOfOrder, s.T.UTC().Format(time.RFC3339Nano), h.lastT.UTC().Format(time.RFC3339Nano))
	}
	h.lastT = s.T
	var out []Decision
	out = tr.reported(h, s.T, out)
	values := [][2]int64{{s.MemBytes, s.MemLimit}, {s.FDs, s.FDLimit}, {s.DiskBytes, s.DiskLimit}}
	for i, r := range h.trends {
		te, ok := r.add(tr.cfg, s.T, values[i][0], values[i][1])
		if !ok {
			if values[i][1] <= 0 { // not reported (disk): nothing to keep open
				if d, ok := h.episode(r.cause).close(s.T, r.resource+" no longer reported"); ok {
					out = append(out, d)
				}
			}
			continue
		}
		c := r.evaluate(tr.cfg, te)
		if c != nil {
			c.at = unixTime(te)
		}
		why := fmt.Sprintf("%s trend no longer reaches its limit within %s", r.resource, tr.cfg.Horizon)
		if d, ok := h.episode(r.cause).step(tr.cfg, s.T, c, why); ok {
			out = append(out, d)
		}
	}
	counters := []int64{s.Errors, s.Lost}
	for i, sg := range h.surges {
		c := sg.add(tr.cfg, s.T, counters[i])
		why := fmt.Sprintf("%s rate back near the host's baseline", sg.counter)
		if d, ok := h.episode(sg.cause).step(tr.cfg, s.T, c, why); ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// reported marks h as having reported at t: pending maintenance windows
// become predictions, ended windows and a passed drain are cleared.
func (tr *Tracker) reported(h *host, t time.Time, out []Decision) []Decision {
	h.reported = true
	if h.drain != nil && t.After(h.drain.Deadline.Add(tr.cfg.DrainGrace)) {
		h.drain = nil
		if d, ok := h.episode(CauseDrain).close(t, "host reported again after its drain deadline"); ok {
			out = append(out, d)
		}
	}
	return tr.syncMaintenance(h, t, t, "maintenance window ended", out)
}

// Heartbeat records a heartbeat of host at t (a report, too).
func (tr *Tracker) Heartbeat(host string, t time.Time) []Decision {
	h := tr.host(host)
	if t.After(h.lastHB) {
		h.lastHB = t
	}
	if h.down && t.After(h.downAt) {
		h.down = false
	}
	if h.left && t.After(h.leftAt) {
		h.left = false // it came back: a later silence is a failure again
	}
	return tr.reported(h, t, nil)
}

// Leave records that host announced its departure at t (it drained and
// exited on purpose): the silence of its heartbeats that follows is not a
// failure, so Silence reports no Down for it until the host sends a
// heartbeat after t. A Down not yet published for a silence that began by t
// (a replay that saw the delete marker first) is withdrawn. The drain
// prediction, fulfilled, is cleared.
func (tr *Tracker) Leave(host string, t time.Time) []Decision {
	h := tr.host(host)
	if h.left && !t.After(h.leftAt) {
		return nil
	}
	if !h.lastHB.IsZero() && h.lastHB.After(t) {
		return nil // a heartbeat after the departure: the host is back already
	}
	h.left, h.leftAt = true, t
	if h.down {
		h.down = false
	}
	var out []Decision
	if h.drain != nil {
		h.drain = nil
		if d, ok := h.episode(CauseDrain).close(t, "host left after draining"); ok {
			out = append(out, d)
		}
	}
	return out
}

// Left reports whether host announced its departure and has been silent since.
func (tr *Tracker) Left(host string) (time.Time, bool) {
	if h := tr.hosts[host]; h != nil && h.left {
		return h.leftAt, true
	}
	return time.Time{}, false
}

// Silence reports that host's heartbeats stopped; detectedAt is the time the
// silence was established (the delete marker's time). It returns one Down
// per silence: a repeated marker is ignored until a heartbeat arrives. A
// host that announced its departure (Leave) gets no Down.
func (tr *Tracker) Silence(host string, detectedAt time.Time, reason string) []Decision {
	h := tr.host(host)
	if h.down || h.left {
		return nil // already down, or it announced its departure
	}
	if !h.lastHB.IsZero() && !detectedAt.After(h.lastHB) {
		return nil // a heartbeat came after the silence began
	}
	h.down, h.downAt, h.downReason = true, detectedAt, reason
	last := h.lastHB
	if last.IsZero() {
		last = detectedAt
	}
	return []Decision{{Kind: Down, At: detectedAt, Down: HostDown{Host: host, LastSeen: last, DetectedAt: detectedAt, Reason: reason}}}
}

// IsDown reports whether host is silent, and since when.
func (tr *Tracker) IsDown(host string) (time.Time, bool) {
	if h := tr.hosts[host]; h != nil && h.down {
		return h.downAt, true
	}
	return time.Time{}, false
}

// Schedule adds (or replaces) a maintenance window, received at event time at.
func (tr *Tracker) Schedule(m Maintenance, at time.Time) []Decision {
	h := tr.host(m.Host)
	if !m.End.After(at) && !m.End.IsZero() {
		return nil // already over
	}
	h.windows[m.ID] = m
	return tr.syncMaintenance(h, at, at, "", nil)
}

// Cancel withdraws a maintenance window.
func (tr *Tracker) Cancel(hostName, id, reason string, at time.Time) []Decision {
	h := tr.host(hostName)
	if _, ok := h.windows[id]; !ok {
		return nil
	}
	delete(h.windows, id)
	why := "maintenance " + id + " cancelled"
	if reason != "" {
		why += ": " + reason
	}
	return tr.syncMaintenance(h, at, time.Time{}, why, nil)
}

// Drain records a drain notice (a report from the host).
func (tr *Tracker) Drain(d Drain, at time.Time) []Decision {
	h := tr.host(d.Host)
	h.reported = true
	h.drain = &d
	p := Prediction{
		ID: fmt.Sprintf("%s.%s.%d", d.Host, CauseDrain, d.Deadline.UnixMilli()), Host: d.Host, Cause: CauseDrain,
		ExpectedOfflineAt: d.Deadline.UTC(), Confidence: 1,
		Evidence: map[string]any{"predictor": "drain", "deadline": d.Deadline.UTC().Format(time.RFC3339Nano),
			"reason": d.Reason, "streams": d.Streams,
			"summary": fmt.Sprintf("host draining, offline at its deadline %s", d.Deadline.UTC().Format(time.RFC3339))},
	}
	var out []Decision
	if dec, ok := h.episode(CauseDrain).set(at, p); ok {
		out = append(out, dec)
	}
	return tr.syncMaintenance(h, at, time.Time{}, "", out)
}

// Advance moves event time to now for windows and drains: maintenance
// windows that have ended are removed (and their prediction cleared). The
// service calls it with the wall clock so a host that stays silent after its
// maintenance still gets its prediction cleared.
func (tr *Tracker) Advance(now time.Time) []Decision {
	var out []Decision
	for _, name := range sortedKeys(tr.hosts) {
		out = tr.syncMaintenance(tr.hosts[name], now, now, "maintenance window ended", out)
	}
	return out
}

// syncMaintenance removes windows ended by end (if not zero), then makes the
// maintenance prediction match the earliest remaining window.
func (tr *Tracker) syncMaintenance(h *host, at, end time.Time, why string, out []Decision) []Decision {
	if !end.IsZero() {
		for id, m := range h.windows {
			if !m.End.IsZero() && !end.Before(m.End) {
				delete(h.windows, id)
			}
		}
	}
	ep := h.episode(CauseMaintenance)
	if len(h.windows) == 0 {
		if why == "" {
			why = "no maintenance scheduled"
		}
		if d, ok := ep.close(at, why); ok {
			out = append(out, d)
		}
		return out
	}
	if !h.reported {
		return out // pending until the host reports
	}
	ws := make([]Maintenance, 0, len(h.windows))
	for _, m := range h.windows {
		ws = append(ws, m)
	}
	slices.SortFunc(ws, func(a, b Maintenance) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	m := ws[0]
	ids := make([]any, len(ws))
	for i, w := range ws {
		ids[i] = w.ID
	}
	p := Prediction{
		ID: h.name + "." + CauseMaintenance + "." + m.ID, Host: h.name, Cause: CauseMaintenance,
		ExpectedOfflineAt: m.Start.UTC(), Confidence: 1,
		Evidence: map[string]any{"predictor": "maintenance", "maintenance_id": m.ID,
			"start_at": m.Start.UTC().Format(time.RFC3339Nano), "end_at": m.End.UTC().Format(time.RFC3339Nano),
			"reason": m.Reason, "requested_by": m.RequestedBy, "windows": ids,
			"summary": fmt.Sprintf("maintenance %s scheduled from %s to %s", m.ID,
				m.Start.UTC().Format(time.RFC3339), m.End.UTC().Format(time.RFC3339))},
		Labels: map[string]string{"maintenance_id": m.ID},
	}
	if d, ok := ep.set(at, p); ok {
		out = append(out, d)
	}
	return out
}

// Open returns the open predictions, by host and cause.
func (tr *Tracker) Open() []Prediction {
	var out []Prediction
	for _, name := range sortedKeys(tr.hosts) {
		h := tr.hosts[name]
		for _, c := range causeOrder {
			if e := h.episodes[c]; e != nil && e.open {
				out = append(out, e.pred)
			}
		}
	}
	return out
}

// Adopt takes p, a prediction published elsewhere (another replica, or this
// one before a restart), as the open prediction of its host and cause. It
// returns the decisions that reconcile it with this tracker's own view:
//   - the same id: the higher revision is kept; nothing to publish;
//   - another id open here: the smaller id wins (every replica picks the
//     same) and the loser is cleared;
//   - nothing open here, scheduled cause: p is cleared when no window or
//     drain supports it any more (else kept);
//   - nothing open here, telemetry cause: p is kept open; the clear
//     hysteresis starts at the host's last sample (at, if none).
func (tr *Tracker) Adopt(p Prediction, at time.Time) []Decision {
	h := tr.host(p.Host)
	e := h.episode(p.Cause)
	switch {
	case e.open && e.pred.ID == p.ID:
		if p.Revision > e.pred.Revision {
			e.pred = p
		}
		return nil
	case e.open:
		if p.ID < e.pred.ID {
			loser := e.pred
			e.pred = p
			return []Decision{{Kind: Clear, At: at, Prediction: loser, Reason: "superseded by prediction " + p.ID}}
		}
		return []Decision{{Kind: Clear, At: at, Prediction: p, Reason: "superseded by prediction " + e.pred.ID}}
	}
	switch p.Cause {
	case CauseMaintenance:
		if len(h.windows) == 0 {
			return []Decision{{Kind: Clear, At: at, Prediction: p, Reason: "no maintenance scheduled"}}
		}
	case CauseDrain:
		if h.drain == nil {
			return []Decision{{Kind: Clear, At: at, Prediction: p, Reason: "host reported again after its drain deadline"}}
		}
	}
	e.open, e.pred = true, p
	e.lastHold = at
	if !h.lastT.IsZero() {
		e.lastHold = h.lastT
	}
	return nil
}

// Withdraw closes the open prediction id of host and cause without a
// decision: it was cleared elsewhere.
func (tr *Tracker) Withdraw(hostName, cause, id string, revision int) {
	h := tr.hosts[hostName]
	if h == nil {
		return
	}
	if e := h.episodes[cause]; e != nil && e.open && e.pred.ID == id && revision >= e.pred.Revision {
		e.open = false
	}
}

// Hosts returns the number of hosts tracked.
func (tr *Tracker) Hosts() int { return len(tr.hosts) }

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// OpenFor returns the open prediction of host and cause, if any.
func (tr *Tracker) OpenFor(hostName, cause string) (Prediction, bool) {
	if h := tr.hosts[hostName]; h != nil {
		if e := h.episodes[cause]; e != nil && e.open {
			return e.pred, true
		}
	}
	return Prediction{}, false
}

// Downs returns the hosts currently silent, by host.
func (tr *Tracker) Downs() []HostDown {
	var out []HostDown
	for _, name := range sortedKeys(tr.hosts) {
		h := tr.hosts[name]
		if h.down {
			last := h.lastHB
			if last.IsZero() {
				last = h.downAt
			}
			out = append(out, HostDown{Host: name, LastSeen: last, DetectedAt: h.downAt, Reason: h.downReason})
		}
	}
	return out
}
