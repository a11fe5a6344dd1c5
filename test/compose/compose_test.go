//go:build compose

package compose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/clients/ferryctl/stack"
	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
)

// stream is the compose stack's camera (publish-1, client agent-1).
const stream = "cam-1"

// suite holds what the scenarios share. mu guards figures.
type suite struct {
	monitor, ops *user
	chain        *stack.Chain
	mu           sync.Mutex
	figures      map[string]any
}

func (s *suite) put(k string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.figures[k] = v
}

func TestCompose(t *testing.T) {
	started := time.Now()
	names := []string{"ferry-nats-1", "ferry-nats-2", "ferry-nats-3", "ferry-bootstrap"}
	if !onlyNATS {
		names = append(names, "ferry-ingest-1", "ferry-ingest-2", "ferry-ingest-3", "ferry-edge-1",
			"ferry-healthpredict-1", "ferry-healthpredict-2", "ferry-placement-1", "ferry-placement-2",
			"ferry-notifier-1", "ferry-notifier-2", "ferry-publish-1", "ferry-probe")
	}
	waitHealthy(t, 4*time.Minute, names...)
	s := &suite{figures: map[string]any{"stack_ready_s": time.Since(started).Seconds()}}
	t.Logf("stack ready after %v: %d containers", time.Since(started).Round(time.Millisecond), len(names))
	s.monitor = dialUser(t, "monitor")
	s.ops = dialUser(t, "ops")
	if !onlyNATS {
		chain, err := stack.WatchChain(context.Background(), s.monitor.js, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(chain.Stop)
		s.chain = chain
	}

	t.Run("cluster", s.cluster)
	t.Run("access", s.access)
	if onlyNATS {
		t.Run("nats-node-stop", s.natsNodeStopWrites)
	} else {
		t.Run("maintenance", s.maintenance)
		t.Run("forged-cease", s.forgedCease)
		t.Run("nats-node-stop", s.natsNodeStopMigration)
		t.Run("placement-failover", s.placementFailover)
		t.Run("origin-kill", s.originKill)
		t.Run("partition", s.partition)
		t.Run("placement-history", s.placementHistory)
		t.Run("probe", s.probe)
	}

	s.mu.Lock()
	b, _ := json.Marshal(s.figures)
	s.mu.Unlock()
	t.Logf("figures: %s", b)
	fmt.Printf("COMPOSE_FIGURES %s\n", b)
}

// ---------------------------------------------------------------- cluster

// layout lists every stream the bootstrap creates (buckets as KV_<bucket>).
func layout() []string {
	var names []string
	for _, sc := range bus.Streams(3) {
		names = append(names, sc.Name)
	}
	for _, b := range bus.Buckets(3) {
		names = append(names, "KV_"+b.Bucket)
	}
	return names
}

// replicated checks that every stream has 3 replicas, a leader and both
// followers current; it returns the leader of each.
func (s *suite) replicated(ctx context.Context) (map[string]string, error) {
	leaders := map[string]string{}
	for _, n := range layout() {
		st, err := s.monitor.js.Stream(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", n, err)
		}
		info := st.CachedInfo()
		if info.Config.Replicas != 3 {
			return nil, fmt.Errorf("%s has %d replicas", n, info.Config.Replicas)
		}
		ci := info.Cluster
		if ci == nil || ci.Leader == "" {
			return nil, fmt.Errorf("%s has no leader", n)
		}
		current := 0
		for _, r := range ci.Replicas {
			if r.Current && !r.Offline {
				current++
			}
		}
		if current != 2 {
			return nil, fmt.Errorf("%s: leader %s, %d of 2 followers current", n, ci.Leader, current)
		}
		leaders[n] = ci.Leader
	}
	return leaders, nil
}

func (s *suite) cluster(t *testing.T) {
	out := mustDocker(t, "logs", "ferry-bootstrap")
	var boot map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if json.Unmarshal([]byte(line), &boot) == nil && boot["streams"] != nil {
			break
		}
	}
	if boot == nil {
		t.Fatalf("no bootstrap summary in its log:\n%s", out)
	}
	var leaders map[string]string
	testutil.CheckFor(t, 60*time.Second, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		leaders, err = s.replicated(ctx)
		return err
	})
	perNode := map[string]int{}
	for _, l := range leaders {
		perNode[l]++
	}
	if len(perNode) == 0 {
		t.Fatal("no leaders")
	}
	t.Logf("3-node cluster: %d streams and buckets at R3, all followers current; leaders per node %v; bootstrap took %v ms with %v retries",
		len(leaders), perNode, boot["took_ms"], boot["retries"])
	s.put("cluster", map[string]any{"streams": len(leaders), "leaders_per_node": perNode,
		"bootstrap_ms": boot["took_ms"], "bootstrap_retries": boot["retries"]})
}

// ----------------------------------------------------------------- access

