package nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/natscreds"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
)

var zerologNop = zerolog.Nop()

// accessEnv is a single server started from single.conf, with the users of
// the test fleet (per-host JWT credentials minted by natscreds, as `ferryctl
// creds init` does) and the layout bootstrapped by ops.
type accessEnv struct {
	url   string
	ops   *conn
	fleet *natscreds.Dir
}

// dial connects as one of the fleet's users; "ingest" is the host ingest-1.
func (e *accessEnv) dial(t *testing.T, user string, cfg ...func(*bus.Config)) *conn {
	t.Helper()
	return dialFleet(t, e.fleet, e.url, user, cfg...)
}

func newAccessEnv(t *testing.T) *accessEnv { return newFleetAccessEnv(t, fleet) }

func newFleetAccessEnv(t *testing.T, d *natscreds.Dir) *accessEnv {
	t.Helper()
	s := start(t, loadFleetConfig(t, "single.conf", d))
	e := &accessEnv{url: s.ClientURL(), fleet: d}
	e.ops = e.dial(t, "ops")
	e.ops.permitted(t, "bootstrap the layout", func(ctx context.Context) error {
		return bus.Bootstrap(ctx, e.ops.js, 1)
	})
	return e
}

func kv(t *testing.T, c *conn, bucket string) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := c.js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatalf("%s: open bucket %s: %v", c.user, bucket, err)
	}
	return b
}

// Events used by the tests (valid against their schemas).
func maintenance(host string) events.MaintenanceScheduled {
	now := time.Now().UTC()
	return events.MaintenanceScheduled{MaintenanceID: fmt.Sprintf("mw-%d", now.UnixNano()), Host: host,
		StartAt: now.Add(time.Minute), EndAt: now.Add(time.Hour), Reason: "access test", RequestedBy: "test"}
}

func notice(client, stream string) events.MoveNotice {
	return events.MoveNotice{NoticeID: fmt.Sprintf("n-%s-%d", client, time.Now().UnixNano()), MigrationID: "m-0123456789abcdef",
		ClientID: client, Stream: stream, SessionID: "s-0123456789abcdef", FromHost: "ingest-1", ToHost: "ingest-2",
		NewURL: "rtsp://ingest-2:8554/" + stream + "?token=secret", OfflineAt: time.Now().Add(time.Minute).UTC(), Reason: "maintenance"}
}

func placementRecord(stream, host string) []byte {
	b, _ := json.Marshal(events.Placement{Stream: stream, Host: host, RTSPURL: "rtsp://" + host + ":8554", Epoch: 1,
		Mode: "push", UpdatedAt: time.Now().UTC()})
	return b
}

func publish(c *conn, d events.Data) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := events.Publish(ctx, c.js, "access-test/"+c.user, d)
		return err
	}
}

func corePublish(c *conn, subj string) func(ctx context.Context) error {
	return func(ctx context.Context) error { return c.nc.Publish(subj, []byte("x")) }
}

func subscribe(c *conn, subj string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		sub, err := c.nc.SubscribeSync(subj)
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
		return c.nc.FlushWithContext(ctx)
	}
}

func createConsumer(c *conn, stream string, cfg jetstream.ConsumerConfig) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.js.CreateOrUpdateConsumer(ctx, stream, cfg)
		return err
	}
}

// noticeConsumer is the agent's consumer as it must be created: one durable,
// client-<client>, with a single FilterSubject so the filter is part of the
// API subject the permissions pin.
func noticeConsumer(client string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{Durable: "client-" + client, FilterSubject: subject.ClientNotice(client),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: 5}
}

// fetchOne pulls one message from an existing consumer, acks it and
// returns its body.
func fetchOne(c *conn, stream, durable string) func(ctx context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		cons, err := c.js.Consumer(ctx, stream, durable)
		if err != nil {
			return nil, err
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				return nil, fmt.Errorf("ack: %w", err)
			}
			return m.Data(), nil
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		return nil, errors.New("no message")
	}
}

