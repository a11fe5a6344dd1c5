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
}

// errStop, returned by a readEvents callback, ends the reading without error.
var errStop = errors.New("stop")

// readEvents calls fn with every event matching o, in stream order, through
// an ordered consumer. Without follow it returns after the last event stored
// when it started; with follow it returns nil when ctx ends.
func (c *conn) readEvents(ctx context.Context, o replayOpts, fn func(timeline.Event) error) error {
	if _, err := c.stream(ctx, bus.StreamEvents); err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: o.filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case !o.since.IsZero():
		t := o.since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	case o.follow:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	cons, err := c.js.OrderedConsumer(ctx, bus.StreamEvents, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", bus.StreamEvents, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read %s: %w", bus.StreamEvents, err)
	}
	defer it.Stop()
	if !o.follow {
		if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
			return nil
		}
	}
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				if o.follow && errors.Is(ctx.Err(), context.Canceled) {
					return nil
				}
				return fmt.Errorf("read %s: %w", bus.StreamEvents, ctx.Err())
			}
			return fmt.Errorf("read %s: %w", bus.StreamEvents, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("read %s: %w", bus.StreamEvents, err)
		}
		ev, perr := timeline.Parse(meta.Sequence.Stream, msg.Subject(), msg.Data())
		if perr != nil {
			// not even an envelope: show where it is rather than hide it
			ev.Env.Time, ev.Env.Type = meta.Timestamp, "?"
		}
		if err := fn(ev); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
		if !o.follow && meta.NumPending == 0 {
			return nil
		}
	}
}
