package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/healthpredict/internal/predict"
)

type running struct {
	*Service
	logs *testutil.Buffer
	stop func()
}

// start runs a service on env until the test ends (or stop) and waits until it is ready.
func start(t *testing.T, env *testutil.Env, instance string, mods ...func(*Config)) *running {
	t.Helper()
	nc, err := nats.Connect(env.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.Buffer{}
	cfg := Config{Predict: predict.Default(), Instance: instance, MaxFuture: 30 * time.Second, Tick: 100 * time.Millisecond,
		DeadLetterEvery: time.Minute}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := New(cfg, Deps{JS: js, Log: zerolog.New(logs), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, s.Ready)
	return &running{Service: s, logs: logs, stop: stop}
}

func publish(t *testing.T, js jetstream.JetStream, d events.Data, opts ...jetstream.PublishOpt) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := events.Publish(ctx, js, "ferry/test", d, opts...); err != nil {
		t.Fatal(err)
	}
}

// stored returns every message stored on subj in stream.
func stored(t *testing.T, js jetstream.JetStream, stream, subj string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for {
		b, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range b.Messages() {
			out = append(out, m)
			n++
		}
		if n == 0 {
			return out
		}
	}
}

func storedAs[T events.Data](t *testing.T, js jetstream.JetStream, subj string) []T {
	t.Helper()
	var out []T
	for _, m := range stored(t, js, bus.StreamEvents, subj) {
		_, d, err := events.DecodeAs[T](m.Data())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func count[T events.Data](t *testing.T, js jetstream.JetStream, subj string, want int) func() error {
	return func() error {
		if got := len(storedAs[T](t, js, subj)); got != want {
			return fmt.Errorf("%d events on %s, want %d", got, subj, want)
		}
		return nil
	}
}

func heartbeat(t *testing.T, js jetstream.JetStream, host string, ttl time.Duration) {
	t.Helper()
	publish(t, js, events.Heartbeat{Host: host, Seq: 1, At: time.Now().UTC()}, jetstream.WithMsgTTL(ttl))
}

func TestMaintenanceScheduledThenCancelled(t *testing.T) {
	env := testutil.NATS(t)
	start(t, env, "hp-1")
	heartbeat(t, env.JS, "ingest-2", time.Minute) // the host has reported
	startAt := time.Now().Add(2 * time.Minute).UTC().Truncate(time.Millisecond)
	publish(t, env.JS, events.MaintenanceScheduled{MaintenanceID: "mw-42", Host: "ingest-2", StartAt: startAt,
		EndAt: startAt.Add(time.Hour), Reason: "kernel upgrade", RequestedBy: "ops"})
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, count[events.OutagePredicted](t, env.JS, subject.OutagePredicted("ingest-2"), 1))
	p := storedAs[events.OutagePredicted](t, env.JS, subject.OutagePredicted("ingest-2"))[0]
	if p.Cause != predict.CauseMaintenance || !p.ExpectedOfflineAt.Equal(startAt) || p.Confidence != 1 ||
		p.Evidence["maintenance_id"] != "mw-42" || p.Labels["maintenance_id"] != "mw-42" || p.Revision != 0 {
		t.Fatalf("prediction %+v", p)
	}
	publish(t, env.JS, events.MaintenanceCancelled{MaintenanceID: "mw-42", Host: "ingest-2", Reason: "postponed"})
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, count[events.OutageCleared](t, env.JS, subject.OutageCleared("ingest-2"), 1))
	c := storedAs[events.OutageCleared](t, env.JS, subject.OutageCleared("ingest-2"))[0]
	if c.PredictionID != p.PredictionID || c.Cause != predict.CauseMaintenance || !strings.Contains(c.Reason, "postponed") {
		t.Fatalf("clear %+v", c)
	}
	if got := len(storedAs[events.OutagePredicted](t, env.JS, subject.OutagePredicted("ingest-2"))); got != 1 {
		t.Fatalf("%d predictions, want still 1", got)
	}
}

func TestMaintenanceWindowEndClears(t *testing.T) {
	env := testutil.NATS(t)
	start(t, env, "hp-1")
	heartbeat(t, env.JS, "ingest-4", time.Minute)
	now := time.Now().UTC()
	publish(t, env.JS, events.MaintenanceScheduled{MaintenanceID: "mw-short", Host: "ingest-4", StartAt: now,
		EndAt: now.Add(time.Second)})
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, count[events.OutagePredicted](t, env.JS, subject.OutagePredicted("ingest-4"), 1))
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, count[events.OutageCleared](t, env.JS, subject.OutageCleared("ingest-4"), 1))
	if c := storedAs[events.OutageCleared](t, env.JS, subject.OutageCleared("ingest-4"))[0]; c.Reason != "maintenance window ended" {
		t.Fatalf("reason %q", c.Reason)
	}
}