func TestAgentSeesOnlyItsOwnNotices(t *testing.T) {
	e := newAccessEnv(t)
	notifier := e.dial(t, "notifier")
	a1 := e.dial(t, "agent-1")
	a2 := e.dial(t, "agent-2")

	// The notifier sends each agent a notice.
	n1, n2 := notice("agent-1", "cam-1"), notice("agent-2", "cam-2")
	notifier.permitted(t, "send agent-1 a notice", publish(notifier, n1))
	notifier.permitted(t, "send agent-2 a notice", publish(notifier, n2))

	// agent-2 binds its own consumer first (agent-1 must not be able to use it).
	a2.permitted(t, "agent-2 creates its notice consumer", createConsumer(a2, bus.StreamCommands, noticeConsumer("agent-2")))

	refusals := []struct {
		name, subj string
		op         func(ctx context.Context) error
	}{
		{"subscribe to agent-2's notice subject", subject.ClientNotice("agent-2"), subscribe(a1, subject.ClientNotice("agent-2"))},
		{"subscribe to every notice", subject.ClientNoticeAll, subscribe(a1, subject.ClientNoticeAll)},
		{"subscribe to every inbox", "_INBOX.>", subscribe(a1, "_INBOX.>")},
		{"subscribe to agent-2's inbox", "_INBOX_agent-2.>", subscribe(a1, "_INBOX_agent-2.>")},
		{"create agent-2's consumer", "$JS.API.CONSUMER.CREATE.FERRY_COMMANDS.client-agent-2.ferry.cmd.client.agent-2.notice",
			createConsumer(a1, bus.StreamCommands, noticeConsumer("agent-2"))},
		{"point its own consumer at agent-2's notices", "$JS.API.CONSUMER.CREATE.FERRY_COMMANDS.client-agent-1.ferry.cmd.client.agent-2.notice",
			createConsumer(a1, bus.StreamCommands, jetstream.ConsumerConfig{Durable: "client-agent-1", FilterSubject: subject.ClientNotice("agent-2")})},
		{"create its consumer without the filter in the subject", "$JS.API.CONSUMER.CREATE.FERRY_COMMANDS.client-agent-1",
			createConsumer(a1, bus.StreamCommands, jetstream.ConsumerConfig{Durable: "client-agent-1", FilterSubjects: []string{subject.ClientNotice("agent-1")}})},
		{"pull from agent-2's consumer", "$JS.API.CONSUMER.MSG.NEXT.FERRY_COMMANDS.client-agent-2",
			func(ctx context.Context) error {
				return a1.nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT.FERRY_COMMANDS.client-agent-2", a1.nc.NewRespInbox(), []byte(`{"batch":1}`))
			}},
		{"ack for agent-2", "ferry.ack.client.agent-2", corePublish(a1, subject.NoticeAck("agent-2"))},
		{"read sessions", "$JS.API.STREAM.INFO.KV_sessions", func(ctx context.Context) error {
			_, err := a1.js.KeyValue(ctx, bus.BucketSessions)
			return err
		}},
		{"get a session directly", "$JS.API.DIRECT.GET.KV_sessions.$KV.sessions.s-0123456789abcdef",
			corePublish(a1, "$JS.API.DIRECT.GET.KV_sessions.$KV.sessions.s-0123456789abcdef")},
	}
	for _, tc := range refusals {
		t.Run("refused/"+tc.name, func(t *testing.T) { a1.refused(t, tc.subj, tc.op) })
	}

	t.Run("permitted/receive and ack its own notice", func(t *testing.T) {
		a1.permitted(t, "create its notice consumer", createConsumer(a1, bus.StreamCommands, noticeConsumer("agent-1")))
		var body []byte
		a1.permitted(t, "fetch and ack", func(ctx context.Context) (err error) {
			body, err = fetchOne(a1, bus.StreamCommands, "client-agent-1")(ctx)
			return err
		})
		_, got, err := events.DecodeAs[events.MoveNotice](body)
		if err != nil {
			t.Fatal(err)
		}
		if got.ClientID != "agent-1" || got.NoticeID != n1.NoticeID {
			t.Fatalf("agent-1 received %+v, want its own notice %s", got, n1.NoticeID)
		}
		a1.permitted(t, "ack on the core ack subject", corePublish(a1, subject.NoticeAck("agent-1")))
		// The notifier can see that the notice was acked (the work queue removed it).
		notifier.permitted(t, "read agent-1's consumer", func(ctx context.Context) error {
			cons, err := notifier.js.Consumer(ctx, bus.StreamCommands, "client-agent-1")
			if err != nil {
				return err
			}
			if info := cons.CachedInfo(); info.NumAckPending != 0 || info.AckFloor.Consumer != 1 {
				return fmt.Errorf("consumer state %+v, want one acked message", info)
			}
			return nil
		})
	})

	t.Run("permitted/agent-2 still gets its notice", func(t *testing.T) {
		var body []byte
		a2.permitted(t, "fetch and ack", func(ctx context.Context) (err error) {
			body, err = fetchOne(a2, bus.StreamCommands, "client-agent-2")(ctx)
			return err
		})
		if _, got, err := events.DecodeAs[events.MoveNotice](body); err != nil || got.NoticeID != n2.NoticeID {
			t.Fatalf("agent-2 received %+v (%v), want %s", got, err, n2.NoticeID)
		}
	})
}

func TestOnlyOpsSchedulesMaintenanceAndDrains(t *testing.T) {
	e := newAccessEnv(t)
	drain := events.DrainCommand{CommandID: fmt.Sprintf("d-%d", time.Now().UnixNano()), Host: "ingest-1", Reason: "access test"}
	for _, user := range []string{"agent-1", "monitor", "ingest", "healthpredict", "placement", "notifier"} {
		c := e.dial(t, user)
		t.Run(user+"/maintenance refused", func(t *testing.T) {
			c.refused(t, subject.MaintenanceScheduled("ingest-1"), publish(c, maintenance("ingest-1")))
		})
		t.Run(user+"/drain refused", func(t *testing.T) {
			c.refused(t, subject.IngestDrain("ingest-1"), publish(c, drain))
		})
	}
	t.Run("ops/maintenance and drain permitted", func(t *testing.T) {
		e.ops.permitted(t, "schedule maintenance", publish(e.ops, maintenance("ingest-1")))
		e.ops.permitted(t, "drain a host", publish(e.ops, drain))
		e.ops.permitted(t, "write a maintenance window", func(ctx context.Context) error {
			_, err := kv(t, e.ops, bus.BucketMaintenance).Put(ctx, "ingest-1", []byte(`{}`))
			return err
		})
	})
}

