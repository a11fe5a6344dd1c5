package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/services/placement/internal/fleet"
)

// randomFleet drives a view and an index following it through random
// changes (registry records, health events, placements, reservations,
// time) and, after each, checks that the ranked hosts choose exactly what
// fleet.Pick chooses on a fresh snapshot, for random clients and excluded
// hosts.
type randomFleet struct {
	t     *testing.T
	rng   *rand.Rand
	now   time.Time
	view  *fleet.View
	ix    *index
	seq   uint64
	rev   uint64
	held  []*reservation
	hosts []string
	zones []string
}

const testBitrate = 4_000_000

func newRandomFleet(t *testing.T, seed uint64, hosts, zones int) *randomFleet {
	t.Helper()
	f := &randomFleet{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b9)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	clock := func() time.Time { return f.now }
	f.view = fleet.NewView(fleet.Config{StaleAfter: 6 * time.Second, MaxCapacityStreams: 1000, MaxCapacityBitrate: 1 << 40,
		EvacuationLead: 10 * time.Minute, DefaultCapacityStreams: 12}, zerolog.Nop(), clock)
	for i := range hosts {
		f.hosts = append(f.hosts, fmt.Sprintf("h%03d", i))
	}
	f.zones = []string{""}
	for i := range zones - 1 {
		f.zones = append(f.zones, fmt.Sprintf("z%d", i))
	}
	// Half the fleet registers before the index follows the view, half after.
	for _, h := range f.hosts[:hosts/2] {
		f.record(h)
	}
	f.ix = newIndex()
	f.ix.follow(f.view, clock, testBitrate)
	for _, h := range f.hosts[hosts/2:] {
		f.record(h)
	}
	for range hosts * 5 {
		f.place()
	}
	return f
}

func (f *randomFleet) pickOne(s []string) string { return s[f.rng.IntN(len(s))] }

func (f *randomFleet) client() string { return fmt.Sprintf("c%d", f.rng.IntN(12)) }

// record stores a random registry record for h (sometimes odd: edge-only,
// draining, stale, invalid, no capacity declared, bitrate-bound).
func (f *randomFleet) record(h string) {
	r := &events.HostRecord{Host: h, RTSPURL: "rtsp://" + h + ":8554", Zone: f.pickOne(f.zones), Role: "origin",
		CapacityStreams: f.rng.IntN(24), Streams: f.rng.IntN(10), Status: "ok", StartedAt: f.now.Add(-time.Hour),
		UpdatedAt: f.now.Add(-time.Duration(f.rng.IntN(7000)) * time.Millisecond)}
	switch f.rng.IntN(12) {
	case 0:
		r.Role = "edge"
	case 1:
		r.Status = "draining"
	case 2:
		r.CapacityStreams = -1 // absurd: rejected, host unusable
	case 3, 4, 5:
		r.CapacityBitrate = int64(f.rng.IntN(60)) * 1_000_000
		r.BitrateIn = int64(f.rng.IntN(40)) * 1_000_000
	}
	f.view.ApplyRecord(h, r)
}

func (f *randomFleet) event(d events.Data) {
	f.t.Helper()
	env, err := events.New("test", d)
	if err != nil {
		f.t.Fatal(err)
	}
	env.Time = f.now
	f.seq++
	if err := f.view.ApplyEvent(env, f.seq); err != nil {
		f.t.Fatal(err)
	}
}

// place writes (or deletes) a random stream's placement, on a registered
// host or, rarely, on one the registry does not know.
func (f *randomFleet) place() {
	stream := fmt.Sprintf("s%d", f.rng.IntN(len(f.hosts)*5))
	f.rev++
	if f.rng.IntN(6) == 0 {
		f.ix.apply(stream, nil, f.rev)
		return
	}
	host := f.pickOne(f.hosts)
	if f.rng.IntN(20) == 0 {
		host = "unregistered"
	}
	p := events.Placement{Stream: stream, Host: host, ClientID: f.client()}
	if f.rng.IntN(10) == 0 {
		p.ClientID = ""
	}
	f.ix.apply(stream, &p, f.rev)
}

// step makes one random change.
func (f *randomFleet) step() {
	h := f.pickOne(f.hosts)
	switch f.rng.IntN(12) {
	case 0, 1, 8:
		f.record(h)
	case 2:
		f.view.ApplyRecord(h, nil)
	case 3:
		f.event(events.OutagePredicted{PredictionID: "p-" + h, Host: h, Cause: "maintenance",
			ExpectedOfflineAt: f.now.Add(time.Minute), Confidence: 1, Evidence: map[string]any{}, Revision: 1})
	case 4:
		f.event(events.OutageCleared{PredictionID: "p-" + h, Host: h, Cause: "maintenance", Reason: "done"})
	case 5:
		if f.rng.IntN(3) > 0 {
			return
		}
		f.event(events.HostDown{Host: h, LastSeen: f.now.Add(-5 * time.Second), DetectedAt: f.now, Reason: "silence"})
	case 6:
		f.now = f.now.Add(time.Duration(f.rng.IntN(400)) * time.Millisecond)
	case 7:
		if len(f.held) > 0 {
			i := f.rng.IntN(len(f.held))
			f.ix.release(f.held[i])
			f.held = append(f.held[:i], f.held[i+1:]...)
		}
	default:
		f.place()
	}
}

