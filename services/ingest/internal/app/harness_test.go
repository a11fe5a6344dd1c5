package app

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/nats-io/nats.go"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/libs/token"
	"github.com/ferrystream/ferry/services/ingest/internal/config"
	"github.com/ferrystream/ferry/services/ingest/internal/rtsptest"
)

const testSecret = "test-secret-0123456789"

// harness is one embedded NATS and the ingest nodes of a test.
type harness struct {
	t   *testing.T
	env *testutil.Env

	mu      sync.Mutex
	events  []events.Envelope
	signals map[*App]context.CancelFunc
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, env: testutil.NATS(t), signals: map[*App]context.CancelFunc{}}
	collect := func(m *nats.Msg) {
		env, err := events.Decode(m.Data)
		if err != nil {
			t.Errorf("invalid event on %s: %v", m.Subject, err)
			return
		}
		h.mu.Lock()
		h.events = append(h.events, env)
		h.mu.Unlock()
	}
	for _, subj := range []string{"ferry.evt.>", "ferry.telemetry.>"} {
		sub, err := h.env.NC.Subscribe(subj, collect)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	return h
}

type nodeOpt func(env map[string]string)

func withRole(r string) nodeOpt { return func(e map[string]string) { e["INGEST_ROLE"] = r } }
func withUDP(t *testing.T) nodeOpt {
	return func(e map[string]string) {
		a, b := rtsptest.UDPPair(t)
		e["INGEST_UDP_RTP_ADDR"], e["INGEST_UDP_RTCP_ADDR"] = a, b
	}
}
func withEnv(k, v string) nodeOpt { return func(e map[string]string) { e[k] = v } }

// node starts an ingest node and stops it (Abort) when the test ends.
func (h *harness) node(id string, opts ...nodeOpt) *App {
	h.t.Helper()
	return h.nodeWith(id, Deps{}, opts...)
}

// nodeWith starts a node with extra deps (hooks).
func (h *harness) nodeWith(id string, deps Deps, opts ...nodeOpt) *App {
	h.t.Helper()
	env := map[string]string{
		"INGEST_HOST_ID":       id,
		"INGEST_RTSP_ADDR":     "127.0.0.1:0",
		"FERRY_TOKEN_SECRET":   testSecret,
		"FERRY_NATS_URL":       h.env.URL,
		"INGEST_DRAIN_GRACE":   "10s",
		"INGEST_STREAM_GRACE":  "10s",
		"INGEST_EDGE_LINGER":   "2s",
		"INGEST_UPSTREAM_WAIT": "3s",
	}
	for _, o := range opts {
		o(env)
	}
	cfg, err := config.Load(nil, func(k string) string { return env[k] }, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	deps.Log = testutil.Logger(h.t).With().Str("node", id).Logger()
	deps.NC, deps.JS = h.env.NC, h.env.JS
	a, err := New(cfg, deps)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.mu.Lock()
	h.signals[a] = cancel
	h.mu.Unlock()
	go func() { _ = a.Run(ctx) }()
	h.t.Cleanup(func() {
		a.Abort()
		cancel()
		<-a.Done()
	})
	select {
	case <-a.Started():
	case <-a.Done():
		h.t.Fatalf("node %s did not start", id)
	case <-time.After(10 * time.Second):
		h.t.Fatalf("node %s did not start in 10s", id)
	}
	return a
}

// place writes the placement of stream on host a.
func (h *harness) place(stream string, a *App, session, migration, from string, deadline time.Time) events.Placement {
	h.t.Helper()
	pl := events.Placement{Stream: stream, Host: a.HostID(), RTSPURL: a.PublicURL(), Epoch: 1, MigrationID: migration,
		FromHost: from, Deadline: deadline, SessionID: session, Mode: "push", UpdatedAt: time.Now().UTC()}
	h.putPlacement(pl)
	return pl
}

func (h *harness) putPlacement(pl events.Placement) {
	h.t.Helper()
	b, _ := json.Marshal(pl)
	rev, err := h.env.Stores.Placements.Put(context.Background(), events.PlacementKey(pl.Stream), b)
	if err != nil {
		h.t.Fatal(err)
	}
	// as placement does after each write: the hosts follow its notices
	if err := bus.NotifyPlacement(h.env.NC, pl, rev); err != nil {
		h.t.Fatal(err)
	}
}

// token mints a publish token.
func (h *harness) token(stream, host, session, migration string, ttl time.Duration) string {
	h.t.Helper()
	tok, err := token.Sign([]byte(testSecret), token.Claims{Stream: stream, Host: host, Session: session,
		MigrationID: migration, Expires: time.Now().Add(ttl)})
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func publishURL(a *App, stream, tok string) string {
	return fmt.Sprintf("%s/%s?token=%s", a.PublicURL(), stream, tok)
}

// findEvent returns the first event of type typ whose data satisfies match.
func (h *harness) findEvent(typ string, match func(raw json.RawMessage) bool) (events.Envelope, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		if e.Type == typ && (match == nil || match(e.Data)) {
			return e, true
		}
	}
	return events.Envelope{}, false
}

// waitEvent waits for an event of type typ whose data decodes into T and satisfies match.
func waitEvent[T any](h *harness, typ string, wait time.Duration, match func(T) bool) T {
	h.t.Helper()
	var out T
	testutil.CheckFor(h.t, wait, 20*time.Millisecond, func() error {
		_, ok := h.findEvent(typ, func(raw json.RawMessage) bool {
			var v T
			if json.Unmarshal(raw, &v) != nil {
				return false
			}
			if match == nil || match(v) {
				out = v
				return true
			}
			return false
		})
		if !ok {
			return fmt.Errorf("no %s event yet", typ)
		}
		return nil
	})
	return out
}

func (h *harness) countEvents(typ string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// read starts a reader and closes it at the end of the test.
func read(t *testing.T, url string, tr gortsplib.Protocol) *rtsptest.Reader {
	t.Helper()
	var r *rtsptest.Reader
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		var err error
		r, err = rtsptest.Read(url, tr, rtsptest.ReadOptions{})
		return err
	})
	t.Cleanup(r.Close)
	return r
}