func TestMaintenanceForAnUnknownHostWaits(t *testing.T) {
	env := testutil.NATS(t)
	start(t, env, "hp-1")
	now := time.Now().UTC()
	publish(t, env.JS, events.MaintenanceScheduled{MaintenanceID: "mw-7", Host: "ingest-9", StartAt: now.Add(time.Minute),
		EndAt: now.Add(time.Hour)})
	// a marker on another subject proves the service has read past the maintenance event
	publish(t, env.JS, events.Draining{Host: "ingest-8", Deadline: now.Add(time.Minute), Streams: 1})
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, count[events.OutagePredicted](t, env.JS, subject.OutagePredicted("ingest-8"), 1))
	if got := len(storedAs[events.OutagePredicted](t, env.JS, subject.OutagePredicted("ingest-9"))); got != 0 {
		t.Fatalf("a prediction for a host that never reported")
	}
	heartbeat(t, env.JS, "ingest-9", time.Minute)
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, count[events.OutagePredicted](t, env.JS, subject.OutagePredicted("ingest-9"), 1))
}

func TestHeartbeatSilenceIsHostDown(t *testing.T) {
	env := testutil.NATS(t)
	start(t, env, "hp-1")
	for i := 0; i < 3; i++ {
		heartbeat(t, env.JS, "ingest-3", time.Second)
	}
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, count[events.HostDown](t, env.JS, subject.HostDown("ingest-3"), 1))
	d := storedAs[events.HostDown](t, env.JS, subject.HostDown("ingest-3"))[0]
	if !d.DetectedAt.After(d.LastSeen) || d.DetectedAt.Sub(d.LastSeen) > 5*time.Second || !strings.Contains(d.Reason, "MaxAge") {
		t.Fatalf("host_down %+v", d)
	}
}

// TestDepartureIsNotHostDown: a host that announced its departure
// (host_left, after a drain) and then falls silent gets no host_down, while
// a host that falls silent without one, after it, does; the departed host
// registering again and falling silent gets its host_down.
func TestDepartureIsNotHostDown(t *testing.T) {
	env := testutil.NATS(t)
	start(t, env, "hp-1")
	heartbeat(t, env.JS, "ingest-2", time.Second)
	publish(t, env.JS, events.HostLeft{Host: "ingest-2", Reason: "drain command", At: time.Now().UTC()})
	heartbeat(t, env.JS, "ingest-3", time.Second) // later: its marker comes after ingest-2's
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, count[events.HostDown](t, env.JS, subject.HostDown("ingest-3"), 1))
	if downs := storedAs[events.HostDown](t, env.JS, subject.HostDown("ingest-2")); len(downs) != 0 {
		t.Fatalf("host_down for a host that left: %+v", downs)
	}

	heartbeat(t, env.JS, "ingest-2", time.Second) // back, then silent without leaving
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, count[events.HostDown](t, env.JS, subject.HostDown("ingest-2"), 1))
}

