package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

var jsonUnmarshal = json.Unmarshal

// ErrNoCapacity means no usable host has headroom for one more stream.
var ErrNoCapacity = errors.New("no healthy host with headroom")

// Demand describes the stream being placed and what is already placed.
type Demand struct {
	// Exclude is a host that must not be chosen (the one being left).
	Exclude string
	// Placed counts streams placed on each host (placements plus decisions
	// in flight); it may exceed a host's reported Streams while publishers
	// are still connecting.
	Placed map[string]int
	// ClientHosts counts the same client's streams on each host.
	ClientHosts map[string]int
	// StreamBitrate is the estimated bitrate of one stream (bits/s).
	StreamBitrate int64
}

type scored struct {
	c          Candidate
	clientZone int
	clientHost int
	util       float64
	load       int
}

// Pick chooses a host for one stream: among usable hosts with headroom
// (streams and bitrate under the declared capacity), the one that spreads
// the client's streams most across zones, then across hosts, then the least
// loaded, then by name (deterministic). Spreading outranks load: a client's
// second stream goes to another zone even if that zone is busier, as long
// as it has headroom. It returns ErrNoCapacity, wrapped with why each host
// was refused, when nothing fits.
func Pick(s Snapshot, d Demand) (Candidate, error) {
	clientZones := map[string]int{}
	for h, n := range d.ClientHosts {
		if z, ok := s.Zones[h]; ok && h != d.Exclude {
			clientZones[z] += n
		}
	}
	var best *scored
	var refused []string
	for _, c := range s.Candidates {
		if c.Host == d.Exclude {
			continue
		}
		sc, why := score(c, d)
		if why != "" {
			refused = append(refused, c.Host+": "+why)
			continue
		}
		sc.clientZone = clientZones[c.Zone]
		sc.clientHost = d.ClientHosts[c.Host]
		if best == nil || better(sc, *best) {
			b := sc
			best = &b
		}
	}
	if best != nil {
		return best.c, nil
	}
	for h, why := range s.Unusable {
		if h != d.Exclude {
			refused = append(refused, h+": "+why)
		}
	}
	sort.Strings(refused)
	if len(refused) == 0 {
		return Candidate{}, fmt.Errorf("%w: no ingest host registered", ErrNoCapacity)
	}
	return Candidate{}, fmt.Errorf("%w (%s)", ErrNoCapacity, strings.Join(refused, "; "))
}

func score(c Candidate, d Demand) (scored, string) {
	util, load, why := Fit(c, d.Placed[c.Host], d.StreamBitrate)
	return scored{c: c, util: util, load: load}, why
}

// Fit says whether c has headroom for one more stream of streamBitrate when
// placed streams are placed on it (placements plus decisions in flight),
// and how Pick ranks it: util is its utilisation with that stream (the
// higher of streams and bitrate), load the streams counted on it. why says
// why it is full ("" when it has headroom). Pick and any index kept for it
// must rank with this one function.
func Fit(c Candidate, placed int, streamBitrate int64) (util float64, load int, why string) {
	load = max(placed, c.Streams)
	if c.CapacityStreams > 0 {
		if load+1 > c.CapacityStreams {
			return 0, load, fmt.Sprintf("full (%d/%d streams)", load, c.CapacityStreams)
		}
		util = float64(load+1) / float64(c.CapacityStreams)
	}
	if c.CapacityBitrate > 0 {
		per := streamBitrate
		if c.Streams > 0 && c.BitrateIn > 0 {
			per = c.BitrateIn / int64(c.Streams)
		}
		// Streams placed but not yet reported in the record carry the estimate.
		bitrate := c.BitrateIn + int64(max(0, placed-c.Streams))*per
		if bitrate+streamBitrate > c.CapacityBitrate {
			return 0, load, fmt.Sprintf("bitrate full (%d+%d > %d bit/s)", bitrate, streamBitrate, c.CapacityBitrate)
		}
		if u := float64(bitrate+streamBitrate) / float64(c.CapacityBitrate); u > util {
			util = u
		}
	}
	return util, load, ""
}

func better(a, b scored) bool {
	if a.clientZone != b.clientZone {
		return a.clientZone < b.clientZone
	}
	if a.clientHost != b.clientHost {
		return a.clientHost < b.clientHost
	}
	if a.util != b.util {
		return a.util < b.util
	}
	if a.load != b.load {
		return a.load < b.load
	}
	return a.c.Host < b.c.Host
}
