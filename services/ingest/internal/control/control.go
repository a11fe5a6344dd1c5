// Package control is the ingest node's read-only view of Ferry's control
// plane: the placements bucket (where each stream lives), the sessions bucket
// (what a publisher declared), the host registry, and the publisher_attached
// events a handover waits for.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
)

// ErrNotPlaced means the placements bucket has no record for the stream.
var ErrNotPlaced = errors.New("stream is not placed")

// Placements reads the placements bucket.
type Placements struct {
	KV jetstream.KeyValue
}

// Get returns a stream's placement, or ErrNotPlaced.
func (p Placements) Get(ctx context.Context, stream string) (events.Placement, error) {
	if p.KV == nil {
		return events.Placement{}, ErrNotPlaced
	}
	e, err := p.KV.Get(ctx, events.PlacementKey(stream))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return events.Placement{}, ErrNotPlaced
	}
	if err != nil {
		return events.Placement{}, fmt.Errorf("get placement %s: %w", stream, err)
	}
	return decodePlacement(e.Value())
}

func decodePlacement(b []byte) (events.Placement, error) {
	var pl events.Placement
	if err := json.Unmarshal(b, &pl); err != nil {
		return pl, fmt.Errorf("decode placement: %w", err)
	}
	return pl, nil
}

// StreamURL returns the RTSP URL of stream on the host a placement names:
// its rtsp_url when that already ends with the stream, otherwise rtsp_url (or
// the host's registry URL, hostURL) + "/" + stream.
func StreamURL(pl events.Placement, hostURL string) string {
	base := pl.RTSPURL
	if base == "" {
		base = hostURL
	}
	if base == "" {
		return ""
	}
	if u, err := url.Parse(base); err == nil && strings.TrimSuffix(u.Path, "/") == "/"+pl.Stream {
		return base
	}
	return strings.TrimSuffix(base, "/") + "/" + pl.Stream
}

// Hosts reads the ingest_hosts registry.
type Hosts struct {
	KV jetstream.KeyValue
}

// URL returns the registered base RTSP URL of a host ("" if unknown).
func (h Hosts) URL(ctx context.Context, host string) string {
	if h.KV == nil {
		return ""
	}
	e, err := h.KV.Get(ctx, host)
	if err != nil {
		return ""
	}
	var rec events.HostRecord
	if json.Unmarshal(e.Value(), &rec) != nil {
		return ""
	}
	return rec.RTSPURL
}

// Sessions reads the sessions bucket.
type Sessions struct {
	KV jetstream.KeyValue
}

// Get returns a publisher session's declaration (false when unknown).
func (s Sessions) Get(ctx context.Context, id string) (events.Session, bool) {
	if s.KV == nil || id == "" {
		return events.Session{}, false
	}
	e, err := s.KV.Get(ctx, id)
	if err != nil {
		return events.Session{}, false
	}
	var sess events.Session
	if json.Unmarshal(e.Value(), &sess) != nil {
		return events.Session{}, false
	}
	return sess, true
}

// attemptTimeout bounds one JetStream API request of the control plane's
// reads (Attachments.Wait, the hub's watch and reads).
const attemptTimeout = bus.DefaultAttemptTimeout

// Attachments watches publisher_attached events.
type Attachments struct {
	JS jetstream.JetStream
}

// Wait returns when a publisher_attached event for stream on host arrives
// (published at or after since, with migrationID when it is not empty), or
// with ctx's error. Each request is bounded (bus.Replay): a request lost while
// a NATS node fails over must not hold the handover until the migration's
// deadline.
func (a Attachments) Wait(ctx context.Context, stream, host, migrationID string, since time.Time) error {
	if a.JS == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	start := since.Add(-time.Minute) // tolerate clock skew between hosts
	// Only host's own report: its subject ends with the reporting host,
	// which NATS permissions bind to that host's credential.
	err := bus.Replay(ctx, a.JS, bus.ReplaySpec{Stream: bus.StreamEvents, Filters: []string{subject.PublisherAttached(stream, host)},
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, StartTime: start, Follow: true,
		AttemptTimeout: attemptTimeout}, func(msg jetstream.Msg) error {
		_, ev, derr := events.DecodeAs[events.PublisherAttached](msg.Data())
		if derr != nil {
			return nil
		}
		if ev.Host == host && (migrationID == "" || ev.MigrationID == migrationID || ev.MigrationID == "") &&
			!ev.At.Before(since.Add(-time.Minute)) {
			return bus.ErrStop
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("watch publisher_attached %s: %w", stream, err)
	}
	return nil
}
