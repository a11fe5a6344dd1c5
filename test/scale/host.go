package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/token"
)

// The registry's contract (services/ingest/internal/registry): the host
// record every 2 s, a heartbeat with a 3 s message TTL every second, a
// telemetry sample every second.
const (
	recordEvery    = 2 * time.Second
	heartbeatEvery = time.Second
	heartbeatTTL   = 3 * time.Second
)

// Watch modes of a simulated host's placement watch.
const (
	// watchNotice is what ferry-ingest does (control.NewHostHub): one
	// subscription to placement's notices for the host,
	// ferry.placement.host.<host>.>, and a re-read of the host's streams'
	// records after a reconnection or a drop.
	watchNotice = "notice"
	// watchAll is what ferry-ingest did before the notices: one KV watch of
	// every placement key, so every host receives every change.
	watchAll = "all"
	// watchHost is the subject-filtered alternative: a watch of the keys of
	// the streams the host serves only, re-made (resuming from a revision, so
	// nothing is missed) when streams arrive.
	watchHost = "host"
)

// errRefused is what an attach to a host that is not running gets (the
// RTSP connection is refused).
var errRefused = errors.New("connection refused")

// simHost is one simulated ingest host: it speaks the ingest's control-plane
// protocol (registry record, heartbeats, telemetry, lifecycle events, the
// placement watch, the old host's side of a handover) on its own NATS
// connection, and carries no media.
type simHost struct {
	s        *sim
	id, zone string
	url      string
	capacity int
	source   string

	nc *nats.Conn
	js jetstream.JetStream
	// ajs publishes heartbeats and telemetry asynchronously (errors are
	// counted by its handler), so a slow ack never delays the next beat.
	ajs        jetstream.JetStream
	hostsKV    jetstream.KeyValue
	placements jetstream.KeyValue
	ctx        context.Context
	cancel     context.CancelFunc
	emitCh     chan events.Data
	alive      atomic.Bool
	started    time.Time
	hbSeq      uint64

	// mu guards streams and added.
	mu      sync.Mutex
	streams map[string]*hostedStream
	// added: streams attached since the filtered watch was last made, with
	// the placement revision they were accepted at.
	added map[string]uint64

	watchMsgs, watchBytes atomic.Int64
	watchesMade           atomic.Int64
}

// hostedStream is a stream whose publisher is attached here.
type hostedStream struct {
	ag        *agent
	session   string
	migration string
	rev       uint64 // last placement revision applied
	leaving   string // migration id of the handover in progress
}

func newSimHost(s *sim, i int) *simHost {
	id := fmt.Sprintf("ingest-%04d", i)
	return &simHost{s: s, id: id, zone: fmt.Sprintf("zone-%c", 'a'+i%3), url: fmt.Sprintf("rtsp://10.%d.%d.%d:8554", i/65536%256, i/256%256, i%256),
		capacity: s.cfg.capacity, source: "ferry/ingest/" + id, streams: map[string]*hostedStream{}, added: map[string]uint64{}}
}

// start connects, registers and runs the host's loops until it crashes or
// the simulation ends.
func (h *simHost) start(ctx context.Context) error {
	nc, js, err := bus.Connect(ctx, bus.Config{URL: h.s.natsURL, Name: "scale-" + h.id, Replicas: h.s.cfg.replicas}, h.s.log)
	if err != nil {
		return err
	}
	h.nc, h.js = nc, js
	h.ajs, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(64),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			if h.ctx.Err() == nil {
				h.s.count(strings.SplitN(m.Subject, ".", 3)[1] + "_errors") // hb_errors, telemetry_errors
			}
		}))
	if err != nil {
		nc.Close()
		return err
	}
	if h.hostsKV, err = js.KeyValue(ctx, bus.BucketHosts); err != nil {
		nc.Close()
		return err
	}
	if h.placements, err = js.KeyValue(ctx, bus.BucketPlacements); err != nil {
		nc.Close()
		return err
	}
	h.ctx, h.cancel = context.WithCancel(ctx)
	h.emitCh = make(chan events.Data, 4096)
	h.started = time.Now().UTC()
	h.alive.Store(true)
	if err := h.putRecord(); err != nil {
		// as the ingest does: the registry loop retries in the background
		h.s.count("host_record_errors")
	}
	go h.emitter()
	go h.registry()
	go h.watch()
	return nil
}

