package publisher_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/pion/rtp"

	"github.com/ferrystream/ferry/clients/publisher"
	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/media"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/libs/token"
	"github.com/ferrystream/ferry/services/ingest"
	"github.com/ferrystream/ferry/services/notifier"
	"github.com/ferrystream/ferry/services/placement/client"
)

const secret = "test-token-secret-0123456789"

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// connect opens a NATS connection closed at the end of the test.
func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// placementStub answers placement.v1.choose like the placement service: it
// creates the session (sessions bucket, notice secret returned once), writes
// the placement record, and signs a publish token for the stream's home. move
// reassigns a stream as placement's evacuation does.
type placementStub struct {
	t     testing.TB
	env   *testutil.Env
	mu    sync.Mutex
	hosts map[string]string // host -> rtsp base URL
	order []string
	home  map[string]events.Placement
	sess  map[string]events.Session
	// refuse, when set, makes choose answer 503 (no healthy host).
	refuse bool
}

func newPlacementStub(t testing.TB, env *testutil.Env) *placementStub {
	t.Helper()
	p := &placementStub{t: t, env: env, hosts: map[string]string{}, home: map[string]events.Placement{}, sess: map[string]events.Session{}}
	nc := connect(t, env.URL)
	svc, err := micro.AddService(nc, micro.Config{Name: subject.PlacementService, Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	g := svc.AddGroup(subject.PlacementGroup)
	if err := g.AddEndpoint("choose", micro.HandlerFunc(p.choose)); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *placementStub) addHost(id, rtspURL string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hosts[id] = rtspURL
	p.order = append(p.order, id)
}

func (p *placementStub) choose(r micro.Request) {
	var req client.ChooseRequest
	if err := json.Unmarshal(r.Data(), &req); err != nil {
		_ = r.Error(client.CodeBadRequest, "body: "+err.Error(), nil)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refuse || len(p.order) == 0 {
		_ = r.Error(client.CodeNoCapacity, "no healthy host", nil)
		return
	}
	ctx := context.Background()
	s, ok := p.sess[req.SessionID]
	newSecret := ""
	if !ok {
		newSecret = randHex(16)
		s = events.Session{SessionID: "s-" + randHex(8), Stream: req.Stream, ClientID: req.ClientID,
			Capabilities: req.Capabilities, NoticeSecret: newSecret, CreatedAt: time.Now().UTC()}
		p.sess[s.SessionID] = s
		b, _ := json.Marshal(s)
		if _, err := p.env.Stores.Sessions.Put(ctx, s.SessionID, b); err != nil {
			_ = r.Error(client.CodeInternal, err.Error(), nil)
			return
		}
	}
	pl, ok := p.home[req.Stream]
	if !ok {
		host := p.order[0]
		pl = events.Placement{Stream: req.Stream, Host: host, RTSPURL: p.hosts[host], Epoch: 1, SessionID: s.SessionID,
			ClientID: req.ClientID, Mode: "push", UpdatedAt: time.Now().UTC()}
		p.putPlacement(pl)
		p.home[req.Stream] = pl
	}
	exp := time.Now().Add(10 * time.Minute)
	tok, err := token.Sign([]byte(secret), token.Claims{Stream: req.Stream, Host: pl.Host, Session: s.SessionID,
		ClientID: req.ClientID, Expires: exp, MigrationID: pl.MigrationID})
	if err != nil {
		_ = r.Error(client.CodeInternal, err.Error(), nil)
		return
	}
	_ = r.RespondJSON(client.ChooseResponse{Stream: req.Stream, Host: pl.Host,
		URL: pl.RTSPURL + "/" + req.Stream + "?token=" + tok, SessionID: s.SessionID, Epoch: pl.Epoch,
		ExpiresAt: exp, NoticeSecret: newSecret})
}

func (p *placementStub) putPlacement(pl events.Placement) {
	b, _ := json.Marshal(pl)
	rev, err := p.env.Stores.Placements.Put(context.Background(), events.PlacementKey(pl.Stream), b)
	if err != nil {
		p.t.Errorf("put placement: %v", err)
		return
	}
	// The hosts follow their streams through placement's notices.
	if err := bus.NotifyPlacement(p.env.NC, pl, rev); err != nil {
		p.t.Errorf("notify placement: %v", err)
	}
}

// session returns the session placement created for stream.
func (p *placementStub) session(stream string) events.Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.sess {
		if s.Stream == stream {
			return s
		}
	}
	return events.Session{}
}

// move reassigns stream to host (placement record with epoch+1, then
// reassigned) and returns the migration id.
func (p *placementStub) move(stream, to string, deadline time.Time) string {
	p.t.Helper()
	p.mu.Lock()
	pl := p.home[stream]
	mig := "m-" + randHex(8)
	next := events.Placement{Stream: stream, Host: to, RTSPURL: p.hosts[to], Epoch: pl.Epoch + 1, MigrationID: mig,
		FromHost: pl.Host, Deadline: deadline, SessionID: pl.SessionID, ClientID: pl.ClientID, Mode: "push", UpdatedAt: time.Now().UTC()}
	p.home[stream] = next
	p.putPlacement(next)
	p.mu.Unlock()
	r := events.Reassigned{MigrationID: mig, Stream: stream, FromHost: pl.Host, ToHost: to, ToURL: p.hosts[to] + "/" + stream,
		Epoch: next.Epoch, Deadline: deadline, Reason: "maintenance", SessionID: pl.SessionID, ClientID: pl.ClientID, Mode: "push"}
	if _, err := events.Publish(context.Background(), p.env.JS, "test/placement", r); err != nil {
		p.t.Fatal(err)
	}
	return mig
}

// setHome changes a stream's home without a reassigned event (placement
// after an unpredicted loss).
func (p *placementStub) setHome(stream, host string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := p.home[stream]
	pl.Host, pl.RTSPURL, pl.Epoch = host, p.hosts[host], pl.Epoch+1
	p.home[stream] = pl
	p.putPlacement(pl)
}

// startIngest runs a real ingest host (services/ingest) in process and
// returns its RTSP base URL once it is registered.
func startIngest(t testing.TB, env *testutil.Env, id string) string {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	vars := map[string]string{
		"INGEST_HOST_ID":       id,
		"INGEST_RTSP_ADDR":     addr,
		"FERRY_NATS_URL":       env.URL,
		"FERRY_TOKEN_SECRET":   secret,
		"INGEST_DRAIN_GRACE":   "1s",
		"INGEST_STREAM_GRACE":  "10s",
		"INGEST_UPSTREAM_WAIT": "3s",
		"FERRY_LOG_LEVEL":      "error",
	}
	if lvl := os.Getenv("FERRY_TEST_INGEST_LOG"); lvl != "" {
		// ingest.Run sets zerolog's global time format: racy with -race when
		// several loggers run, so this is for debugging without -race
		vars["FERRY_LOG_LEVEL"], vars["FERRY_LOG_FORMAT"] = lvl, "console"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ingest.Run(ctx, nil, func(k string) string { return vars[k] }, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("ingest %s did not stop", id)
		}
	})
	testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		select {
		case err := <-done:
			t.Fatalf("ingest %s exited: %v", id, err)
		default:
		}
		_, err := env.Stores.Hosts.Get(context.Background(), id)
		return err
	})
	return "rtsp://" + addr
}