func TestOnlyPlacementWritesPlacements(t *testing.T) {
	e := newAccessEnv(t)
	placement := e.dial(t, "placement")
	key := events.PlacementKey("cam-1")
	var rev uint64
	placement.permitted(t, "create a placement", func(ctx context.Context) (err error) {
		rev, err = kv(t, placement, bus.BucketPlacements).Create(ctx, key, placementRecord("cam-1", "ingest-1"))
		return err
	})
	placement.permitted(t, "compare-and-set a placement", func(ctx context.Context) (err error) {
		_, err = kv(t, placement, bus.BucketPlacements).Update(ctx, key, placementRecord("cam-1", "ingest-2"), rev)
		return err
	})
	for _, user := range []string{"ingest", "healthpredict", "notifier", "monitor", "agent-1"} {
		c := e.dial(t, user)
		t.Run(user, func(t *testing.T) {
			c.refused(t, "$KV.placements."+key, func(ctx context.Context) error {
				return c.nc.Publish("$KV.placements."+key, placementRecord("cam-1", "ingest-3"))
			})
			if user == "agent-1" {
				return // cannot even look the bucket up (checked in TestAgentSeesOnlyItsOwnNotices)
			}
			b := kv(t, c, bus.BucketPlacements)
			c.refused(t, "$KV.placements."+key, func(ctx context.Context) error {
				_, err := b.Put(ctx, key, placementRecord("cam-1", "ingest-3"))
				return err
			})
			c.refused(t, "$KV.placements."+key, func(ctx context.Context) error { return b.Delete(ctx, key) })
			// A stream update could add a source that copies writable subjects into the bucket.
			c.refused(t, "$JS.API.STREAM.UPDATE.KV_placements", func(ctx context.Context) error {
				_, err := c.js.UpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.BucketPlacements, History: 10})
				return err
			})
			c.refused(t, "$JS.API.STREAM.PURGE.KV_placements", func(ctx context.Context) error {
				st, err := c.js.Stream(ctx, "KV_placements")
				if err != nil {
					return err
				}
				return st.Purge(ctx)
			})
			c.refused(t, "$JS.API.STREAM.MSG.DELETE.KV_placements", func(ctx context.Context) error {
				st, err := c.js.Stream(ctx, "KV_placements")
				if err != nil {
					return err
				}
				return st.DeleteMsg(ctx, 1)
			})
			// A new stream could capture other users' inboxes.
			c.refused(t, "$JS.API.STREAM.CREATE.SNOOP", func(ctx context.Context) error {
				_, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: "SNOOP", Subjects: []string{"_INBOX_placement.>"}})
				return err
			})
		})
	}
	t.Run("the record is placement's last write", func(t *testing.T) {
		placement.permitted(t, "read back", func(ctx context.Context) error {
			en, err := kv(t, placement, bus.BucketPlacements).Get(ctx, key)
			if err != nil {
				return err
			}
			var p events.Placement
			if err := json.Unmarshal(en.Value(), &p); err != nil {
				return err
			}
			if p.Host != "ingest-2" || en.Revision() != rev+1 {
				return fmt.Errorf("placement %+v at revision %d, want ingest-2 at %d", p, en.Revision(), rev+1)
			}
			return nil
		})
	})
}

