package engine

import (
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/services/placement/internal/fleet"
)

// entry is one placement and its KV revision.
type entry struct {
	P   events.Placement
	Rev uint64
}

// index is this replica's copy of the placements bucket (fed by a watch and
// by this replica's own successful writes), with per-host and per-client
// counts, the reservations of decisions in flight, and the fleet's hosts
// ranked for pick (rank.go). mu guards all fields; fleet.View calls
// setHost under its own lock, so the index never calls the view while
// holding mu.
type index struct {
	mu         sync.Mutex
	streams    map[string]entry
	gone       map[string]uint64              // revision of a deleted key
	onHost     map[string]map[string]struct{} // host → the streams placed on it
	clientHost map[string]map[string]int
	reserved   map[string]int
	resClient  map[string]map[string]int
	held       map[string]*reservation // stream → its decision in flight

	// Set by follow.
	view    *fleet.View
	now     func() time.Time
	bitrate int64
	slots   map[string]*slot     // every host with a registry record
	zones   map[string]*zoneHeap // zone → its hosts that may receive a stream
}

func newIndex() *index {
	return &index{streams: map[string]entry{}, gone: map[string]uint64{}, onHost: map[string]map[string]struct{}{},
		clientHost: map[string]map[string]int{}, reserved: map[string]int{}, resClient: map[string]map[string]int{},
		held: map[string]*reservation{}, slots: map[string]*slot{}, zones: map[string]*zoneHeap{}}
}

func streamOfKey(key string) (string, bool) {
	s, ok := strings.CutPrefix(key, events.PlacementKey(""))
	return s, ok && s != ""
}

func (ix *index) count(p events.Placement, d int) {
	set := ix.onHost[p.Host]
	if d > 0 {
		if set == nil {
			set = map[string]struct{}{}
			ix.onHost[p.Host] = set
		}
		set[p.Stream] = struct{}{}
	} else if set != nil {
		delete(set, p.Stream)
		if len(set) == 0 {
			delete(ix.onHost, p.Host)
		}
	}
	ix.rank(p.Host)
	if p.ClientID == "" {
		return
	}
	m := ix.clientHost[p.ClientID]
	if m == nil {
		m = map[string]int{}
		ix.clientHost[p.ClientID] = m
	}
	m[p.Host] += d
	if m[p.Host] <= 0 {
		delete(m, p.Host)
	}
	if len(m) == 0 {
		delete(ix.clientHost, p.ClientID)
	}
}

// apply records p at rev for stream (p nil: deleted); older revisions than
// the one held are ignored, so the watch and direct writes can interleave.
func (ix *index) apply(stream string, p *events.Placement, rev uint64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.applyLocked(stream, p, rev)
}

// commit applies a placement this replica wrote and drops the reservation
// it was chosen with, atomically (the host is never counted twice).
func (ix *index) commit(stream string, p *events.Placement, rev uint64, r *reservation) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.applyLocked(stream, p, rev)
	ix.releaseLocked(r)
}

func (ix *index) applyLocked(stream string, p *events.Placement, rev uint64) {
	old, ok := ix.streams[stream]
	if (ok && old.Rev >= rev) || ix.gone[stream] >= rev {
		return
	}
	if ok {
		ix.count(old.P, -1)
	}
	if p == nil {
		delete(ix.streams, stream)
		ix.gone[stream] = rev
		return
	}
	ix.streams[stream] = entry{P: *p, Rev: rev}
	ix.count(*p, +1)
	// The watch can deliver a write before its writer commits it: the
	// placement now counts the host, so the reservation no longer may (else
	// the host counts twice until the commit, and picks meanwhile skew).
	if r := ix.held[stream]; r != nil && r.host == p.Host {
		ix.releaseLocked(r)
	}
}

func (ix *index) get(stream string) (entry, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e, ok := ix.streams[stream]
	return e, ok
}

func (ix *index) len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return len(ix.streams)
}

// placedOnLocked is how many streams are placed on host.
func (ix *index) placedOnLocked(host string) int { return len(ix.onHost[host]) }

