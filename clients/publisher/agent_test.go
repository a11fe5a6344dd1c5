package publisher_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferrystream/ferry/clients/publisher"
	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/libs/token"
)

func TestConfigErrors(t *testing.T) {
	base := map[string]string{"PUBLISH_STREAM": "cam-1", "PUBLISH_CLIENT_ID": "agent-1"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no stream", map[string]string{"PUBLISH_CLIENT_ID": "a"}, nil, `--stream is required (or set PUBLISH_STREAM)`},
		{"bad stream", base, []string{"--stream", "a.b"}, `PUBLISH_STREAM: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$, got "a.b"`},
		{"no client", map[string]string{"PUBLISH_STREAM": "cam-1"}, nil, `--client-id is required (or set PUBLISH_CLIENT_ID)`},
		{"flag parse error", base, []string{"--fps", "ten"}, `--fps: "ten" is not an integer`},
		{"nats flag scheme", base, []string{"--nats", "http://127.0.0.1:4222"}, `--nats: "http://127.0.0.1:4222": scheme "http" is not a NATS scheme (nats, tls, ws or wss), e.g. nats://127.0.0.1:4222`},
		{"bad client", base, []string{"--client-id", "a.b"}, `PUBLISH_CLIENT_ID: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$, got "a.b"`},
		{"bad source", base, []string{"--source", "http://x"}, `PUBLISH_SOURCE: "http://x": must be synthetic, mjpeg, rtsp://... or listen://host:port/path`},
		{"listen without path", base, []string{"--source", "listen://127.0.0.1:8555"}, `PUBLISH_SOURCE: "listen://127.0.0.1:8555": must be listen://host:port/path (no path)`},
		{"fps", base, []string{"--fps", "0"}, "PUBLISH_FPS: must be 1..120, got 0"},
		{"channel", base, []string{"--channels", "nats,pigeon"}, `PUBLISH_CHANNELS: unknown channel "pigeon" (nats, sse, webhook)`},
		{"sse without notifier", base, []string{"--channels", "sse"}, "PUBLISH_NOTIFIER_URL: required with the sse channel"},
		{"webhook listen", base, []string{"--channels", "webhook", "--webhook-listen", "x"}, `PUBLISH_WEBHOOK_LISTEN: must be host:port, got "x"`},
		{"retry", base, []string{"--retry-min", "2s", "--retry-max", "1s"}, "PUBLISH_RETRY_MAX: must be >= PUBLISH_RETRY_MIN (2s), got 1s"},
		{"nats url", base, []string{"--nats", "localhost"}, `--nats: "localhost" must be a URL like nats://127.0.0.1:4222`},
		{"nats env", map[string]string{"PUBLISH_STREAM": "cam-1", "PUBLISH_CLIENT_ID": "a", "FERRY_NATS_URL": "http://x:4222"}, nil, `FERRY_NATS_URL: "http://x:4222": scheme "http" is not a NATS scheme (nats, tls, ws or wss), e.g. nats://127.0.0.1:4222`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := publisher.Load(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
	t.Run("env then flags", func(t *testing.T) {
		env := map[string]string{"PUBLISH_STREAM": "cam-9", "PUBLISH_CLIENT_ID": "a", "PUBLISH_CHANNELS": "nats,webhook", "PUBLISH_FPS": "30"}
		cfg, err := publisher.Load([]string{"--fps", "10", "--json"}, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if cfg.Stream != "cam-9" || cfg.FPS != 10 || !cfg.JSON || strings.Join(cfg.Channels, ",") != "nats,webhook" {
			t.Fatalf("config %+v", cfg)
		}
	})
}

// agentEnv is an agent publishing to miniHost ingest-a (and ingest-b known
// to placement) without a notifier: tests send notices themselves.
type agentEnv struct {
	env  *testutil.Env
	pl   *placementStub
	a, b *miniHost
	ag   *runningAgent
	sess events.Session
}

func newAgentEnv(t *testing.T, channels ...string) *agentEnv {
	t.Helper()
	e := &agentEnv{env: testutil.NATS(t)}
	e.pl = newPlacementStub(t, e.env)
	e.a, e.b = newMiniHost(t, "ingest-a"), newMiniHost(t, "ingest-b")
	e.pl.addHost("ingest-a", e.a.url)
	e.pl.addHost("ingest-b", e.b.url)
	e.ag = startAgent(t, e.env, func(c *publisher.Config) {
		c.Channels = channels
		c.RedirectOverlap = 3 * time.Second
	}, nil)
	e.ag.waitHost(t, "ingest-a", 10*time.Second)
	e.sess = e.pl.session("cam-1")
	if len(channels) > 0 && channels[0] == publisher.ChannelNATS {
		testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			_, err := e.env.JS.Consumer(context.Background(), bus.StreamCommands, publisher.NoticeDurable("agent-1"))
			return err
		})
	}
	return e
}

// notice builds a move notice to ingest-b for the agent's session.
func (e *agentEnv) notice(t *testing.T, id string, offline time.Time) events.MoveNotice {
	t.Helper()
	tok, err := token.Sign([]byte(secret), token.Claims{Stream: "cam-1", Host: "ingest-b", Session: e.sess.SessionID,
		ClientID: "agent-1", Expires: time.Now().Add(time.Minute), MigrationID: "m-" + id})
	if err != nil {
		t.Fatal(err)
	}
	return events.MoveNotice{NoticeID: "n-" + id, MigrationID: "m-" + id, ClientID: "agent-1", Stream: "cam-1",
		SessionID: e.sess.SessionID, FromHost: "ingest-a", ToHost: "ingest-b", NewURL: e.b.url + "/cam-1?token=" + tok,
		OfflineAt: offline, Reason: "maintenance"}
}

func (e *agentEnv) sendNATS(t *testing.T, n events.MoveNotice) {
	t.Helper()
	if _, err := events.Publish(context.Background(), e.env.JS, "test/notifier", n); err != nil {
		t.Fatal(err)
	}
}

func TestWebhookSignatures(t *testing.T) {
	e := newAgentEnv(t, publisher.ChannelWebhook)
	hook := e.ag.WebhookURL()
	// a well-formed notice for a session the agent does not own: a valid
	// signature gets it past authentication to the agent, which refuses it (409)
	n := e.notice(t, "wh", time.Now().Add(time.Minute))
	n.SessionID = "s-someoneelse"
	_, body, err := events.Marshal("test/notifier", n)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	validSig := events.SignNotice([]byte(e.sess.NoticeSecret), now, body)
	post := func(sig string, b []byte) int {
		req, _ := http.NewRequest(http.MethodPost, hook, bytes.NewReader(b))
		if sig != "" {
			req.Header.Set(events.HeaderSignature, sig)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for _, tc := range []struct {
		name string
		sig  string
		body []byte
		want int
		line string
	}{
		{"unsigned", "", body, http.StatusUnauthorized, "notice signature missing"},
		{"forged", events.SignNotice([]byte("not-the-secret"), now, body), body, http.StatusUnauthorized, "notice signature does not match"},
		{"altered body", validSig, bytes.Replace(body, []byte("maintenance"), []byte("maintenancE"), 1), http.StatusUnauthorized, "notice signature does not match"},
		{"too old", events.SignNotice([]byte(e.sess.NoticeSecret), now.Add(-6*time.Minute), body), body, http.StatusUnauthorized, "outside the allowed window"},
		{"valid, not our session", validSig, body, http.StatusConflict, "ignored notice n-wh (webhook): stream cam-1 session s-someoneelse is not ours"},
		{"replayed", validSig, body, http.StatusUnauthorized, "replayed signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := post(tc.sig, tc.body); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
			e.ag.out.waitLine(t, time.Second, tc.line)
		})
	}
	if st := e.ag.Stats(); st.Moves != 0 || st.Host != "ingest-a" || e.b.publishers() != 0 {
		t.Fatalf("agent moved: %+v", st)
	}
}

func TestNoticeIgnored(t *testing.T) {
	e := newAgentEnv(t, publisher.ChannelNATS)
	for _, tc := range []struct {
		name string
		mod  func(*events.MoveNotice)
		line string
	}{
		{"another session", func(n *events.MoveNotice) { n.SessionID = "s-0000000000000000" },
			"ignored notice n-other (nats): stream cam-1 session s-0000000000000000 is not ours"},
		{"another stream", func(n *events.MoveNotice) { n.Stream = "cam-2"; n.NoticeID = "n-stream" },
			"ignored notice n-stream (nats): stream cam-2"},
		{"after the deadline", func(n *events.MoveNotice) { n.OfflineAt = time.Now().Add(-time.Second); n.NoticeID = "n-late" },
			"ignored notice n-late (nats): it arrived after its deadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := e.notice(t, "other", time.Now().Add(time.Minute))
			tc.mod(&n)
			e.sendNATS(t, n)
			e.ag.out.waitLine(t, 5*time.Second, tc.line)
		})
	}
	if st := e.ag.Stats(); st.Moves != 0 || st.Host != "ingest-a" || e.b.publishers() != 0 {
		t.Fatalf("agent acted on an ignored notice: %+v, %d publishers on ingest-b", st, e.b.publishers())
	}
}

// TestMoveAtOfflineTime: the old host never ends the old session, so the
// agent writes to both until the old host's expected offline time, then drops
// the old connection. Every frame reached at least one host.
func TestMoveAtOfflineTime(t *testing.T) {
	e := newAgentEnv(t, publisher.ChannelNATS)
	offline := time.Now().Add(1500 * time.Millisecond)
	e.sendNATS(t, e.notice(t, "off", offline))
	e.ag.out.waitLine(t, 5*time.Second, "moving cam-1 ingest-a -> ingest-b (migration m-off)")
	line := e.ag.out.waitLine(t, 5*time.Second, "moved cam-1 to ingest-b: overlap", "0 frames dropped", "offline time was reached")
	t.Log(line)
	if !time.Now().After(offline) {
		t.Fatalf("dropped the old connection before the offline time")
	}
	st := e.ag.Stats()
	if st.LastOverlap < time.Second || st.Uplinks != 1 || st.Host != "ingest-b" {
		t.Fatalf("stats %+v: want about 1.5s of overlap, then one uplink", st)
	}
	// the overlap: frames reached both hosts
	both := 0
	fa, fb := e.a.frameSet(), e.b.frameSet()
	for k := range fb {
		if fa[k] > 0 {
			both++
		}
	}
	if both < 20 {
		t.Fatalf("only %d frames went to both hosts", both)
	}
	waitMoreFrames(t, e.b, 25)
	lo, hi, missing := contiguous(e.a.frameSet(), e.b.frameSet())
	if len(missing) != 0 {
		t.Fatalf("frames %d..%d: %d missing at both hosts (%v)", lo, hi, len(missing), missing[:min(10, len(missing))])
	}
	if rb := e.b.report(); rb.SeqGaps != 0 || rb.TSBackwards != 0 {
		t.Fatalf("new host saw %d sequence gaps, %d timestamps backwards", rb.SeqGaps, rb.TSBackwards)
	}
}

func waitMoreFrames(t *testing.T, h *miniHost, n int) {
	t.Helper()
	start := len(h.frameSet())
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := len(h.frameSet()); got < start+n {
			return fmt.Errorf("%s: %d frames, want %d", h.id, got, start+n)
		}
		return nil
	})
}