// TestServicesCanDoTheirJobs checks, user by user, what each service needs.
func TestServicesCanDoTheirJobs(t *testing.T) {
	e := newAccessEnv(t)
	now := time.Now().UTC()

	t.Run("ingest", func(t *testing.T) {
		c := e.dial(t, "ingest")
		c.permitted(t, "heartbeat with a TTL", func(ctx context.Context) error {
			_, err := events.Publish(ctx, c.js, "ingest-1", events.Heartbeat{Host: "ingest-1", Seq: 1, At: now}, jetstream.WithMsgTTL(3*time.Second))
			return err
		})
		c.permitted(t, "telemetry", publish(c, events.Telemetry{Host: "ingest-1", At: now, MemLimit: 1 << 30, FDLimit: 1024}))
		c.permitted(t, "publisher attached", publish(c, events.PublisherAttached{Stream: "cam-1", Host: "ingest-1",
			SessionID: "s-0123456789abcdef", ClientID: "agent-1", Capabilities: events.Capabilities{CanMove: true, Channels: []string{"nats"}},
			Mode: "push", At: now}))
		c.permitted(t, "register in ingest_hosts", func(ctx context.Context) error {
			b, _ := json.Marshal(events.HostRecord{Host: "ingest-1", RTSPURL: "rtsp://ingest-1:8554", Zone: "zone-a", Role: "origin", Status: "ok"})
			_, err := kv(t, c, bus.BucketHosts).Put(ctx, "ingest-1", b)
			return err
		})
		c.permitted(t, "watch and get its streams' placements", func(ctx context.Context) error {
			placements := kv(t, c, bus.BucketPlacements)
			w, err := placements.Watch(ctx, events.PlacementKey("cam-1"))
			if err != nil {
				return err
			}
			defer w.Stop()
			select { // the initial state ends with a nil entry
			case <-w.Updates():
			case <-ctx.Done():
				return ctx.Err()
			}
			if _, err := placements.Get(ctx, events.PlacementKey("cam-1")); !errors.Is(err, jetstream.ErrKeyNotFound) {
				return fmt.Errorf("get: %v, want not found", err)
			}
			return nil
		})
		e.ops.permitted(t, "ops drains ingest-1", publish(e.ops, events.DrainCommand{CommandID: "d-ingest-1", Host: "ingest-1"}))
		c.permitted(t, "consume its own commands", func(ctx context.Context) error {
			cfg := jetstream.ConsumerConfig{Durable: "ingest-ingest-1", FilterSubject: subject.IngestCommands("ingest-1"),
				AckPolicy: jetstream.AckExplicitPolicy}
			if _, err := c.js.CreateOrUpdateConsumer(ctx, bus.StreamCommands, cfg); err != nil {
				return err
			}
			body, err := fetchOne(c, bus.StreamCommands, "ingest-ingest-1")(ctx)
			if err != nil {
				return err
			}
			_, d, err := events.DecodeAs[events.DrainCommand](body)
			if err != nil || d.Host != "ingest-1" {
				return fmt.Errorf("got %+v (%v), want the drain of ingest-1", d, err)
			}
			return nil
		})
		c.refused(t, "$JS.API.CONSUMER.CREATE.FERRY_COMMANDS.ingest-ingest-1.ferry.cmd.client.agent-1.notice",
			createConsumer(c, bus.StreamCommands, jetstream.ConsumerConfig{Durable: "ingest-ingest-1", FilterSubject: subject.ClientNotice("agent-1")}))
		c.refused(t, "$JS.API.CONSUMER.MSG.NEXT.FERRY_COMMANDS.client-agent-1", corePublish(c, "$JS.API.CONSUMER.MSG.NEXT.FERRY_COMMANDS.client-agent-1"))
		c.refused(t, subject.ClientNotice("agent-1"), subscribe(c, subject.ClientNotice("agent-1")))
		c.permitted(t, "read a publisher's session", func(ctx context.Context) error {
			_, err := kv(t, c, bus.BucketSessions).Get(ctx, "s-0123456789abcdef")
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil
			}
			return err
		})
		c.refused(t, "$KV.sessions.s-0123456789abcdef", corePublish(c, "$KV.sessions.s-0123456789abcdef"))
		c.refused(t, subject.OutagePredicted("ingest-2"), corePublish(c, subject.OutagePredicted("ingest-2")))
		c.refused(t, subject.Reassigned("cam-1"), corePublish(c, subject.Reassigned("cam-1")))
	})

	t.Run("healthpredict", func(t *testing.T) {
		c := e.dial(t, "healthpredict")
		c.permitted(t, "predict an outage", publish(c, events.OutagePredicted{PredictionID: "p-1", Host: "ingest-1", Cause: "maintenance",
			ExpectedOfflineAt: now.Add(time.Minute), Confidence: 1, Evidence: map[string]any{"maintenance_id": "mw-1"}, Revision: 1}))
		c.permitted(t, "declare a host down", publish(c, events.HostDown{Host: "ingest-1", LastSeen: now, DetectedAt: now, Reason: "heartbeat silence"}))
		c.permitted(t, "watch heartbeats and their silence markers", func(ctx context.Context) error {
			cons, err := c.js.OrderedConsumer(ctx, bus.StreamHeartbeats, jetstream.OrderedConsumerConfig{})
			if err != nil {
				return err
			}
			m, err := cons.Next(jetstream.FetchMaxWait(3 * time.Second))
			if err != nil {
				return err
			}
			if m.Subject() != subject.Heartbeat("ingest-1") && m.Subject() != "" {
				return fmt.Errorf("heartbeat on %s", m.Subject())
			}
			return nil
		})
		c.permitted(t, "durable telemetry consumer", createConsumer(c, bus.StreamTelemetry, bus.ConsumerSpec{
			Stream: bus.StreamTelemetry, Durable: "healthpredict-telemetry", Filters: []string{subject.AllTelemetry}}.Config()))
		c.permitted(t, "take its lease", func(ctx context.Context) error {
			_, err := kv(t, c, bus.BucketLeases).Create(ctx, "healthpredict.leader", []byte("healthpredict-1"))
			return err
		})
		c.permitted(t, "record a maintenance window", func(ctx context.Context) error {
			_, err := kv(t, c, bus.BucketMaintenance).Put(ctx, "ingest-1", []byte(`{}`))
			return err
		})
		c.permitted(t, "read the registry", func(ctx context.Context) error {
			_, err := kv(t, c, bus.BucketHosts).Keys(ctx)
			if errors.Is(err, jetstream.ErrNoKeysFound) {
				return nil
			}
			return err
		})
		c.refused(t, "$KV.leases.placement.leader", func(ctx context.Context) error {
			_, err := kv(t, c, bus.BucketLeases).Create(ctx, "placement.leader", []byte("thief"))
			return err
		})
		c.refused(t, subject.Reassigned("cam-1"), corePublish(c, subject.Reassigned("cam-1")))
	})

	t.Run("placement", func(t *testing.T) {
		c := e.dial(t, "placement")
		agent := e.dial(t, "agent-1")
		svc, err := micro.AddService(c.nc, micro.Config{Name: subject.PlacementService, Version: "1.0.0"})
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Stop()
		g := svc.AddGroup(subject.PlacementGroup)
		if err := g.AddEndpoint("choose", micro.HandlerFunc(func(r micro.Request) {
			_ = r.Respond([]byte(`{"stream":"cam-1","host":"ingest-1"}`))
		})); err != nil {
			t.Fatal(err)
		}
		c.permitted(t, "serve placement.v1.choose", func(ctx context.Context) error { return c.nc.FlushWithContext(ctx) })
		agent.permitted(t, "ask placement.v1.choose", func(ctx context.Context) error {
			m, err := agent.nc.RequestWithContext(ctx, subject.PlacementChoose, []byte(`{"stream":"cam-1","client_id":"agent-1"}`))
			if err != nil {
				return err
			}
			if string(m.Data) != `{"stream":"cam-1","host":"ingest-1"}` {
				return fmt.Errorf("reply %q", m.Data)
			}
			return nil
		})
		e.ops.permitted(t, "ops pings the micro service", func(ctx context.Context) error {
			_, err := e.ops.nc.RequestWithContext(ctx, "$SRV.PING.placement", nil)
			return err
		})
		c.permitted(t, "write a session and a migration", func(ctx context.Context) error {
			if _, err := kv(t, c, bus.BucketSessions).Put(ctx, "s-0123456789abcdef", []byte(`{}`)); err != nil {
				return err
			}
			_, err := kv(t, c, bus.BucketMigrations).Put(ctx, "m-0123456789abcdef", []byte(`{}`))
			return err
		})
		c.permitted(t, "take its lease", func(ctx context.Context) error {
			_, err := kv(t, c, bus.BucketLeases).Create(ctx, "placement.leader", []byte("placement-1"))
			return err
		})
		c.permitted(t, "reassign", publish(c, events.Reassigned{MigrationID: "m-0123456789abcdef", Stream: "cam-1", FromHost: "ingest-1",
			ToHost: "ingest-2", ToURL: "rtsp://ingest-2:8554/cam-1", Epoch: 2, Deadline: now.Add(time.Minute), Reason: "maintenance", Mode: "push"}))
		c.permitted(t, "send a pull command", corePublish(c, subject.IngestPull("ingest-2")))
		c.permitted(t, "bind durable event consumers", createConsumer(c, bus.StreamEvents, bus.ConsumerSpec{Stream: bus.StreamEvents,
			Durable: "placement-evacuate", Filters: []string{subject.OutagePredicted("*"), subject.HostDown("*")}}.Config()))
		c.refused(t, subject.Heartbeat("ingest-1"), corePublish(c, subject.Heartbeat("ingest-1")))
		c.refused(t, subject.ClientNotice("agent-1"), corePublish(c, subject.ClientNotice("agent-1")))
	})

	t.Run("notifier", func(t *testing.T) {
		c := e.dial(t, "notifier")
		agent := e.dial(t, "agent-1")
		c.permitted(t, "read a session", func(ctx context.Context) error {
			_, err := kv(t, c, bus.BucketSessions).Get(ctx, "s-0123456789abcdef")
			return err
		})
		c.permitted(t, "keep a notice's delivery state", func(ctx context.Context) error {
			_, err := kv(t, c, bus.BucketNotices).Put(ctx, "n-1", []byte(`{}`))
			return err
		})
		c.permitted(t, "report an outcome", publish(c, events.NoticeOutcome{NoticeID: "n-1", MigrationID: "m-0123456789abcdef",
			Stream: "cam-1", ClientID: "agent-1", Channel: "nats", Attempts: 1, At: now, Outcome: "acked"}))
		acks, err := c.nc.SubscribeSync(subject.NoticeAckAll)
		if err != nil {
			t.Fatal(err)
		}
		c.permitted(t, "listen to client acks", func(ctx context.Context) error { return c.nc.FlushWithContext(ctx) })
		agent.permitted(t, "ack a notice on the core subject", corePublish(agent, subject.NoticeAck("agent-1")))
		if m, err := acks.NextMsg(3 * time.Second); err != nil || m.Subject != subject.NoticeAck("agent-1") {
			t.Fatalf("notifier did not hear agent-1's ack: %v", err)
		}
		c.permitted(t, "bind its reassigned consumer", createConsumer(c, bus.StreamEvents, bus.ConsumerSpec{Stream: bus.StreamEvents,
			Durable: "notifier-reassigned", Filters: []string{subject.Reassigned("*")}}.Config()))
		c.refused(t, subject.IngestDrain("ingest-1"), corePublish(c, subject.IngestDrain("ingest-1")))
		c.refused(t, "$KV.sessions.s-0123456789abcdef", corePublish(c, "$KV.sessions.s-0123456789abcdef"))
		for _, user := range []string{"ingest", "monitor", "agent-1"} {
			o := e.dial(t, user)
			o.refused(t, "$JS.API.DIRECT.GET.KV_notices.$KV.notices.n-1", corePublish(o, "$JS.API.DIRECT.GET.KV_notices.$KV.notices.n-1"))
		}
	})

	t.Run("monitor", func(t *testing.T) {
		c := e.dial(t, "monitor")
		// The ordered consumer works; only its delete on stop may be refused
		// (monitor may not delete consumers: they could be a service's durable).
		n := c.errCount()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cons, err := c.js.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		m, err := cons.Next(jetstream.FetchMaxWait(3 * time.Second))
		if err != nil {
			t.Fatalf("monitor: follow events: %v", err)
		}
		if _, err := events.Decode(m.Data()); err != nil {
			t.Fatalf("monitor read a non-event on %s: %v", m.Subject(), err)
		}
		// The ordered consumer deletes itself after Next; monitor may not
		// delete consumers, so that (and nothing else) is refused.
		testutil.CheckFor(t, 3*time.Second, 5*time.Millisecond, func() error {
			v := c.violationsSince(n)
			if len(v) == 0 {
				return errors.New("no refused delete yet")
			}
			for _, x := range v {
				if !strings.Contains(x, `"$JS.API.CONSUMER.DELETE.FERRY_EVENTS.`) {
					t.Fatalf("monitor: follow events: %s", x)
				}
			}
			return nil
		})
		c.permitted(t, "list placements", func(ctx context.Context) error {
			_, err := kv(t, c, bus.BucketPlacements).Keys(ctx)
			if errors.Is(err, jetstream.ErrNoKeysFound) {
				return nil
			}
			return err
		})
		c.refused(t, "$JS.API.DIRECT.GET.KV_sessions.$KV.sessions.s-0123456789abcdef",
			corePublish(c, "$JS.API.DIRECT.GET.KV_sessions.$KV.sessions.s-0123456789abcdef"))
		c.refused(t, "$JS.API.CONSUMER.CREATE.FERRY_COMMANDS.peek", createConsumer(c, bus.StreamCommands, jetstream.ConsumerConfig{Name: "peek"}))
	})

	t.Run("media hosts do not forward dead letters", func(t *testing.T) {
		// the forwarders read the streams they forward from by sequence (and
		// the notifier's deletes dead commands): the control-plane services
		// run them, ingest hosts do not
		c := e.dial(t, "ingest")
		c.refused(t, "$JS.API.CONSUMER.CREATE.FERRY_DLQ_ADVISORIES.dlq-forwarder",
			createConsumer(c, bus.StreamAdvisories, bus.DeadLetters.Config()))
		cmd := bus.CommandDeadLetters.Config()
		c.refused(t, "$JS.API.CONSUMER.CREATE.FERRY_DLQ_ADVISORIES.dlq-forwarder-commands."+cmd.FilterSubject,
			createConsumer(c, bus.StreamAdvisories, cmd))
		c.refused(t, "$JS.API.STREAM.MSG.DELETE.FERRY_COMMANDS", corePublish(c, "$JS.API.STREAM.MSG.DELETE.FERRY_COMMANDS"))
		c.refused(t, "$JS.API.STREAM.MSG.GET.FERRY_COMMANDS", corePublish(c, "$JS.API.STREAM.MSG.GET.FERRY_COMMANDS"))
		c.refused(t, "ferry.dlq.FERRY_COMMANDS.x", corePublish(c, "ferry.dlq.FERRY_COMMANDS.x"))
	})

	// runs RunDeadLetters(set) as c until its durable exists
	runForwarder := func(t *testing.T, c *conn, set bus.DeadLetterSet) {
		t.Helper()
		// The forwarders share their durable: remove it so that its
		// existence shows this user created it.
		e.ops.permitted(t, "remove the forwarder consumer "+set.Durable, func(ctx context.Context) error {
			err := e.ops.js.DeleteConsumer(ctx, bus.StreamAdvisories, set.Durable)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				return nil
			}
			return err
		})
		c.permitted(t, "run the dead-letter forwarder "+set.Durable, func(ctx context.Context) error {
			fctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- bus.RunDeadLetters(fctx, c.js, zerologNop, set) }()
			// The consumer exists once the forwarder is up.
			for {
				if _, err := c.js.Consumer(ctx, bus.StreamAdvisories, set.Durable); err == nil {
					break
				}
				select {
				case err := <-done:
					cancel()
					return fmt.Errorf("forwarder stopped: %v", err)
				case <-ctx.Done():
					cancel()
					return ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
			cancel()
			// The consumer can exist before the forwarder's create call
			// has its answer: cancelled then, the call reports it.
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		})
	}

	t.Run("every control-plane service forwards dead letters", func(t *testing.T) {
		for _, user := range []string{"healthpredict", "placement", "notifier"} {
			runForwarder(t, e.dial(t, user), bus.DeadLetters)
		}
	})

	t.Run("only the notifier forwards dead commands", func(t *testing.T) {
		runForwarder(t, e.dial(t, "notifier"), bus.CommandDeadLetters)
		cmd := bus.CommandDeadLetters.Config()
		for _, user := range []string{"healthpredict", "placement"} {
			c := e.dial(t, user)
			c.refused(t, "$JS.API.CONSUMER.CREATE.FERRY_DLQ_ADVISORIES.dlq-forwarder-commands."+cmd.FilterSubject,
				createConsumer(c, bus.StreamAdvisories, cmd))
			t.Logf("%s -> create the command dead-letter forwarder %s: refused", user, bus.CommandDeadLetterDurable)
		}
	})
}

