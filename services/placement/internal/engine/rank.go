package engine

import (
	"container/heap"
	"time"

	"github.com/ferrystream/ferry/services/placement/internal/fleet"
)

// The index ranks the fleet's hosts for pick incrementally, so a choice
// costs O(zones × log hosts) instead of a fleet snapshot per choice:
// fleet.View tells the index every change of a host (Observe), the index
// knows every change of a host's placed count (placements and
// reservations), and after each the host is re-ranked with fleet.Fit, the
// function fleet.Pick ranks with. Each zone keeps a heap of the hosts that
// may receive a stream (usable, with headroom), ordered as fleet.Pick
// orders hosts with no stream of the client: utilisation, load, name. Only
// the passing of time is not a change: a host whose record went stale
// stays in its heap and is skipped when met (records are refreshed every
// 2 s; a host that stops is reported down or its record deleted, and
// leaves the heap then).

// slot is one host as the index ranks it. Its fields are guarded by index.mu.
type slot struct {
	fleet.Host
	util float64
	load int
	// zone is the heap the host is in, at position at (nil, -1: in none:
	// unusable or full).
	zone *zoneHeap
	at   int
}

func (a *slot) before(b *slot) bool {
	if a.util != b.util {
		return a.util < b.util
	}
	if a.load != b.load {
		return a.load < b.load
	}
	return a.Name < b.Name
}

// zoneHeap holds a zone's hosts that may receive a stream, best first.
type zoneHeap struct {
	name  string
	slots []*slot
}

func (z *zoneHeap) Len() int           { return len(z.slots) }
func (z *zoneHeap) Less(i, j int) bool { return z.slots[i].before(z.slots[j]) }
func (z *zoneHeap) Swap(i, j int) {
	z.slots[i], z.slots[j] = z.slots[j], z.slots[i]
	z.slots[i].at, z.slots[j].at = i, j
}
func (z *zoneHeap) Push(x any) {
	s := x.(*slot)
	s.at, s.zone = len(z.slots), z
	z.slots = append(z.slots, s)
}
func (z *zoneHeap) Pop() any {
	s := z.slots[len(z.slots)-1]
	z.slots[len(z.slots)-1] = nil
	z.slots = z.slots[:len(z.slots)-1]
	s.at, s.zone = -1, nil
	return s
}

// first returns the best slot for which ok holds (nil if none), visiting
// the heap best first: O(k log k) for k slots refused on the way, without
// changing the heap.
func (z *zoneHeap) first(ok func(*slot) bool) *slot {
	if len(z.slots) == 0 {
		return nil
	}
	if ok(z.slots[0]) {
		return z.slots[0]
	}
	f := &frontier{z: z}
	for _, c := range []int{1, 2} {
		if c < len(z.slots) {
			heap.Push(f, c)
		}
	}
	for f.Len() > 0 {
		i := heap.Pop(f).(int)
		if ok(z.slots[i]) {
			return z.slots[i]
		}
		for _, c := range []int{2*i + 1, 2*i + 2} {
			if c < len(z.slots) {
				heap.Push(f, c)
			}
		}
	}
	return nil
}

// frontier is the positions of a zone heap still to visit, best first.
type frontier struct {
	z   *zoneHeap
	pos []int
}

func (f *frontier) Len() int           { return len(f.pos) }
func (f *frontier) Less(i, j int) bool { return f.z.slots[f.pos[i]].before(f.z.slots[f.pos[j]]) }
func (f *frontier) Swap(i, j int)      { f.pos[i], f.pos[j] = f.pos[j], f.pos[i] }
func (f *frontier) Push(x any)         { f.pos = append(f.pos, x.(int)) }
func (f *frontier) Pop() any {
	x := f.pos[len(f.pos)-1]
	f.pos = f.pos[:len(f.pos)-1]
	return x
}

