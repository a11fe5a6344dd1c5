package nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
)

// TestHostSpeaksOnlyForItself: with per-host credentials, ingest-1 may
// publish its own heartbeat, telemetry, registry record, drain and departure
// (host_left, deleting its record), and none
// of ingest-2's; it may read only its own commands. It may publish lifecycle
// events (publisher_attached, publisher_detached, stream_ceased) about any
// stream, but only in its own name (its id is the subject's last token):
// where a stream lives is not something permissions can know, so whether
// ingest-1 may speak about that stream is checked by their consumer,
// placement, against the placement record (TestForgedCeaseUnderRealCredentials).
func TestHostSpeaksOnlyForItself(t *testing.T) {
	e := newAccessEnv(t)
	h1 := e.dial(t, "ingest-1")
	now := time.Now().UTC()
	hb := func(host string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := events.Publish(ctx, h1.js, host, events.Heartbeat{Host: host, Seq: 1, At: now}, jetstream.WithMsgTTL(3*time.Second))
			return err
		}
	}
	tel := func(host string) func(ctx context.Context) error {
		return publish(h1, events.Telemetry{Host: host, At: now, MemLimit: 1 << 30, FDLimit: 1024})
	}
	drain := func(host string) func(ctx context.Context) error {
		return publish(h1, events.Draining{Host: host, Deadline: now.Add(time.Minute), Reason: "identity test", Streams: 1})
	}
	left := func(host string) func(ctx context.Context) error {
		return publish(h1, events.HostLeft{Host: host, Reason: "identity test", At: now})
	}
	unreg := func(host string) func(ctx context.Context) error {
		return func(ctx context.Context) error { return kv(t, h1, bus.BucketHosts).Delete(ctx, host) }
	}
	reg := func(host string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			b, _ := json.Marshal(events.HostRecord{Host: host, RTSPURL: "rtsp://" + host + ":8554", Zone: "zone-a", Role: "origin", Status: "ok"})
			_, err := kv(t, h1, bus.BucketHosts).Put(ctx, host, b)
			return err
		}
	}
	cmds := func(host string) func(ctx context.Context) error {
		spec := bus.ConsumerSpec{Stream: bus.StreamCommands, Durable: "ingest-" + host, Filters: []string{subject.IngestCommands(host)}}
		return createConsumer(h1, bus.StreamCommands, spec.Config())
	}
	ceased := func(host string) func(ctx context.Context) error {
		return publish(h1, events.StreamCeased{Stream: "cam-1", Host: host, NewHost: "ingest-3", MigrationID: "m-0123456789abcdef"})
	}
	attached := func(host string) func(ctx context.Context) error {
		return publish(h1, events.PublisherAttached{Stream: "cam-1", Host: host, SessionID: "s-0123456789abcdef",
			Capabilities: events.Capabilities{CanMove: true, Channels: []string{"nats"}}, Mode: "push", At: now})
	}
	detached := func(host string) func(ctx context.Context) error {
		return publish(h1, events.PublisherDetached{Stream: "cam-1", Host: host, SessionID: "s-0123456789abcdef",
			Reason: "identity test", At: now})
	}
	for _, tc := range []struct {
		what, subj string
		op         func(string) func(ctx context.Context) error
	}{
		{"heartbeat", subject.Heartbeat("ingest-2"), hb},
		{"telemetry", subject.Telemetry("ingest-2"), tel},
		{"drain event", subject.Draining("ingest-2"), drain},
		{"registry record", "$KV.ingest_hosts.ingest-2", reg},
		{"departure (host_left)", subject.HostLeft("ingest-2"), left},
		{"registry deletion", "$KV.ingest_hosts.ingest-2", unreg},
		{"stream_ceased", subject.StreamCeased("cam-1", "ingest-2"), ceased},
		{"publisher_attached", subject.PublisherAttached("cam-1", "ingest-2"), attached},
		{"publisher_detached", subject.PublisherDetached("cam-1", "ingest-2"), detached},
		{"command consumer", "$JS.API.CONSUMER.CREATE.FERRY_COMMANDS.ingest-ingest-2.ferry.cmd.ingest.ingest-2.>", cmds},
	} {
		t.Run(tc.what, func(t *testing.T) {
			h1.permitted(t, "ingest-1 publishes its own "+tc.what, tc.op("ingest-1"))
			t.Logf("ingest-1 -> its own %s: permitted", tc.what)
			h1.refused(t, tc.subj, tc.op("ingest-2"))
			t.Logf("ingest-1 -> ingest-2's %s (%s): refused", tc.what, tc.subj)
		})
	}
	t.Run("read ingest-2's commands", func(t *testing.T) {
		subj := "$JS.API.CONSUMER.MSG.NEXT.FERRY_COMMANDS.ingest-ingest-2"
		h1.refused(t, subj, func(ctx context.Context) error {
			return h1.nc.PublishRequest(subj, h1.nc.NewRespInbox(), []byte(`{"batch":1}`))
		})
		t.Logf("ingest-1 -> pull ingest-2's commands: refused")
	})
}

