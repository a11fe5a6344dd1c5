package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/services/placement/internal/migration"
)

// errForged marks a lifecycle event whose reporting host cannot have sent it.
var errForged = errors.New("forged lifecycle event")

// errUnplaced: a lifecycle event about a stream that has no placement (never
// chosen, or released): there is nothing to check it against, and nothing
// it can change.
var errUnplaced = errors.New("stream has no placement")

// lifecycle is what a host's publisher_attached, publisher_detached or
// stream_ceased claims: that host (the body's) reports about stream,
// possibly within a migration; reporter is the host its subject ends with,
// which NATS permissions bind to the publisher's credential.
type lifecycle struct {
	typ, reporter, stream, host, migrationID string
}

// lifecycleOf decodes the lifecycle event in env, published on subj; ok is
// false for any other type.
func lifecycleOf(env events.Envelope, subj string) (l lifecycle, ok bool, err error) {
	var e struct {
		Stream      string `json:"stream"`
		Host        string `json:"host"`
		MigrationID string `json:"migration_id"`
	}
	switch env.Type {
	case events.TypePublisherAttached, events.TypePublisherDetached, events.TypeStreamCeased:
	default:
		return lifecycle{}, false, nil
	}
	if err := json.Unmarshal(env.Data, &e); err != nil {
		return lifecycle{}, true, err
	}
	return lifecycle{typ: env.Type, reporter: subject.ReportingHost(subj), stream: e.Stream, host: e.Host,
		migrationID: e.MigrationID}, true, nil
}

// checkLifecycle checks a host's lifecycle event against who sent it and the
// placement record. The host the subject ends with must be the host the body
// names, and that host must be, for the stream it names, the current home,
// the previous home of the move that brought it there, or the old or new
// home of the migration the event names (a late report of an earlier move).
// It returns an error wrapping errForged otherwise; errUnplaced when the
// stream has no placement (and the migration named, if any, is unknown);
// another error when a record could not be read (try again). known, when
// set, looks a migration up before the migrations bucket (the leader's
// active migrations).
func (s *Service) checkLifecycle(ctx context.Context, l lifecycle, known func(id string) (migration.Record, bool)) error {
	if l.reporter != l.host {
		return fmt.Errorf("%w: %s names host %s but was published by %s", errForged, l.typ, l.host, l.reporter)
	}
	home := func(p events.Placement) bool { return l.host == p.Host || l.host == p.FromHost }
	e, placed := s.ix.get(l.stream)
	if placed && home(e.P) {
		return nil
	}
	// The view may lag the bucket (a move written by another replica a
	// moment ago): the record decides.
	p, placed, err := s.readPlacement(ctx, l.stream)
	if err != nil {
		return err
	}
	if placed && home(p) {
		return nil
	}
	if l.migrationID != "" {
		rec, ok := migration.Record{}, false
		if known != nil {
			rec, ok = known(l.migrationID)
		}
		if !ok {
			me, err := s.st.Migrations.Get(ctx, l.migrationID)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				return fmt.Errorf("read migration %s: %w", l.migrationID, err)
			default:
				ok = json.Unmarshal(me.Value(), &rec) == nil
			}
		}
		if ok {
			if rec.Stream == l.stream && (l.host == rec.FromHost || l.host == rec.ToHost) {
				return nil
			}
			return fmt.Errorf("%w: %s from %s, which is neither the old (%s) nor the new home (%s) of %s in migration %s",
				errForged, l.typ, l.host, rec.FromHost, rec.ToHost, rec.Stream, l.migrationID)
		}
	}
	if !placed {
		return errUnplaced
	}
	prev := p.FromHost
	if prev == "" {
		prev = "none"
	}
	return fmt.Errorf("%w: %s from %s about %s, whose home is %s (previous home %s)",
		errForged, l.typ, l.host, l.stream, p.Host, prev)
}

// readPlacement reads stream's placement record from the bucket.
func (s *Service) readPlacement(ctx context.Context, stream string) (events.Placement, bool, error) {
	var p events.Placement
	e, err := s.st.Placements.Get(ctx, events.PlacementKey(stream))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("read placement %s: %w", stream, err)
	}
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return p, false, fmt.Errorf("placement %s is not JSON: %w", stream, err)
	}
	return p, true, nil
}
