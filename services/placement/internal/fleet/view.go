// Package fleet is placement's view of the ingest hosts: their registry
// records (liveness, capacity, load) and the open signals that make a host
// unfit to receive streams or make its streams leave (outage predictions,
// drains, host-down reports). It also holds the host-choice algorithm
// (Pick) and its ranking rule (Fit), with which placement's index also
// ranks hosts as the view reports their changes (Observe). The view is fed
// from outside (a KV watcher and an event consumer) and is safe for
// concurrent use.
package fleet

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/obs"
)

// NamePattern is the pattern of stream, host and client names (subject tokens).
var NamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ErrAbsurdCapacity marks a host record whose declared capacity cannot be real.
var ErrAbsurdCapacity = errors.New("absurd capacity")

// Config bounds what the view accepts.
type Config struct {
	// StaleAfter: a record not refreshed for this long is not heartbeating
	// (3× the ingest's 2 s refresh by default).
	StaleAfter time.Duration
	// MaxCapacityStreams and MaxCapacityBitrate reject absurd declarations.
	MaxCapacityStreams int
	MaxCapacityBitrate int64
	// DefaultCapacityStreams applies when a record declares 0 streams.
	DefaultCapacityStreams int
	// EvacuationLead: a predicted outage further away than this is not
	// evacuated yet (the host only stops receiving new streams).
	EvacuationLead time.Duration
}

// Prediction is an open outage prediction on a host.
type Prediction struct {
	ID                string
	Cause             string
	ExpectedOfflineAt time.Time
	Revision          int
	// MaintenanceID links a maintenance prediction to its window, if known.
	MaintenanceID string
}

type hostState struct {
	rec     *events.HostRecord
	invalid error

	predictions map[string]Prediction
	// draining is a Draining event not yet superseded by a restart.
	drainAt       time.Time // event time
	drainDeadline time.Time
	draining      bool
	// down is a HostDown report not yet superseded by a fresh record.
	down         bool
	downDetected time.Time
	downReason   string

	lastSeq uint64
}

// View is the current state of the fleet. The mutex guards hosts and observe.
type View struct {
	cfg Config
	log zerolog.Logger
	now func() time.Time

	mu    sync.RWMutex
	hosts map[string]*hostState
	// observe, if set, is told every change of a host (under mu, so in
	// the order the changes were made).
	observe func(Host)

	changed chan struct{}
}

// NewView returns an empty view. now may be nil (time.Now).
func NewView(cfg Config, log zerolog.Logger, now func() time.Time) *View {
	if now == nil {
		now = time.Now
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 6 * time.Second
	}
	return &View{cfg: cfg, log: log.With().Str(obs.FieldComponent, "fleet").Logger(), now: now,
		hosts: map[string]*hostState{}, changed: make(chan struct{}, 1)}
}

// Changed is signalled (coalesced) after every change of state.
func (v *View) Changed() <-chan struct{} { return v.changed }

func (v *View) notify() {
	select {
	case v.changed <- struct{}{}:
	default:
	}
}

func (v *View) host(name string) *hostState {
	h := v.hosts[name]
	if h == nil {
		h = &hostState{predictions: map[string]Prediction{}}
		v.hosts[name] = h
	}
	return h
}

// CheckRecord validates a registry record: names, URL and declared capacity.
func (c Config) CheckRecord(key string, r events.HostRecord) error {
	var errs []error
	if !NamePattern.MatchString(r.Host) {
		errs = append(errs, fmt.Errorf("host %q: not a valid host name", r.Host))
	} else if key != "" && key != r.Host {
		errs = append(errs, fmt.Errorf("host %q: stored under key %q", r.Host, key))
	}
	if r.Role != "edge" && !strings.HasPrefix(r.RTSPURL, "rtsp://") && !strings.HasPrefix(r.RTSPURL, "rtsps://") {
		errs = append(errs, fmt.Errorf("rtsp_url %q: must be rtsp://host:port", r.RTSPURL))
	}
	if r.CapacityStreams < 0 || (c.MaxCapacityStreams > 0 && r.CapacityStreams > c.MaxCapacityStreams) {
		errs = append(errs, fmt.Errorf("%w: capacity_streams %d (allowed 0..%d)", ErrAbsurdCapacity, r.CapacityStreams, c.MaxCapacityStreams))
	}
	if r.CapacityBitrate < 0 || (c.MaxCapacityBitrate > 0 && r.CapacityBitrate > c.MaxCapacityBitrate) {
		errs = append(errs, fmt.Errorf("%w: capacity_bitrate %d (allowed 0..%d)", ErrAbsurdCapacity, r.CapacityBitrate, c.MaxCapacityBitrate))
	}
	if r.Streams < 0 || r.BitrateIn < 0 {
		errs = append(errs, fmt.Errorf("%w: negative load (streams %d, bitrate_in %d)", ErrAbsurdCapacity, r.Streams, r.BitrateIn))
	}
	return errors.Join(errs...)
}

