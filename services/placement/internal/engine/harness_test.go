package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	ftu "github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/placement/client"
	"github.com/ferrystream/ferry/services/placement/internal/migration"
)

var testSecret = []byte("test-secret-0123456789")

// harness is an embedded NATS with Ferry's layout and helpers to register
// hosts, seed placements, publish health events and start replicas.
type harness struct {
	t   testing.TB
	env *ftu.Env
	ctx context.Context

	mu    sync.Mutex
	alive map[string]events.HostRecord
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, env: ftu.NATS(t), ctx: ftu.Context(t), alive: map[string]events.HostRecord{}}
	go h.heartbeat()
	return h
}

// heartbeat refreshes every registered host's record every second, as ingest does.
func (h *harness) heartbeat() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		// Under the lock, so that silence() returning means no refresh of
		// the silenced host is still in flight.
		h.mu.Lock()
		for _, r := range h.alive {
			r.UpdatedAt = time.Now().UTC()
			b, _ := json.Marshal(r)
			_, _ = h.env.Stores.Hosts.Put(h.ctx, r.Host, b)
		}
		h.mu.Unlock()
	}
}

// host registers an origin host that keeps heartbeating.
func (h *harness) host(name, zone string, capacity int, mut ...func(*events.HostRecord)) events.HostRecord {
	h.t.Helper()
	now := time.Now().UTC()
	r := events.HostRecord{Host: name, RTSPURL: "rtsp://127.0.0.1:" + fmt.Sprint(8554+len(name)) + "0", Zone: zone,
		Role: "both", CapacityStreams: capacity, Status: "ok", StartedAt: now.Add(-time.Hour), UpdatedAt: now}
	r.RTSPURL = "rtsp://" + name + ".test:8554"
	for _, m := range mut {
		m(&r)
	}
	b, _ := json.Marshal(r)
	if _, err := h.env.Stores.Hosts.Put(h.ctx, name, b); err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.alive[name] = r
	h.mu.Unlock()
	return r
}

// silence stops a host's heartbeat (its record goes stale).
func (h *harness) silence(name string) {
	h.mu.Lock()
	delete(h.alive, name)
	h.mu.Unlock()
}

// seed writes a placement (and its session) directly, as if chosen earlier.
func (h *harness) seed(stream, host, clientID string, canMove bool, mut ...func(*events.Placement)) {
	h.t.Helper()
	sid := "s-" + randomHex(8)
	sess := events.Session{SessionID: sid, Stream: stream, ClientID: clientID, CreatedAt: time.Now().UTC(),
		Capabilities: events.Capabilities{CanMove: canMove, Channels: []string{"nats"}}}
	b, _ := json.Marshal(sess)
	if _, err := h.env.Stores.Sessions.Create(h.ctx, sid, b); err != nil {
		h.t.Fatal(err)
	}
	p := events.Placement{Stream: stream, Host: host, RTSPURL: "rtsp://" + host + ".test:8554", Epoch: 1, SessionID: sid,
		ClientID: clientID, Mode: "push", UpdatedAt: time.Now().UTC()}
	for _, m := range mut {
		m(&p)
	}
	b, _ = json.Marshal(p)
	if _, err := h.env.Stores.Placements.Create(h.ctx, events.PlacementKey(stream), b); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) seedMany(n int, host, clientID string) []string {
	var names []string
	for i := 0; i < n; i++ {
		s := fmt.Sprintf("cam-%04d", i)
		h.seed(s, host, clientID, true)
		names = append(names, s)
	}
	return names
}

func (h *harness) publish(d events.Data) {
	h.t.Helper()
	if _, err := events.Publish(h.ctx, h.env.JS, "test", d); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) predict(host string, offlineIn time.Duration) {
	h.t.Helper()
	h.publish(events.OutagePredicted{PredictionID: "pred-" + host, Host: host, Cause: "maintenance",
		ExpectedOfflineAt: time.Now().Add(offlineIn).UTC(), Confidence: 1, Evidence: map[string]any{}, Revision: 1})
}

func (h *harness) hostDown(host string) {
	h.t.Helper()
	h.silence(host)
	now := time.Now().UTC()
	h.publish(events.HostDown{Host: host, LastSeen: now.Add(-5 * time.Second), DetectedAt: now, Reason: "heartbeat silence"})
}