// telemetry returns a valid sample of host at t with memory at frac of its limit.
func telemetry(host string, t time.Time, frac float64) events.Telemetry {
	const limit = 4 << 30
	return events.Telemetry{Host: host, At: t.UTC(), MemBytes: int64(frac * limit), MemLimit: limit, FDs: 100, FDLimit: 4096}
}

// leakTrace publishes 40 minutes of telemetry of host ending now, stamped in
// the past (event time): 30 minutes stable, then a leak that reaches the
// limit 12 minutes later; it returns when all are published.
func leakTrace(t *testing.T, js jetstream.JetStream, host string) {
	t.Helper()
	end := time.Now().Add(-time.Second)
	begin := end.Add(-40 * time.Minute)
	for at := begin; at.Before(end); at = at.Add(5 * time.Second) {
		frac := 0.4 + 0.003*float64(at.Unix()%3)
		if m := at.Sub(begin).Minutes(); m > 30 {
			frac += 0.6 * (m - 30) / 12
		}
		publish(t, js, telemetry(host, at, frac))
	}
}

func TestTelemetryLeakIsPredictedOnEventTime(t *testing.T) {
	env := testutil.NATS(t)
	start(t, env, "hp-1")
	leakTrace(t, env.JS, "ingest-5")
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		ps := storedAs[events.OutagePredicted](t, env.JS, subject.OutagePredicted("ingest-5"))
		if len(ps) == 0 {
			return errors.New("no prediction yet")
		}
		p := ps[0]
		if p.Cause != predict.CauseMemory || p.Evidence["predictor"] != "trend" {
			return fmt.Errorf("prediction %+v", p)
		}
		// the leak reaches the limit 12 min after its onset, i.e. about 2 min from now
		if d := time.Until(ps[len(ps)-1].ExpectedOfflineAt); d < -time.Minute || d > 5*time.Minute {
			return fmt.Errorf("expected offline in %v", d)
		}
		return nil
	})
}

func TestBadTelemetryIsDeadLetteredAndLeavesTheModel(t *testing.T) {
	env := testutil.NATS(t)
	s := start(t, env, "hp-1", func(c *Config) { c.DeadLetterEvery = 0 }) // every rejection is copied
	host := "ingest-6"
	good := time.Now().Add(-time.Minute)
	publish(t, env.JS, telemetry(host, good, 0.5))
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.tr.LastSample(host).Equal(good.UTC()) {
			return errors.New("good sample not seen")
		}
		return nil
	})
	raw := func(mod func(d map[string]any)) []byte {
		env, _, err := events.Marshal("ferry/test", telemetry(host, time.Now(), 0.5))
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(env.Data, &d); err != nil {
			t.Fatal(err)
		}
		mod(d)
		env.Data, _ = json.Marshal(d)
		b, _ := json.Marshal(env)
		return b
	}
	for i, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"negative memory", raw(func(d map[string]any) { d["mem_bytes"] = -5 }), "/data/mem_bytes"},
		{"missing field", raw(func(d map[string]any) { delete(d, "fd_limit") }), "fd_limit"},
		{"memory limit 0", raw(func(d map[string]any) { d["mem_limit"] = 0 }), "mem_limit is 0"},
		{"descriptor limit 0", raw(func(d map[string]any) { d["fd_limit"] = 0 }), "fd_limit is 0"},
		{"from the future", raw(func(d map[string]any) {
			d["at"] = time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
		}), "in the future"},
		{"another host's data", raw(func(d map[string]any) { d["host"] = "ingest-7" }), "does not match the subject"},
		{"not JSON", []byte("{oops"), "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := nats.NewMsg(subject.Telemetry(host))
			m.Data = tc.body
			if _, err := env.JS.PublishMsg(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			dlq := subject.DeadLetter(bus.StreamTelemetry, ConsumerName)
			testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
				msgs := stored(t, env.JS, bus.StreamDeadLetter, dlq)
				if len(msgs) != i+1 {
					return fmt.Errorf("%d dead letters, want %d", len(msgs), i+1)
				}
				last := msgs[len(msgs)-1]
				if r := last.Headers().Get(bus.HeaderDLQReason); !strings.Contains(r, tc.want) {
					return fmt.Errorf("reason %q, want %q", r, tc.want)
				}
				if !bytes.Equal(last.Data(), tc.body) || last.Headers().Get(bus.HeaderDLQSubject) != subject.Telemetry(host) {
					return errors.New("dead letter is not a copy of the message")
				}
				return nil
			})
			if !strings.Contains(s.logs.String(), tc.want) || !strings.Contains(s.logs.String(), "input rejected") {
				t.Fatalf("no log line with %q:\n%s", tc.want, s.logs.String())
			}
		})
	}
	// the model is untouched: the last sample is still the good one, and a
	// new good sample (earlier than the rejected future one) is accepted
	s.mu.Lock()
	last := s.tr.LastSample(host)
	s.mu.Unlock()
	if !last.Equal(good.UTC()) {
		t.Fatalf("last sample %v, want %v", last, good)
	}
	next := time.Now().UTC()
	publish(t, env.JS, telemetry(host, next, 0.5))
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if got := s.tr.LastSample(host); !got.Equal(next) {
			return fmt.Errorf("last sample %v, want %v", got, next)
		}
		return nil
	})
}