// ApplyRecord stores a registry record (rec nil: the key was deleted).
// Invalid records are logged and make the host unusable.
//
// Changed is signalled only when the record changes whether or how the host
// must be evacuated (status, deadline, a host_down or drain or prediction
// it ends): a refresh of every host's record every 2 s would otherwise wake
// the decider hundreds of times a second at fleet size, each time judging
// every host. Staleness is judged by time, not by this signal.
func (v *View) ApplyRecord(key string, rec *events.HostRecord) {
	v.mu.Lock()
	defer v.mu.Unlock()
	before, was := v.evacuation(key)
	_, known := v.hosts[key]
	defer func() {
		after, is := v.evacuation(key)
		if !known || was != is || !sameEvacuation(before, after) {
			v.notify()
		}
	}()
	if rec == nil {
		if h := v.hosts[key]; h != nil {
			h.rec, h.invalid = nil, nil
			v.observed(key, h)
		}
		return
	}
	h := v.host(key)
	err := v.cfg.CheckRecord(key, *rec)
	if err != nil && (h.invalid == nil || h.invalid.Error() != err.Error()) {
		v.log.Error().Err(err).Str(obs.FieldHost, key).Msg("host record rejected: host excluded from placement")
	}
	r := *rec
	h.rec, h.invalid = &r, err
	defer v.observed(key, h)
	// A record refreshed after a host-down report means the host is back.
	if h.down && r.UpdatedAt.After(h.downDetected) {
		h.down = false
		v.log.Info().Str(obs.FieldHost, key).Msg("host registering again after host_down")
	}
	if h.draining && r.StartedAt.After(h.drainAt) && r.Status != "draining" {
		h.draining = false
	}
	for id, p := range h.predictions {
		if r.StartedAt.After(p.ExpectedOfflineAt) {
			delete(h.predictions, id)
			v.log.Info().Str(obs.FieldHost, key).Str("prediction_id", id).Msg("host restarted after its predicted outage: prediction closed")
		}
	}
}

