package camera

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/ingest/internal/clock"
	"github.com/ferrystream/ferry/services/ingest/internal/emit"
	"github.com/ferrystream/ferry/services/ingest/internal/metrics"
	"github.com/ferrystream/ferry/services/ingest/internal/stream"
	"github.com/ferrystream/ferry/services/ingest/internal/upstream/upstreamtest"
)

// record collects the events the manager emits and the streams it reports hosted.
type record struct {
	mu     sync.Mutex
	evs    []events.Data
	hosted []string
}

func (r *record) emitted(d events.Data) { r.mu.Lock(); r.evs = append(r.evs, d); r.mu.Unlock() }
func (r *record) onHosted(s *stream.Stream) {
	r.mu.Lock()
	r.hosted = append(r.hosted, s.Name)
	r.mu.Unlock()
}

// types returns the emitted events' types, in order.
func (r *record) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		out = append(out, e.EventType())
	}
	return out
}

// wait waits until the emitted events' types are exactly want.
func (r *record) wait(t *testing.T, want ...string) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if got := r.types(); !slices.Equal(got, want) {
			return fmt.Errorf("events %v, want %v", got, want)
		}
		return nil
	})
}

// detached returns the last PublisherDetached emitted.
func (r *record) detached() events.PublisherDetached {
	r.mu.Lock()
	defer r.mu.Unlock()
	var d events.PublisherDetached
	for _, e := range r.evs {
		if x, ok := e.(events.PublisherDetached); ok {
			d = x
		}
	}
	return d
}

type cameraEnv struct {
	m     *Manager
	table *stream.Table
	dial  *upstreamtest.Dialer
	clk   *clock.Fake
	rec   *record
}

func newCameraEnv(t *testing.T) *cameraEnv {
	t.Helper()
	return newCameraEnvWith(t, Config{Self: "ingest-1", MaxBackoff: time.Second})
}

func newCameraEnvWith(t *testing.T, cfg Config) *cameraEnv {
	t.Helper()
	srv := &gortsplib.Server{RTSPAddress: "127.0.0.1:0"}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	e := &cameraEnv{table: stream.NewTable(srv, stream.Options{Log: zerolog.Nop()}), dial: &upstreamtest.Dialer{},
		clk: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), true), rec: &record{}}
	em := emit.New(nil, "test", zerolog.Nop())
	em.OnEmit = e.rec.emitted
	e.m = New(cfg, Deps{Table: e.table, Emit: em, Metrics: metrics.Nop(),
		Log: testutil.Logger(t), OnHosted: e.rec.onHosted, Dial: e.dial.Dial, Clock: e.clk})
	t.Cleanup(e.m.Close)
	return e
}

// running waits until the manager runs exactly the pulls of names.
func (e *cameraEnv) running(t *testing.T, names ...string) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		got := e.m.Running()
		slices.Sort(got)
		if !slices.Equal(got, names) {
			return fmt.Errorf("running %v, want %v", got, names)
		}
		return nil
	})
}

const (
	attached = events.TypePublisherAttached
	detached = events.TypePublisherDetached
)