func (s *suite) access(t *testing.T) {
	agent := dialUser(t, "agent-1")
	ingest := dialUser(t, "ingest")
	checks := []struct {
		who  *user
		subj string
		op   func(ctx context.Context) error
	}{
		{agent, subject.MaintenanceScheduled("ingest-1"), func(ctx context.Context) error {
			now := time.Now().UTC()
			_, err := events.Publish(ctx, agent.js, "compose-test", events.MaintenanceScheduled{MaintenanceID: "mw-forged",
				Host: "ingest-1", StartAt: now.Add(time.Minute), EndAt: now.Add(time.Hour), Reason: "forged"})
			return err
		}},
		{agent, subject.IngestDrain("ingest-1"), func(ctx context.Context) error {
			_, err := events.Publish(ctx, agent.js, "compose-test", events.DrainCommand{CommandID: "d-forged", Host: "ingest-1"})
			return err
		}},
		{agent, subject.ClientNotice("agent-2"), func(ctx context.Context) error {
			sub, err := agent.nc.SubscribeSync(subject.ClientNotice("agent-2"))
			if err == nil {
				defer sub.Unsubscribe()
			}
			return agent.nc.FlushWithContext(ctx)
		}},
		{agent, "_INBOX.>", func(ctx context.Context) error {
			sub, err := agent.nc.SubscribeSync("_INBOX.>")
			if err == nil {
				defer sub.Unsubscribe()
			}
			return agent.nc.FlushWithContext(ctx)
		}},
		{agent, "$JS.API.CONSUMER.CREATE.FERRY_COMMANDS.client-agent-2.ferry.cmd.client.agent-2.notice", func(ctx context.Context) error {
			_, err := agent.js.CreateOrUpdateConsumer(ctx, bus.StreamCommands, jetstream.ConsumerConfig{Durable: "client-agent-2",
				FilterSubject: subject.ClientNotice("agent-2"), AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}},
		{ingest, "$KV.placements." + events.PlacementKey(stream), func(ctx context.Context) error {
			return ingest.nc.Publish("$KV.placements."+events.PlacementKey(stream), []byte(`{"host":"ingest-3"}`))
		}},
		// Per-host identity: ingest-1 cannot speak for ingest-2.
		{ingest, subject.Heartbeat("ingest-2"), func(ctx context.Context) error {
			_, err := events.Publish(ctx, ingest.js, "ingest-2", events.Heartbeat{Host: "ingest-2", Seq: 1, At: time.Now().UTC()},
				jetstream.WithMsgTTL(3*time.Second))
			return err
		}},
		{ingest, subject.Telemetry("ingest-2"), func(ctx context.Context) error {
			_, err := events.Publish(ctx, ingest.js, "ingest-2", events.Telemetry{Host: "ingest-2", At: time.Now().UTC(), MemLimit: 1 << 30, FDLimit: 1024})
			return err
		}},
		{ingest, "$KV.ingest_hosts.ingest-2", func(ctx context.Context) error {
			return ingest.nc.Publish("$KV.ingest_hosts.ingest-2", []byte(`{"host":"ingest-2","status":"ok"}`))
		}},
		{ingest, subject.Draining("ingest-2"), func(ctx context.Context) error {
			_, err := events.Publish(ctx, ingest.js, "ingest-2", events.Draining{Host: "ingest-2", Deadline: time.Now().Add(time.Minute).UTC(), Streams: 1})
			return err
		}},
		// Notice secrets are out of ingest's reach (placement writes them,
		// the notifier reads them).
		{ingest, "$JS.API.DIRECT.GET.KV_" + bus.BucketSessionSecrets + ".$KV." + bus.BucketSessionSecrets + ".s-0123456789abcdef", func(ctx context.Context) error {
			return ingest.nc.Publish("$JS.API.DIRECT.GET.KV_"+bus.BucketSessionSecrets+".$KV."+bus.BucketSessionSecrets+".s-0123456789abcdef", nil)
		}},
		{ingest, "$JS.API.CONSUMER.CREATE.FERRY_COMMANDS.ingest-ingest-2.ferry.cmd.ingest.ingest-2.>", func(ctx context.Context) error {
			_, err := ingest.js.CreateOrUpdateConsumer(ctx, bus.StreamCommands, jetstream.ConsumerConfig{Durable: "ingest-ingest-2",
				FilterSubject: subject.IngestCommands("ingest-2"), AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}},
	}
	var refused []string
	for _, c := range checks {
		c.who.refused(t, c.subj, c.op)
		t.Logf("access: %s -> %s: refused", c.who.name, c.subj)
		refused = append(refused, c.who.name+" "+c.subj)
	}
	t.Logf("refused by the cluster, as expected: %d attempts: %s", len(refused), strings.Join(refused, "; "))
	s.put("access_refused", len(refused))
}

// ----------------------------------------------------------- NATS helpers

func (s *suite) placement(ctx context.Context) (events.Placement, uint64, error) {
	var p events.Placement
	kv, err := s.monitor.js.KeyValue(ctx, bus.BucketPlacements)
	if err != nil {
		return p, 0, err
	}
	e, err := kv.Get(ctx, events.PlacementKey(stream))
	if err != nil {
		return p, 0, err
	}
	return p, e.Revision(), json.Unmarshal(e.Value(), &p)
}

// hosts returns the registry records updated within the last 6 s (each
// host writes its own every 2 s).
func (s *suite) hosts(ctx context.Context) (map[string]events.HostRecord, error) {
	kv, err := s.monitor.js.KeyValue(ctx, bus.BucketHosts)
	if err != nil {
		return nil, err
	}
	keys, err := kv.Keys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, err
	}
	out := map[string]events.HostRecord{}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var h events.HostRecord
		if json.Unmarshal(e.Value(), &h) == nil && time.Since(h.UpdatedAt) < 6*time.Second {
			out[k] = h
		}
	}
	return out, nil
}

// home waits until the stream is placed on a live origin and returns it.
func (s *suite) home(t *testing.T) string {
	t.Helper()
	var host string
	testutil.CheckFor(t, 120*time.Second, 250*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p, _, err := s.placement(ctx)
		if err != nil {
			return fmt.Errorf("placement of %s: %w", stream, err)
		}
		hs, err := s.hosts(ctx)
		if err != nil {
			return err
		}
		if _, ok := hs[p.Host]; !ok {
			return fmt.Errorf("%s is placed on %s, which is not live", stream, p.Host)
		}
		host = p.Host
		return nil
	})
	return host
}

// oneHome checks that exactly one live origin hosts the stream and that it
// is the one the placement names (the stack runs one stream, so the live
// registry records must count one stream in all).
func (s *suite) oneHome(t *testing.T) map[string]int {
	t.Helper()
	var counts map[string]int
	testutil.CheckFor(t, 60*time.Second, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p, _, err := s.placement(ctx)
		if err != nil {
			return err
		}
		hs, err := s.hosts(ctx)
		if err != nil {
			return err
		}
		counts = map[string]int{}
		total := 0
		for k, h := range hs {
			if h.Role == "edge" {
				continue
			}
			counts[k] = h.Streams
			total += h.Streams
		}
		if total != 1 || counts[p.Host] != 1 {
			return fmt.Errorf("%s placed on %s; live origins report streams %v (want exactly one home)", stream, p.Host, counts)
		}
		return nil
	})
	return counts
}