// ApplyEvent applies a health or drain event at stream sequence seq; events
// of a host at or below the last applied sequence are ignored, so a replay
// or a second feed cannot move the state backwards. Other types are ignored.
func (v *View) ApplyEvent(env events.Envelope, seq uint64) error {
	var host string
	var apply func(h *hostState)
	switch env.Type {
	case events.TypeOutagePredicted:
		_, e, err := decode[events.OutagePredicted](env)
		if err != nil {
			return err
		}
		host = e.Host
		apply = func(h *hostState) {
			p := Prediction{ID: e.PredictionID, Cause: e.Cause, ExpectedOfflineAt: e.ExpectedOfflineAt, Revision: e.Revision}
			if e.Labels != nil {
				p.MaintenanceID = e.Labels["maintenance_id"]
			}
			if s, ok := e.Evidence["maintenance_id"].(string); ok && p.MaintenanceID == "" {
				p.MaintenanceID = s
			}
			if old, ok := h.predictions[e.PredictionID]; ok && old.Revision > e.Revision {
				return
			}
			h.predictions[e.PredictionID] = p
		}
	case events.TypeOutageCleared:
		_, e, err := decode[events.OutageCleared](env)
		if err != nil {
			return err
		}
		host = e.Host
		apply = func(h *hostState) { delete(h.predictions, e.PredictionID) }
	case events.TypeMaintenanceCancelled:
		_, e, err := decode[events.MaintenanceCancelled](env)
		if err != nil {
			return err
		}
		host = e.Host
		apply = func(h *hostState) {
			for id, p := range h.predictions {
				if p.Cause == "maintenance" && (p.MaintenanceID == e.MaintenanceID || id == e.MaintenanceID ||
					strings.Contains(id, e.MaintenanceID)) {
					delete(h.predictions, id)
				}
			}
		}
	case events.TypeDraining:
		_, e, err := decode[events.Draining](env)
		if err != nil {
			return err
		}
		host = e.Host
		apply = func(h *hostState) {
			// A drain announced before the host's current start is over.
			if h.rec != nil && h.rec.StartedAt.After(env.Time) && h.rec.Status != "draining" {
				return
			}
			h.draining, h.drainAt, h.drainDeadline = true, env.Time, e.Deadline
		}
	case events.TypeHostDown:
		_, e, err := decode[events.HostDown](env)
		if err != nil {
			return err
		}
		host = e.Host
		apply = func(h *hostState) {
			if h.rec != nil && h.rec.UpdatedAt.After(e.DetectedAt) {
				return // the host registered again after the report
			}
			h.down, h.downDetected, h.downReason = true, e.DetectedAt, e.Reason
		}
	default:
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	h := v.host(host)
	if seq != 0 && seq <= h.lastSeq {
		return nil
	}
	if seq != 0 {
		h.lastSeq = seq
	}
	apply(h)
	v.observed(host, h)
	v.notify()
	return nil
}

func decode[T events.Data](env events.Envelope) (events.Envelope, T, error) {
	var d T
	if err := jsonUnmarshal(env.Data, &d); err != nil {
		return env, d, fmt.Errorf("decode %s: %w", env.Type, err)
	}
	return env, d, nil
}

// Status is one host's fitness.
type Status struct {
	Host         string
	Known        bool
	Heartbeating bool
	Draining     bool
	Down         bool
	Predicted    bool
	Invalid      error
	Edge         bool
	// Usable: the host may receive streams (new or moved).
	Usable bool
	// Reason says why the host is not usable ("" when it is).
	Reason string
}

func (v *View) status(name string, h *hostState, now time.Time) Status {
	s := Status{Host: name}
	if h == nil {
		s.Reason = "unknown host"
		return s
	}
	s.Known = h.rec != nil
	s.Invalid = h.invalid
	s.Down = h.down
	s.Draining = h.draining || (h.rec != nil && h.rec.Status == "draining")
	s.Predicted = len(h.predictions) > 0
	if h.rec != nil {
		s.Edge = h.rec.Role == "edge"
		s.Heartbeating = fresh(h.rec.UpdatedAt, v.cfg.StaleAfter, now)
	}
	switch {
	case !s.Known:
		s.Reason = "no registry record"
	case s.Edge:
		s.Reason = "edge-only host"
	case s.Invalid != nil:
		s.Reason = "invalid record: " + s.Invalid.Error()
	case s.Down:
		s.Reason = "host down: " + h.downReason
	case s.Draining:
		s.Reason = "draining"
	case s.Predicted:
		s.Reason = "outage predicted (" + predictionIDs(h) + ")"
	case !s.Heartbeating:
		s.Reason = fmt.Sprintf("not heartbeating (record %s old)", now.Sub(h.rec.UpdatedAt).Round(time.Millisecond))
	default:
		s.Usable = true
	}
	return s
}

func predictionIDs(h *hostState) string {
	ids := make([]string, 0, len(h.predictions))
	for id, p := range h.predictions {
		ids = append(ids, id+" "+p.Cause)
	}
	sort.Strings(ids)
	return strings.Join(ids, ", ")
}

// Status returns host's fitness now.
func (v *View) Status(host string) Status {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.status(host, v.hosts[host], v.now())
}

// Candidate is a usable host with its declared capacity and reported load.
type Candidate struct {
	Host            string
	Zone            string
	RTSPURL         string
	CapacityStreams int
	CapacityBitrate int64
	Streams         int
	BitrateIn       int64
}

// Snapshot is what Pick needs: usable hosts, every known host's zone, and
// why the others are unusable (for error messages).
type Snapshot struct {
	Candidates []Candidate
	Zones      map[string]string
	Unusable   map[string]string
}

// Snapshot returns the fleet as Pick sees it, sorted by host name.
func (v *View) Snapshot() Snapshot {
	v.mu.RLock()
	defer v.mu.RUnlock()
	now := v.now()
	s := Snapshot{Zones: map[string]string{}, Unusable: map[string]string{}}
	for name, h := range v.hosts {
		if h.rec != nil {
			s.Zones[name] = h.rec.Zone
		}
		st := v.status(name, h, now)
		if !st.Usable {
			if !st.Edge && (st.Known || st.Down || st.Predicted || st.Draining) {
				s.Unusable[name] = st.Reason
			}
			continue
		}
		s.Candidates = append(s.Candidates, v.candidate(name, h.rec))
	}
	sort.Slice(s.Candidates, func(i, j int) bool { return s.Candidates[i].Host < s.Candidates[j].Host })
	return s
}

func (v *View) candidate(name string, r *events.HostRecord) Candidate {
	c := Candidate{Host: name, Zone: r.Zone, RTSPURL: r.RTSPURL, CapacityStreams: r.CapacityStreams,
		CapacityBitrate: r.CapacityBitrate, Streams: r.Streams, BitrateIn: r.BitrateIn}
	if c.CapacityStreams == 0 {
		c.CapacityStreams = v.cfg.DefaultCapacityStreams
	}
	return c
}

func fresh(updatedAt time.Time, staleAfter time.Duration, now time.Time) bool {
	return now.Sub(updatedAt) <= staleAfter
}

// Host is one host as an index kept for Pick needs it: everything that
// decides whether and how Pick may choose it, except the passing of time
// (a record goes stale StaleAfter after its UpdatedAt, with no change).
type Host struct {
	Name string
	// Known: the host has a registry record; Zone is then its zone (Pick
	// spreads a client's streams across the zones of known hosts).
	Known bool
	Zone  string
	// Usable: the host may receive streams while its record is Fresh
	// (Status.Usable is Usable && Fresh(now)).
	Usable bool
	// Candidate is the host as Snapshot lists it (when Usable).
	Candidate  Candidate
	UpdatedAt  time.Time
	StaleAfter time.Duration
}

// Fresh reports whether the host's record is heartbeating at now, by the
// same rule as Status.
func (h Host) Fresh(now time.Time) bool { return fresh(h.UpdatedAt, h.StaleAfter, now) }

func (v *View) hostOf(name string, h *hostState) Host {
	out := Host{Name: name, StaleAfter: v.cfg.StaleAfter}
	if h.rec == nil {
		return out
	}
	out.Known, out.Zone, out.UpdatedAt = true, h.rec.Zone, h.rec.UpdatedAt
	draining := h.draining || h.rec.Status == "draining"
	out.Usable = h.rec.Role != "edge" && h.invalid == nil && !h.down && !draining && len(h.predictions) == 0
	if out.Usable {
		out.Candidate = v.candidate(name, h.rec)
	}
	return out
}

func (v *View) observed(name string, h *hostState) {
	if v.observe != nil {
		v.observe(v.hostOf(name, h))
	}
}

// Observe makes the view call fn with every host it holds now and then
// with a host after each change of its state, in the order of the changes.
// fn runs under the view's lock: it must not call the view. One observer;
// a second call replaces the first.
func (v *View) Observe(fn func(Host)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.observe = fn
	for name, h := range v.hosts {
		v.observed(name, h)
	}
}

// URL returns host's registered RTSP base URL ("" if unknown).
func (v *View) URL(host string) string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if h := v.hosts[host]; h != nil && h.rec != nil {
		return h.rec.RTSPURL
	}
	return ""
}

