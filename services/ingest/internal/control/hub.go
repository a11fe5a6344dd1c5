package control

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
)

// Hub follows placement changes and hands each one to the followers of that
// stream. A host follows every stream it hosts (the handover) and every
// stream its edge serves.
//
// A hub made by NewHostHub subscribes to placement's notices
// (bus.NotifyPlacement) for its host: one core-NATS subscription,
// ferry.placement.host.<host>.>, which never changes as streams arrive, gets
// every change of a stream that lives here or has just left; an edge
// follower (Watch) of a stream that lives elsewhere adds a subscription to
// that stream's notices. A host therefore receives only its own streams'
// changes: with a watch of the whole bucket every host received every change
// (10^8 deliveries for 100,000 placements on 1,000 hosts, docs/scale.md).
// Notices are not stored, so the hub reads every followed stream's record
// again whenever it may have missed some (subscribed, reconnected, notices
// dropped). A hub made by NewHub watches the whole bucket (one KV watch),
// for tools and tests that have no host identity.
//
// A follower gets the stream's current placement, then every change. When a
// follower falls behind, older undelivered placements are dropped for newer
// ones: only where the stream lives now matters. Placements are delivered in
// revision order; none is delivered twice.
type Hub struct {
	pl   Placements
	nc   *nats.Conn // nil: watch the whole bucket
	host string

	mu   sync.Mutex // guards subs and streamSubs
	subs map[string]map[*hubSub]struct{}
	// streamSubs: the subscriptions to the notices of streams edge
	// followers (Watch) follow, with how many followers use each.
	streamSubs map[string]*streamSub

	// synced is closed once a hub on notices has subscribed and read every
	// followed stream for the first time (Synced).
	synced     chan struct{}
	syncedOnce sync.Once
}

// streamSub is a subscription to one stream's notices and its users.
type streamSub struct {
	sub   *nats.Subscription
	users int
}

// hubSub is one follower: a channel (Watch) or a function (Follow).
type hubSub struct {
	stream string
	ch     chan events.Placement
	fn     func(events.Placement)

	mu     sync.Mutex // orders deliveries; held while fn runs
	rev    uint64     // revision of the last placement delivered
	closed bool
}

// followerBuffer is how many placements a follower may have undelivered before
// the oldest is dropped.
const followerBuffer = 2

// NewHub returns a hub over p. Run must be running for followers to get
// changes; Watch delivers the current placement without it.
func NewHub(p Placements) *Hub {
	return &Hub{pl: p, subs: map[string]map[*hubSub]struct{}{}, streamSubs: map[string]*streamSub{},
		synced: make(chan struct{})}
}

// NewHostHub returns the hub of ingest host host: it follows placement's
// notices for that host on nc (see Hub) and reads records from p.
func NewHostHub(p Placements, nc *nats.Conn, host string) *Hub {
	h := NewHub(p)
	h.nc, h.host = nc, host
	return h
}

// Get returns a stream's placement, or ErrNotPlaced.
func (h *Hub) Get(ctx context.Context, stream string) (events.Placement, error) {
	return h.pl.Get(ctx, stream)
}

// Run watches the bucket until ctx ends. A watch request that is lost (a NATS
// node failing over) or a watcher that ends is re-created (bus.WatchKV, from
// the revision after the last one seen); once a watch runs, every followed
// stream is read again, so a change made before the first watch is not lost.
func (h *Hub) Run(ctx context.Context) {
	if h.pl.KV == nil {
		return
	}
	if h.nc != nil {
		h.runNotices(ctx)
		return
	}
	_ = bus.WatchKV(ctx, h.pl.KV, bus.WatchSpec{Keys: []string{events.PlacementKey(">")}, UpdatesOnly: true,
		AttemptTimeout: attemptTimeout, Started: func() { h.resync(ctx) }}, h.forward)
}

// Synced is closed once Run has subscribed to the host's notices and read
// every followed stream for the first time: from then on a change reaches
// the followers only by a notice or a later resync. A hub that watches the
// whole bucket never closes it.
func (h *Hub) Synced() <-chan struct{} { return h.synced }