// ----------------------------------------------------------- chain helpers

func (s *suite) mark() int { return len(s.chain.All()) }

func (s *suite) since(i int, typ string, match func(stack.Seen) bool) (stack.Seen, bool) {
	for _, e := range s.chain.All()[i:] {
		if e.Env.Type == typ && (match == nil || match(e)) {
			return e, true
		}
	}
	return stack.Seen{}, false
}

// waitEvent waits for an event of type typ after mark i.
func (s *suite) waitEvent(t *testing.T, i int, typ string, match func(stack.Seen) bool, wait time.Duration) stack.Seen {
	t.Helper()
	var got stack.Seen
	testutil.CheckFor(t, wait, 100*time.Millisecond, func() error {
		e, ok := s.since(i, typ, match)
		if !ok {
			return fmt.Errorf("no %s yet", typ)
		}
		got = e
		return nil
	})
	return got
}

// waitMigration waits for the stream's migration after mark i to end.
func (s *suite) waitMigration(t *testing.T, i int, wait time.Duration) stack.Seen {
	t.Helper()
	var done stack.Seen
	checked := time.Now()
	testutil.CheckFor(t, wait, 100*time.Millisecond, func() error {
		for _, typ := range []string{events.TypeMigrationCompleted, events.TypeMigrationFailed} {
			if e, ok := s.since(i, typ, stack.Field("stream", stream)); ok {
				done = e
				return nil
			}
		}
		// Every 2 s (docker calls cost CPU the stack needs), check the publisher.
		if time.Since(checked) > 2*time.Second {
			checked = time.Now()
			if st, err := docker("inspect", "--format", "{{.State.Status}}", "ferry-publish-1"); err == nil && strings.TrimSpace(st) != "running" {
				out, _ := docker("logs", "--tail", "40", "ferry-publish-1")
				t.Fatalf("the publisher stopped (%s):\n%s", strings.TrimSpace(st), out)
			}
		}
		return errors.New("migration still running")
	})
	return done
}