// waitPackets waits until r received at least n more packets than now.
func waitPackets(t *testing.T, r *rtsptest.Reader, n uint64) {
	t.Helper()
	target := r.Packets() + n
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := r.Packets(); got < target {
			return fmt.Errorf("reader got %d packets, want %d", got, target)
		}
		return nil
	})
}

func transportName(tr gortsplib.Protocol) string {
	if tr == gortsplib.ProtocolUDP {
		return "udp"
	}
	return "tcp"
}

// waitAll waits until every reader received at least n more packets than now.
func waitAll(t *testing.T, readers map[string]*rtsptest.Reader, n uint64) {
	t.Helper()
	targets := map[string]uint64{}
	for name, r := range readers {
		targets[name] = r.Packets() + n
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for name, r := range readers {
			if got := r.Packets(); got < targets[name] {
				return fmt.Errorf("%s reader got %d packets, want %d", name, got, targets[name])
			}
		}
		return nil
	})
}

// readSamples starts a reader that keeps every packet's timing.
func readSamples(t *testing.T, url string, tr gortsplib.Protocol) *rtsptest.Reader {
	t.Helper()
	var r *rtsptest.Reader
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		var err error
		r, err = rtsptest.Read(url, tr, rtsptest.ReadOptions{KeepSamples: true})
		return err
	})
	t.Cleanup(r.Close)
	return r
}

// longestGap is the longest interval between consecutive packets of a media
// arriving within [from, to].
func longestGap(samples []rtsptest.Sample, media int, from, to time.Time) time.Duration {
	var g time.Duration
	var last time.Time
	for _, s := range samples {
		if s.Media != media {
			continue
		}
		if !last.IsZero() && !s.Arrival.Before(from) && !last.After(to) {
			g = max(g, s.Arrival.Sub(last))
		}
		last = s.Arrival
	}
	return g
}

// signal cancels a node's Run context, as SIGTERM does in main.
func (h *harness) signal(a *App) {
	h.mu.Lock()
	cancel := h.signals[a]
	h.mu.Unlock()
	cancel()
}

// publish places stream on a and starts a fake H.264 publisher there with a
// token for session (over TCP), sending until the test ends.
func (h *harness) publish(a *App, stream, session string) (*rtsptest.Agent, *rtsptest.AgentConn) {
	h.t.Helper()
	h.place(stream, a, session, "", "", time.Time{})
	ag := rtsptest.NewAgent(fakeH264(h.t))
	conn, err := ag.Connect(publishURL(a, stream, h.token(stream, a.HostID(), session, "", time.Minute)), gortsplib.ProtocolTCP)
	if err != nil {
		h.t.Fatal(err)
	}
	runAgent(h.t, ag)
	return ag, conn
}