// crash stops everything at once, as kill -9 would: no farewell, the
// record stays (stale), heartbeats stop, the connection drops; every
// publisher connected here loses its connection.
func (h *simHost) crash() {
	if !h.alive.Swap(false) {
		return
	}
	h.cancel()
	h.nc.Close()
	h.mu.Lock()
	lost := h.streams
	h.streams = map[string]*hostedStream{}
	h.mu.Unlock()
	for _, hs := range lost {
		go hs.ag.uplinkEnded(h.id)
	}
}

func (h *simHost) hostedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.streams)
}

func (h *simHost) hosts(stream string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.streams[stream]
	return ok
}

func (h *simHost) putRecord() error {
	rec := events.HostRecord{Host: h.id, RTSPURL: h.url, Zone: h.zone, Role: "origin", CapacityStreams: h.capacity,
		Streams: h.hostedCount(), Status: "ok", StartedAt: h.started, UpdatedAt: time.Now().UTC()}
	b, _ := json.Marshal(rec)
	ctx, cancel := context.WithTimeout(h.ctx, 2*time.Second)
	defer cancel()
	if _, err := h.hostsKV.Put(ctx, h.id, b); err != nil {
		return fmt.Errorf("put host record %s: %w", h.id, err)
	}
	return nil
}

// registry publishes the record, heartbeats and telemetry at the ingest's
// rates, each host at its own phase within the second.
func (h *simHost) registry() {
	select {
	case <-h.ctx.Done():
		return
	case <-time.After(time.Duration(rand.Int64N(int64(heartbeatEvery)))):
	}
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for n := 0; ; n++ {
		h.heartbeat()
		h.telemetry()
		if n%int(recordEvery/heartbeatEvery) == 0 {
			if err := h.putRecord(); err != nil && h.ctx.Err() == nil {
				h.s.count("host_record_errors")
			}
		}
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *simHost) heartbeat() {
	h.hbSeq++
	h.publishFast(events.Heartbeat{Host: h.id, Seq: h.hbSeq, At: time.Now().UTC()}, jetstream.WithMsgTTL(heartbeatTTL))
}

// publishFast publishes a heartbeat or a telemetry sample as the ingest
// does (same envelope, subject, Nats-Msg-Id and TTL) but cheaply: the shape
// was validated against its schema once (checkShapes), so it is not
// validated again, and the publish is asynchronous. At 1,000 hosts that is
// 2,000 messages a second whose schema validation and synchronous acks
// starved the simulation before (docs/scale.md).
func (h *simHost) publishFast(d events.Data, opts ...jetstream.PublishOpt) {
	m, id, err := envelopeMsg(h.source, d)
	if err != nil {
		h.s.count("event_marshal_errors")
		return
	}
	if _, err := h.ajs.PublishMsgAsync(m, append([]jetstream.PublishOpt{jetstream.WithMsgID(id)}, opts...)...); err != nil && h.ctx.Err() == nil {
		h.s.count("async_publish_refused")
	}
}

// publishEvent publishes a lifecycle event as events.Publish does (same
// envelope, subject and Nats-Msg-Id, synchronously) without validating it
// each time: checkShapes validated its shape once.
func (h *simHost) publishEvent(ctx context.Context, d events.Data) error {
	m, id, err := envelopeMsg(h.source, d)
	if err != nil {
		return err
	}
	_, err = h.js.PublishMsg(ctx, m, jetstream.WithMsgID(id))
	return err
}

// envelopeMsg is d's message as events.Publish builds it, without the
// schema validation.
func envelopeMsg(source string, d events.Data) (*nats.Msg, string, error) {
	env, err := events.New(source, d)
	if err != nil {
		return nil, "", err
	}
	body, err := json.Marshal(env)
	if err != nil {
		return nil, "", err
	}
	m := nats.NewMsg(env.Subject)
	m.Data = body
	m.Header.Set(events.HeaderType, env.Type)
	return m, env.ID, nil
}

// checkShapes validates, once, each kind of event the simulated hosts send
// (publishFast and publishEvent do not).
func checkShapes() error {
	now := time.Now().UTC()
	for _, d := range []events.Data{events.Heartbeat{Host: "ingest-0000", Seq: 1, At: now}, telemetrySample("ingest-0000", 1, 100, now),
		events.PublisherAttached{Stream: "cam-000001", Host: "ingest-0000", SessionID: "s-0123456789abcdef", ClientID: "agent-000001",
			Capabilities: agentCaps, MigrationID: "m-0123456789abcdef", Mode: "push", At: now},
		events.StreamCeased{Stream: "cam-000001", Host: "ingest-0000", NewHost: "ingest-0001", MigrationID: "m-0123456789abcdef", At: now},
		events.PublisherDetached{Stream: "cam-000001", Host: "ingest-0000", SessionID: "s-0123456789abcdef", ClientID: "agent-000001",
			MigrationID: "m-0123456789abcdef", Reason: "moved to ingest-0001", At: now}} {
		if _, _, err := events.Marshal("ferry/ingest/ingest-0000", d); err != nil {
			return fmt.Errorf("simulated %s: %w", d.EventType(), err)
		}
	}
	return nil
}

// telemetry sends a steady sample: the simulation tests the control plane's
// reaction to maintenance and loss, not the trend predictors.
func (h *simHost) telemetry() {
	h.publishFast(telemetrySample(h.id, h.hbSeq, int64(h.hostedCount()), time.Now().UTC()))
}

func telemetrySample(host string, seq uint64, n int64, at time.Time) events.Telemetry {
	return events.Telemetry{Host: host, At: at, CPUSeconds: float64(seq) * 0.2, CPUPercent: 20,
		MemBytes: 400<<20 + n<<17, MemLimit: 8 << 30, FDs: 40 + 3*n, FDLimit: 1 << 20, Goroutines: 50 + 8*n,
		Publishers: n, Readers: n, Streams: n, BitrateIn: n * 4_000_000, BitrateOut: n * 4_000_000}
}

// emit queues a lifecycle event; the emitter publishes in order off the
// caller's path, as the ingest's emit package does.
func (h *simHost) emit(d events.Data) {
	select {
	case h.emitCh <- d:
	default:
		h.s.count("events_dropped")
	}
}

func (h *simHost) emitter() {
	for {
		select {
		case <-h.ctx.Done():
			return
		case d := <-h.emitCh:
			var err error
			for attempt := 0; attempt < 5; attempt++ {
				ctx, cancel := context.WithTimeout(h.ctx, 3*time.Second)
				err = h.publishEvent(ctx, d)
				cancel()
				if err == nil || h.ctx.Err() != nil {
					break
				}
				time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
			}
			if err != nil && h.ctx.Err() == nil {
				h.s.count("event_publish_errors")
			}
		}
	}
}

// attach is a publisher's RTSP ANNOUNCE+RECORD with its publish URL: the
// token is checked as the ingest checks it, the placement must name this
// host, and publisher_attached is emitted with the migration id.
func (h *simHost) attach(ag *agent, rawURL, sessionID string) error {
	if !h.alive.Load() {
		return errRefused
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("publish url: %w", err)
	}
	if strings.TrimPrefix(u.Path, "/") != ag.stream {
		return fmt.Errorf("publish url %s: path is not /%s", u.Path, ag.stream)
	}
	claims, err := token.Verify(h.s.secret, u.Query().Get(token.QueryParam), time.Now())
	if err == nil {
		err = claims.Check(ag.stream, h.id)
	}
	if err != nil {
		h.s.count("attach_token_refused")
		return fmt.Errorf("401/403: %w", err)
	}
	ctx, cancel := context.WithTimeout(h.ctx, 3*time.Second)
	defer cancel()
	e, err := h.placements.Get(ctx, events.PlacementKey(ag.stream))
	if err != nil {
		return fmt.Errorf("503: placement of %s: %w", ag.stream, err)
	}
	var pl events.Placement
	if err := json.Unmarshal(e.Value(), &pl); err != nil {
		return fmt.Errorf("placement of %s: %w", ag.stream, err)
	}
	if pl.Host != h.id {
		h.s.count("attach_not_placed_here")
		return fmt.Errorf("403: stream is placed on %s, not here", pl.Host)
	}
	mig := claims.MigrationID
	if mig == "" {
		mig = pl.MigrationID
	}
	h.mu.Lock()
	if _, ok := h.streams[ag.stream]; !ok && len(h.streams) >= h.capacity {
		h.mu.Unlock()
		return errors.New("503: host is at capacity")
	}
	hs := h.streams[ag.stream]
	if hs == nil {
		hs = &hostedStream{}
		h.streams[ag.stream] = hs
		h.added[ag.stream] = e.Revision()
	}
	hs.ag, hs.session, hs.migration, hs.leaving = ag, sessionID, mig, ""
	hs.rev = max(hs.rev, e.Revision())
	h.mu.Unlock()
	h.emit(events.PublisherAttached{Stream: ag.stream, Host: h.id, SessionID: sessionID, ClientID: ag.client,
		Capabilities: agentCaps, MigrationID: mig, Mode: "push", At: time.Now().UTC()})
	return nil
}

// watch runs the placement watch in the configured mode until the host stops.
func (h *simHost) watch() {
	switch h.s.cfg.watch {
	case watchNotice:
		h.watchNotices()
		return
	case watchHost:
		h.watchFiltered()
		return
	}
	for h.ctx.Err() == nil {
		w, err := h.placements.Watch(h.ctx, events.PlacementKey(">"), jetstream.UpdatesOnly())
		if err != nil {
			bus.Sleep(h.ctx, 200*time.Millisecond)
			continue
		}
		h.watchesMade.Add(1)
		for e := range w.Updates() {
			if e != nil {
				h.onPlacement(e)
			}
		}
		_ = w.Stop()
	}
}

// watchFiltered watches only the keys of the streams hosted here. When
// streams arrived, the watch is re-made at most every RewatchEvery with the
// new keys, resuming from the oldest revision at which one of them was
// accepted (changes already applied are skipped by revision).
func (h *simHost) watchFiltered() {
	var w jetstream.KeyWatcher
	stop := func() {
		if w != nil {
			_ = w.Stop()
			w = nil
		}
	}
	defer stop()
	t := time.NewTicker(h.s.cfg.rewatch)
	defer t.Stop()
	var updates <-chan jetstream.KeyValueEntry
	for {
		select {
		case <-h.ctx.Done():
			return
		case e, ok := <-updates:
			if !ok {
				updates = nil
				stop()
				continue
			}
			if e != nil {
				h.onPlacement(e)
			}
			continue
		case <-t.C:
		}
		h.mu.Lock()
		if len(h.added) == 0 && w != nil {
			h.mu.Unlock()
			continue
		}
		from := uint64(0)
		for _, rev := range h.added {
			if from == 0 || rev < from {
				from = rev
			}
		}
		keys := make([]string, 0, len(h.streams))
		for s := range h.streams {
			keys = append(keys, events.PlacementKey(s))
		}
		added := h.added
		h.added = map[string]uint64{}
		h.mu.Unlock()
		if len(keys) == 0 {
			continue
		}
		stop()
		opts := []jetstream.WatchOpt{jetstream.UpdatesOnly()}
		if from > 0 {
			opts = []jetstream.WatchOpt{jetstream.ResumeFromRevision(from)}
		}
		nw, err := h.placements.WatchFiltered(h.ctx, keys, opts...)
		if err != nil {
			h.mu.Lock()
			for s, rev := range added { // retry them at the next tick
				if _, ok := h.added[s]; !ok {
					h.added[s] = rev
				}
			}
			h.mu.Unlock()
			h.s.count("watch_errors")
			continue
		}
		h.watchesMade.Add(1)
		w, updates = nw, nw.Updates()
	}
}

// watchNotices follows placement's notices for this host as ferry-ingest's
// hub does: one subscription that never changes, and the hosted streams'
// records read again after a reconnection or dropped notices.
func (h *simHost) watchNotices() {
	sub, err := h.nc.Subscribe(subject.PlacementHostAll(h.id), func(m *nats.Msg) {
		h.watchMsgs.Add(1)
		h.watchBytes.Add(int64(len(m.Subject) + len(m.Data) + len(bus.HeaderPlacementRevision) + 24))
		pl, rev, err := bus.PlacementNotice(m)
		if err != nil {
			h.s.count("bad_placement_notices")
			return
		}
		h.applyPlacement(pl.Stream, pl, rev)
	})
	if err != nil {
		h.s.count("watch_errors")
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(1<<20, 256<<20)
	h.watchesMade.Add(1)
	reconnects, dropped := h.nc.Stats().Reconnects, 0
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		d, _ := sub.Dropped()
		if r := h.nc.Stats().Reconnects; r != reconnects || d != dropped {
			reconnects, dropped = r, d
			h.s.count("watch_resyncs")
			h.resync()
		}
	}
}

// resync reads the records of the streams hosted here again.
func (h *simHost) resync() {
	h.mu.Lock()
	streams := make([]string, 0, len(h.streams))
	for s := range h.streams {
		streams = append(streams, s)
	}
	h.mu.Unlock()
	for _, s := range streams {
		ctx, cancel := context.WithTimeout(h.ctx, 3*time.Second)
		e, err := h.placements.Get(ctx, events.PlacementKey(s))
		cancel()
		if err == nil {
			h.onPlacement(e)
		}
	}
}

// onPlacement handles one change from a KV watch.
func (h *simHost) onPlacement(e jetstream.KeyValueEntry) {
	h.watchMsgs.Add(1)
	h.watchBytes.Add(int64(len(e.Key()) + len(e.Value())))
	if e.Operation() != jetstream.KeyValuePut {
		return
	}
	var pl events.Placement
	if err := json.Unmarshal(e.Value(), &pl); err != nil {
		return
	}
	h.applyPlacement(strings.TrimPrefix(e.Key(), events.PlacementKey("")), pl, e.Revision())
}

// applyPlacement handles one placement change, as the ingest's hub and
// handover do: a stream hosted here that now lives elsewhere is handed over.
func (h *simHost) applyPlacement(stream string, pl events.Placement, rev uint64) {
	h.mu.Lock()
	hs := h.streams[stream]
	if hs == nil || rev <= hs.rev {
		h.mu.Unlock()
		return
	}
	hs.rev = rev
	if pl.Host == h.id {
		hs.leaving = ""
		h.mu.Unlock()
		return
	}
	if pl.Host == "" || pl.MigrationID == "" || pl.MigrationID == hs.leaving {
		h.mu.Unlock()
		return
	}
	hs.leaving = pl.MigrationID
	h.mu.Unlock()
	go h.handover(stream, pl)
}

// handover is the old host's side of a move: wait until the new host reports
// the publisher attached, then cease (stream_ceased, publisher_detached) and
// end the old publisher session; at the deadline cease anyway.
func (h *simHost) handover(stream string, pl events.Placement) {
	deadline := pl.Deadline
	if deadline.IsZero() {
		deadline = time.Now().Add(30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(h.ctx, deadline)
	defer cancel()
	attached := h.s.attach.wait(ctx, stream, pl.Host, pl.MigrationID)
	if h.ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	hs := h.streams[stream]
	if hs == nil || hs.leaving != pl.MigrationID {
		h.mu.Unlock()
		return
	}
	delete(h.streams, stream)
	h.mu.Unlock()
	if !attached {
		h.s.count("handover_no_attach")
	}
	now := time.Now().UTC()
	h.emit(events.StreamCeased{Stream: stream, Host: h.id, NewHost: pl.Host, MigrationID: pl.MigrationID, At: now})
	h.emit(events.PublisherDetached{Stream: stream, Host: h.id, SessionID: hs.session, ClientID: hs.ag.client,
		MigrationID: pl.MigrationID, Reason: "moved to " + pl.Host, At: now})
	hs.ag.uplinkEnded(h.id)
}

// attachments dispatches publisher_attached events to the handovers waiting
// for them. The real ingest opens one ordered consumer per handover
// (control.Attachments); the simulation reads them once for every host from
// the observer's subscription, which costs the hosts' links nothing. mu
// guards both maps.
type attachments struct {
	mu      sync.Mutex
	waiting map[string][]chan struct{}
	seen    map[string]time.Time
}

func newAttachments() *attachments {
	return &attachments{waiting: map[string][]chan struct{}{}, seen: map[string]time.Time{}}
}

func attachKey(stream, host, mig string) string { return stream + "|" + host + "|" + mig }

// arrived records a publisher_attached event.
func (a *attachments) arrived(stream, host, mig string) {
	k := attachKey(stream, host, mig)
	a.mu.Lock()
	defer a.mu.Unlock()
	if mig != "" { // the initial publish carries none: nobody waits for it
		a.seen[k] = time.Now()
	}
	for _, ch := range a.waiting[k] {
		close(ch)
	}
	delete(a.waiting, k)
	if mig == "" {
		return
	}
	// a publisher reconnecting without a migration id matches any migration
	for _, ch := range a.waiting[attachKey(stream, host, "")] {
		close(ch)
	}
	delete(a.waiting, attachKey(stream, host, ""))
}

// wait returns true once stream's publisher is attached on host for mig.
func (a *attachments) wait(ctx context.Context, stream, host, mig string) bool {
	k := attachKey(stream, host, mig)
	a.mu.Lock()
	if _, ok := a.seen[k]; ok {
		a.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	a.waiting[k] = append(a.waiting[k], ch)
	a.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// prune forgets attachments older than age.
func (a *attachments) prune(age time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, at := range a.seen {
		if time.Since(at) > age {
			delete(a.seen, k)
		}
	}
}