// forward hands a placement change to the stream's followers.
func (h *Hub) forward(e jetstream.KeyValueEntry) {
	stream := e.Key()[len(events.PlacementKey("")):]
	var pl events.Placement
	if e.Operation() == jetstream.KeyValuePut {
		var err error
		if pl, err = decodePlacement(e.Value()); err != nil {
			return
		}
	}
	h.deliverAll(stream, pl, e.Revision())
}

// noticeCheck is how often a hub on notices checks whether it may have
// missed some (a reconnection, notices dropped for a slow consumer).
const noticeCheck = time.Second

// runNotices follows the host's notices until ctx ends: subscribe, read
// every followed stream again, and again after a reconnection or a drop.
func (h *Hub) runNotices(ctx context.Context) {
	var sub *nats.Subscription
	for sub == nil {
		var err error
		if sub, err = h.nc.Subscribe(subject.PlacementHostAll(h.host), h.onNotice); err == nil {
			break
		}
		if !bus.Sleep(ctx, 200*time.Millisecond) {
			return
		}
	}
	defer func() { _ = sub.Unsubscribe() }()
	// a burst (an evacuation onto this host) must not be dropped
	_ = sub.SetPendingLimits(1<<20, 256<<20)
	_ = h.nc.Flush()
	h.resync(ctx)
	h.syncedOnce.Do(func() { close(h.synced) })
	reconnects, dropped := h.nc.Stats().Reconnects, 0
	t := time.NewTicker(noticeCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r := h.nc.Stats().Reconnects
		d := h.dropped(sub)
		if r != reconnects || d != dropped {
			reconnects, dropped = r, d
			h.resync(ctx)
		}
	}
}

// dropped counts the notices dropped on the host's subscription and on the
// streams' ones.
func (h *Hub) dropped(sub *nats.Subscription) int {
	n, _ := sub.Dropped()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ss := range h.streamSubs {
		d, _ := ss.sub.Dropped()
		n += d
	}
	return n
}

// onNotice hands a notice to the stream's followers.
func (h *Hub) onNotice(m *nats.Msg) {
	pl, rev, err := bus.PlacementNotice(m)
	if err != nil {
		return
	}
	h.deliverAll(pl.Stream, pl, rev)
}

// watchStream subscribes to a stream's notices for an edge follower (the
// host's own subscription gets only those of streams that live here).
func (h *Hub) watchStream(stream string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ss := h.streamSubs[stream]; ss != nil {
		ss.users++
		return
	}
	sub, err := h.nc.Subscribe(subject.PlacementStream(stream), h.onNotice)
	if err != nil {
		return // the host's subscription and resyncs still apply
	}
	_ = sub.SetPendingLimits(1<<16, 64<<20)
	h.streamSubs[stream] = &streamSub{sub: sub, users: 1}
}

func (h *Hub) unwatchStream(stream string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ss := h.streamSubs[stream]
	if ss == nil {
		return
	}
	if ss.users--; ss.users == 0 {
		_ = ss.sub.Unsubscribe()
		delete(h.streamSubs, stream)
	}
}

// resync reads every followed stream's placement again.
func (h *Hub) resync(ctx context.Context) {
	h.mu.Lock()
	streams := make([]string, 0, len(h.subs))
	for s := range h.subs {
		streams = append(streams, s)
	}
	h.mu.Unlock()
	for _, s := range streams {
		pl, rev, found, err := h.get(ctx, s)
		switch {
		case err != nil:
			continue // the watch delivers the next change
		case found:
			h.deliverAll(s, pl, rev)
		default:
			h.deliverDeleted(s)
		}
	}
}

