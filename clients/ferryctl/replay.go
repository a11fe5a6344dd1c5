package ferryctl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/clients/ferryctl/internal/timeline"
	"github.com/ferrystream/ferry/libs/bus"
)

// replayOpts selects events of FERRY_EVENTS.
type replayOpts struct {
	// filters are subject filters (empty: every event).
	filters []string
	// since starts at this time; zero starts at the beginning, or with
	// follow at new events only.
	since time.Time
	// follow keeps reading new events until ctx ends.
	follow bool
	// lastPerSubject reads only the last event of each subject.
	lastPerSubject bool
}

// errStop, returned by a readEvents callback, ends the reading without error.
var errStop = bus.ErrStop

// requestTimeout bounds each JetStream request of readEvents (nats.go's
// default); a command reports a failed request instead of retrying it.
const requestTimeout = 5 * time.Second

// readEvents calls fn with every event matching o, in stream order, through
// an ordered consumer (bus.Replay). Without follow it returns after the last
// event stored when it started; with follow it returns nil when ctx ends.
func (c *conn) readEvents(ctx context.Context, o replayOpts, fn func(timeline.Event) error) error {
	if _, err := c.stream(ctx, bus.StreamEvents); err != nil {
		return err
	}
	spec := bus.ReplaySpec{Stream: bus.StreamEvents, Filters: o.filters, DeliverPolicy: jetstream.DeliverAllPolicy,
		Follow: o.follow, AttemptTimeout: requestTimeout, Attempts: 1}
	switch {
	case o.lastPerSubject:
		spec.DeliverPolicy = jetstream.DeliverLastPerSubjectPolicy
	case !o.since.IsZero():
		spec.DeliverPolicy, spec.StartTime = jetstream.DeliverByStartTimePolicy, o.since
	case o.follow:
		spec.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	var hErr error // the handler's own error, returned as it is
	err := bus.Replay(ctx, c.js, spec, func(msg jetstream.Msg) error {
		meta, err := msg.Metadata()
		if err != nil {
			hErr = fmt.Errorf("read %s: %w", bus.StreamEvents, err)
			return hErr
		}
		ev, perr := timeline.Parse(meta.Sequence.Stream, msg.Subject(), msg.Data())
		if perr != nil {
			// not even an envelope: show where it is rather than hide it
			ev.Env.Time, ev.Env.Type = meta.Timestamp, "?"
		}
		err = fn(ev)
		if err != nil && !errors.Is(err, errStop) {
			hErr = err
		}
		return err // errStop (bus.ErrStop) ends the replay without error
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		if o.follow && errors.Is(ctx.Err(), context.Canceled) {
			return nil
		}
		return fmt.Errorf("read %s: %w", bus.StreamEvents, ctx.Err())
	case hErr != nil:
		return hErr
	default:
		return fmt.Errorf("read %s: %w", bus.StreamEvents, err)
	}
}