// follow makes the index rank view's hosts for choices of streams of
// bitrate (the only bitrate pick then serves without a snapshot). now must
// be the view's clock.
func (ix *index) follow(view *fleet.View, now func() time.Time, bitrate int64) {
	ix.mu.Lock()
	ix.view, ix.now, ix.bitrate = view, now, bitrate
	ix.mu.Unlock()
	view.Observe(ix.setHost)
}

// setHost records a host's state from the view and re-ranks it.
func (ix *index) setHost(h fleet.Host) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	s := ix.slots[h.Name]
	if s == nil {
		if !h.Known {
			return
		}
		s = &slot{at: -1}
		ix.slots[h.Name] = s
	}
	if s.zone != nil && s.zone.name != h.Zone {
		ix.unrank(s)
	}
	s.Host = h
	ix.rankLocked(s)
	if !h.Known {
		delete(ix.slots, h.Name) // not in a heap: unknown hosts are never usable
	}
}

// rank re-ranks host after a change of its placed count.
func (ix *index) rank(host string) {
	if s := ix.slots[host]; s != nil {
		ix.rankLocked(s)
	}
}

func (ix *index) rankLocked(s *slot) {
	fits := false
	if s.Usable {
		var why string
		s.util, s.load, why = fleet.Fit(s.Candidate, ix.placedOnLocked(s.Name)+ix.reserved[s.Name], ix.bitrate)
		fits = why == ""
	}
	switch {
	case !fits:
		ix.unrank(s)
	case s.zone != nil:
		heap.Fix(s.zone, s.at)
	default:
		z := ix.zones[s.Zone]
		if z == nil {
			z = &zoneHeap{name: s.Zone}
			ix.zones[s.Zone] = z
		}
		heap.Push(z, s)
	}
}

func (ix *index) unrank(s *slot) {
	z := s.zone
	if z == nil {
		return
	}
	heap.Remove(z, s.at)
	if z.Len() == 0 {
		delete(ix.zones, z.name)
	}
}

// chooseLocked is fleet.Pick on the ranked hosts: among the hosts other
// than exclude that may receive a stream and are fresh at now, the one that
// spreads client's streams most across zones, then hosts, then the least
// utilised, then the least loaded, then by name. ok is false when no host
// fits (the caller falls back to fleet.Pick, which says why).
func (ix *index) chooseLocked(client, exclude string, now time.Time) (fleet.Candidate, bool) {
	// The client's streams per host: placements plus reservations.
	var clientHosts map[string]int
	if len(ix.clientHost[client])+len(ix.resClient[client]) > 0 {
		clientHosts = make(map[string]int, len(ix.clientHost[client])+len(ix.resClient[client]))
		for h, n := range ix.clientHost[client] {
			clientHosts[h] += n
		}
		for h, n := range ix.resClient[client] {
			clientHosts[h] += n
		}
	}
	clientZones := map[string]int{}
	for h, n := range clientHosts {
		if s := ix.slots[h]; s != nil && h != exclude {
			clientZones[s.Zone] += n
		}
	}
	var best *slot
	bestZone, bestHost := 0, 0
	free := func(s *slot) bool { return s.Name != exclude && clientHosts[s.Name] == 0 && s.Fresh(now) }
	for name, z := range ix.zones {
		cz := clientZones[name]
		if best != nil && cz > bestZone {
			continue
		}
		// A host without the client's streams outranks, in its zone, every
		// host with some; only when none fits do those compete.
		c, ch := z.first(free), 0
		if c == nil {
			for h, n := range clientHosts {
				s := ix.slots[h]
				if s == nil || s.zone != z || h == exclude || !s.Fresh(now) {
					continue
				}
				if c == nil || n < ch || (n == ch && s.before(c)) {
					c, ch = s, n
				}
			}
		}
		if c == nil {
			continue
		}
		if best == nil || cz < bestZone || (cz == bestZone && (ch < bestHost || (ch == bestHost && c.before(best)))) {
			best, bestZone, bestHost = c, cz, ch
		}
	}
	if best == nil {
		return fleet.Candidate{}, false
	}
	return best.Candidate, true
}
