package nats_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/natscreds"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/placement"
	"github.com/ferrystream/ferry/services/placement/client"
)

// runPlacement runs the placement service (its Run, as ferry-placement
// does) with placement's minted credential until the test ends; its log is
// printed if the test fails.
func runPlacement(t *testing.T, e *accessEnv) {
	t.Helper()
	env := map[string]string{
		"FERRY_NATS_URL":          e.url,
		"FERRY_NATS_CREDS":        e.fleet.CredsPath("placement"),
		"FERRY_NATS_INBOX_PREFIX": natscreds.InboxPrefix("placement"),
		"FERRY_NATS_REPLICAS":     "1",
		"FERRY_TOKEN_SECRET":      "forged-test-secret-0123456789",
		"PLACEMENT_ID":            "placement-1",
		"PLACEMENT_METRICS_ADDR":  "127.0.0.1:0",
		"PLACEMENT_MIN_DEADLINE":  "20s",
	}
	logs := &testutil.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- placement.RunWithLog(ctx, nil, func(k string) string { return env[k] }, io.Discard, logs)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("placement: %v", err)
		}
		if t.Failed() {
			t.Logf("placement log:\n%s", logs.String())
		}
	})
}

// register keeps host's registry record fresh with its own credential, as
// ferry-ingest does, until the test ends.
func register(t *testing.T, c *conn, host string) {
	t.Helper()
	put := func(ctx context.Context) error {
		b, _ := json.Marshal(events.HostRecord{Host: host, RTSPURL: "rtsp://" + host + ":8554", Zone: "zone-a", Role: "origin",
			CapacityStreams: 10, Status: "ok", StartedAt: time.Now().Add(-time.Hour).UTC(), UpdatedAt: time.Now().UTC()})
		_, err := kv(t, c, bus.BucketHosts).Put(ctx, host, b)
		return err
	}
	c.permitted(t, "register", put)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = put(ctx)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// TestForgedCeaseUnderRealCredentials: with the fleet's minted
// credentials, the placement service running as placement, and a stream
// being moved off a draining host, a bystander host publishes (as it may:
// its own id is the subject's last token) a stream_ceased for that stream.
// It lands in the dead-letter stream with the reason; the placement record
// and the migration are unchanged.
func TestForgedCeaseUnderRealCredentials(t *testing.T) {
	e := newAccessEnv(t)
	hosts := map[string]*conn{}
	for _, h := range []string{"ingest-1", "ingest-2", "ingest-3"} {
		hosts[h] = e.dial(t, h)
		register(t, hosts[h], h)
	}
	runPlacement(t, e)
	agent := e.dial(t, "agent-1")
	var chosen client.ChooseResponse
	testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() (err error) {
		chosen, err = client.New(agent.nc).Choose(context.Background(), client.ChooseRequest{Stream: "cam-1", ClientID: "agent-1",
			Capabilities: events.Capabilities{CanMove: true, Channels: []string{"nats"}}})
		return err
	})
	home := chosen.Host
	t.Logf("agent-1 -> placement.v1.choose cam-1: placed on %s", home)

	// The home drains: placement moves cam-1 to another host.
	hosts[home].permitted(t, "drain", publish(hosts[home], events.Draining{Host: home, Deadline: time.Now().Add(time.Minute).UTC(),
		Reason: "forged test", Streams: 1}))
	placements := kv(t, e.ops, bus.BucketPlacements)
	var moved events.Placement
	var rev uint64
	testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		en, err := placements.Get(context.Background(), events.PlacementKey("cam-1"))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(en.Value(), &moved); err != nil {
			return err
		}
		if moved.Host == home || moved.MigrationID == "" {
			return fmt.Errorf("cam-1 still on %s", moved.Host)
		}
		rev = en.Revision()
		return nil
	})
	bystander := ""
	for h := range hosts {
		if h != home && h != moved.Host {
			bystander = h
		}
	}
	t.Logf("%s drains -> placement moves cam-1 to %s (migration %s)", home, moved.Host, moved.MigrationID)
	// The progress consumer (the leader's) must exist before the forgery, or
	// the forgery is before its start.
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, err := e.ops.js.Consumer(context.Background(), bus.StreamEvents, "placement-migrations")
		return err
	})

	// Naming the migration, and naming none (a fallback publisher's cease
	// may carry none): neither is the bystander's to report.
	forgeries := []events.StreamCeased{
		{Stream: "cam-1", Host: bystander, NewHost: moved.Host, MigrationID: moved.MigrationID, At: time.Now().UTC()},
		{Stream: "cam-1", Host: bystander, NewHost: moved.Host, At: time.Now().UTC()},
	}
	for _, f := range forgeries {
		hosts[bystander].permitted(t, "publish stream_ceased in its own name", publish(hosts[bystander], f))
	}

	dlq, err := e.ops.js.Stream(context.Background(), bus.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		reasons = nil
		info, err := dlq.Info(context.Background())
		if err != nil {
			return err
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := dlq.GetMsg(context.Background(), seq)
			if err != nil {
				continue
			}
			if got := m.Header.Get(bus.HeaderDLQSubject); got != forgeries[0].EventSubject() {
				return fmt.Errorf("dead letter of %s (%s)", got, m.Header.Get(bus.HeaderDLQReason))
			}
			reasons = append(reasons, m.Header.Get(bus.HeaderDLQReason))
		}
		if len(reasons) < len(forgeries) {
			return fmt.Errorf("%d dead letters: %q", len(reasons), reasons)
		}
		return nil
	})
	for _, reason := range reasons {
		t.Logf("host %s -> forged stream_ceased for cam-1 (home %s, moving from %s in %s): dead-lettered (reason %q)",
			bystander, moved.Host, home, moved.MigrationID, reason)
		if !strings.HasPrefix(reason, "forged lifecycle event: ") || !strings.Contains(reason, bystander) {
			t.Errorf("reason %q, want a forged lifecycle event from %s", reason, bystander)
		}
	}

	en, err := placements.Get(context.Background(), events.PlacementKey("cam-1"))
	if err != nil {
		t.Fatal(err)
	}
	if en.Revision() != rev {
		t.Errorf("placement of cam-1 changed after the forgery: revision %d, was %d", en.Revision(), rev)
	}
	mig, err := kv(t, e.ops, bus.BucketMigrations).Get(context.Background(), moved.MigrationID)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		State string `json:"state"`
		Steps []struct {
			Step string `json:"step"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(mig.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	for _, s := range rec.Steps {
		if s.Step == "ceased" {
			t.Fatalf("the forgery advanced migration %s: %s", moved.MigrationID, mig.Value())
		}
	}
	t.Logf("placement of cam-1 unchanged (revision %d, on %s); migration %s still %s, no ceased step", rev, moved.Host,
		moved.MigrationID, rec.State)
}
