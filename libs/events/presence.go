package events

import (
	"encoding/json"
	"sync"
	"time"
)

// Presence answers whether a stream has a publisher, from the publisher
// lifecycle events hosts report. It keeps, per stream and reporting host,
// the last publisher_attached and the last publisher_detached: exactly what
// an ordered consumer with DeliverLastPerSubject on
// ferry.evt.ingest.publisher_{attached,detached}.*.* delivers, since those
// subjects end with the stream and the host. Placement (which releases
// placements left without a publisher) and `ferryctl status` (which shows how
// long a stream has been without one) both read it, so they agree.
//
// A Presence is safe for concurrent use; mu guards seen.
type Presence struct {
	mu   sync.Mutex
	seen map[string]map[string]*hostPresence // stream -> host -> last events
}

type hostPresence struct {
	attached, detached *presenceMark
}

type presenceMark struct {
	session string
	at      time.Time
}

// NewPresence returns an empty Presence.
func NewPresence() *Presence {
	return &Presence{seen: map[string]map[string]*hostPresence{}}
}

func (p *Presence) host(stream, host string) *hostPresence {
	hs := p.seen[stream]
	if hs == nil {
		hs = map[string]*hostPresence{}
		p.seen[stream] = hs
	}
	h := hs[host]
	if h == nil {
		h = &hostPresence{}
		hs[host] = h
	}
	return h
}

// Attached records a publisher_attached (an older one than the last seen is ignored).
func (p *Presence) Attached(e PublisherAttached) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.host(e.Stream, e.Host)
	if h.attached == nil || !e.At.Before(h.attached.at) {
		h.attached = &presenceMark{session: e.SessionID, at: e.At}
	}
}

// Detached records a publisher_detached (an older one than the last seen is ignored).
func (p *Presence) Detached(e PublisherDetached) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.host(e.Stream, e.Host)
	if h.detached == nil || !e.At.Before(h.detached.at) {
		h.detached = &presenceMark{session: e.SessionID, at: e.At}
	}
}

// Apply records env if it is a publisher_attached or publisher_detached; it
// reports whether it was one of them and well-formed.
func (p *Presence) Apply(env Envelope) bool {
	switch env.Type {
	case TypePublisherAttached:
		var e PublisherAttached
		err := json.Unmarshal(env.Data, &e)
		if err == nil {
			p.Attached(e)
		}
		return err == nil
	case TypePublisherDetached:
		var e PublisherDetached
		err := json.Unmarshal(env.Data, &e)
		if err == nil {
			p.Detached(e)
		}
		return err == nil
	}
	return false
}

// PublisherState is what Presence knows of a stream's publisher.
type PublisherState struct {
	// Attached: a host that is alive reports a publisher session attached
	// (its last attach is not followed by a detach of the same session).
	Attached bool
	// Host is where it is attached ("" when not).
	Host string
	// IdleSince is, when not Attached, since when the stream has had no
	// publisher: the latest of the placement's start (placedAt), its last
	// detach, and its last attach on a host that is gone (taken no earlier
	// than movedAt, the placement's last write, as the publisher may have
	// stayed until the host died and the stream moved).
	IdleSince time.Time
}

// Publisher returns stream's publisher state. alive says whether a host
// still counts (registered and heartbeating); an attach reported by a host
// that is gone is no publisher.
func (p *Presence) Publisher(stream string, alive func(host string) bool, placedAt, movedAt time.Time) PublisherState {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PublisherState{IdleSince: placedAt}
	later := func(t time.Time) {
		if t.After(st.IdleSince) {
			st.IdleSince = t
		}
	}
	for host, h := range p.seen[stream] {
		if a := h.attached; a != nil {
			on := h.detached == nil || h.detached.session != a.session || h.detached.at.Before(a.at)
			if on && alive(host) {
				return PublisherState{Attached: true, Host: host}
			}
			if on { // attached on a host that is gone: it lasted at most until the stream moved
				later(a.at)
				if !movedAt.IsZero() && movedAt.After(a.at) {
					later(movedAt)
				}
			} else {
				later(a.at)
			}
		}
		if h.detached != nil {
			later(h.detached.at)
		}
	}
	return st
}

// Forget drops what is known of stream (its placement was released).
func (p *Presence) Forget(stream string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.seen, stream)
}