// scheduleMaintenance runs ferryctl as ops and returns the maintenance id it
// published (read back from the event stream).
func (s *suite) scheduleMaintenance(t *testing.T, i int, host string, in time.Duration) string {
	t.Helper()
	// An operator retries a command that timed out (a NATS node may be going
	// away at that moment); a window that did land is cancelled with the rest
	// by cancelMaintenance.
	var out string
	var err error
	for attempt := 1; attempt <= 4; attempt++ {
		if out, err = ferryctl(t, "ops", "maintenance", "schedule", host, "--in", in.String(), "--reason", "compose-test"); err == nil {
			break
		}
		t.Logf("maintenance schedule attempt %d: %v: %s", attempt, err, out)
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	e := s.waitEvent(t, i, events.TypeMaintenanceScheduled, stack.Field("host", host), 10*time.Second)
	return e.Str("maintenance_id")
}

// cancelMaintenanceSince cancels every window scheduled on host after mark i.
func (s *suite) cancelMaintenanceSince(t *testing.T, i int, host string) {
	t.Helper()
	for _, e := range s.chain.All()[i:] {
		if e.Env.Type == events.TypeMaintenanceScheduled && e.Str("host") == host {
			s.cancelMaintenance(t, e.Str("maintenance_id"), host)
		}
	}
}

// cancelMaintenance withdraws a window (ferryctl as ops) so the host takes
// streams again.
func (s *suite) cancelMaintenance(t *testing.T, id, host string) {
	t.Helper()
	if out, err := ferryctl(t, "ops", "maintenance", "cancel", id, "--reason", "compose-test: scenario over"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// ---------------------------------------------------------- media helpers

// viewer watches the stream on the edge through its published port.
func viewer(t *testing.T) *stack.Viewer {
	t.Helper()
	var v *stack.Viewer
	testutil.CheckFor(t, 90*time.Second, 500*time.Millisecond, func() error {
		var err error
		v, err = stack.Watch(context.Background(), edgeURL+"/"+stream)
		return err
	})
	t.Cleanup(func() { v.Close() })
	settle(t, v, 25)
	return v
}

// settle waits until the viewer has received n more frames.
func settle(t *testing.T, v *stack.Viewer, n int64) {
	t.Helper()
	before := v.Frames()
	testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		if got := v.Frames() - before; got < n {
			if d := v.Report().Disconnected; d != "" {
				t.Fatalf("viewer disconnected: %s", d)
			}
			return fmt.Errorf("%d of %d frames", got, n)
		}
		return nil
	})
}

func status(t *testing.T) {
	t.Helper()
	out, err := ferryctl(t, "monitor", "status", "--json")
	if err != nil {
		t.Errorf("%v\n%s", err, out)
		return
	}
	t.Logf("ferryctl status --json: %s", strings.TrimSpace(out))
}

// trace logs ferryctl's trace of a migration.
func trace(t *testing.T, migrationID string) {
	t.Helper()
	out, err := ferryctl(t, "monitor", "trace", migrationID)
	if err != nil {
		t.Errorf("%v\n%s", err, out)
		return
	}
	t.Logf("ferryctl trace %s:\n%s", migrationID, out)
}

func stepsOf(e stack.Seen) any { return e.Data["steps"] }

// -------------------------------------------------------------- scenarios

// maintenance: ferryctl schedules maintenance on the camera's host; the
// migration completes make-before-break with no frame lost.
func (s *suite) maintenance(t *testing.T) {
	from := s.home(t)
	v := viewer(t)
	i := s.mark()
	started := time.Now()
	id := s.scheduleMaintenance(t, i, from, 20*time.Second)
	done := s.waitMigration(t, i, 150*time.Second)
	took := time.Since(started)
	settle(t, v, 50)
	rep := v.Close()
	to := s.home(t)
	s.cancelMaintenance(t, id, from)
	fig := map[string]any{"from": from, "to": to, "outcome": done.Env.Type, "steps": stepsOf(done),
		"duration_ms": done.Data["duration_ms"], "make_before_break": done.Data["make_before_break"],
		"schedule_to_end_s": took.Seconds(), "viewer_missing": rep.Missing, "viewer_duplicates": rep.Duplicates,
		"viewer_max_gap_ms": rep.MaxGapMS, "viewer_frames": rep.Frames}
	s.put("maintenance", fig)
	t.Logf("maintenance of %s: %s -> %s, %s in %v (schedule to end); probe on the edge: %d frames, %d lost, %d duplicated, longest gap %.0f ms",
		from, from, to, done.Env.Type, took.Round(time.Millisecond), rep.Frames, rep.Missing, rep.Duplicates, rep.MaxGapMS)
	trace(t, done.Str("migration_id"))
	if done.Env.Type != events.TypeMigrationCompleted {
		t.Fatalf("migration failed: %v", done.Data)
	}
	if to == from {
		t.Fatalf("%s still on %s", stream, from)
	}
	if rep.Missing != 0 || rep.Duplicates != 0 || rep.Disconnected != "" {
		t.Errorf("viewer: %+v, want no frame lost or duplicated", rep)
	}
	s.oneHome(t)
	status(t)
}

// forgedCease: the host that is neither the stream's old nor its new home in
// the last migration reports stream_ceased for it, in its own name (its
// credential cannot publish in another's). Placement dead-letters it with the
// reason; the placement does not change.
func (s *suite) forgedCease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, rev, err := s.placement(ctx)
	if err != nil || p.MigrationID == "" {
		t.Fatalf("placement of %s after the maintenance: %+v %v, want one naming its migration", stream, p, err)
	}
	kv, err := s.monitor.js.KeyValue(ctx, bus.BucketMigrations)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, p.MigrationID)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct{ FromHost, ToHost string }
	var raw map[string]any
	_ = json.Unmarshal(e.Value(), &raw)
	rec.FromHost, _ = raw["from_host"].(string)
	rec.ToHost, _ = raw["to_host"].(string)
	bystander := ""
	for _, h := range []string{"ingest-1", "ingest-2", "ingest-3"} {
		if h != rec.FromHost && h != rec.ToHost {
			bystander = h
		}
	}
	forger := dialUser(t, bystander)
	dlq, err := s.monitor.js.Stream(ctx, bus.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dlq.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := info.State.LastSeq
	if _, err := events.Publish(ctx, forger.js, "compose-test/forger", events.StreamCeased{Stream: stream, Host: bystander,
		NewHost: bystander, MigrationID: p.MigrationID, At: time.Now().UTC()}); err != nil {
		t.Fatalf("%s publishes stream_ceased in its own name: %v", bystander, err)
	}
	var reason string
	testutil.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		info, err := dlq.Info(ctx)
		if err != nil {
			return err
		}
		for seq := before + 1; seq <= info.State.LastSeq; seq++ {
			m, err := dlq.GetMsg(ctx, seq)
			if err == nil && strings.Contains(m.Header.Get(bus.HeaderDLQReason), "forged lifecycle event") &&
				m.Header.Get(bus.HeaderDLQSubject) == subject.StreamCeased(stream, bystander) {
				reason = m.Header.Get(bus.HeaderDLQReason)
				return nil
			}
		}
		return fmt.Errorf("no dead letter for the forged stream_ceased of %s yet", bystander)
	})
	after, rev2, err := s.placement(ctx)
	if err != nil || rev2 != rev || after.Host != p.Host {
		t.Fatalf("placement after the forgery: %+v rev %d (%v), want unchanged %s at rev %d", after, rev2, err, p.Host, rev)
	}
	t.Logf("access: %s -> forged stream_ceased of %s (migration %s, %s -> %s): dead-lettered (%s); placement unchanged",
		bystander, stream, p.MigrationID, rec.FromHost, rec.ToHost, reason)
	s.put("forged_cease", map[string]any{"forger": bystander, "dead_lettered": true, "placement_unchanged": true})
}

