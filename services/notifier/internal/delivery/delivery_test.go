package delivery

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/libs/token"
)

// memKV is an in-memory bucket with the calls the engine makes (Get,
// Create, Update, Put); any other call panics on the nil embedded interface.
// conflicts makes the next Updates fail as a concurrent writer's would.
type memKV struct {
	jetstream.KeyValue
	mu        sync.Mutex
	vals      map[string]memEntry
	rev       uint64
	conflicts int
	updates   int
}

type memEntry struct {
	key string
	val []byte
	rev uint64
}

func (e memEntry) Bucket() string                  { return "mem" }
func (e memEntry) Key() string                     { return e.key }
func (e memEntry) Value() []byte                   { return e.val }
func (e memEntry) Revision() uint64                { return e.rev }
func (e memEntry) Created() time.Time              { return time.Time{} }
func (e memEntry) Delta() uint64                   { return 0 }
func (e memEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

func newMemKV() *memKV { return &memKV{vals: map[string]memEntry{}} }

func (m *memKV) Get(_ context.Context, key string) (jetstream.KeyValueEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.vals[key]
	if !ok {
		return nil, jetstream.ErrKeyNotFound
	}
	return e, nil
}

func (m *memKV) Put(_ context.Context, key string, val []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev++
	m.vals[key] = memEntry{key, val, m.rev}
	return m.rev, nil
}

func (m *memKV) Create(ctx context.Context, key string, val []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	m.mu.Lock()
	if _, ok := m.vals[key]; ok {
		m.mu.Unlock()
		return 0, jetstream.ErrKeyExists
	}
	m.mu.Unlock()
	return m.Put(ctx, key, val)
}

func (m *memKV) Update(_ context.Context, key string, val []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.updates++
	if m.conflicts > 0 {
		m.conflicts--
		m.rev++
		e := m.vals[key]
		e.rev = m.rev // another writer got there first
		m.vals[key] = e
		return 0, jetstream.ErrKeyExists
	}
	if m.vals[key].rev != rev {
		return 0, jetstream.ErrKeyExists
	}
	m.rev++
	m.vals[key] = memEntry{key, val, m.rev}
	return m.rev, nil
}

func (m *memKV) put(t *testing.T, key string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = m.Put(context.Background(), key, b)
}

// outcomes is the engine's JetStream: it records the outcomes published.
type outcomes struct {
	jetstream.JetStream
	mu  sync.Mutex
	got []string // "outcome/channel/reason"
}

func (o *outcomes) PublishMsg(_ context.Context, msg *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	_, ev, err := events.DecodeAs[events.NoticeOutcome](msg.Data)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, ev.Outcome+"/"+ev.Channel+"/"+ev.Reason)
	return &jetstream.PubAck{}, nil
}

func (o *outcomes) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.got)
}

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type engineEnv struct {
	e        *Engine
	sessions *memKV
	notices  *memKV
	out      *outcomes
}

