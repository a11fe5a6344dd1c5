package notifier_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/libs/token"
	"github.com/ferrystream/ferry/services/notifier"
)

var capsNATS = events.Capabilities{CanMove: true, Channels: []string{"nats"}}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no token secret", nil, nil, "FERRY_TOKEN_SECRET: required (the new URL carries a signed publish token)"},
		{"bad http addr", map[string]string{"FERRY_TOKEN_SECRET": "x", "NOTIFIER_HTTP_ADDR": "nope"}, nil,
			`NOTIFIER_HTTP_ADDR: must be host:port, got "nope"`},
		{"bad metrics addr", map[string]string{"FERRY_TOKEN_SECRET": "x"}, []string{"--metrics-addr", "1.2.3.4"},
			`NOTIFIER_METRICS_ADDR: must be host:port, got "1.2.3.4"`},
		{"retry max below min", map[string]string{"FERRY_TOKEN_SECRET": "x", "NOTIFIER_RETRY_MIN": "2s", "NOTIFIER_RETRY_MAX": "1s"}, nil,
			"NOTIFIER_RETRY_MAX: must be >= NOTIFIER_RETRY_MIN (2s), got 1s"},
		{"zero retry", map[string]string{"FERRY_TOKEN_SECRET": "x"}, []string{"--retry-min", "0s"},
			"NOTIFIER_RETRY_MIN: must be > 0, got 0s"},
		{"short lease", map[string]string{"FERRY_TOKEN_SECRET": "x", "NOTIFIER_LEASE": "10ms"}, nil,
			"NOTIFIER_LEASE: must be >= 1s, got 10ms"},
		{"bad instance", map[string]string{"FERRY_TOKEN_SECRET": "x", "NOTIFIER_INSTANCE": "a b"}, nil,
			`NOTIFIER_INSTANCE: must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$, got "a b"`},
		{"bad nats url", map[string]string{"FERRY_TOKEN_SECRET": "x"}, []string{"--nats", "localhost:4222"},
			`--nats: "localhost:4222" must be a URL like nats://127.0.0.1:4222`},
		{"nats flag scheme", map[string]string{"FERRY_TOKEN_SECRET": "x"}, []string{"--nats", "http://127.0.0.1:4222"},
			`--nats: "http://127.0.0.1:4222": scheme "http" is not a NATS scheme (nats, tls, ws or wss), e.g. nats://127.0.0.1:4222`},
		{"flag parse error", map[string]string{"FERRY_TOKEN_SECRET": "x"}, []string{"--lease", "10x"},
			`--lease: "10x" is not a duration like 30s or 2m`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			cfg, err := notifier.Load(tc.args, getenv, io.Discard)
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
	t.Run("unparsable duration", func(t *testing.T) {
		_, err := notifier.Load(nil, func(k string) string {
			return map[string]string{"NOTIFIER_LEASE": "soon"}[k]
		}, io.Discard)
		if err == nil || err.Error() != `NOTIFIER_LEASE: "soon" is not a duration (e.g. 10s)` {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("valid", func(t *testing.T) {
		cfg, err := notifier.Load([]string{"--http-addr", "127.0.0.1:0"}, func(k string) string {
			return map[string]string{"FERRY_TOKEN_SECRET": "x"}[k]
		}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNotCapableFailsAtOnce(t *testing.T) {
	h := newHarness(t)
	h.startNotifier("n1", nil)
	for _, tc := range []struct {
		name string
		caps events.Capabilities
	}{
		{"cannot move", events.Capabilities{CanMove: false, Channels: []string{"nats"}}},
		{"no channel", events.Capabilities{CanMove: true}},
		{"webhook without url", events.Capabilities{CanMove: true, Channels: []string{"webhook"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("s-nc%d", len(tc.name))
			sess := h.session(id, "agent-"+id, tc.caps)
			mig := "m-" + id
			h.reassign(mig, sess, time.Now().Add(time.Minute))
			f := h.waitOutcome(mig, "failed", 5*time.Second)
			if f.Reason != "not-capable" || f.Attempts != 0 {
				t.Fatalf("failed outcome %+v, want reason not-capable with 0 attempts", f)
			}
			if n := h.noticesStored(sess.ClientID); n != 0 {
				t.Fatalf("%d notices sent to a client that cannot move", n)
			}
		})
	}
}

func TestUnknownSessionFails(t *testing.T) {
	h := newHarness(t)
	h.startNotifier("n1", nil)
	sess := events.Session{SessionID: "s-missing", Stream: "cam-x", ClientID: "agent-x"}
	h.reassign("m-unknown", sess, time.Now().Add(time.Minute))
	if f := h.waitOutcome("m-unknown", "failed", 5*time.Second); f.Reason != "unknown-session" {
		t.Fatalf("reason %q, want unknown-session", f.Reason)
	}
}

func TestNATSNoticeCarriesTokenAndIsAckedOnce(t *testing.T) {
	h := newHarness(t)
	h.startNotifier("n1", nil)
	sess := h.session("s-nats1", "agent-1", capsNATS)
	agent := h.natsAgent("agent-1", true)
	deadline := time.Now().Add(time.Minute).UTC().Truncate(time.Millisecond)
	h.reassign("m-nats1", sess, deadline)

	acked := h.waitOutcome("m-nats1", "acked", 5*time.Second)
	if acked.Channel != "nats" {
		t.Fatalf("acked on channel %q, want nats", acked.Channel)
	}
	got := agent.received()
	if len(got) != 1 {
		t.Fatalf("agent received %d notices, want 1", len(got))
	}
	n := got[0]
	if n.SessionID != "s-nats1" || n.MigrationID != "m-nats1" || n.FromHost != "ingest-1" || n.ToHost != "ingest-2" ||
		!n.OfflineAt.Equal(deadline) || n.Reason != "maintenance" || n.NoticeID != acked.NoticeID {
		t.Fatalf("notice %+v", n)
	}
	u, err := url.Parse(n.NewURL)
	if err != nil || u.Host != "127.0.0.1:9" || u.Path != "/"+sess.Stream {
		t.Fatalf("new url %q", n.NewURL)
	}
	claims, err := token.Verify([]byte(tokenSecret), u.Query().Get(token.QueryParam), time.Now())
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	if err := claims.Check(sess.Stream, "ingest-2"); err != nil || claims.Session != "s-nats1" || claims.MigrationID != "m-nats1" ||
		!claims.Expires.Equal(deadline.Add(5*time.Minute)) {
		t.Fatalf("claims %+v (%v)", claims, err)
	}
	testutil.CheckFor(t, 3*time.Second, 10*time.Millisecond, func() error {
		if n := h.out.count("m-nats1", "delivered", "nats"); n != 1 {
			return fmt.Errorf("%d delivered events", n)
		}
		return nil
	})
	// a second ack is accepted and changes nothing
	if r := h.ackNATS(n, "nats"); !r.OK || r.State != "acked" {
		t.Fatalf("second ack reply %+v", r)
	}
	// an ack from another client is refused
	other := n
	other.ClientID = "agent-2"
	if r := h.ackNATS(other, "nats"); r.OK || r.Error == "" {
		t.Fatalf("foreign ack reply %+v, want refused", r)
	}
	if c := h.out.count("m-nats1", "acked", "*"); c != 1 {
		t.Fatalf("%d acked events, want 1", c)
	}
}

func TestDeadline(t *testing.T) {
	h := newHarness(t)
	h.startNotifier("n1", func(c *notifier.Config) { c.UrgentWindow = 0 })
	t.Run("already passed", func(t *testing.T) {
		sess := h.session("s-late", "agent-late", capsNATS)
		h.reassign("m-late", sess, time.Now().Add(-time.Second))
		if f := h.waitOutcome("m-late", "failed", 5*time.Second); f.Reason != "deadline" {
			t.Fatalf("reason %q, want deadline", f.Reason)
		}
		if n := h.noticesStored("agent-late"); n != 0 {
			t.Fatalf("%d notices sent after the deadline", n)
		}
	})
	t.Run("no ack before it", func(t *testing.T) {
		sess := h.session("s-silent", "agent-silent", capsNATS)
		h.reassign("m-silent", sess, time.Now().Add(1500*time.Millisecond))
		h.waitOutcome("m-silent", "delivered", 5*time.Second)
		f := h.waitOutcome("m-silent", "failed", 5*time.Second)
		if f.Reason != "deadline" {
			t.Fatalf("reason %q, want deadline", f.Reason)
		}
		// an ack after the deadline is refused with the state
		var n events.MoveNotice
		n.NoticeID, n.ClientID, n.SessionID = f.NoticeID, "agent-silent", "s-silent"
		if r := h.ackNATS(n, "nats"); r.OK || r.State != "failed" {
			t.Fatalf("late ack reply %+v, want state failed", r)
		}
		if c := h.out.count("m-silent", "acked", "*"); c != 0 {
			t.Fatalf("acked after failing")
		}
	})
}

// TestUrgentMove: a move decided after its deadline (the host was declared
// down while its publisher may still be connected to it, e.g. the host is cut
// off from NATS) is still sent, with an offline time a short window ahead.
func TestUrgentMove(t *testing.T) {
	h := newHarness(t)
	h.startNotifier("n1", func(c *notifier.Config) { c.UrgentWindow = 10 * time.Second })
	sess := h.session("s-down", "agent-down", capsNATS)
	before := time.Now()
	h.reassign("m-down", sess, before.Add(-time.Second))
	h.waitOutcome("m-down", "delivered", 5*time.Second)
	if n := h.noticesStored("agent-down"); n != 1 {
		t.Fatalf("%d notices stored, want 1", n)
	}
	if c := h.out.count("m-down", "failed", "*"); c != 0 {
		t.Fatalf("urgent move reported failed")
	}
}

// webhookSink is a client webhook: it verifies signatures with the session's
// secret and fails the first `failFirst` deliveries with 503.
type webhookSink struct {
	secret    []byte
	failFirst atomic.Int32
	posts     atomic.Int32
	mu        sync.Mutex
	ok        map[string]int // notice id -> 2xx answers
	bad       int
	notices   []events.MoveNotice
}

func newWebhookSink(t *testing.T, secret string) (*webhookSink, *httptest.Server) {
	s := &webhookSink{secret: []byte(secret), ok: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.posts.Add(1)
		body, _ := io.ReadAll(r.Body)
		if _, err := events.VerifyNoticeSignature(s.secret, r.Header.Get(events.HeaderSignature), body, time.Now(), 0); err != nil {
			s.mu.Lock()
			s.bad++
			s.mu.Unlock()
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if s.failFirst.Add(-1) >= 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, n, err := events.DecodeAs[events.MoveNotice](body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.ok[n.NoticeID]++
		s.notices = append(s.notices, n)
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *webhookSink) accepted() []events.MoveNotice {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]events.MoveNotice(nil), s.notices...)
}

func TestWebhookRetriedSignedAndAcked(t *testing.T) {
	h := newHarness(t)
	h.startNotifier("n1", nil)
	sink, srv := newWebhookSink(t, "secret-s-wh1")
	sink.failFirst.Store(2)
	sess := h.session("s-wh1", "agent-wh", events.Capabilities{CanMove: true, Channels: []string{"webhook"}, WebhookURL: srv.URL + "/hook"})
	h.reassign("m-wh1", sess, time.Now().Add(time.Minute))
	d := h.waitOutcome("m-wh1", "delivered", 5*time.Second)
	if d.Channel != "webhook" || d.Attempts != 3 {
		t.Fatalf("delivered %+v, want webhook after 3 attempts", d)
	}
	got := sink.accepted()
	if len(got) != 1 || sink.bad != 0 {
		t.Fatalf("accepted %d notices, %d bad signatures", len(got), sink.bad)
	}
	if r := h.ackNATS(got[0], "webhook"); !r.OK {
		t.Fatalf("ack reply %+v", r)
	}
	if a := h.waitOutcome("m-wh1", "acked", 5*time.Second); a.Channel != "webhook" {
		t.Fatalf("acked %+v", a)
	}
}

// sseClient opens a notices stream and returns the response.
func sseOpen(t *testing.T, ctx context.Context, base string, sess events.Session, secret string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/clients/"+sess.ClientID+"/notices", nil)
	if secret != "" {
		bearer(req, sess, secret)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestSSEAuthAndDelivery(t *testing.T) {
	h := newHarness(t)
	n1 := h.startNotifier("n1", nil)
	base := "http://" + n1.svc.HTTPAddr()
	sess := h.session("s-sse1", "agent-sse", events.Capabilities{CanMove: true, Channels: []string{"sse"}})
	other := h.session("s-sse2", "agent-other", events.Capabilities{CanMove: true, Channels: []string{"sse"}})

	for _, tc := range []struct {
		name   string
		sess   events.Session
		secret string
		noSess bool
	}{
		{"no token", sess, "", false},
		{"wrong token", sess, "secret-wrong", false},
		{"another session's token", sess, other.NoticeSecret, false},
		{"no session", sess, sess.NoticeSecret, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(h.ctx, http.MethodGet, base+"/v1/clients/agent-sse/notices", nil)
			if tc.secret != "" {
				req.Header.Set("Authorization", "Bearer "+tc.secret)
			}
			if !tc.noSess {
				req.Header.Set(events.HeaderSession, tc.sess.SessionID)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", res.StatusCode)
			}
		})
	}
	// a client's secret does not open another client's stream
	req, _ := http.NewRequestWithContext(h.ctx, http.MethodGet, base+"/v1/clients/agent-sse/notices", nil)
	bearer(req, other, other.NoticeSecret)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("other client's credentials: %v %v", res.StatusCode, err)
	}

	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	res := sseOpen(t, ctx, base, sess, sess.NoticeSecret)
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	notices := make(chan events.MoveNotice, 4)
	go readSSE(res.Body, notices)

	h.reassign("m-sse1", sess, time.Now().Add(time.Minute))
	var n events.MoveNotice
	select {
	case n = <-notices:
	case <-time.After(5 * time.Second):
		t.Fatalf("no notice on the stream; outcomes %s", h.out)
	}
	if n.MigrationID != "m-sse1" || n.SessionID != "s-sse1" {
		t.Fatalf("notice %+v", n)
	}
	// ack over HTTP: wrong token refused, right one accepted
	ack, _ := json.Marshal(events.NoticeAck{NoticeID: n.NoticeID, Channel: "sse"})
	for _, tc := range []struct {
		secret string
		want   int
	}{{"nope", http.StatusUnauthorized}, {sess.NoticeSecret, http.StatusOK}} {
		req, _ := http.NewRequestWithContext(h.ctx, http.MethodPost, base+"/v1/clients/agent-sse/acks", strings.NewReader(string(ack)))
		res, err := http.DefaultClient.Do(bearer(req, sess, tc.secret))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Fatalf("ack with %q: status %d, want %d", tc.secret, res.StatusCode, tc.want)
		}
	}
	if a := h.waitOutcome("m-sse1", "acked", 5*time.Second); a.Channel != "sse" {
		t.Fatalf("acked %+v", a)
	}
	if d := h.waitOutcome("m-sse1", "delivered", 5*time.Second); d.Channel != "sse" {
		t.Fatalf("delivered %+v", d)
	}
}

// readSSE parses "event: notice" frames from r into out.
func readSSE(r io.Reader, out chan<- events.MoveNotice) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var event, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event == "notice" {
				if _, n, err := events.DecodeAs[events.MoveNotice]([]byte(data)); err == nil {
					out <- n
				}
			}
			event, data = "", ""
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func TestRedeliveredReassignedSendsOneNotice(t *testing.T) {
	h := newHarness(t)
	h.startNotifier("n1", nil)
	sess := h.session("s-dup", "agent-dup", capsNATS)
	r := h.reassign("m-dup", sess, time.Now().Add(time.Minute))
	h.waitOutcome("m-dup", "delivered", 5*time.Second)
	// the same event again, as a new stream message (a publisher retrying past
	// the dedup window gives the same event id under another Nats-Msg-Id)
	_, body, err := events.Marshal("test/placement", r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.env.JS.Publish(h.ctx, r.EventSubject(), body); err != nil {
		t.Fatal(err)
	}
	agent := h.natsAgent("agent-dup", true)
	h.waitOutcome("m-dup", "acked", 5*time.Second)
	// give the copy time to be handled: the consumer has nothing pending once it was
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		c, err := h.env.JS.Consumer(h.ctx, "FERRY_EVENTS", "notifier-reassigned")
		if err != nil {
			return err
		}
		info, err := c.Info(h.ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("consumer pending %d, ack pending %d", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	if got := agent.received(); len(got) != 1 {
		t.Fatalf("agent received %d notices, want 1", len(got))
	}
	if c := h.out.count("m-dup", "delivered", "*"); c != 1 {
		t.Fatalf("%d delivered events, want 1", c)
	}
}

func TestReplicasShareWorkWithoutDuplicates(t *testing.T) {
	h := newHarness(t)
	h.startNotifier("n1", nil)
	h.startNotifier("n2", nil)
	h.startNotifier("n3", nil)
	const streams = 30
	agents := map[string]*fakeAgent{}
	for i := range streams {
		client := fmt.Sprintf("agent-r%d", i)
		sess := h.session(fmt.Sprintf("s-r%d", i), client, capsNATS)
		agents[client] = h.natsAgent(client, true)
		h.reassign(fmt.Sprintf("m-r%d", i), sess, time.Now().Add(time.Minute))
	}
	for i := range streams {
		h.waitOutcome(fmt.Sprintf("m-r%d", i), "acked", 10*time.Second)
	}
	for client, a := range agents {
		if n := len(a.received()); n != 1 {
			t.Errorf("%s received %d notices, want 1", client, n)
		}
	}
	for i := range streams {
		mig := fmt.Sprintf("m-r%d", i)
		if d, a := h.out.count(mig, "delivered", "*"), h.out.count(mig, "acked", "*"); d != 1 || a != 1 {
			t.Errorf("%s: %d delivered, %d acked events, want 1 and 1", mig, d, a)
		}
	}
}

func TestRestartMidDeliveryDeliversOnce(t *testing.T) {
	h := newHarness(t)
	first := h.startNotifier("n1", nil)
	sink, srv := newWebhookSink(t, "secret-s-rs")
	sink.failFirst.Store(1 << 20) // the webhook is down until we say so
	sess := h.session("s-rs", "agent-rs", events.Capabilities{CanMove: true, Channels: []string{"nats", "webhook"}, WebhookURL: srv.URL})
	h.reassign("m-rs", sess, time.Now().Add(time.Minute))

	// NATS delivered (stored for the agent, which is not running yet), the
	// webhook failing: the notifier is mid-delivery
	h.waitOutcome("m-rs", "delivered", 5*time.Second)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if sink.posts.Load() < 2 {
			return errors.New("webhook not retried yet")
		}
		return nil
	})
	first.stop()
	postsAtStop := sink.posts.Load()

	second := h.startNotifier("n1", nil) // the same replica, restarted
	_ = second
	sink.failFirst.Store(0)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if len(sink.accepted()) == 0 {
			return fmt.Errorf("webhook not delivered after the restart (%d posts, %d before)", sink.posts.Load(), postsAtStop)
		}
		return nil
	})
	agent := h.natsAgent("agent-rs", true)
	h.waitOutcome("m-rs", "acked", 5*time.Second)
	testutil.CheckFor(t, 3*time.Second, 10*time.Millisecond, func() error {
		if c := h.out.count("m-rs", "delivered", "webhook"); c != 1 {
			return fmt.Errorf("%d webhook delivered events", c)
		}
		return nil
	})

	if n := len(agent.received()); n != 1 {
		t.Fatalf("agent received %d NATS notices, want 1 (the restart must not resend)", n)
	}
	if n := len(sink.accepted()); n != 1 {
		t.Fatalf("webhook accepted %d notices, want 1", n)
	}
	if c := h.out.count("m-rs", "delivered", "nats"); c != 1 {
		t.Fatalf("%d nats delivered events, want 1", c)
	}
	if c := h.out.count("m-rs", "acked", "*"); c != 1 {
		t.Fatalf("%d acked events, want 1", c)
	}
	d, _ := h.out.find("m-rs", "acked")
	if d.Channel != "nats" {
		t.Fatalf("acked via %q", d.Channel)
	}
}

// TestReplicaCrashMidDelivery: the replica delivering a notice dies without
// handing it back; another replica takes it over once the lease and the
// message's ack wait expire, skips the channel already delivered, and the
// notice is still delivered and acked once.
func TestReplicaCrashMidDelivery(t *testing.T) {
	h := newHarness(t)
	replicas := map[string]*runningNotifier{"n1": h.startNotifier("n1", nil), "n2": h.startNotifier("n2", nil)}
	sink, srv := newWebhookSink(t, "secret-s-crash")
	sink.failFirst.Store(1 << 20)
	sess := h.session("s-crash", "agent-crash", events.Capabilities{CanMove: true, Channels: []string{"nats", "webhook"}, WebhookURL: srv.URL})
	h.reassign("m-crash", sess, time.Now().Add(time.Minute))
	h.waitOutcome("m-crash", "delivered", 5*time.Second)

	var owner string
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		kv, err := h.env.JS.KeyValue(h.ctx, "notices")
		if err != nil {
			return err
		}
		keys, err := kv.ListKeys(h.ctx)
		if err != nil {
			return err
		}
		for k := range keys.Keys() {
			e, err := kv.Get(h.ctx, k)
			if err != nil {
				return err
			}
			var rec struct{ Owner string }
			_ = json.Unmarshal(e.Value(), &rec)
			owner = rec.Owner
		}
		if owner == "" {
			return errors.New("no owner yet")
		}
		return nil
	})
	replicas[owner].crash()
	crashed := time.Now()
	sink.failFirst.Store(0)
	testutil.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		if len(sink.accepted()) == 0 {
			return fmt.Errorf("webhook not delivered after %s crashed", owner)
		}
		return nil
	})
	t.Logf("%s crashed; the other replica delivered the webhook %v later", owner, time.Since(crashed).Round(time.Millisecond))
	agent := h.natsAgent("agent-crash", true)
	h.waitOutcome("m-crash", "acked", 5*time.Second)
	if n := len(agent.received()); n != 1 {
		t.Fatalf("agent received %d NATS notices, want 1", n)
	}
	if n := len(sink.accepted()); n != 1 {
		t.Fatalf("webhook accepted %d notices, want 1", n)
	}
	if c := h.out.count("m-crash", "delivered", "nats"); c != 1 {
		t.Fatalf("%d nats delivered events, want 1", c)
	}
}

// TestRunServesReadyz runs the notifier as ferry-notifier does (Run with
// env and flags) and waits for /readyz.
func TestRunServesReadyz(t *testing.T) {
	env := testutil.NATS(t)
	maddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- notifier.Run(ctx, []string{"--nats", env.URL, "--metrics-addr", maddr, "--http-addr", "127.0.0.1:0"},
			func(k string) string {
				return map[string]string{"FERRY_TOKEN_SECRET": "x", "NOTIFIER_INSTANCE": "run-test", "FERRY_LOG_LEVEL": "error"}[k]
			}, io.Discard)
	}()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		select {
		case err := <-done:
			t.Fatalf("Run returned %v", err)
		default:
		}
		res, err := http.Get("http://" + maddr + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", res.StatusCode)
		}
		return nil
	})
	res, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), "ferry_notifier_sse_streams 0") {
		t.Fatalf("metrics lack the notifier's gauges")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