// TestPull drives camera pulls on an in-memory camera and a clock that
// spends no time on the reconnect backoff.
func TestPull(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, e *cameraEnv)
	}{
		{"the camera feeds the stream until the stream moves", func(t *testing.T, e *cameraEnv) {
			e.m.Start("cam-1", "rtsp://cam-a/live", "m-1")
			c := e.dial.Playing(t, "cam-a", 0)
			e.rec.wait(t, attached)
			c.Send(1, 2, 3)
			st := e.table.Get("cam-1")
			testutil.CheckFor(t, 5*time.Second, ms, func() error {
				if n := st.PacketsIn(); n != 3 {
					return fmt.Errorf("%d packets in", n)
				}
				return nil
			})
			st.Cease("moved to ingest-2")
			e.rec.wait(t, attached, detached)
			if d := e.rec.detached(); d.Reason != "moved to ingest-2" || d.MigrationID != "m-1" || d.SessionID != "pull-cam-1" {
				t.Fatalf("detached %+v", d)
			}
			e.running(t)
			if !c.Closed() || e.dial.Dials() != 1 || !slices.Equal(e.rec.hosted, []string{"cam-1"}) {
				t.Fatalf("closed %v, dials %d, hosted %v", c.Closed(), e.dial.Dials(), e.rec.hosted)
			}
		}},
		{"camera lost: reconnect, attached reported once", func(t *testing.T, e *cameraEnv) {
			e.m.Start("cam-1", "rtsp://cam-a/live", "m-1")
			e.dial.Playing(t, "cam-a", 0).Die(errors.New("connection reset"))
			c2 := e.dial.Playing(t, "cam-a", 1)
			if w := e.clk.Waits(); !slices.Equal(w, []time.Duration{200 * ms}) {
				t.Fatalf("backoffs %v", w)
			}
			c2.Die(errors.New("connection reset")) // the backoff starts over after a connection played
			e.dial.Playing(t, "cam-a", 2)
			if w := e.clk.Waits(); !slices.Equal(w, []time.Duration{200 * ms, 200 * ms}) {
				t.Fatalf("backoffs %v", w)
			}
			if got := e.rec.types(); !slices.Equal(got, []string{attached}) {
				t.Fatalf("events %v, want one attached", got)
			}
		}},
		{"camera unreachable: the backoff doubles up to MaxBackoff", func(t *testing.T, e *cameraEnv) {
			e.dial.Refuse(5)
			e.m.Start("cam-1", "rtsp://cam-a/live", "")
			e.dial.Playing(t, "cam-a", 0)
			e.rec.wait(t, attached)
			if w := e.clk.Waits(); !slices.Equal(w, []time.Duration{200 * ms, 400 * ms, 800 * ms, time.Second, time.Second}) {
				t.Fatalf("backoffs %v", w)
			}
		}},
		{"Stop ends the pull", func(t *testing.T, e *cameraEnv) {
			e.m.Start("cam-1", "rtsp://cam-a/live", "m-1")
			e.m.Start("cam-1", "rtsp://cam-a/live", "m-1") // the same pull: a no-op
			c := e.dial.Playing(t, "cam-a", 0)
			e.rec.wait(t, attached)
			if err := e.m.Handle(events.PullCommand{Stream: "cam-1", Stop: true}); err != nil {
				t.Fatal(err)
			}
			e.rec.wait(t, attached, detached)
			if d := e.rec.detached(); d.Reason != "pull stopped" || !c.Closed() || e.dial.Dials() != 1 {
				t.Fatalf("detached %+v, closed %v, dials %d", d, c.Closed(), e.dial.Dials())
			}
			e.running(t)
		}},
		{"Close stops every pull", func(t *testing.T, e *cameraEnv) {
			e.m.Start("cam-1", "rtsp://cam-a/live", "")
			e.m.Start("cam-2", "rtsp://cam-b/live", "")
			a, b := e.dial.Playing(t, "cam-a", 0), e.dial.Playing(t, "cam-b", 0)
			e.running(t, "cam-1", "cam-2")
			e.m.Close()
			if !a.Closed() || !b.Closed() {
				t.Fatal("a camera connection outlived Close")
			}
			e.rec.wait(t, attached, attached, detached, detached)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newCameraEnv(t))
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cmd  events.PullCommand
		ok   bool
	}{
		{"rtsp", events.PullCommand{Stream: "cam-1", SourceURL: "rtsp://cam/live"}, true},
		{"rtsps", events.PullCommand{Stream: "cam-1", SourceURL: "rtsps://user:pw@cam:322/live"}, true},
		{"stop needs no URL", events.PullCommand{Stream: "cam-1", Stop: true}, true},
		{"bad stream name", events.PullCommand{Stream: "cam 1/x", SourceURL: "rtsp://cam/live"}, false},
		{"http", events.PullCommand{Stream: "cam-1", SourceURL: "http://cam/live"}, false},
		{"no host", events.PullCommand{Stream: "cam-1", SourceURL: "rtsp:///live"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Validate(tc.cmd)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadCommand)) {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	if got := redact("rtsp://admin:secret@cam:554/live"); got != "rtsp://%2A%2A%2A@cam:554/live" {
		t.Fatalf("redact = %q", got)
	}
}

// TestPullBoundsTracks: a camera pull dials with INGEST_MAX_TRACKS, so a
// camera describing more medias is refused like an ANNOUNCE with as many
// (upstream.TestDial checks the refusal itself).
func TestPullBoundsTracks(t *testing.T) {
	t.Parallel()
	e := newCameraEnvWith(t, Config{Self: "ingest-1", MaxBackoff: time.Second, MaxTracks: 3})
	e.m.Start("cam-1", "rtsp://cam-a/live", "m-1")
	e.dial.Playing(t, "cam-a", 0)
	if got := e.dial.Options().MaxTracks; got != 3 {
		t.Fatalf("dialled with MaxTracks %d, want 3", got)
	}
}
