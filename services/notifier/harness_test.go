package notifier_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/notifier"
)

const tokenSecret = "test-token-secret"

type harness struct {
	t   *testing.T
	env *testutil.Env
	ctx context.Context
	out *outcomeLog
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	env := testutil.NATS(t)
	h := &harness{t: t, env: env, ctx: testutil.Context(t)}
	h.out = watchOutcomes(t, h.ctx, env.JS)
	return h
}

type runningNotifier struct {
	svc  *notifier.Service
	stop func()
	// crash cuts the replica's NATS connection first (nothing handed back),
	// then stops it.
	crash func()
}

// startNotifier runs a notifier replica with its own NATS connection.
func (h *harness) startNotifier(name string, mod func(*notifier.Config)) *runningNotifier {
	h.t.Helper()
	cfg := notifier.Default()
	cfg.Instance = name
	cfg.TokenSecret = tokenSecret
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.RetryMin = 20 * time.Millisecond
	cfg.RetryMax = 200 * time.Millisecond
	cfg.Lease = 2 * time.Second
	cfg.NATS = bus.Config{URL: h.env.URL, Replicas: 1, Name: name}
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		h.t.Fatal(err)
	}
	nc, err := nats.Connect(h.env.URL)
	if err != nil {
		h.t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	svc, err := notifier.New(cfg, nc, js, testutil.Logger(h.t).With().Str("replica", name).Logger())
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			nc.Close()
		})
	}
	h.t.Cleanup(stop)
	testutil.CheckFor(h.t, 10*time.Second, 10*time.Millisecond, svc.Ready)
	crash := func() {
		nc.Close()
		stop()
	}
	return &runningNotifier{svc: svc, stop: stop, crash: crash}
}

// session stores a publisher session as placement does (its notice secret in
// session_secrets) and returns it with the secret filled in.
func (h *harness) session(id, client string, caps events.Capabilities) events.Session {
	h.t.Helper()
	s := events.Session{SessionID: id, Stream: "cam-" + id, ClientID: client, Capabilities: caps, CreatedAt: time.Now().UTC()}
	b, _ := json.Marshal(s)
	if _, err := h.env.Stores.Sessions.Put(h.ctx, id, b); err != nil {
		h.t.Fatal(err)
	}
	s.NoticeSecret = "secret-" + id
	sb, _ := json.Marshal(events.SessionSecret{SessionID: id, NoticeSecret: s.NoticeSecret, CreatedAt: s.CreatedAt})
	if _, err := h.env.Stores.SessionSecrets.Put(h.ctx, id, sb); err != nil {
		h.t.Fatal(err)
	}
	return s
}

// reassign publishes a reassigned event for sess's stream.
func (h *harness) reassign(mig string, sess events.Session, deadline time.Time) events.Reassigned {
	h.t.Helper()
	r := events.Reassigned{MigrationID: mig, Stream: sess.Stream, FromHost: "ingest-1", ToHost: "ingest-2",
		ToURL: "rtsp://127.0.0.1:9/" + sess.Stream, Epoch: 2, Deadline: deadline, Reason: "maintenance",
		SessionID: sess.SessionID, ClientID: sess.ClientID, Mode: "push"}
	if _, err := events.Publish(h.ctx, h.env.JS, "test/placement", r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

// noticesStored counts messages on the client's notice subject still in the
// command stream (nobody consumes them in tests that use this).
func (h *harness) noticesStored(client string) uint64 {
	h.t.Helper()
	st, err := h.env.JS.Stream(h.ctx, bus.StreamCommands)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := st.Info(h.ctx, jetstream.WithSubjectFilter(subject.ClientNotice(client)))
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Subjects[subject.ClientNotice(client)]
}

// outcomeLog records every notice outcome event.
type outcomeLog struct {
	mu  sync.Mutex
	all []events.NoticeOutcome
}

func watchOutcomes(t *testing.T, ctx context.Context, js jetstream.JetStream) *outcomeLog {
	t.Helper()
	o := &outcomeLog{}
	cons, err := js.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject.NoticeDelivered("*"), subject.NoticeAcked("*"), subject.NoticeFailed("*")},
	})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_, d, err := events.DecodeAs[events.NoticeOutcome](m.Data())
		if err != nil {
			t.Errorf("outcome event does not decode: %v", err)
			return
		}
		o.mu.Lock()
		o.all = append(o.all, d)
		o.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return o
}