// startNotifier runs a notifier replica; it returns its HTTP base URL.
func startNotifier(t testing.TB, env *testutil.Env) string {
	t.Helper()
	cfg := notifier.Default()
	cfg.Instance = "notifier-test"
	cfg.TokenSecret = secret
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.RetryMin, cfg.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	cfg.Lease = 2 * time.Second
	cfg.NATS = bus.Config{URL: env.URL, Replicas: 1}
	nc, err := nats.Connect(env.URL)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	svc, err := notifier.New(cfg, nc, js, testutil.Logger(t).With().Str("svc", "notifier").Logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		nc.Close()
	})
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, svc.Ready)
	return "http://" + svc.HTTPAddr()
}

// syncBuffer is a goroutine-safe bytes.Buffer for the agent's output.
type syncBuffer struct{ testutil.Buffer }

// waitLine waits until the agent printed a line containing all parts.
func (s *syncBuffer) waitLine(t testing.TB, wait time.Duration, parts ...string) string {
	t.Helper()
	var found string
	testutil.CheckFor(t, wait, 10*time.Millisecond, func() error {
		for _, l := range strings.Split(s.String(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(l, p)
			}
			if ok {
				found = l
				return nil
			}
		}
		return fmt.Errorf("no line with %q in output:\n%s", parts, s.String())
	})
	return found
}

type runningAgent struct {
	*publisher.Agent
	out  *syncBuffer
	stop func()
}