func TestTwoReplicasPublishEachPredictionOnce(t *testing.T) {
	env := testutil.NATS(t)
	a := start(t, env, "hp-a")
	b := start(t, env, "hp-b")
	heartbeat(t, env.JS, "ingest-1", time.Minute)
	// Heartbeats and maintenance windows come on different streams, whose
	// relative order a replica does not control: a replica that saw both
	// windows before the heartbeat opens the earlier window directly (another
	// prediction id, reconciled afterwards). Both must have seen the host
	// report before the windows, for both to make the same two revisions.
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, r := range []*running{a, b} {
			r.mu.Lock()
			known := r.tr.Known("ingest-1")
			r.mu.Unlock()
			if !known {
				return fmt.Errorf("%s has not seen ingest-1 report", r.cfg.Instance)
			}
		}
		return nil
	})
	now := time.Now().UTC()
	publish(t, env.JS, events.MaintenanceScheduled{MaintenanceID: "mw-1", Host: "ingest-1", StartAt: now.Add(time.Minute),
		EndAt: now.Add(time.Hour)})
	publish(t, env.JS, events.MaintenanceScheduled{MaintenanceID: "mw-0", Host: "ingest-1", StartAt: now.Add(30 * time.Second),
		EndAt: now.Add(time.Hour)}) // an earlier window: one revision
	leakTrace(t, env.JS, "ingest-5")
	publish(t, env.JS, events.MaintenanceCancelled{MaintenanceID: "mw-1", Host: "ingest-1"})
	publish(t, env.JS, events.MaintenanceCancelled{MaintenanceID: "mw-0", Host: "ingest-1"})
	// both replicas see everything: wait until both have published (or skipped) the clear
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		for _, r := range []*running{a, b} {
			r.mu.Lock()
			_, open := r.tr.OpenFor("ingest-1", predict.CauseMaintenance)
			_, leak := r.tr.OpenFor("ingest-5", predict.CauseMemory)
			pending := len(r.outbox)
			r.mu.Unlock()
			if open || !leak || pending > 0 {
				return fmt.Errorf("%s: maintenance open %v, leak open %v, outbox %d", r.cfg.Instance, open, leak, pending)
			}
		}
		return nil
	})
	seen := map[string]int{}
	var sources []string
	for _, subj := range []string{subject.OutagePredicted("*"), subject.OutageCleared("*")} {
		for _, m := range stored(t, env.JS, bus.StreamEvents, subj) {
			e, err := events.Decode(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			seen[e.ID]++
			sources = append(sources, e.Source)
		}
	}
	if len(seen) < 4 { // maintenance open, revision, clear; memory open
		t.Fatalf("only %d events", len(seen))
	}
	if got := len(storedAs[events.OutagePredicted](t, env.JS, subject.OutagePredicted("ingest-1"))); got != 2 {
		t.Fatalf("%d maintenance revisions stored, want 2 (scheduled, then an earlier window)", got)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("event %s stored %d times", id, n)
		}
	}
	// both replicas made the same decisions: their trackers agree
	a.mu.Lock()
	pa := a.tr.Open()
	a.mu.Unlock()
	b.mu.Lock()
	pb := b.tr.Open()
	b.mu.Unlock()
	// compared as JSON: a replica that adopted the other's prediction holds
	// its evidence as decoded from the event (numbers as float64), the one
	// that opened it as computed (ints): the same decision either way
	ja, erra := json.Marshal(pa)
	jb, errb := json.Marshal(pb)
	if erra != nil || errb != nil || len(pa) == 0 {
		t.Fatalf("open predictions %v (%v), %v (%v)", pa, erra, pb, errb)
	}
	if string(ja) != string(jb) {
		t.Fatalf("replicas disagree:\n%s\n%s", ja, jb)
	}
	t.Logf("%d events from %v", len(seen), sources)
}

