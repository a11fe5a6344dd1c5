package edge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/media"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/ingest/internal/control"
	"github.com/ferrystream/ferry/services/ingest/internal/emit"
	"github.com/ferrystream/ferry/services/ingest/internal/metrics"
	"github.com/ferrystream/ferry/services/ingest/internal/stream"
	"github.com/ferrystream/ferry/services/ingest/internal/upstream/upstreamtest"
)

// placedOn places every stream on one host; Watch delivers that placement
// and ends with its context.
type placedOn string

func (p placedOn) Get(_ context.Context, name string) (events.Placement, error) {
	if p == "" {
		return events.Placement{}, control.ErrNotPlaced
	}
	return events.Placement{Stream: name, Host: string(p), Mode: "push", SessionID: "s-1"}, nil
}

func (p placedOn) Watch(ctx context.Context, name string) (<-chan events.Placement, error) {
	ch := make(chan events.Placement, 1)
	pl, _ := p.Get(ctx, name)
	ch <- pl
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}

// noURLs knows no host: every pull fails before it dials.
type noURLs struct{}

func (noURLs) URL(context.Context, string) string { return "" }

// events collects what an emitter is handed.
type emitted struct {
	mu  sync.Mutex
	evs []events.Data
}

func (e *emitted) add(d events.Data) { e.mu.Lock(); e.evs = append(e.evs, d); e.mu.Unlock() }
func (e *emitted) all() []events.Data {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]events.Data(nil), e.evs...)
}

func newManager(t *testing.T, cfg Config) (*Manager, *stream.Table, *emitted) {
	t.Helper()
	return newManagerWith(t, cfg, Deps{}, stream.Options{Log: zerolog.Nop()})
}

// newManagerWith is newManager with collaborators (zero fields: every stream
// placed on origin-1, no host URLs) and the table's stream options.
func newManagerWith(t *testing.T, cfg Config, d Deps, opts stream.Options) (*Manager, *stream.Table, *emitted) {
	t.Helper()
	srv := &gortsplib.Server{RTSPAddress: "127.0.0.1:0"}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	table := stream.NewTable(srv, opts)
	em := emit.New(nil, "test", zerolog.Nop())
	got := &emitted{}
	em.OnEmit = got.add
	if cfg.Self == "" {
		cfg.Self = "edge-1"
	}
	if cfg.UpstreamWait == 0 {
		cfg.UpstreamWait = 50 * time.Millisecond
	}
	if d.Placements == nil {
		d.Placements = placedOn("origin-1")
	}
	if d.Hosts == nil {
		d.Hosts = noURLs{}
	}
	d.Table, d.Emit, d.Metrics, d.Log = table, em, metrics.Nop(), testutil.Logger(t)
	m := New(cfg, d)
	t.Cleanup(m.Close)
	return m, table, got
}

func h264Desc() *description.Session {
	return &description.Session{Medias: []*description.Media{{
		Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}},
	}}}
}

// upstreamFeeds returns a stream with two upstream feeds, from host a and b.
func upstreamFeeds(t *testing.T, table *stream.Table) (*stream.Stream, *stream.Feed, *stream.Feed) {
	t.Helper()
	st, _, err := table.GetOrCreate("cam-1", h264Desc())
	if err != nil {
		t.Fatal(err)
	}
	from, err := st.AddFeed(stream.FeedSpec{Kind: stream.KindUpstream, Space: "sess:s-1", Host: "origin-a", Label: "origin-a"})
	if err != nil {
		t.Fatal(err)
	}
	to, err := st.AddFeed(stream.FeedSpec{Kind: stream.KindUpstream, Space: "sess:s-1", Host: "origin-b", Label: "origin-b"})
	if err != nil {
		t.Fatal(err)
	}
	return st, from, to
}