// TestServicesFindTheLayout is what every service does at start:
// bus.Bootstrap on a layout ops already created, without the right to create
// or update streams (a stream update can add sources, i.e. read or write any
// stream). It passes once bus.Bootstrap only looks streams up when they exist.
func TestServicesFindTheLayout(t *testing.T) {
	e := newAccessEnv(t)
	for _, user := range []string{"ingest", "healthpredict", "placement", "notifier"} {
		c := e.dial(t, user)
		t.Run(user, func(t *testing.T) {
			c.permitted(t, "bus.Bootstrap", func(ctx context.Context) error { return bus.Bootstrap(ctx, c.js, 1) })
			c.permitted(t, "bus.OpenStores", func(ctx context.Context) error {
				_, err := bus.OpenStores(ctx, c.js)
				return err
			})
		})
	}
}

// TestSingleFilterConsumersPinTheFilter checks the ingest command consumer
// as bus.ConsumerSpec builds it: with one filter it must travel in the API
// subject (FilterSubject), or the permissions cannot pin it.
func TestSingleFilterConsumersPinTheFilter(t *testing.T) {
	e := newAccessEnv(t)
	c := e.dial(t, "ingest") // ingest-1 when each host has its own identity
	spec := bus.ConsumerSpec{Stream: bus.StreamCommands, Durable: "ingest-ingest-1", Filters: []string{subject.IngestCommands("ingest-1")}}
	c.permitted(t, "bind ingest-ingest-1 through bus.ConsumerSpec", createConsumer(c, bus.StreamCommands, spec.Config()))
}