// replica is one running engine.
type replica struct {
	s      *Service
	nc     *nats.Conn
	reg    *prometheus.Registry
	log    *ftu.Buffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func testConfig(id string) Config {
	c := DefaultConfig()
	c.ID = id
	c.TokenSecret = testSecret
	c.Pace = 10 * time.Millisecond
	c.Tick = 50 * time.Millisecond
	c.Timing = migration.Timing{StepGrace: 2 * time.Second, FallbackGrace: 2 * time.Second}
	c.MinDeadline = 2 * time.Second
	return c
}

// start runs a replica; lead=false starts it without a lease campaign.
func (h *harness) start(cfg Config, campaign bool) *replica {
	h.t.Helper()
	nc, err := nats.Connect(h.env.URL)
	if err != nil {
		h.t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	buf := &ftu.Buffer{}
	log := zerolog.New(zerolog.MultiLevelWriter(buf, ftuWriter(h.t))).With().Timestamp().Logger()
	reg := prometheus.NewRegistry()
	s, err := New(cfg, Deps{NC: nc, JS: js, Log: log, Registry: reg})
	if err != nil {
		h.t.Fatal(err)
	}
	s.noLease = !campaign
	ctx, cancel := context.WithCancel(h.ctx)
	r := &replica{s: s, nc: nc, reg: reg, log: buf, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	h.t.Cleanup(func() { r.stop(); nc.Close() })
	ftu.CheckFor(h.t, 10*time.Second, 10*time.Millisecond, s.Ready)
	return r
}

// stop cancels the replica and waits for Run to return.
func (r *replica) stop() {
	r.once.Do(func() {
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
		}
	})
}

// lead runs the decider directly (no lease), until the replica stops.
func (r *replica) lead(h *harness) {
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.s.Lead(ctx) }()
	h.t.Cleanup(func() { cancel(); <-done })
}

func (h *harness) client() *client.Client { return client.New(h.env.NC) }

func (h *harness) placements() map[string]events.Placement {
	h.t.Helper()
	out := map[string]events.Placement{}
	keys, err := h.env.Stores.Placements.Keys(h.ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return out
	}
	if err != nil {
		h.t.Fatal(err)
	}
	for _, k := range keys {
		e, err := h.env.Stores.Placements.Get(h.ctx, k)
		if err != nil {
			continue
		}
		var p events.Placement
		_ = json.Unmarshal(e.Value(), &p)
		out[p.Stream] = p
	}
	return out
}

func (h *harness) migrations() []migration.Record {
	h.t.Helper()
	var out []migration.Record
	keys, err := h.env.Stores.Migrations.Keys(h.ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	for _, k := range keys {
		e, err := h.env.Stores.Migrations.Get(h.ctx, k)
		if err != nil {
			continue
		}
		var r migration.Record
		_ = json.Unmarshal(e.Value(), &r)
		out = append(out, r)
	}
	return out
}

// migrationsN waits until n migration records exist and returns them.
func (h *harness) migrationsN(n int) []migration.Record {
	h.t.Helper()
	var ms []migration.Record
	ftu.CheckFor(h.t, 10*time.Second, 20*time.Millisecond, func() error {
		ms = h.migrations()
		if len(ms) != n {
			return fmt.Errorf("%d migration records, want %d", len(ms), n)
		}
		return nil
	})
	return ms
}

// subjects counts stored messages per subject matching filter in stream.
func (h *harness) subjects(stream, filter string) map[string]uint64 {
	h.t.Helper()
	st, err := h.env.JS.Stream(h.ctx, stream)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := st.Info(h.ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Subjects
}

// eventsOn decodes every message stored on a subject of FERRY_EVENTS.
func eventsOn[T events.Data](h *harness, filter string) []T {
	h.t.Helper()
	return storedOn[T](h, bus.StreamEvents, filter)
}

// lastCommand returns how many commands are stored on subj (FERRY_COMMANDS,
// a work queue nobody consumes here) and the last one decoded.
func lastCommand[T events.Data](h *harness, subj string) (uint64, T) {
	h.t.Helper()
	var zero T
	n := h.subjects(bus.StreamCommands, subj)[subj]
	if n == 0 {
		return 0, zero
	}
	st, err := h.env.JS.Stream(h.ctx, bus.StreamCommands)
	if err != nil {
		h.t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(h.ctx, subj)
	if err != nil {
		h.t.Fatal(err)
	}
	_, d, err := events.DecodeAs[T](m.Data)
	if err != nil {
		h.t.Fatal(err)
	}
	return n, d
}

func storedOn[T events.Data](h *harness, stream, filter string) []T {
	h.t.Helper()
	cons, err := h.env.JS.OrderedConsumer(h.ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []T
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			h.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			_, d, err := events.DecodeAs[T](m.Data())
			if err != nil {
				h.t.Fatalf("decode %s: %v", m.Subject(), err)
			}
			out = append(out, d)
		}
		if n == 0 {
			return out
		}
	}
}

func counter(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

// ftuWriter logs to the test output when FERRY_TEST_LOG is set.
func ftuWriter(t testing.TB) zerolog.LevelWriter {
	return zerolog.MultiLevelWriter(testLogWriter{t})
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	if testLogEnabled {
		_, _ = os.Stderr.Write(p)
	}
	return len(p), nil
}

var _ = subject.AllEvents