// TestDurablesArePinned: a service cannot read from, ack, create or delete
// another service's durable consumer on the event stream.
func TestDurablesArePinned(t *testing.T) {
	e := newAccessEnv(t)
	for _, tc := range []struct{ user, durable string }{
		{"notifier", "placement-migrations"},
		{"placement", "notifier-reassigned"},
		{"healthpredict", "placement-migrations"},
		{"ingest-1", "notifier-reassigned"},
		{"monitor", "placement-migrations"},
	} {
		c := e.dial(t, tc.user)
		t.Run(tc.user+"/"+tc.durable, func(t *testing.T) {
			next := "$JS.API.CONSUMER.MSG.NEXT.FERRY_EVENTS." + tc.durable
			c.refused(t, next, func(ctx context.Context) error {
				return c.nc.PublishRequest(next, c.nc.NewRespInbox(), []byte(`{"batch":1}`))
			})
			del := "$JS.API.CONSUMER.DELETE.FERRY_EVENTS." + tc.durable
			c.refused(t, del, corePublish(c, del))
			create := "$JS.API.CONSUMER.CREATE.FERRY_EVENTS." + tc.durable + ".ferry.evt.>"
			c.refused(t, create, createConsumer(c, bus.StreamEvents, jetstream.ConsumerConfig{Durable: tc.durable, FilterSubject: "ferry.evt.>"}))
			t.Logf("%s -> %s's durable %s (next, delete, create): refused", tc.user, "its owner", tc.durable)
		})
	}
	// The dead-letter forwarders' durables on the advisories: the shared
	// one (bus.DeadLetters) belongs to the control-plane services, the one
	// of FERRY_COMMANDS (bus.CommandDeadLetters) to the notifier alone.
	for _, tc := range []struct {
		user string
		set  bus.DeadLetterSet
	}{
		{"healthpredict", bus.CommandDeadLetters},
		{"placement", bus.CommandDeadLetters},
		{"ingest-1", bus.DeadLetters},
		{"monitor", bus.DeadLetters},
		{"agent-1", bus.CommandDeadLetters},
	} {
		c := e.dial(t, tc.user)
		t.Run(tc.user+"/"+tc.set.Durable, func(t *testing.T) {
			next := "$JS.API.CONSUMER.MSG.NEXT.FERRY_DLQ_ADVISORIES." + tc.set.Durable
			c.refused(t, next, func(ctx context.Context) error {
				return c.nc.PublishRequest(next, c.nc.NewRespInbox(), []byte(`{"batch":1}`))
			})
			del := "$JS.API.CONSUMER.DELETE.FERRY_DLQ_ADVISORIES." + tc.set.Durable
			c.refused(t, del, corePublish(c, del))
			cfg := tc.set.Config()
			create := "$JS.API.CONSUMER.CREATE.FERRY_DLQ_ADVISORIES." + tc.set.Durable
			if cfg.FilterSubject != "" {
				create += "." + cfg.FilterSubject
			}
			c.refused(t, create, createConsumer(c, bus.StreamAdvisories, cfg))
			t.Logf("%s -> dead-letter durable %s (next, delete, create): refused", tc.user, tc.set.Durable)
		})
	}
	t.Run("placement runs its own", func(t *testing.T) {
		c := e.dial(t, "placement")
		c.permitted(t, "create placement-migrations", createConsumer(c, bus.StreamEvents,
			jetstream.ConsumerConfig{Durable: "placement-migrations", FilterSubject: "ferry.evt.ingest.>", AckPolicy: jetstream.AckExplicitPolicy}))
	})
}