// startAgent runs an agent with its own NATS connection.
func startAgent(t testing.TB, env *testutil.Env, mod func(*publisher.Config), src publisher.Source) *runningAgent {
	t.Helper()
	cfg := publisher.Default()
	cfg.Stream, cfg.ClientID = "cam-1", "agent-1"
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	cfg.NATS = bus.Config{URL: env.URL, Replicas: 1}
	if mod != nil {
		mod(&cfg)
	}
	out := &syncBuffer{}
	nc := connect(t, env.URL)
	a, err := publisher.New(cfg, publisher.Deps{NC: nc, Stdout: out, Source: src,
		Log: testutil.Logger(t).With().Str("svc", "agent").Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &runningAgent{Agent: a, out: out, stop: stop}
}

func (a *runningAgent) waitHost(t testing.TB, host string, wait time.Duration) {
	t.Helper()
	testutil.CheckFor(t, wait, 10*time.Millisecond, func() error {
		if st := a.Stats(); st.Host != host {
			return fmt.Errorf("agent on %q, want %q; output:\n%s", st.Host, host, a.out.String())
		}
		return nil
	})
}

// reader plays an RTSP stream (TCP) and measures it with a media.Analyzer.
type reader struct {
	c        *gortsplib.Client
	an       *media.Analyzer
	mu       sync.Mutex
	frames   map[uint64]bool
	redirect string
}

func read(t testing.TB, rawURL string) *reader {
	t.Helper()
	r := &reader{frames: map[uint64]bool{}}
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		u, err := base.ParseURL(rawURL)
		if err != nil {
			return err
		}
		tcp := gortsplib.ProtocolTCP
		c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp,
			OnServerRequest: func(req *base.Request) {
				if req.Method == "REDIRECT" {
					r.mu.Lock()
					r.redirect = strings.Join(req.Header["Location"], ",")
					r.mu.Unlock()
				}
			}}
		if err := c.Start(); err != nil {
			return err
		}
		desc, _, err := c.Describe(u)
		if err != nil {
			c.Close()
			return err
		}
		if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
			c.Close()
			return err
		}
		an := media.NewAnalyzer(desc)
		idx := map[*description.Media]int{}
		for i, m := range desc.Medias {
			idx[m] = i
		}
		c.OnPacketRTPAny(func(medi *description.Media, _ format.Format, pkt *rtp.Packet) {
			an.Add(idx[medi], pkt, time.Now())
			if n, ok := media.FrameCounter(pkt.Payload); ok {
				r.mu.Lock()
				r.frames[n] = true
				r.mu.Unlock()
			}
		})
		if _, err := c.Play(nil); err != nil {
			c.Close()
			return err
		}
		r.c, r.an = c, an
		return nil
	})
	t.Cleanup(r.c.Close)
	return r
}

func (r *reader) report() media.MediaReport {
	rep := r.an.Report()
	if len(rep.Medias) == 0 {
		return media.MediaReport{}
	}
	return rep.Medias[0]
}

func (r *reader) waitFrames(t testing.TB, n uint64, wait time.Duration) {
	t.Helper()
	testutil.CheckFor(t, wait, 10*time.Millisecond, func() error {
		if f := r.report().Frames; f < n {
			return fmt.Errorf("reader has %d frames, want %d", f, n)
		}
		return nil
	})
}

// noticeOutcomes collects notice outcome events.
type noticeOutcomes struct {
	mu  sync.Mutex
	all []events.NoticeOutcome
}

func watchOutcomes(t testing.TB, env *testutil.Env) *noticeOutcomes {
	t.Helper()
	o := &noticeOutcomes{}
	for _, subj := range []string{subject.NoticeDelivered("*"), subject.NoticeAcked("*"), subject.NoticeFailed("*")} {
		sub, err := env.NC.Subscribe(subj, func(m *nats.Msg) {
			if _, d, err := events.DecodeAs[events.NoticeOutcome](m.Data); err == nil {
				o.mu.Lock()
				o.all = append(o.all, d)
				o.mu.Unlock()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := env.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	return o
}

func (o *noticeOutcomes) wait(t testing.TB, mig, outcome string, wait time.Duration) events.NoticeOutcome {
	t.Helper()
	var got events.NoticeOutcome
	testutil.CheckFor(t, wait, 10*time.Millisecond, func() error {
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, e := range o.all {
			if e.MigrationID == mig && e.Outcome == outcome {
				got = e
				return nil
			}
		}
		return errors.New("no " + outcome + " for " + mig)
	})
	return got
}