// natsNodeStopMigration: a NATS node (the placements bucket's leader when
// possible) is stopped as the maintenance is scheduled, so the migration runs
// while the node shuts down and its streams elect new leaders; it still
// completes.
func (s *suite) natsNodeStopMigration(t *testing.T) {
	from := s.home(t)
	v := viewer(t)
	victim := s.victimNode(t)
	i := s.mark()
	// Whatever happens below, the node comes back for the next scenarios.
	t.Cleanup(func() {
		if st, _ := docker("inspect", "-f", "{{.State.Running}}", "ferry-"+victim); strings.TrimSpace(st) != "true" {
			_, _ = docker("start", "ferry-"+victim)
			waitHealthy(t, 2*time.Minute, "ferry-"+victim)
		}
	})
	stopBegan := time.Now()
	type result struct {
		took time.Duration
		err  error
	}
	stopped := make(chan result, 1)
	go func() {
		_, err := docker("stop", "--time", "10", "ferry-"+victim)
		stopped <- result{time.Since(stopBegan), err}
	}()
	id := s.scheduleMaintenance(t, i, from, 20*time.Second)
	done := s.waitMigration(t, i, 150*time.Second)
	r := <-stopped
	if r.err != nil {
		t.Fatal(r.err)
	}
	stopTook := r.took
	settle(t, v, 50)
	rep := v.Close()
	to := s.home(t)
	_ = id
	s.cancelMaintenanceSince(t, i, from)
	decided, _ := s.since(i, events.TypeReassigned, stack.Field("stream", stream))
	restarted := time.Now()
	mustDocker(t, "start", "ferry-"+victim)
	waitHealthy(t, 2*time.Minute, "ferry-"+victim)
	testutil.CheckFor(t, 90*time.Second, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := s.replicated(ctx)
		return err
	})
	rejoin := time.Since(restarted)
	decidedMS := decided.At.Sub(stopBegan).Seconds() * 1000
	endMS := done.At.Sub(stopBegan).Seconds() * 1000
	s.put("nats_node_stop", map[string]any{"node": victim, "from": from, "to": to, "outcome": done.Env.Type,
		"steps": stepsOf(done), "decided_after_stop_began_ms": decidedMS, "ended_after_stop_began_ms": endMS,
		"stop_wall_s": stopTook.Seconds(), "viewer_missing": rep.Missing, "viewer_max_gap_ms": rep.MaxGapMS,
		"rejoin_all_current_s": rejoin.Seconds()})
	t.Logf("docker stop %s began; migration of %s off %s decided %.0f ms and ended (%s, to %s) %.0f ms later; the stop returned after %v; viewer %d lost, longest gap %.0f ms; node back with every stream current after %v",
		victim, stream, from, decidedMS, done.Env.Type, to, endMS, stopTook.Round(time.Millisecond), rep.Missing, rep.MaxGapMS, rejoin.Round(time.Millisecond))
	if done.Env.Type != events.TypeMigrationCompleted {
		t.Fatalf("migration failed with %s stopping: %v", victim, done.Data)
	}
	if decidedMS < 0 {
		t.Errorf("the migration was decided before the stop began")
	}
	// The window opens 20 s after scheduling; a migration that ends about
	// then waited for its deadline: a step's signal was lost in the failover.
	if took := endMS - decidedMS; took > 10000 {
		t.Errorf("the migration took %.0f ms after its decision (the window opens at 20 s): a participant missed a step while %s stopped", took, victim)
	}
	if rep.Missing != 0 || rep.Disconnected != "" {
		t.Errorf("viewer: %+v", rep)
	}
	s.oneHome(t)
}

