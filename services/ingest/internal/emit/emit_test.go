package emit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/ingest/internal/clock"
)

// publisher is an events.Publisher that fails its first fails calls and
// records the subjects of the events it published.
type publisher struct {
	mu    sync.Mutex
	fails int
	calls int
	ids   []string
}

func (p *publisher) PublishMsg(_ context.Context, msg *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.fails > 0 {
		p.fails--
		return nil, errors.New("no responders")
	}
	env, err := events.Decode(msg.Data)
	if err != nil {
		return nil, err
	}
	p.ids = append(p.ids, env.Subject)
	return &jetstream.PubAck{}, nil
}

func (p *publisher) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ids)
}

func ceased(stream string) events.StreamCeased {
	return events.StreamCeased{Stream: stream, Host: "ingest-1", NewHost: "ingest-2", MigrationID: "m-1",
		At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func streams(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = ceased(fmt.Sprintf("cam-%d", i)).EventSubject()
	}
	return out
}

func TestEmitter(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		fails int
		// run emits through e (its worker runs when run starts, unless
		// noWorker) and returns the subjects it expects published, in order,
		// and the retry waits.
		noWorker bool
		run      func(t *testing.T, e *Emitter) (subjects []string, waits []time.Duration)
	}{
		{"queued events are published in order", 0, false, func(t *testing.T, e *Emitter) ([]string, []time.Duration) {
			for i := range 3 {
				e.Emit(ceased(fmt.Sprintf("cam-%d", i)))
			}
			return streams(3), nil
		}},
		{"a failed publish is retried, later ones wait their turn", 2, false, func(t *testing.T, e *Emitter) ([]string, []time.Duration) {
			e.Emit(ceased("cam-0"))
			e.Emit(ceased("cam-1"))
			return streams(2), []time.Duration{200 * ms, 400 * ms}
		}},
		{"Publish gives up after five attempts", 1 << 30, true, func(t *testing.T, e *Emitter) ([]string, []time.Duration) {
			if err := e.Publish(context.Background(), ceased("cam-0")); err == nil {
				t.Fatal("Publish succeeded")
			}
			return nil, []time.Duration{200 * ms, 400 * ms, 600 * ms, 800 * ms, 1000 * ms}
		}},
		{"what is queued when Run ends is flushed", 0, true, func(t *testing.T, e *Emitter) ([]string, []time.Duration) {
			for i := range 3 {
				e.Emit(ceased(fmt.Sprintf("cam-%d", i)))
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			e.Run(ctx) // returns once the queue is empty
			return streams(3), nil
		}},
		{"a full queue drops, never blocks", 0, true, func(t *testing.T, e *Emitter) ([]string, []time.Duration) {
			for range cap(e.ch) + 5 {
				e.Emit(ceased("cam-0"))
			}
			if len(e.ch) != cap(e.ch) {
				t.Fatalf("%d events queued, want the queue's %d", len(e.ch), cap(e.ch))
			}
			return nil, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pub := &publisher{fails: tc.fails}
			clk := clock.NewFake(time.Time{}, true)
			e := New(pub, "ferry/ingest/test", zerolog.Nop())
			e.Clock = clk
			var handed int
			e.OnEmit = func(events.Data) { handed++ }
			if !tc.noWorker {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { e.Run(ctx); close(done) }()
				t.Cleanup(func() { cancel(); <-done })
			}
			want, waits := tc.run(t, e)
			testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
				if got := pub.published(); !slices.Equal(got, want) {
					return fmt.Errorf("published %d events %v, want %d", len(got), got[:min(len(got), 5)], len(want))
				}
				return nil
			})
			if got := clk.Waits(); !slices.Equal(got, waits) {
				t.Fatalf("retry waits %v, want %v", got, waits)
			}
			if handed < len(want) {
				t.Fatalf("OnEmit saw %d events, %d published", handed, len(want))
			}
		})
	}
}

// TestWithoutNATS: an emitter without a publisher only logs, and a nil one
// ignores events (a component built without events).
func TestWithoutNATS(t *testing.T) {
	t.Parallel()
	e := New(nil, "ferry/ingest/test", zerolog.Nop())
	if err := e.Publish(context.Background(), ceased("cam-0")); err != nil {
		t.Fatal(err)
	}
	e.Emit(ceased("cam-0"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.Run(ctx)
	var none *Emitter
	none.Emit(ceased("cam-0"))
}