// TestHostSeesOnlyItsOwnPlacementNotices: placement's notices
// (bus.NotifyPlacement) reach a host on its own subject; a host may not
// read another host's, nor every host's, nor send notices itself. It may
// follow one stream's notices (an edge serving a stream that lives
// elsewhere), as it may read that stream's placement record.
func TestHostSeesOnlyItsOwnPlacementNotices(t *testing.T) {
	e := newAccessEnv(t)
	placement := e.dial(t, "placement")
	host := e.dial(t, "ingest-1")

	got := make(chan *nats.Msg, 4)
	host.permitted(t, "subscribe to its own notices", func(ctx context.Context) error {
		if _, err := host.nc.ChanSubscribe(subject.PlacementHostAll("ingest-1"), got); err != nil {
			return err
		}
		return host.nc.FlushWithContext(ctx)
	})
	host.permitted(t, "subscribe to one stream's notices", subscribe(host, subject.PlacementStream("cam-1")))
	pl := events.Placement{Stream: "cam-1", Host: "ingest-2", FromHost: "ingest-1", Epoch: 2}
	placement.permitted(t, "send a move's notices", func(ctx context.Context) error {
		if err := bus.NotifyPlacement(placement.nc, pl, 7); err != nil {
			return err
		}
		return placement.nc.FlushWithContext(ctx)
	})
	select {
	case m := <-got:
		if p, rev, err := bus.PlacementNotice(m); err != nil || p.Host != "ingest-2" || rev != 7 {
			t.Fatalf("notice %+v rev %d (%v), want the move to ingest-2 at 7", p, rev, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the old home got no notice of the move")
	}
	for _, tc := range []struct{ name, subj string }{
		{"another host's notices", subject.PlacementHostAll("ingest-2")},
		{"every host's notices", "ferry.placement.host.>"},
		{"every notice", "ferry.placement.>"},
	} {
		t.Run("refused/subscribe to "+tc.name, func(t *testing.T) { host.refused(t, tc.subj, subscribe(host, tc.subj)) })
	}
	t.Run("refused/send a notice", func(t *testing.T) {
		s := subject.PlacementHost("ingest-2", "cam-1")
		host.refused(t, s, corePublish(host, s))
	})
}

// TestControlPlaneReadsBySequenceOnlyWhatItForwards: healthpredict,
// placement and the notifier run the dead-letter forwarder of events,
// telemetry and heartbeats (bus.DeadLetters), which reads the messages it
// forwards by sequence ($JS.API.STREAM.MSG.GET) on FERRY_EVENTS,
// FERRY_TELEMETRY and FERRY_HEARTBEATS; only the notifier runs the one of
// FERRY_COMMANDS (bus.CommandDeadLetters), which holds every client's move
// notices, and may read that stream by sequence and delete from it. None may
// read any other stream by sequence (nor by direct get), apart from the
// buckets their role reads (natscreds.readKV).
func TestControlPlaneReadsBySequenceOnlyWhatItForwards(t *testing.T) {
	e := newAccessEnv(t)
	// a client's move notice, as the notifier sends it
	notifier := e.dial(t, "notifier")
	var noticeSeq uint64
	notifier.permitted(t, "send a move notice", func(ctx context.Context) error {
		ack, err := events.Publish(ctx, notifier.js, "access-test/notifier", notice("agent-1", "cam-1"))
		if err != nil {
			return err
		}
		noticeSeq = ack.Sequence
		return nil
	})
	for _, tc := range []struct {
		user      string
		refused   []string // streams it may not read by sequence
		forwarded []string // streams it may
	}{
		{"healthpredict", []string{bus.StreamCommands, bus.StreamDeadLetter, bus.StreamAdvisories, "KV_sessions", "KV_session_secrets", "KV_notices",
			"KV_migrations", "KV_processed"}, []string{bus.StreamEvents, bus.StreamTelemetry, bus.StreamHeartbeats}},
		{"placement", []string{bus.StreamCommands, bus.StreamDeadLetter, bus.StreamAdvisories, "KV_notices"},
			[]string{bus.StreamEvents, bus.StreamTelemetry, bus.StreamHeartbeats}},
		{"notifier", []string{bus.StreamDeadLetter, bus.StreamAdvisories, "KV_ingest_hosts", "KV_maintenance"},
			[]string{bus.StreamEvents, bus.StreamTelemetry, bus.StreamHeartbeats, bus.StreamCommands}},
	} {
		c := e.dial(t, tc.user)
		t.Run(tc.user, func(t *testing.T) {
			for _, s := range tc.refused {
				get := "$JS.API.STREAM.MSG.GET." + s
				c.refused(t, get, func(ctx context.Context) error {
					_, err := c.nc.RequestWithContext(ctx, get, []byte(`{"seq":1}`))
					return err
				})
				direct := "$JS.API.DIRECT.GET." + s
				c.refused(t, direct, func(ctx context.Context) error {
					_, err := c.nc.RequestWithContext(ctx, direct, []byte(`{"seq":1}`))
					return err
				})
				t.Logf("%s -> read %s by sequence (%s, %s): refused", tc.user, s, get, direct)
			}
			// Direct gets of the forwarded streams are not part of the forwarder's rights either.
			direct := "$JS.API.DIRECT.GET." + bus.StreamCommands
			c.refused(t, direct, func(ctx context.Context) error {
				_, err := c.nc.RequestWithContext(ctx, direct, []byte(`{"seq":1}`))
				return err
			})
			t.Logf("%s -> direct get on %s (%s): refused", tc.user, bus.StreamCommands, direct)
			for _, s := range tc.forwarded {
				c.permitted(t, "read "+s+" by sequence (dead-letter forwarder)", func(ctx context.Context) error {
					st, err := c.js.Stream(ctx, s)
					if err != nil {
						return err
					}
					if _, err := st.GetMsg(ctx, 1); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
						return err
					}
					return nil
				})
				t.Logf("%s -> read %s by sequence: permitted (forwarded stream)", tc.user, s)
			}
			readNotice := func(ctx context.Context) error {
				st, err := c.js.Stream(ctx, bus.StreamCommands)
				if err != nil {
					return err
				}
				m, err := st.GetMsg(ctx, noticeSeq)
				if err == nil && m.Subject != subject.ClientNotice("agent-1") {
					err = fmt.Errorf("message %d is on %s", noticeSeq, m.Subject)
				}
				return err
			}
			del := "$JS.API.STREAM.MSG.DELETE." + bus.StreamCommands
			if tc.user == "notifier" {
				c.permitted(t, "read agent-1's notice by sequence", readNotice)
				t.Logf("%s -> read agent-1's move notice (FERRY_COMMANDS seq %d): permitted (it forwards dead commands)", tc.user, noticeSeq)
				return
			}
			c.refused(t, "$JS.API.STREAM.MSG.GET."+bus.StreamCommands, readNotice)
			t.Logf("%s -> read agent-1's move notice (FERRY_COMMANDS seq %d): refused", tc.user, noticeSeq)
			c.refused(t, del, func(ctx context.Context) error {
				_, err := c.nc.RequestWithContext(ctx, del, []byte(`{"seq":1,"no_erase":true}`))
				return err
			})
			t.Logf("%s -> delete a FERRY_COMMANDS message (%s): refused", tc.user, del)
		})
	}
}

// TestDeadLettersReachTheDLQUnderRealCredentials: with the forwarding split
// by stream, a dead command (max deliveries on an ingest host's command
// consumer) is left alone by healthpredict's and placement's forwarders,
// which never try to read it, and reaches FERRY_DLQ once the notifier's
// forwarders run; a dead event reaches it with only placement running.
func TestDeadLettersReachTheDLQUnderRealCredentials(t *testing.T) {
	deadLetters := func(t *testing.T, e *accessEnv, stream string) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			st, err := e.ops.js.Stream(ctx, bus.StreamDeadLetter)
			if err != nil {
				return err
			}
			m, err := st.GetLastMsgForSubject(ctx, "ferry.dlq."+stream+".>")
			if err != nil {
				return fmt.Errorf("no dead letter from %s: %w", stream, err)
			}
			t.Logf("FERRY_DLQ: %s from %s seq %s (consumer %s, %s)", m.Header.Get(bus.HeaderDLQSubject), stream,
				m.Header.Get(bus.HeaderDLQSeq), m.Header.Get(bus.HeaderDLQConsumer), m.Header.Get(bus.HeaderDLQReason))
			return nil
		}
	}

	t.Run("a dead command, with the notifier running", func(t *testing.T) {
		e := newAccessEnv(t)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		cps := map[string]*conn{}
		for _, user := range []string{"healthpredict", "placement"} {
			cps[user] = e.dial(t, user)
			go func() { _ = bus.RunDeadLetters(ctx, cps[user].js, zerologNop, bus.DeadLetters) }()
		}
		e.ops.permitted(t, "send ingest-1 a drain", publish(e.ops, events.DrainCommand{CommandID: "c-dead", Host: "ingest-1", Reason: "dead letter test"}))
		host := e.dial(t, "ingest-1")
		host.permitted(t, "take the drain and never ack it", func(ctx context.Context) error {
			cons, err := host.js.CreateOrUpdateConsumer(ctx, bus.StreamCommands, jetstream.ConsumerConfig{Durable: "ingest-ingest-1",
				FilterSubject: subject.IngestCommands("ingest-1"), AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 1, AckWait: 200 * time.Millisecond})
			if err != nil {
				return err
			}
			n := 0
			for range 6 { // the server notices the exhausted message when it looks for the next one
				b, err := cons.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond))
				if err != nil {
					return err
				}
				for range b.Messages() {
					n++
				}
			}
			if n != 1 {
				return fmt.Errorf("%d deliveries, want 1", n)
			}
			return nil
		})
		// the advisory is there, healthpredict's and placement's forwarders leave it
		testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			st, err := e.ops.js.Stream(context.Background(), bus.StreamAdvisories)
			if err != nil {
				return err
			}
			_, err = st.GetLastMsgForSubject(context.Background(), "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.FERRY_COMMANDS.ingest-ingest-1")
			return err
		})
		time.Sleep(500 * time.Millisecond)
		if err := deadLetters(t, e, bus.StreamCommands)(); err == nil {
			t.Fatal("the dead command was forwarded before the notifier ran")
		}
		for user, c := range cps {
			if v := c.violationsSince(0); len(v) > 0 {
				t.Fatalf("%s's forwarder: %v", user, v)
			}
		}
		t.Logf("healthpredict, placement -> the dead command: left alone (no read attempted)")
		notifier := e.dial(t, "notifier")
		// what the notifier runs (services/notifier: its "dead letters" and "command dead letters" tasks)
		for _, set := range []bus.DeadLetterSet{bus.DeadLetters, bus.CommandDeadLetters} {
			go func() {
				if err := bus.RunDeadLetters(ctx, notifier.js, zerologNop, set); err != nil && ctx.Err() == nil {
					t.Errorf("notifier: %s: %v", set.Durable, err)
				}
			}()
		}
		testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, deadLetters(t, e, bus.StreamCommands))
		testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			st, err := e.ops.js.Stream(context.Background(), bus.StreamCommands)
			if err != nil {
				return err
			}
			if info, err := st.Info(context.Background()); err != nil || info.State.Msgs != 0 {
				return fmt.Errorf("FERRY_COMMANDS still holds %v messages (%v)", info, err)
			}
			return nil
		})
		if v := notifier.violationsSince(0); len(v) > 0 {
			t.Fatalf("notifier's forwarders: %v", v)
		}
		t.Logf("notifier -> the dead command: forwarded to FERRY_DLQ, original deleted")
	})

	t.Run("a dead event, with only placement running", func(t *testing.T) {
		e := newAccessEnv(t)
		runPlacement(t, e)
		e.ops.permitted(t, "publish an event", publish(e.ops, maintenance("ingest-9")))
		e.ops.permitted(t, "terminate it", func(ctx context.Context) error {
			cons, err := e.ops.js.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{Durable: "dlq-test",
				FilterSubject: "ferry.evt.ops.>", AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				return err
			}
			b, err := cons.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
			if err != nil {
				return err
			}
			for m := range b.Messages() {
				return m.TermWithReason("dead letter test")
			}
			return errors.New("no event")
		})
		testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, deadLetters(t, e, bus.StreamEvents))
		t.Logf("placement -> the dead event: forwarded to FERRY_DLQ")
	})
}
