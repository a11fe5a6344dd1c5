// Package emit publishes the ingest node's events off the media path: Emit
// never blocks, a worker publishes in order and retries for a while.
package emit

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/services/ingest/internal/clock"
)

// Emitter queues events for publishing.
type Emitter struct {
	js     events.Publisher
	source string
	log    zerolog.Logger
	ch     chan item
	// OnEmit, if set, sees every event handed to Emit (tests).
	OnEmit func(events.Data)
	// Clock times the retries (nil: the wall clock; set before Run).
	Clock clock.Clock
}

type item struct {
	d    events.Data
	opts []jetstream.PublishOpt
}

// New returns an emitter publishing with js (nil: log only) as source.
func New(js events.Publisher, source string, log zerolog.Logger) *Emitter {
	return &Emitter{js: js, source: source, log: log.With().Str("component", "emit").Logger(), ch: make(chan item, 1024)}
}

// Emit queues d. When the queue is full the event is dropped and logged.
func (e *Emitter) Emit(d events.Data, opts ...jetstream.PublishOpt) {
	if e == nil {
		return
	}
	if e.OnEmit != nil {
		e.OnEmit(d)
	}
	select {
	case e.ch <- item{d, opts}:
	default:
		e.log.Error().Str("event_type", d.EventType()).Msg("event queue full: event dropped")
	}
}

// Run publishes queued events until ctx ends, then flushes what is queued
// for up to two seconds.
func (e *Emitter) Run(ctx context.Context) {
	for {
		select {
		case it := <-e.ch:
			e.publish(ctx, it)
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			for {
				select {
				case it := <-e.ch:
					e.publish(fctx, it)
				default:
					return
				}
			}
		}
	}
}

// Publish publishes d now (synchronously), retrying briefly.
func (e *Emitter) Publish(ctx context.Context, d events.Data, opts ...jetstream.PublishOpt) error {
	if e.js == nil {
		return nil
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = events.Publish(pctx, e.js, e.source, d, opts...)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-clock.Or(e.Clock).After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	return err
}

func (e *Emitter) publish(ctx context.Context, it item) {
	if e.js == nil {
		return
	}
	if err := e.Publish(ctx, it.d, it.opts...); err != nil {
		e.log.Error().Err(err).Str("event_type", it.d.EventType()).Str("subject", it.d.EventSubject()).Msg("publish event")
	}
}