// TestRevokedHostIsCutOff: revoking a host's credential and reloading the
// server's configuration drops its connection and refuses it afterwards;
// other hosts are untouched.
func TestRevokedHostIsCutOff(t *testing.T) {
	d := newFleet(t)
	opts := loadFleetConfig(t, "single.conf", d)
	s := start(t, opts)
	// What an operator does after revoke or add: copy operator.conf to the
	// server and reload it.
	reload := func() {
		t.Helper()
		b, err := os.ReadFile(d.ConfPath())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(filepath.Dir(opts.ConfigFile), "operator.conf"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	e := &accessEnv{url: s.ClientURL(), fleet: d}
	h2 := e.dial(t, "ingest-2")
	h3 := e.dial(t, "ingest-3")
	// What an attacker who took ingest-2 keeps: a copy of its credential.
	stolen := filepath.Join(t.TempDir(), "ingest-2.creds")
	if b, err := os.ReadFile(d.CredsPath("ingest-2")); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(stolen, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Revoke("ingest-2"); err != nil {
		t.Fatal(err)
	}
	reload()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if h2.nc.IsConnected() {
			return errors.New("ingest-2 still connected after its revocation")
		}
		return nil
	})
	if !h3.nc.IsConnected() {
		t.Fatal("ingest-3 was disconnected by ingest-2's revocation")
	}
	// The revoked credential no longer authenticates.
	_, err := nats.Connect(e.url, nats.UserCredentials(stolen), nats.NoReconnect())
	if !errors.Is(err, nats.ErrAuthorization) && (err == nil || !strings.Contains(err.Error(), "Authorization")) {
		t.Fatalf("connect with ingest-2's revoked credential: %v, want an authorization error", err)
	}
	t.Logf("connect with ingest-2's revoked credential: refused (%v)", err)
	// Rotation: a new credential for the same host works once the servers reload.
	if err := d.Add("ingest-2", "ingest"); err != nil {
		t.Fatal(err)
	}
	reload()
	nc, err := nats.Connect(e.url, nats.UserCredentials(d.CredsPath("ingest-2")), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect with ingest-2's new credential: %v", err)
	}
	nc.Close()
	t.Log("connect with ingest-2's rotated credential: permitted")
}

// TestNoticeSecretsOutOfIngestReach: placement writes a session's notice
// secret to session_secrets and the notifier reads it; an ingest host, which
// reads sessions, and an agent cannot read it.
func TestNoticeSecretsOutOfIngestReach(t *testing.T) {
	e := newAccessEnv(t)
	placement, notifier, h1, agent := e.dial(t, "placement"), e.dial(t, "notifier"), e.dial(t, "ingest-1"), e.dial(t, "agent-1")
	sid := "s-0123456789abcdef"
	placement.permitted(t, "write a session and its secret", func(ctx context.Context) error {
		b, _ := json.Marshal(events.Session{SessionID: sid, Stream: "cam-1", ClientID: "agent-1", CreatedAt: time.Now().UTC()})
		if _, err := kv(t, placement, bus.BucketSessions).Put(ctx, sid, b); err != nil {
			return err
		}
		sb, _ := json.Marshal(events.SessionSecret{SessionID: sid, NoticeSecret: "s3cret"})
		_, err := kv(t, placement, bus.BucketSessionSecrets).Put(ctx, sid, sb)
		return err
	})
	notifier.permitted(t, "read the secret", func(ctx context.Context) error {
		got, err := bus.NoticeSecret(ctx, kv(t, notifier, bus.BucketSessionSecrets), nil, sid)
		if err == nil && got != "s3cret" {
			err = fmt.Errorf("secret %q", got)
		}
		return err
	})
	h1.permitted(t, "read the session (client id, capabilities)", func(ctx context.Context) error {
		_, err := kv(t, h1, bus.BucketSessions).Get(ctx, sid)
		return err
	})
	get := "$JS.API.DIRECT.GET.KV_session_secrets.$KV.session_secrets." + sid
	for _, c := range []*conn{h1, agent} {
		c.refused(t, get, corePublish(c, get))
		t.Logf("%s -> read a notice secret (%s): refused", c.user, get)
	}
	h1.refused(t, get, func(ctx context.Context) error {
		_, err := kv(t, h1, bus.BucketSessionSecrets).Get(ctx, sid)
		return err
	})
}

// TestProcessedMarkersBelongToTheirConsumer: the processed bucket holds each
// consumer's idempotency markers, keyed "<durable>.<event id>"; event ids
// are derived from the event, so whoever may write a consumer's marker first
// makes it skip the genuine event (a host could keep placement from seeing
// another host's stream_ceased). Only a durable's owner writes its markers;
// ingest hosts and healthpredict, which consume nothing through the bucket,
// write none.
func TestProcessedMarkersBelongToTheirConsumer(t *testing.T) {
	e := newAccessEnv(t)
	ceased := events.ID(events.StreamCeased{Stream: "cam-1", Host: "ingest-2", NewHost: "ingest-3", MigrationID: "m-0123456789abcdef"})
	reassigned := events.ID(events.Reassigned{MigrationID: "m-0123456789abcdef"})
	marker := func(c *conn, key string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := kv(t, c, bus.BucketProcessed).Create(ctx, key, []byte(time.Now().UTC().Format(time.RFC3339Nano)))
			return err
		}
	}
	for _, tc := range []struct {
		user, key string
		allowed   bool
	}{
		{"ingest-1", "placement-migrations." + ceased, false},
		{"ingest-1", "notifier-reassigned." + reassigned, false},
		{"healthpredict", "placement-migrations." + ceased, false},
		{"healthpredict", "notifier-reassigned." + reassigned, false},
		{"placement", "notifier-reassigned." + reassigned, false},
		{"notifier", "placement-migrations." + ceased, false},
		{"placement", "placement-migrations." + ceased, true},
		{"notifier", "notifier-reassigned." + reassigned, true},
	} {
		c := e.dial(t, tc.user)
		subj := "$KV.processed." + tc.key
		t.Run(tc.user+"/"+strings.SplitN(tc.key, ".", 2)[0], func(t *testing.T) {
			if tc.allowed {
				c.permitted(t, "write its own marker "+tc.key, marker(c, tc.key))
				t.Logf("%s -> its own marker (%s): permitted", tc.user, subj)
				return
			}
			c.refused(t, subj, marker(c, tc.key))
			t.Logf("%s -> another consumer's marker (%s): refused", tc.user, subj)
		})
	}
}