// TestInBandRedirect: the host writes a raw RTSP REDIRECT on the publisher's
// connection; the agent blocks in OnServerRequest until its new session
// records, so the old connection (closed by gortsplib when the callback
// returns) overlaps the new one.
func TestInBandRedirect(t *testing.T) {
	for _, tc := range []struct {
		name      string
		withToken bool
	}{
		{"location with token", true},
		{"location without token: placement is asked", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAgentEnv(t)
			waitMoreFrames(t, e.a, 10)
			loc := e.b.url + "/cam-1"
			if tc.withToken {
				tok, _ := token.Sign([]byte(secret), token.Claims{Stream: "cam-1", Host: "ingest-b", Session: e.sess.SessionID,
					Expires: time.Now().Add(time.Minute), MigrationID: "m-redir"})
				loc += "?token=" + tok
			} else {
				e.pl.setHome("cam-1", "ingest-b")
			}
			e.a.redirect(loc)
			e.ag.out.waitLine(t, 5*time.Second, "ingest-a sent an in-band REDIRECT to "+e.b.url+"/cam-1")
			line := e.ag.out.waitLine(t, 5*time.Second, "moved cam-1 to ingest-b: overlap", "0 frames dropped")
			t.Log(line)
			e.ag.waitHost(t, "ingest-b", 5*time.Second)
			waitMoreFrames(t, e.b, 25)
			lo, hi, missing := contiguous(e.a.frameSet(), e.b.frameSet())
			if len(missing) != 0 {
				t.Fatalf("frames %d..%d: %d missing at both hosts", lo, hi, len(missing))
			}
			if st := e.ag.Stats(); st.Moves != 1 || st.Uplinks != 1 || st.FramesDropped != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestConnectionLostWithoutNotice: the host dies; the agent asks placement
// again at once, backs off while placement still names the dead host, then
// republishes to the new home and reports the gap.
func TestConnectionLostWithoutNotice(t *testing.T) {
	e := newAgentEnv(t, publisher.ChannelNATS)
	waitMoreFrames(t, e.a, 10)
	e.a.kill()
	e.ag.out.waitLine(t, 5*time.Second, "lost cam-1 on ingest-a without notice")
	e.ag.out.waitLine(t, 5*time.Second, "cannot publish cam-1 yet") // placement still says ingest-a
	e.pl.setHome("cam-1", "ingest-b")
	line := e.ag.out.waitLine(t, 10*time.Second, "republished cam-1 to ingest-b after a gap of")
	t.Log(line)
	st := e.ag.Stats()
	if st.Gaps != 1 || st.Host != "ingest-b" || st.FramesDropped == 0 {
		t.Fatalf("stats %+v: want one gap with dropped frames, on ingest-b", st)
	}
	if !strings.Contains(line, fmt.Sprintf("(%d frames dropped)", st.FramesDropped)) {
		t.Fatalf("line %q does not report the %d dropped frames", line, st.FramesDropped)
	}
	waitMoreFrames(t, e.b, 10)
}

func TestJSONLines(t *testing.T) {
	env := testutil.NATS(t)
	pl := newPlacementStub(t, env)
	h := newMiniHost(t, "ingest-a")
	pl.addHost("ingest-a", h.url)
	ag := startAgent(t, env, func(c *publisher.Config) { c.JSON = true }, nil)
	ag.waitHost(t, "ingest-a", 10*time.Second)
	line := ag.out.waitLine(t, time.Second, `"event":"published"`)
	var v map[string]any
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatalf("not JSON: %q", line)
	}
	if v["stream"] != "cam-1" || v["host"] != "ingest-a" || !strings.HasPrefix(fmt.Sprint(v["session_id"]), "s-") ||
		!strings.HasPrefix(fmt.Sprint(v["msg"]), "published cam-1 to ingest-a (session s-") {
		t.Fatalf("line %v", v)
	}
}

// TestRunConfigErrors: one configuration error is one line; several come
// under one heading, one per line (the binary prefixes the first line only).
func TestRunConfigErrors(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--client-id", "agent-1"}, "--stream is required (or set PUBLISH_STREAM)"},
		{nil, "invalid configuration:\n--stream is required (or set PUBLISH_STREAM)\n--client-id is required (or set PUBLISH_CLIENT_ID)"},
	} {
		err := publisher.Run(context.Background(), tc.args, noEnv, io.Discard)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Run(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestRunServesMetrics runs the agent as ferry-publish does (Run with flags)
// and reads its metrics and readiness.
func TestRunServesMetrics(t *testing.T) {
	env := testutil.NATS(t)
	pl := newPlacementStub(t, env)
	h := newMiniHost(t, "ingest-a")
	pl.addHost("ingest-a", h.url)
	maddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- publisher.Run(ctx, []string{"--stream", "cam-7", "--client-id", "agent-7", "--source", "synthetic",
			"--channels", "nats", "--nats", env.URL, "--metrics-addr", maddr, "--json"},
			func(k string) string { return map[string]string{"FERRY_LOG_LEVEL": "error"}[k] }, out)
	}()
	out.waitLine(t, 10*time.Second, `"event":"published"`, `"host":"ingest-a"`)
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		res, err := http.Get("http://" + maddr + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", res.StatusCode)
		}
		res, err = http.Get("http://" + maddr + "/metrics")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, want := range []string{`ferry_publish_uplinks{stream="cam-7"} 1`, `ferry_publish_gaps_total{stream="cam-7"} 0`,
			`ferry_publish_frames_dropped_total{stream="cam-7"} 0`} {
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("metrics lack %q", want)
			}
		}
		if strings.Contains(string(b), `ferry_publish_frames_sent_total{stream="cam-7"} 0`) {
			return errors.New("no frames sent yet")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	out.waitLine(t, time.Second, `"event":"stopped"`)
}

// TestHelpAndVersion checks that -h opens with the description paragraph and
// spells flags with two dashes, and that --version prints one line.
func TestHelpAndVersion(t *testing.T) {
	var out strings.Builder
	if _, err := publisher.Load([]string{"-h"}, func(string) string { return "" }, &out); !errors.Is(err, publisher.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if !strings.HasPrefix(out.String(), "ferry-publish is Ferry's camera-side agent: ") ||
		!strings.Contains(out.String(), "\n  --stream string\n") || strings.Contains(out.String(), "\n  -stream") {
		t.Errorf("usage:\n%s", out.String())
	}
	out.Reset()
	if _, err := publisher.Load([]string{"--version"}, func(string) string { return "" }, &out); !errors.Is(err, publisher.ErrHelp) {
		t.Fatalf("--version: %v", err)
	}
	if !strings.HasPrefix(out.String(), "ferry-publish ") || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("version: %q", out.String())
	}
}