// victimNode picks the NATS node to stop: the placements bucket's leader
// unless that is nats-1 (the host's connection goes through nats-1's
// published port), else nats-2.
func (s *suite) victimNode(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.monitor.js.Stream(ctx, "KV_"+bus.BucketPlacements)
	if err != nil {
		t.Fatal(err)
	}
	if l := st.CachedInfo().Cluster.Leader; l == "nats-2" || l == "nats-3" {
		return l
	}
	return "nats-2"
}

// replicaID is the replica id a container logs ("replica":"placement-9c0150"),
// or its hostname when it logs none.
func replicaID(t *testing.T, container string) string {
	t.Helper()
	out, _ := docker("logs", "--tail", "400", container)
	for _, line := range strings.Split(out, "\n") {
		var l struct {
			Replica string `json:"replica"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Replica != "" {
			return l.Replica
		}
	}
	return strings.TrimPrefix(container, "ferry-")
}

// activePlacement finds the placement replica holding the leader lease: the
// lease value names the holder by the replica id it logs (or its hostname).
func (s *suite) activePlacement(t *testing.T) string {
	t.Helper()
	ids := map[string]string{}
	for _, r := range []string{"placement-1", "placement-2"} {
		ids[r] = replicaID(t, "ferry-"+r)
	}
	var active string
	testutil.CheckFor(t, 30*time.Second, 250*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		kv, err := s.ops.js.KeyValue(ctx, bus.BucketLeases)
		if err != nil {
			return err
		}
		keys, err := kv.Keys(ctx)
		if err != nil {
			return fmt.Errorf("leases: %w", err)
		}
		var seen []string
		for _, k := range keys {
			if !strings.HasPrefix(k, "placement") {
				continue
			}
			e, err := kv.Get(ctx, k)
			if err != nil {
				continue
			}
			seen = append(seen, k+"="+string(e.Value()))
			for r, id := range ids {
				if strings.Contains(string(e.Value()), id) {
					active = r
					return nil
				}
			}
		}
		return fmt.Errorf("no placement lease naming %v (leases: %v)", ids, seen)
	})
	return active
}

// placementFailover: the active placement replica is killed in the middle
// of an evacuation; the standby finishes it. To hold the migration in the
// middle, the notifiers are paused (docker pause) before the maintenance is
// scheduled: placement decides (reassigned) but the notice cannot go out, so
// the migration waits at "decided" while the active replica is killed; then
// the notifiers resume and the standby must carry the migration to its end.
func (s *suite) placementFailover(t *testing.T) {
	from := s.home(t)
	v := viewer(t)
	active := s.activePlacement(t)
	activeID := replicaID(t, "ferry-"+active)
	notifiers := []string{"ferry-notifier-1", "ferry-notifier-2"}
	mustDocker(t, append([]string{"pause"}, notifiers...)...)
	paused := true
	defer func() {
		if paused {
			_, _ = docker(append([]string{"unpause"}, notifiers...)...)
		}
	}()
	i := s.mark()
	id := s.scheduleMaintenance(t, i, from, 30*time.Second)
	decided := s.waitEvent(t, i, events.TypeReassigned, stack.Field("stream", stream), 60*time.Second)
	if _, ok := s.since(i, events.TypeMigrationCompleted, stack.Field("stream", stream)); ok {
		t.Fatal("the migration completed while the notifiers were paused")
	}
	killed := time.Now()
	mustDocker(t, "kill", "ferry-"+active)
	mustDocker(t, append([]string{"unpause"}, notifiers...)...)
	paused = false
	done := s.waitMigration(t, i, 150*time.Second)
	finished := time.Since(killed)
	settle(t, v, 50)
	rep := v.Close()
	to := s.home(t)
	s.cancelMaintenance(t, id, from)
	standby := s.activePlacement(t)
	mustDocker(t, "start", "ferry-"+active)
	waitHealthy(t, 2*time.Minute, "ferry-"+active)
	s.put("placement_failover", map[string]any{"killed": active, "now_active": standby, "from": from, "to": to,
		"decided_by": decided.Env.Source, "ended_by": done.Env.Source, "outcome": done.Env.Type, "steps": stepsOf(done),
		"kill_to_end_s": finished.Seconds(), "viewer_missing": rep.Missing, "viewer_max_gap_ms": rep.MaxGapMS})
	t.Logf("%s (%s) decided the migration of %s off %s and was killed with the notice held back; %s ended it %v after the kill: %s to %s; viewer %d lost, longest gap %.0f ms",
		active, decided.Env.Source, stream, from, done.Env.Source, finished.Round(time.Millisecond), done.Env.Type, to, rep.Missing, rep.MaxGapMS)
	if done.Env.Type != events.TypeMigrationCompleted {
		t.Fatalf("migration failed after the failover: %v", done.Data)
	}
	if !strings.HasSuffix(decided.Env.Source, activeID) {
		t.Errorf("the migration was decided by %s, not by the replica thought active (%s)", decided.Env.Source, activeID)
	}
	if strings.HasSuffix(done.Env.Source, activeID) {
		t.Errorf("the killed replica %s reported the end", activeID)
	}
	if standby == active {
		t.Errorf("the lease still names %s after it was killed", active)
	}
	if c := len(filter(s.chain.All()[i:], events.TypeReassigned)); c != 1 {
		t.Errorf("%s was reassigned %d times in one evacuation", stream, c)
	}
	if rep.Missing != 0 || rep.Disconnected != "" {
		t.Errorf("viewer: %+v", rep)
	}
	s.oneHome(t)
}

func filter(all []stack.Seen, typ string) []stack.Seen {
	var out []stack.Seen
	for _, e := range all {
		if e.Env.Type == typ && e.Str("stream") == stream {
			out = append(out, e)
		}
	}
	return out
}

// poll calls f every `every` until it returns nil or `wait` passes, and
// returns f's last error (for waits whose failure is reported with figures
// rather than ending the scenario at once).
func poll(wait, every time.Duration, f func() error) error {
	deadline := time.Now().Add(wait)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(every)
	}
}

// unplanned measures an unpredicted loss of the camera's host: detection
// (host_down), re-placement, the viewer's gap, and that the host, once back,
// does not claim the stream. Figures are recorded even when a step fails.
func (s *suite) unplanned(t *testing.T, name string, cut, restore func(host string)) {
	from := s.home(t)
	v := viewer(t)
	i := s.mark()
	fig := map[string]any{"host": from}
	defer s.put(name, fig)
	at := time.Now()
	cut(from)
	restored := false
	defer func() {
		if !restored {
			restore(from)
		}
	}()
	secs := func() float64 { return time.Since(at).Seconds() }

	var down stack.Seen
	if err := poll(60*time.Second, 100*time.Millisecond, func() error {
		e, ok := s.since(i, events.TypeHostDown, stack.Field("host", from))
		if !ok {
			return fmt.Errorf("no host_down for %s", from)
		}
		down = e
		return nil
	}); err != nil {
		t.Errorf("%s: %v", name, err)
	} else {
		fig["detect_s"], fig["host_down_reason"] = secs(), down.Str("reason")
	}
	if err := poll(90*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p, _, err := s.placement(ctx)
		if err != nil {
			return err
		}
		if p.Host == from {
			return fmt.Errorf("%s still placed on %s", stream, from)
		}
		fig["to"] = p.Host
		return nil
	}); err != nil {
		t.Errorf("%s: %v", name, err)
	} else {
		fig["replaced_s"] = secs()
	}
	before := v.Frames()
	if err := poll(60*time.Second, 100*time.Millisecond, func() error {
		if d := v.Report().Disconnected; d != "" {
			return fmt.Errorf("the viewer on the edge was disconnected after %.1f s: %s", secs(), d)
		}
		if got := v.Frames() - before; got < 50 {
			return fmt.Errorf("the stream did not resume on the edge: %d of 50 frames after %.1f s", got, secs())
		}
		return nil
	}); err != nil {
		t.Errorf("%s: %v", name, err)
	} else {
		fig["viewer_resumed_s"] = secs()
	}
	rep := v.Close()
	fig["viewer_max_gap_ms"], fig["viewer_missing"], fig["viewer_disconnected"] = rep.MaxGapMS, rep.Missing, rep.Disconnected
	if rep.TSBackwards != 0 || rep.Duplicates != 0 {
		t.Errorf("%s: continuity broken across the re-placement: %+v", name, rep)
	}
	fig["streams_during"] = s.oneHome(t) // the cut host's record is stale: it does not count

	back := time.Now()
	restore(from)
	restored = true
	// Back, the old host must not claim the stream any more.
	testutil.CheckFor(t, 90*time.Second, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs, err := s.hosts(ctx)
		if err != nil {
			return err
		}
		if _, ok := hs[from]; !ok {
			return fmt.Errorf("%s is not live again", from)
		}
		return nil
	})
	fig["rejoin_s"] = time.Since(back).Seconds()
	fig["streams_after"] = s.oneHome(t)
	t.Logf("%s of %s: %v", name, from, fig)
}

// originKill: docker kill of the camera's origin (no warning).
func (s *suite) originKill(t *testing.T) {
	s.unplanned(t, "origin_kill",
		func(h string) { mustDocker(t, "kill", "ferry-"+h) },
		func(h string) {
			mustDocker(t, "start", "ferry-"+h)
			waitHealthy(t, 2*time.Minute, "ferry-"+h)
		})
}

// partition: the camera's origin is cut from NATS (the bus network) while
// its RTSP side (the media network) stays up.
func (s *suite) partition(t *testing.T) {
	s.unplanned(t, "partition",
		func(h string) { mustDocker(t, "network", "disconnect", project+"_bus", "ferry-"+h) },
		func(h string) { mustDocker(t, "network", "connect", "--alias", h, project+"_bus", "ferry-"+h) })
}

// placementHistory: every write of the stream's placement raised the epoch
// (compare-and-set: never two homes at one epoch).
func (s *suite) placementHistory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := s.monitor.js.KeyValue(ctx, bus.BucketPlacements)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := kv.History(ctx, events.PlacementKey(stream))
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	var last uint64
	for _, e := range hist {
		var p events.Placement
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			t.Fatalf("revision %d: %v", e.Revision(), err)
		}
		rows = append(rows, fmt.Sprintf("epoch %d %s (%s)", p.Epoch, p.Host, p.MigrationID))
		if p.Epoch <= last {
			t.Errorf("revision %d has epoch %d after epoch %d", e.Revision(), p.Epoch, last)
		}
		last = p.Epoch
	}
	s.put("placement_history", rows)
	t.Logf("placements of %s (bucket history, newest last): %s", stream, strings.Join(rows, "; "))
}

// natsNodeStopWrites (FERRY_COMPOSE_ONLY_NATS): placement keeps making
// compare-and-set writes while a NATS node stops and comes back.
func (s *suite) natsNodeStopWrites(t *testing.T) {
	placement := dialUser(t, "placement")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kv, err := placement.js.KeyValue(ctx, bus.BucketPlacements)
	if err != nil {
		t.Fatal(err)
	}
	key := events.PlacementKey("compose-writes")
	rev, err := kv.Create(ctx, key, []byte(`{"epoch":1}`))
	if err != nil {
		t.Fatal(err)
	}
	victim := s.victimNode(t)
	var (
		mu       sync.Mutex // guards the counters below
		writes   int
		failures int
		longest  time.Duration
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := time.Now()
		for epoch := 2; ; epoch++ {
			select {
			case <-stop:
				return
			default:
			}
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			r, err := kv.Update(wctx, key, []byte(fmt.Sprintf(`{"epoch":%d}`, epoch)), rev)
			wcancel()
			mu.Lock()
			if err != nil {
				// A write that timed out may still have landed: carry on
				// from the revision the bucket has.
				failures++
				gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
				if e, gerr := kv.Get(gctx, key); gerr == nil {
					rev = e.Revision()
				}
				gcancel()
			} else {
				writes++
				rev = r
				if gap := time.Since(last); gap > longest {
					longest = gap
				}
				last = time.Now()
			}
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return writes }
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if count() < 20 {
			return errors.New("warming up")
		}
		return nil
	})
	stopped := time.Now()
	mustDocker(t, "stop", "--time", "10", "ferry-"+victim)
	stopTook := time.Since(stopped)
	base := count()
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if count() < base+40 {
			return fmt.Errorf("%d writes since the stop", count()-base)
		}
		return nil
	})
	restarted := time.Now()
	mustDocker(t, "start", "ferry-"+victim)
	waitHealthy(t, 2*time.Minute, "ferry-"+victim)
	testutil.CheckFor(t, 90*time.Second, 500*time.Millisecond, func() error {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		_, err := s.replicated(rctx)
		return err
	})
	rejoin := time.Since(restarted)
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	s.put("nats_node_stop_writes", map[string]any{"node": victim, "writes": writes, "failed_attempts": failures,
		"longest_between_writes_ms": longest.Milliseconds(), "stop_s": stopTook.Seconds(), "rejoin_all_current_s": rejoin.Seconds()})
	t.Logf("compare-and-set writes through nats-1 while %s stopped (%v) and came back (all streams current after %v): %d writes, %d failed attempts, longest pause between writes %v",
		victim, stopTook.Round(time.Millisecond), rejoin.Round(time.Millisecond), writes, failures, longest.Round(time.Millisecond))
}

// probe: the probe container watched the edge through every scenario (it
// restarts when the edge ends its session; each run prints a report). The
// figures add up every report it printed.
func (s *suite) probe(t *testing.T) {
	reports, restarts, err := probeReports(t)
	if err != nil {
		t.Fatal(err)
	}
	var frames, missing, dups, ssrc uint64
	var gap, elapsed float64
	var disconnects []string
	for _, r := range reports {
		v := r.Video()
		frames += v.Frames
		missing += v.FramesMissing
		dups += v.DuplicateFrames
		ssrc += v.SSRCChanges
		gap = max(gap, v.LongestGapMS)
		elapsed += r.ElapsedS
		if r.Disconnected != "" {
			disconnects = append(disconnects, r.Disconnected)
		}
	}
	s.put("probe_whole_run", map[string]any{"reports": len(reports), "restarts": restarts, "elapsed_s": elapsed,
		"frames": frames, "missing": missing, "duplicates": dups, "longest_gap_ms": gap, "ssrc_changes": ssrc,
		"disconnects": disconnects})
	t.Logf("ferryctl probe on edge-1 over the whole run (%d reports, %d restarts, %.0f s): %d frames, %d missing (the unplanned breaks), %d duplicated, longest gap %.0f ms, SSRC changes %d, sessions ended by the edge: %v",
		len(reports), restarts, elapsed, frames, missing, dups, gap, ssrc, disconnects)
	if frames == 0 {
		t.Error("the probe received no frame")
	}
	if dups != 0 || ssrc != 0 {
		t.Errorf("the edge broke continuity: %d duplicated frames, %d SSRC changes", dups, ssrc)
	}
}
