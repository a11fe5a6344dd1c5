package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
)

// Seen is one event of the chain as observed.
type Seen struct {
	Env  events.Envelope
	Data map[string]any
	// At is when it happened: the data's "at" field when it has one, else
	// the envelope's time (set by its producer).
	At time.Time
}

// Chain records every Ferry event from the moment it starts, for timelines
// and assertions. The mutex guards seen.
type Chain struct {
	mu   sync.Mutex
	seen []Seen
	stop context.CancelFunc
	done chan struct{}
	// OnEvent, if set before Start, is called for each event (in order).
	onEvent func(Seen)
}

// WatchChain starts recording events published from now on: when it
// returns, the consumer exists, so nothing published afterwards is missed.
// The recording ends with ctx or Stop.
func WatchChain(ctx context.Context, js jetstream.JetStream, onEvent func(Seen)) (*Chain, error) {
	rctx, cancel := context.WithCancel(ctx)
	c := &Chain{onEvent: onEvent, stop: cancel, done: make(chan struct{})}
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(c.done)
		errc <- bus.Replay(rctx, js, bus.ReplaySpec{Stream: bus.StreamEvents, DeliverPolicy: jetstream.DeliverNewPolicy,
			Follow: true, Attempts: 1, AttemptTimeout: 5 * time.Second, CaughtUp: func() { close(started) }}, c.record)
	}()
	select {
	case <-started:
		return c, nil
	case err := <-errc:
		cancel()
		return nil, fmt.Errorf("watch events: %w", err)
	}
}

func (c *Chain) record(m jetstream.Msg) error {
	env, err := events.Decode(m.Data())
	if err != nil {
		return nil
	}
	s := Seen{Env: env, At: env.Time}
	_ = json.Unmarshal(env.Data, &s.Data)
	// Events that carry when the thing happened ("at": a switch is
	// reported after a settle window) are timed by that.
	if at, ok := s.Data["at"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
			s.At = t
		}
	}
	c.mu.Lock()
	c.seen = append(c.seen, s)
	c.mu.Unlock()
	if c.onEvent != nil {
		c.onEvent(s)
	}
	return nil
}

// Stop ends the recording and waits for it to end.
func (c *Chain) Stop() {
	c.stop()
	<-c.done
}

// All returns a copy of everything seen so far.
func (c *Chain) All() []Seen {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Seen(nil), c.seen...)
}

// First returns the first event of type typ for which match returns true.
func (c *Chain) First(typ string, match func(Seen) bool) (Seen, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.seen {
		if s.Env.Type == typ && (match == nil || match(s)) {
			return s, true
		}
	}
	return Seen{}, false
}

// Count returns how many events of type typ match.
func (c *Chain) Count(typ string, match func(Seen) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.seen {
		if s.Env.Type == typ && (match == nil || match(s)) {
			n++
		}
	}
	return n
}

// Field matches events whose data field k equals v.
func Field(k, v string) func(Seen) bool {
	return func(s Seen) bool {
		got, _ := s.Data[k].(string)
		return got == v
	}
}

// Str returns a string field of the event data.
func (s Seen) Str(k string) string {
	v, _ := s.Data[k].(string)
	return v
}