// check compares the ranked choice with fleet.Pick's for client, exclude,
// and keeps the reservation of the choice sometimes.
func (f *randomFleet) check(client, exclude string) {
	f.t.Helper()
	snap := f.view.Snapshot()
	f.ix.mu.Lock()
	want, wantErr := fleet.Pick(snap, f.ix.demandLocked(client, exclude, testBitrate))
	got, ok := f.ix.chooseLocked(client, exclude, f.now)
	f.ix.mu.Unlock()
	switch {
	case wantErr != nil && ok:
		f.t.Fatalf("client %q exclude %q: ranked chose %s, fleet.Pick: %v", client, exclude, got.Host, wantErr)
	case wantErr != nil:
		if !errors.Is(wantErr, fleet.ErrNoCapacity) {
			f.t.Fatal(wantErr)
		}
		// pick falls back to fleet.Pick and returns its error as is.
		if _, _, err := f.ix.pick("", client, exclude, testBitrate); err == nil || err.Error() != wantErr.Error() {
			f.t.Fatalf("pick err = %v, want %v", err, wantErr)
		}
	case !ok:
		f.t.Fatalf("client %q exclude %q: ranked found nothing, fleet.Pick chose %s", client, exclude, want.Host)
	case got != want:
		f.t.Fatalf("client %q exclude %q: ranked chose %+v, fleet.Pick %+v", client, exclude, got, want)
	default:
		c, res, err := f.ix.pick("", client, exclude, testBitrate)
		if err != nil || c != want {
			f.t.Fatalf("pick = %+v, %v; want %+v", c, err, want)
		}
		if f.rng.IntN(3) == 0 && len(f.held) < len(f.hosts) {
			f.held = append(f.held, res)
		} else {
			f.ix.release(res)
		}
	}
}

// TestRankedPickMatchesPick: on randomized fleets under random changes the
// ranked index chooses exactly the host fleet.Pick chooses on a snapshot
// (the policy's order is total: zone spread, host spread, utilisation,
// load, name), and refuses exactly when fleet.Pick does, with its error.
func TestRankedPickMatchesPick(t *testing.T) {
	for _, tc := range []struct {
		name         string
		hosts, zones int
		steps        int
	}{
		{name: "one host", hosts: 1, zones: 1, steps: 300},
		{name: "small, one zone", hosts: 4, zones: 1, steps: 1000},
		{name: "three zones", hosts: 30, zones: 3, steps: 2000},
		{name: "many zones", hosts: 60, zones: 12, steps: 2000},
		{name: "large", hosts: 200, zones: 4, steps: 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(4) {
				f := newRandomFleet(t, seed+1, tc.hosts, tc.zones)
				for range tc.steps {
					f.step()
					exclude := ""
					if f.rng.IntN(2) == 0 {
						exclude = f.pickOne(f.hosts)
					}
					f.check(f.client(), exclude)
				}
				for _, r := range f.held {
					f.ix.release(r)
				}
				f.ix.mu.Lock()
				n := len(f.ix.reserved)
				f.ix.mu.Unlock()
				if n != 0 {
					t.Fatalf("reservations left after releasing all: %d hosts", n)
				}
			}
		})
	}
}