// on returns the streams placed on host, sorted by name: O(the host's
// streams), not O(every placement), so an evacuation at fleet size does not
// hold the index (and every pick) while it reads 100,000 entries.
func (ix *index) on(host string) []entry {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	set := ix.onHost[host]
	if len(set) == 0 {
		return nil
	}
	out := make([]entry, 0, len(set))
	for s := range set {
		out = append(out, ix.streams[s])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].P.Stream < out[j].P.Stream })
	return out
}

// countOn returns how many streams are placed on host.
func (ix *index) countOn(host string) int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.placedOnLocked(host)
}

// all returns every placement.
func (ix *index) all() []entry {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	out := make([]entry, 0, len(ix.streams))
	for _, e := range ix.streams {
		out = append(out, e)
	}
	return out
}

// reservation is a slot taken on a host by pick until commit or release
// (or until the placement it was taken for is seen on that host). Its done
// flag is guarded by index.mu.
type reservation struct {
	stream, client, host string
	done                 bool
}

// pick chooses a host for stream of client (not exclude) and reserves a
// slot on it until commit or release. The ranked hosts answer under mu in
// O(zones × log hosts); when none fits (or bitrate is not the one they are
// ranked for) fleet.Pick decides on a fresh snapshot, outside mu, and says
// why each host was refused.
func (ix *index) pick(stream, client, exclude string, bitrate int64) (fleet.Candidate, *reservation, error) {
	now := ix.now()
	ix.mu.Lock()
	if bitrate == ix.bitrate {
		if c, ok := ix.chooseLocked(client, exclude, now); ok {
			defer ix.mu.Unlock()
			return c, ix.reserveLocked(stream, client, c.Host), nil
		}
	}
	ix.mu.Unlock()
	return ix.pickScan(ix.view.Snapshot(), stream, client, exclude, bitrate)
}

// pickScan is pick with fleet.Pick on snap: the reference the ranked hosts
// must agree with (rank_test.go), and the fallback that explains refusals.
func (ix *index) pickScan(snap fleet.Snapshot, stream, client, exclude string, bitrate int64) (fleet.Candidate, *reservation, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	c, err := fleet.Pick(snap, ix.demandLocked(client, exclude, bitrate))
	if err != nil {
		return c, nil, err
	}
	return c, ix.reserveLocked(stream, client, c.Host), nil
}

// demandLocked is what fleet.Pick needs from the index.
func (ix *index) demandLocked(client, exclude string, bitrate int64) fleet.Demand {
	placed := make(map[string]int, len(ix.onHost)+len(ix.reserved))
	for h, set := range ix.onHost {
		placed[h] = len(set)
	}
	for h, n := range ix.reserved {
		placed[h] += n
	}
	clientHosts := maps.Clone(ix.clientHost[client])
	if clientHosts == nil {
		clientHosts = map[string]int{}
	}
	for h, n := range ix.resClient[client] {
		clientHosts[h] += n
	}
	return fleet.Demand{Exclude: exclude, Placed: placed, ClientHosts: clientHosts, StreamBitrate: bitrate}
}

func (ix *index) reserveLocked(stream, client, host string) *reservation {
	r := &reservation{stream: stream, client: client, host: host}
	if stream != "" {
		ix.held[stream] = r // one decision per stream at a time; a later one replaces it here
	}
	ix.reserved[host]++
	ix.rank(host)
	if client != "" {
		m := ix.resClient[client]
		if m == nil {
			m = map[string]int{}
			ix.resClient[client] = m
		}
		m[host]++
	}
	return r
}

// release drops a reservation (no-op if already committed or released).
func (ix *index) release(r *reservation) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.releaseLocked(r)
}

func (ix *index) releaseLocked(r *reservation) {
	if r == nil || r.done {
		return
	}
	r.done = true
	if ix.held[r.stream] == r {
		delete(ix.held, r.stream)
	}
	client, host := r.client, r.host
	if ix.reserved[host]--; ix.reserved[host] <= 0 {
		delete(ix.reserved, host)
	}
	ix.rank(host)
	if m := ix.resClient[client]; m != nil {
		if m[host]--; m[host] <= 0 {
			delete(m, host)
		}
		if len(m) == 0 {
			delete(ix.resClient, client)
		}
	}
}