// count returns how many outcomes match outcome (and channel, when not "*")
// for the migration.
func (o *outcomeLog) count(mig, outcome, channel string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, e := range o.all {
		if e.MigrationID == mig && e.Outcome == outcome && (channel == "*" || e.Channel == channel) {
			n++
		}
	}
	return n
}

func (o *outcomeLog) find(mig, outcome string) (events.NoticeOutcome, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.all {
		if e.MigrationID == mig && e.Outcome == outcome {
			return e, true
		}
	}
	return events.NoticeOutcome{}, false
}

func (o *outcomeLog) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var b strings.Builder
	for _, e := range o.all {
		fmt.Fprintf(&b, "[%s %s ch=%s reason=%s attempts=%d] ", e.MigrationID, e.Outcome, e.Channel, e.Reason, e.Attempts)
	}
	return b.String()
}

// waitOutcome waits for one outcome of the migration.
func (h *harness) waitOutcome(mig, outcome string, wait time.Duration) events.NoticeOutcome {
	h.t.Helper()
	var got events.NoticeOutcome
	testutil.CheckFor(h.t, wait, 10*time.Millisecond, func() error {
		e, ok := h.out.find(mig, outcome)
		if !ok {
			return fmt.Errorf("no %s outcome for %s; have %s", outcome, mig, h.out)
		}
		got = e
		return nil
	})
	return got
}

// fakeAgent consumes a client's NATS notices like the real agent does and
// acks them (JetStream ack, then the explicit ack request) unless told not to.
type fakeAgent struct {
	mu      sync.Mutex
	notices []events.MoveNotice
	noAck   bool
}

func (h *harness) natsAgent(client string, ack bool) *fakeAgent {
	h.t.Helper()
	a := &fakeAgent{noAck: !ack}
	cons, err := h.env.JS.CreateOrUpdateConsumer(h.ctx, bus.StreamCommands, jetstream.ConsumerConfig{
		Durable: "client-" + client, FilterSubjects: []string{subject.ClientNotice(client)},
		AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_, n, err := events.DecodeAs[events.MoveNotice](m.Data())
		if err != nil {
			h.t.Errorf("notice does not decode: %v", err)
			_ = m.Term()
			return
		}
		a.mu.Lock()
		a.notices = append(a.notices, n)
		noAck := a.noAck
		a.mu.Unlock()
		_ = m.Ack()
		if !noAck {
			h.ackNATS(n, "nats")
		}
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(cc.Stop)
	return a
}

func (a *fakeAgent) received() []events.MoveNotice {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]events.MoveNotice(nil), a.notices...)
}

// ackNATS sends the explicit ack for n over core NATS and checks the reply.
func (h *harness) ackNATS(n events.MoveNotice, channel string) events.NoticeAckReply {
	b, _ := json.Marshal(events.NoticeAck{NoticeID: n.NoticeID, ClientID: n.ClientID, SessionID: n.SessionID, Channel: channel})
	m, err := h.env.NC.Request(subject.NoticeAck(n.ClientID), b, 5*time.Second)
	if err != nil {
		h.t.Errorf("ack request: %v", err)
		return events.NoticeAckReply{}
	}
	var r events.NoticeAckReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		h.t.Errorf("ack reply: %v", err)
	}
	return r
}

// bearer returns a request with the session's credentials.
func bearer(req *http.Request, sess events.Session, secret string) *http.Request {
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set(events.HeaderSession, sess.SessionID)
	return req
}