func TestRestartAdoptsInsteadOfRepublishing(t *testing.T) {
	env := testutil.NATS(t)
	a := start(t, env, "hp-a")
	heartbeat(t, env.JS, "ingest-1", time.Minute)
	now := time.Now().UTC()
	publish(t, env.JS, events.MaintenanceScheduled{MaintenanceID: "mw-1", Host: "ingest-1", StartAt: now.Add(time.Minute),
		EndAt: now.Add(time.Hour)})
	leakTrace(t, env.JS, "ingest-5")
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if len(storedAs[events.OutagePredicted](t, env.JS, subject.OutagePredicted("ingest-1"))) != 1 ||
			len(storedAs[events.OutagePredicted](t, env.JS, subject.OutagePredicted("ingest-5"))) == 0 {
			return errors.New("predictions not published yet")
		}
		return nil
	})
	a.stop()
	before := len(stored(t, env.JS, bus.StreamEvents, subject.OutagePredicted("*")))
	b := start(t, env, "hp-b") // ready = replayed and reconciled
	if after := len(stored(t, env.JS, bus.StreamEvents, subject.OutagePredicted("*"))); after != before {
		t.Fatalf("a restarted replica published %d predictions again", after-before)
	}
	b.mu.Lock()
	p, ok := b.tr.OpenFor("ingest-1", predict.CauseMaintenance)
	b.mu.Unlock()
	if !ok || p.ID != "ingest-1.maintenance.mw-1" {
		t.Fatalf("maintenance prediction not adopted: %+v", p)
	}
	publish(t, env.JS, events.MaintenanceCancelled{MaintenanceID: "mw-1", Host: "ingest-1"})
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, count[events.OutageCleared](t, env.JS, subject.OutageCleared("ingest-1"), 1))
}

func TestDeadLettersAreRateLimitedPerHostAndReason(t *testing.T) {
	env := testutil.NATS(t)
	s := start(t, env, "hp-1") // DeadLetterEvery 1m
	bad := func(host string) {
		d := telemetry(host, time.Now(), 0.5)
		d.MemLimit = 0
		env, _, err := events.Marshal("ferry/test", d)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(subject.Telemetry(host))
		m.Data, _ = json.Marshal(env)
		if _, err := s.js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		bad("ingest-1")
	}
	bad("ingest-2")
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if got := promtest.ToFloat64(s.m.rejected.WithLabelValues(FeedTelemetry, "absurd")); got != 6 {
			return fmt.Errorf("%v rejections counted, want 6", got)
		}
		// all six are handled in stream order: the five of ingest-1 gave one copy
		msgs := stored(t, env.JS, bus.StreamDeadLetter, subject.DeadLetter(bus.StreamTelemetry, ConsumerName))
		if len(msgs) != 2 {
			return fmt.Errorf("%d dead letters, want one per host", len(msgs))
		}
		return nil
	})
}