// Evacuation says a host's streams must leave.
type Evacuation struct {
	Host string
	// Immediate: the host is down; move at once, deadline now.
	Immediate bool
	// Deadline is when the host is expected offline (zero for Immediate).
	Deadline time.Time
	// StartAt is when moving may begin (Deadline - EvacuationLead).
	StartAt time.Time
	// Reason names the signal ("host_down: ...", "outage_predicted: ...", "draining").
	Reason string
}

// Evacuations lists hosts whose streams must leave, sorted by host.
func (v *View) Evacuations() []Evacuation {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []Evacuation
	for name := range v.hosts {
		if e, ok := v.evacuation(name); ok {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

func sameEvacuation(a, b Evacuation) bool {
	return a.Host == b.Host && a.Immediate == b.Immediate && a.Reason == b.Reason &&
		a.Deadline.Equal(b.Deadline) && a.StartAt.Equal(b.StartAt)
}

// EvacuationOf returns host's evacuation, if its streams must leave.
func (v *View) EvacuationOf(host string) (Evacuation, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.evacuation(host)
}

func (v *View) evacuation(name string) (Evacuation, bool) {
	h := v.hosts[name]
	if h == nil {
		return Evacuation{}, false
	}
	e := Evacuation{Host: name}
	if h.down {
		e.Immediate, e.Reason = true, "host_down: "+h.downReason
		return e, true
	}
	var reasons []string
	if h.draining || (h.rec != nil && h.rec.Status == "draining") {
		d := h.drainDeadline
		if d.IsZero() && h.rec != nil {
			d = h.rec.Deadline
		}
		e.Deadline = d
		reasons = append(reasons, "draining")
	}
	ids := make([]string, 0, len(h.predictions))
	for id := range h.predictions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		p := h.predictions[id]
		if e.Deadline.IsZero() || p.ExpectedOfflineAt.Before(e.Deadline) {
			e.Deadline = p.ExpectedOfflineAt
		}
		reasons = append(reasons, fmt.Sprintf("outage_predicted: %s (prediction %s)", p.Cause, id))
	}
	if len(reasons) == 0 {
		return Evacuation{}, false
	}
	e.Reason = strings.Join(reasons, "; ")
	e.StartAt = e.Deadline.Add(-v.cfg.EvacuationLead)
	if e.Deadline.IsZero() {
		e.StartAt = time.Time{}
	}
	return e, true
}