// get reads a stream's placement with its revision.
func (h *Hub) get(ctx context.Context, stream string) (events.Placement, uint64, bool, error) {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	e, err := h.pl.KV.Get(actx, events.PlacementKey(stream))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return events.Placement{}, 0, false, nil
	}
	if err != nil {
		return events.Placement{}, 0, false, err
	}
	pl, err := decodePlacement(e.Value())
	if err != nil {
		return events.Placement{}, 0, false, nil // not a placement: as if absent
	}
	return pl, e.Revision(), true, nil
}

// Watch sends the stream's current placement and every change until ctx
// ends; a deleted record is sent as a Placement with an empty Host. The
// channel is closed when ctx ends.
func (h *Hub) Watch(ctx context.Context, stream string) (<-chan events.Placement, error) {
	sub := &hubSub{stream: stream, ch: make(chan events.Placement, followerBuffer)}
	if h.pl.KV == nil {
		go func() { <-ctx.Done(); close(sub.ch) }()
		return sub.ch, nil
	}
	if h.nc != nil {
		// the stream may live on another host: follow its own notices too
		h.watchStream(stream)
		context.AfterFunc(ctx, func() { h.unwatchStream(stream) })
	}
	h.add(ctx, sub)
	return sub.ch, nil
}

// Follow calls fn with the stream's current placement and every change until
// ctx ends, in revision order, one call at a time, from the hub's goroutines:
// fn must return quickly and must not call the hub. A follower costs no
// goroutine of its own.
func (h *Hub) Follow(ctx context.Context, stream string, fn func(events.Placement)) {
	if h.pl.KV == nil {
		return
	}
	h.add(ctx, &hubSub{stream: stream, fn: fn})
}

func (h *Hub) add(ctx context.Context, sub *hubSub) {
	stream := sub.stream
	h.mu.Lock()
	if h.subs[stream] == nil {
		h.subs[stream] = map[*hubSub]struct{}{}
	}
	h.subs[stream][sub] = struct{}{}
	h.mu.Unlock()
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		delete(h.subs[stream], sub)
		if len(h.subs[stream]) == 0 {
			delete(h.subs, stream)
		}
		h.mu.Unlock()
		sub.mu.Lock()
		defer sub.mu.Unlock()
		sub.closed = true
		if sub.ch != nil {
			close(sub.ch)
		}
	})
	// The current placement, read once; a change the watch delivers meanwhile
	// has a higher revision and wins. A lost request is retried.
	go func() {
		for ctx.Err() == nil {
			pl, rev, found, err := h.get(ctx, stream)
			if err == nil {
				if found {
					sub.deliver(pl, rev)
				}
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

// followers returns the followers of stream.
func (h *Hub) followers(stream string) []*hubSub {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*hubSub, 0, len(h.subs[stream]))
	for sub := range h.subs[stream] {
		out = append(out, sub)
	}
	return out
}

func (h *Hub) deliverAll(stream string, pl events.Placement, rev uint64) {
	for _, sub := range h.followers(stream) {
		sub.deliver(pl, rev)
	}
}

// deliverDeleted tells the followers of a stream that had a placement that it
// has none now (found while resyncing, when the delete's revision is unknown).
func (h *Hub) deliverDeleted(stream string) {
	for _, sub := range h.followers(stream) {
		sub.mu.Lock()
		rev := sub.rev
		sub.mu.Unlock()
		if rev > 0 {
			sub.deliver(events.Placement{}, rev+1)
		}
	}
}

// deliver hands pl to the follower unless it already has it or a newer one. A
// channel follower whose buffer is full loses its oldest placement (sub.mu
// makes this the only sender, so the second send cannot block).
func (sub *hubSub) deliver(pl events.Placement, rev uint64) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.closed || rev <= sub.rev {
		return
	}
	sub.rev = rev
	if sub.fn != nil {
		sub.fn(pl)
		return
	}
	select {
	case sub.ch <- pl:
		return
	default:
	}
	select {
	case <-sub.ch:
	default:
	}
	sub.ch <- pl
}

// Followed returns how many followers the hub has (for tests and metrics).
func (h *Hub) Followed() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.subs {
		n += len(m)
	}
	return n
}
