package handover

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/ingest/internal/edge"
	"github.com/ferrystream/ferry/services/ingest/internal/emit"
	"github.com/ferrystream/ferry/services/ingest/internal/stream"
)

// followFn is a Placements fake: the test delivers placements itself.
type followFn struct {
	mu sync.Mutex
	fn func(events.Placement)
}

func (f *followFn) Follow(_ context.Context, _ string, fn func(events.Placement)) {
	f.mu.Lock()
	f.fn = fn
	f.mu.Unlock()
}

func (f *followFn) deliver(pl events.Placement) {
	f.mu.Lock()
	fn := f.fn
	f.mu.Unlock()
	fn(pl)
}

// attachFn is an Attachments fake.
type attachFn func(ctx context.Context) error

func (a attachFn) Wait(ctx context.Context, _, _, _ string, _ time.Time) error { return a(ctx) }

// neverReady is a Relay whose pull never carries the stream.
type neverReady struct{}

func (neverReady) Follow(*stream.Stream) edge.Follower { return neverReady{} }
func (neverReady) Ready(string) <-chan struct{}        { return make(chan struct{}) }

type noURLs struct{}

func (noURLs) URL(context.Context, string) string { return "rtsp://new-host:8554" }

type emitted struct {
	mu  sync.Mutex
	evs []events.Data
}

func (e *emitted) add(d events.Data) { e.mu.Lock(); e.evs = append(e.evs, d); e.mu.Unlock() }
func (e *emitted) ceased() []events.StreamCeased {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []events.StreamCeased
	for _, d := range e.evs {
		if c, ok := d.(events.StreamCeased); ok {
			out = append(out, c)
		}
	}
	return out
}

func TestHandoverTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		attach attachFn
		// then: deliver these after the move (nil: none)
		then       *events.Placement
		wantCeased bool
		wantClosed bool
	}{
		{
			name:       "new host never attaches",
			attach:     func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
			wantCeased: true, wantClosed: true,
		},
		{
			name:       "attached, no readers: ceased at once",
			attach:     func(context.Context) error { return nil },
			wantCeased: true, wantClosed: true,
		},
		{
			name:   "moved back before the deadline",
			attach: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
			then:   &events.Placement{Stream: "cam-1", Host: "old-host", MigrationID: "m-2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := &gortsplib.Server{RTSPAddress: "127.0.0.1:0"}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Close)
			table := stream.NewTable(srv, stream.Options{Log: zerolog.Nop()})
			st, _, err := table.GetOrCreate("cam-1", &description.Session{Medias: []*description.Media{{
				Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}},
			}}})
			if err != nil {
				t.Fatal(err)
			}
			retired := make(chan string, 1)
			if _, err := st.AddFeed(stream.FeedSpec{Kind: stream.KindPublisher, Space: "sess:s-1", Label: "s-1",
				OnRetire: func(r string) { retired <- r }}); err != nil {
				t.Fatal(err)
			}
			pl := &followFn{}
			em := emit.New(nil, "test", zerolog.Nop())
			got := &emitted{}
			em.OnEmit = got.add
			m := New(Config{Self: "old-host"}, Deps{Table: table, Placements: pl, Attachments: tc.attach, Relay: neverReady{},
				Hosts: noURLs{}, Emit: em, Log: testutil.Logger(t)})
			t.Cleanup(m.Close)
			m.Track(st)
			pl.deliver(events.Placement{Stream: "cam-1", Host: "new-host", MigrationID: "m-1",
				Deadline: time.Now().Add(100 * time.Millisecond)})
			if tc.then != nil {
				pl.deliver(*tc.then)
			}
			if !tc.wantCeased {
				// the handover was cancelled: past its deadline nothing happens
				time.Sleep(300 * time.Millisecond)
				if c := got.ceased(); len(c) != 0 || st.Closed() {
					t.Fatalf("moved back: ceased %+v, closed %v", c, st.Closed())
				}
				return
			}
			testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
				if c := got.ceased(); len(c) != 1 || c[0].NewHost != "new-host" || c[0].MigrationID != "m-1" {
					return fmt.Errorf("ceased %+v", c)
				}
				if st.Closed() != tc.wantClosed {
					return fmt.Errorf("stream closed %v", st.Closed())
				}
				return nil
			})
			select {
			case r := <-retired:
				if r == "" {
					t.Fatal("empty retire reason")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the local publisher was never retired")
			}
		})
	}
}