// TestRankedHeapsConsistent: after random changes every zone heap holds
// exactly the usable hosts with headroom, at their positions, in heap
// order, and nothing else.
func TestRankedHeapsConsistent(t *testing.T) {
	f := newRandomFleet(t, 7, 50, 4)
	for i := range 5000 {
		f.step()
		if i%50 != 0 {
			continue
		}
		f.ix.mu.Lock()
		inHeaps := 0
		for name, z := range f.ix.zones {
			if z.Len() == 0 {
				t.Fatalf("empty zone heap %q kept", name)
			}
			for i, s := range z.slots {
				if s.zone != z || s.at != i || s.Zone != name {
					t.Fatalf("slot %s: zone %v at %d, in heap %q at %d", s.Name, s.zone, s.at, name, i)
				}
				if i > 0 && s.before(z.slots[(i-1)/2]) {
					t.Fatalf("heap %q out of order at %d", name, i)
				}
			}
			inHeaps += z.Len()
		}
		want := 0
		for _, s := range f.ix.slots {
			_, _, why := fleet.Fit(s.Candidate, f.ix.placedOnLocked(s.Name)+f.ix.reserved[s.Name], testBitrate)
			fits := s.Usable && why == ""
			if fits != (s.zone != nil) {
				t.Fatalf("slot %s: fits %v, in a heap %v", s.Name, fits, s.zone != nil)
			}
			if fits {
				want++
			}
		}
		// the per-host sets hold exactly the placements naming each host
		byHost := map[string]int{}
		for name, e := range f.ix.streams {
			byHost[e.P.Host]++
			if _, ok := f.ix.onHost[e.P.Host][name]; !ok {
				t.Fatalf("%s on %s missing from the host's set", name, e.P.Host)
			}
		}
		for host, set := range f.ix.onHost {
			if len(set) != byHost[host] {
				t.Fatalf("host %s: set of %d, %d placements", host, len(set), byHost[host])
			}
		}
		f.ix.mu.Unlock()
		for _, host := range f.hosts[:3] {
			got := f.ix.on(host)
			if len(got) != byHost[host] {
				t.Fatalf("on(%s) = %d entries, want %d", host, len(got), byHost[host])
			}
			for i, e := range got {
				if e.P.Host != host || (i > 0 && got[i-1].P.Stream >= e.P.Stream) {
					t.Fatalf("on(%s)[%d] = %s on %s: not the host's, or not sorted", host, i, e.P.Stream, e.P.Host)
				}
			}
		}
		if inHeaps != want {
			t.Fatalf("heaps hold %d hosts, %d fit", inHeaps, want)
		}
	}
}

// TestWatchBeforeCommitCountsOnce: a replica's own write can reach it
// through the watch before the writer commits it. From then on the
// placement counts its host, and the reservation it was chosen with must
// not (the host would count twice until the commit, and every pick
// meanwhile would avoid it: an evacuation of 30 streams onto two equal
// hosts ended 16/14).
func TestWatchBeforeCommitCountsOnce(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	view := fleet.NewView(fleet.Config{StaleAfter: 6 * time.Second, MaxCapacityStreams: 1000, MaxCapacityBitrate: 1 << 40,
		EvacuationLead: 10 * time.Minute}, zerolog.Nop(), clock)
	for _, h := range []string{"a", "b"} {
		view.ApplyRecord(h, &events.HostRecord{Host: h, RTSPURL: "rtsp://" + h + ":8554", Role: "origin", CapacityStreams: 10,
			Status: "ok", StartedAt: now.Add(-time.Hour), UpdatedAt: now})
	}
	ix := newIndex()
	ix.follow(view, clock, testBitrate)

	c, res, err := ix.pick("s1", "", "", testBitrate)
	if err != nil || c.Host != "a" {
		t.Fatalf("first pick = %s, %v; want a", c.Host, err)
	}
	p := events.Placement{Stream: "s1", Host: "a"}
	ix.apply("s1", &p, 7) // the watch delivers the write first
	ix.mu.Lock()
	counted, reserved := ix.placedOnLocked("a"), ix.reserved["a"]
	ix.mu.Unlock()
	if counted != 1 || reserved != 0 {
		t.Fatalf("host a: %d placed, %d reserved; want 1, 0 (counted once)", counted, reserved)
	}
	// a pick for another stream now sees a:1, b:0, and chooses b
	if c, r2, err := ix.pick("s2", "", "", testBitrate); err != nil || c.Host != "b" {
		t.Fatalf("second pick = %s, %v; want b", c.Host, err)
	} else {
		ix.release(r2)
	}
	ix.commit("s1", &p, 7, res) // the writer's commit: nothing left to drop
	ix.mu.Lock()
	counted, reserved = ix.placedOnLocked("a"), ix.reserved["a"]
	ix.mu.Unlock()
	if counted != 1 || reserved != 0 {
		t.Fatalf("after commit, host a: %d placed, %d reserved; want 1, 0", counted, reserved)
	}

	// A placement of the stream on another host (another writer won) does
	// not take the reservation: the loser's write fails and releases it.
	_, res3, err := ix.pick("s3", "", "", testBitrate)
	if err != nil {
		t.Fatal(err)
	}
	other := "a"
	if res3.host == "a" {
		other = "b"
	}
	ix.apply("s3", &events.Placement{Stream: "s3", Host: other}, 9)
	ix.mu.Lock()
	reserved = ix.reserved[res3.host]
	ix.mu.Unlock()
	if reserved != 1 {
		t.Fatalf("reservation on %s dropped by a placement on %s", res3.host, other)
	}
	ix.release(res3)
}