// newEngine returns an engine on in-memory buckets at a fixed time; Run is
// not started (these tests call prepare and Ack directly).
func newEngine(t *testing.T, cfg Config) *engineEnv {
	t.Helper()
	cfg.Instance = "notifier-1"
	cfg.TokenSecret = []byte("secret")
	env := &engineEnv{sessions: newMemKV(), notices: newMemKV(), out: &outcomes{}}
	e, err := New(cfg, Deps{NC: &nats.Conn{}, JS: env.out, Sessions: env.sessions, Secrets: newMemKV(),
		Notices: env.notices, Processed: newMemKV(), Log: testutil.Logger(t), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	env.e = e
	return env
}

func reassigned(deadline time.Duration) events.Reassigned {
	return events.Reassigned{MigrationID: "m-1", Stream: "cam-1", FromHost: "ingest-1", ToHost: "ingest-2",
		ToURL: "rtsp://ingest-2:8554/cam-1", Epoch: 2, Deadline: now.Add(deadline), Reason: "maintenance",
		SessionID: "s-1", Mode: "push"}
}

func session(caps events.Capabilities) events.Session {
	return events.Session{SessionID: "s-1", Stream: "cam-1", ClientID: "client-1", Capabilities: caps}
}

func TestPrepare(t *testing.T) {
	t.Parallel()
	all := events.Capabilities{CanMove: true, Channels: []string{"webhook", "sse", "nats"}, WebhookURL: "https://c/hook"}
	for _, tc := range []struct {
		name     string
		cfg      Config
		session  *events.Session
		deadline time.Duration
		state    string
		reason   string
		channels []string
		offline  time.Duration // OfflineAt - now
	}{
		{"capable client: every usable channel, in a fixed order", Config{}, &events.Session{Capabilities: all},
			time.Minute, StatePending, "", []string{ChannelNATS, ChannelSSE, ChannelWebhook}, time.Minute},
		{"webhook declared without a URL is not usable", Config{},
			&events.Session{Capabilities: events.Capabilities{CanMove: true, Channels: []string{"webhook", "nats"}}},
			time.Minute, StatePending, "", []string{ChannelNATS}, time.Minute},
		{"unknown session: failed at once", Config{}, nil, time.Minute, StateFailed, ReasonUnknownSession, nil, time.Minute},
		{"client that cannot move: failed at once", Config{},
			&events.Session{Capabilities: events.Capabilities{Channels: []string{"nats"}}},
			time.Minute, StateFailed, ReasonNotCapable, nil, time.Minute},
		{"deadline passed, no urgent window: failed", Config{}, &events.Session{Capabilities: all},
			-time.Second, StateFailed, ReasonDeadline, nil, -time.Second},
		{"deadline passed, urgent window: a move-now notice", Config{UrgentWindow: 30 * time.Second},
			&events.Session{Capabilities: all}, -time.Second, StatePending, "",
			[]string{ChannelNATS, ChannelSSE, ChannelWebhook}, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newEngine(t, tc.cfg)
			if tc.session != nil {
				env.sessions.put(t, "s-1", session(tc.session.Capabilities))
			}
			r := reassigned(tc.deadline)
			key, rec, err := env.e.prepare(context.Background(), events.Envelope{Time: now}, r, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			client := "client-1"
			if tc.session == nil {
				client = "unknown"
			}
			if key != NoticeID("m-1", client) || rec.Notice.ClientID != client {
				t.Fatalf("key %s, client %s", key, rec.Notice.ClientID)
			}
			if rec.State != tc.state || rec.Reason != tc.reason || !slices.Equal(rec.Channels, tc.channels) {
				t.Fatalf("state %s reason %q channels %v", rec.State, rec.Reason, rec.Channels)
			}
			if got := rec.Notice.OfflineAt.Sub(now); got != tc.offline {
				t.Fatalf("offline at now%+v, want now%+v", got, tc.offline)
			}
			if tc.state == StatePending {
				checkToken(t, rec.Notice.NewURL, r)
			}
			if tc.cfg.UrgentWindow > 0 && !strings.HasPrefix(rec.Notice.Reason, "move now: ") {
				t.Fatalf("urgent notice reason %q", rec.Notice.Reason)
			}
			// a redelivered event finds the same record instead of a second notice
			key2, rec2, err := env.e.prepare(context.Background(), events.Envelope{Time: now}, r, zerolog.Nop())
			if err != nil || key2 != key || rec2.CreatedAt != rec.CreatedAt || len(env.notices.vals) != 1 {
				t.Fatalf("second prepare: %v, key %s, %d records", err, key2, len(env.notices.vals))
			}
		})
	}
}

// checkToken checks that the new URL carries a publish token for the new host.
func checkToken(t *testing.T, newURL string, r events.Reassigned) {
	t.Helper()
	u, err := url.Parse(newURL)
	if err != nil || u.Host != "ingest-2:8554" || u.Path != "/cam-1" {
		t.Fatalf("new URL %q", newURL)
	}
	c, err := token.Verify([]byte("secret"), u.Query().Get(token.QueryParam), now)
	if err != nil || c.Host != r.ToHost || c.Stream != r.Stream || c.Session != r.SessionID || c.MigrationID != r.MigrationID {
		t.Fatalf("token %+v: %v", c, err)
	}
}

func TestAck(t *testing.T) {
	t.Parallel()
	env := newEngine(t, Config{})
	env.sessions.put(t, "s-1", session(events.Capabilities{CanMove: true, Channels: []string{"nats"}}))
	key, _, err := env.e.prepare(context.Background(), events.Envelope{Time: now.Add(-time.Second)}, reassigned(time.Minute), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// the notice went out once over NATS (what drive records)
	if _, _, err := env.e.st.update(ctx, key, func(r *Record) error {
		r.Attempts = map[string]int{ChannelNATS: 1}
		r.Delivered = map[string]time.Time{ChannelNATS: now}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		ack      events.NoticeAck
		ok       bool
		error    string
		outcomes []string
	}{
		{"ids missing", events.NoticeAck{NoticeID: key}, false, "notice_id and client_id are required", nil},
		{"unknown notice", events.NoticeAck{NoticeID: "n-0", ClientID: "client-1"}, false, ErrUnknownNotice.Error(), nil},
		{"another client", events.NoticeAck{NoticeID: key, ClientID: "client-2"}, false, "notice is not for this client or session", nil},
		{"another session", events.NoticeAck{NoticeID: key, ClientID: "client-1", SessionID: "s-2"}, false,
			"notice is not for this client or session", nil},
		{"the client's ack", events.NoticeAck{NoticeID: key, ClientID: "client-1", SessionID: "s-1", Channel: "nats"}, true, "",
			[]string{"acked/nats/"}},
		{"acked again: ok, no second outcome", events.NoticeAck{NoticeID: key, ClientID: "client-1", Channel: "nats"}, true, "",
			[]string{"acked/nats/"}},
	} {
		// in order: each case acts on the record the previous ones left
		t.Run(tc.name, func(t *testing.T) {
			rep := env.e.Ack(ctx, tc.ack)
			if rep.OK != tc.ok || rep.Error != tc.error {
				t.Fatalf("reply %+v", rep)
			}
			if got := env.out.all(); !slices.Equal(got, tc.outcomes) {
				t.Fatalf("outcomes %v, want %v", got, tc.outcomes)
			}
		})
	}
	rec, _, err := env.e.st.get(ctx, key)
	if err != nil || rec.State != StateAcked || rec.AckChannel != "nats" || !rec.AckedAt.Equal(now) {
		t.Fatalf("record %+v: %v", rec, err)
	}
}

// TestUpdateRetriesConflicts: a compare-and-set that loses to another
// replica's write reads the record again and retries.
func TestUpdateRetriesConflicts(t *testing.T) {
	t.Parallel()
	kv := newMemKV()
	st := store{kv: kv, now: func() time.Time { return now }}
	if _, created, err := st.create(context.Background(), "n-1", Record{State: StatePending}); err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if _, created, err := st.create(context.Background(), "n-1", Record{State: StateFailed}); err != nil || created {
		t.Fatalf("second create: %v %v (want the existing record)", created, err)
	}
	kv.conflicts = 3
	rec, changed, err := st.update(context.Background(), "n-1", func(r *Record) error {
		r.Attempts = map[string]int{ChannelNATS: r.Attempts[ChannelNATS] + 1}
		return nil
	})
	if err != nil || !changed || rec.Attempts[ChannelNATS] != 1 || kv.updates != 4 {
		t.Fatalf("update: %v changed %v attempts %v after %d updates", err, changed, rec.Attempts, kv.updates)
	}
	_, changed, err = st.update(context.Background(), "n-1", func(*Record) error { return errNoChange })
	if err != nil || changed {
		t.Fatalf("no-change update: %v %v", changed, err)
	}
	if _, _, err := st.update(context.Background(), "n-2", func(*Record) error { return nil }); err != ErrUnknownNotice {
		t.Fatalf("update of a missing record: %v", err)
	}
}
