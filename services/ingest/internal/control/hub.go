package control

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
)

// Hub follows the whole placements bucket with one KV watch and hands each
// change to the followers of that stream. A host follows every stream it
// hosts (the handover) and every stream its edge serves; one watch per stream
// cost an ordered consumer, its 256-entry buffer and two goroutines each
// (about 8 KB of heap and 16 KB of stacks per stream), one watch per host
// costs that once.
//
// A follower gets the stream's current placement, then every change. When a
// follower falls behind, older undelivered placements are dropped for newer
// ones: only where the stream lives now matters. Placements are delivered in
// revision order; none is delivered twice.
type Hub struct {
	pl Placements

	mu   sync.Mutex
	subs map[string]map[*hubSub]struct{}
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
	return &Hub{pl: p, subs: map[string]map[*hubSub]struct{}{}}
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
	_ = bus.WatchKV(ctx, h.pl.KV, bus.WatchSpec{Keys: []string{events.PlacementKey(">")}, UpdatesOnly: true,
		AttemptTimeout: attemptTimeout, Started: func() { h.resync(ctx) }}, h.forward)
}

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