func TestSwitchReport(t *testing.T) {
	t.Parallel()
	m, table, got := newManager(t, Config{Settle: 20 * time.Millisecond})
	st, from, to := upstreamFeeds(t, table)
	m.OnSwitch(st, media.SwitchInfo{From: from.ID, To: to.ID, Mode: "sequence", At: time.Now()}, from, to)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := len(got.all()); n != 1 {
			return fmt.Errorf("%d events, want 1", n)
		}
		return nil
	})
	ev, ok := got.all()[0].(events.EdgeSwitched)
	if !ok || ev.FromHost != "origin-a" || ev.ToHost != "origin-b" || ev.Edge != "edge-1" || ev.Mode != "sequence" {
		t.Fatalf("report %+v", got.all()[0])
	}
}

// TestNoSwitchReportAfterClose: a switch report still waiting for its settle
// time when the manager closes is dropped; before, a timer emitted it after
// Close.
func TestNoSwitchReportAfterClose(t *testing.T) {
	t.Parallel()
	m, table, got := newManager(t, Config{Settle: 160 * time.Millisecond})
	st, from, to := upstreamFeeds(t, table)
	m.OnSwitch(st, media.SwitchInfo{From: from.ID, To: to.ID, Mode: "sequence", At: time.Now()}, from, to)
	m.Close()
	// Close waited for the report's goroutine: nothing can come later. The
	// old timers fired 160 ms after the switch, so watch past that.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if evs := got.all(); len(evs) != 0 {
			t.Fatalf("event emitted after Close: %+v", evs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFollowAfterClose: a follower asked for once the manager closed fails
// at once and is not registered (before, follow added to the WaitGroup that
// Close had waited on and left a follower behind).
func TestFollowAfterClose(t *testing.T) {
	t.Parallel()
	m, _, _ := newManager(t, Config{})
	m.Close()
	f := m.follow("cam-1", nil, false)
	select {
	case <-f.dead:
	default:
		t.Fatal("follower of a closed manager is not dead")
	}
	if !errors.Is(f.failure(), ErrClosed) {
		t.Fatalf("failure %v, want ErrClosed", f.failure())
	}
	m.mu.Lock()
	n := len(m.followers)
	m.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d followers registered after Close", n)
	}
	if _, err := m.Serve(context.Background(), "cam-1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close: %v, want ErrClosed", err)
	}
}

// TestServeWhileClosing asks for streams while the manager closes (run under
// -race: no follower starts once Close waits).
func TestServeWhileClosing(t *testing.T) {
	t.Parallel()
	for i := range 20 {
		m, _, _ := newManager(t, Config{UpstreamWait: 5 * time.Millisecond})
		var wg sync.WaitGroup
		var stop atomic.Bool
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; !stop.Load(); n++ {
					_, _ = m.Serve(context.Background(), fmt.Sprintf("cam-%d-%d-%d", i, g, n))
				}
			}()
		}
		time.Sleep(time.Millisecond)
		m.Close()
		stop.Store(true)
		wg.Wait()
		m.mu.Lock()
		n := len(m.followers)
		m.mu.Unlock()
		if n != 0 {
			t.Fatalf("round %d: %d followers left after Close", i, n)
		}
	}
}

// TestPullBoundsTracks: an edge's upstream pull dials with INGEST_MAX_TRACKS,
// so an upstream describing more medias is refused like an ANNOUNCE with as
// many (upstream.TestDial checks the refusal itself).
func TestPullBoundsTracks(t *testing.T) {
	t.Parallel()
	ups := &upstreamtest.Dialer{}
	m, _, _ := newManagerWith(t, Config{Self: "edge-1", UpstreamWait: 5 * time.Second, MaxTracks: 3},
		Deps{Placements: newMovingPlacement("origin-a"), Hosts: hostURLs{}, Dial: ups.Dial},
		stream.Options{Log: zerolog.Nop()})
	if _, err := m.Serve(testutil.Context(t), "cam-1"); err != nil {
		t.Fatal(err)
	}
	ups.Playing(t, "origin-a", 0)
	if got := ups.Options().MaxTracks; got != 3 {
		t.Fatalf("dialled with MaxTracks %d, want 3", got)
	}
}
