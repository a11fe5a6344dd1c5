package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	ftu "github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/libs/token"
	"github.com/ferrystream/ferry/services/placement/client"
)

func choose(stream, clientID string) client.ChooseRequest {
	return client.ChooseRequest{Stream: stream, ClientID: clientID,
		Capabilities: events.Capabilities{CanMove: true, Channels: []string{"nats"}}}
}

func TestChooseRespectsCapacityAndSpreads(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 2)
	h.host("h2", "zone-a", 2)
	h.host("h3", "zone-b", 2)
	h.host("edge-1", "zone-c", 100, func(r *events.HostRecord) { r.Role = "edge" })
	h.start(testConfig("p1"), false)
	c := h.client()
	ctx := h.ctx

	var got []client.ChooseResponse
	for i := range 6 {
		r, err := c.Choose(ctx, choose(fmt.Sprintf("cam-%d", i), "agent-7"))
		if err != nil {
			t.Fatalf("choose cam-%d: %v", i, err)
		}
		got = append(got, r)
	}
	perHost := map[string]int{}
	for _, r := range got {
		perHost[r.Host]++
	}
	for _, host := range []string{"h1", "h2", "h3"} {
		if perHost[host] != 2 {
			t.Errorf("host %s got %d streams, want 2 (capacity 2, spread): %v", host, perHost[host], perHost)
		}
	}
	zone := map[string]string{"h1": "zone-a", "h2": "zone-a", "h3": "zone-b"}
	if zone[got[0].Host] == zone[got[1].Host] {
		t.Errorf("first two streams of one client in the same zone: %s, %s", got[0].Host, got[1].Host)
	}
	if got[0].Host == got[2].Host || got[1].Host == got[2].Host {
		t.Errorf("third stream on a host already used while one was free: %s %s %s", got[0].Host, got[1].Host, got[2].Host)
	}
	// Full: the seventh is refused with 503 and nothing is written for it.
	_, err := c.Choose(ctx, choose("cam-6", "agent-7"))
	var ce *client.Error
	if !errors.Is(err, client.ErrNoCapacity) || !errors.As(err, &ce) || !strings.Contains(ce.Description, "full (2/2 streams)") {
		t.Fatalf("seventh choose: err = %v, want 503 naming full hosts", err)
	}
	if _, ok := h.placements()["cam-6"]; ok {
		t.Fatal("refused stream has a placement")
	}

	// The token is signed for (stream, host, session) and expires.
	r0 := got[0]
	u, err := url.Parse(r0.URL)
	if err != nil || u.Scheme != "rtsp" || u.Host != r0.Host+".test:8554" || u.Path != "/cam-0" {
		t.Fatalf("url %q", r0.URL)
	}
	claims, err := token.Verify(testSecret, u.Query().Get(token.QueryParam), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if claims.Check("cam-0", r0.Host) != nil || claims.Session != r0.SessionID || !claims.Expires.Equal(r0.ExpiresAt) {
		t.Fatalf("claims %+v for %+v", claims, r0)
	}
	if r0.NoticeSecret == "" || r0.Epoch != 1 || !strings.HasPrefix(r0.SessionID, "s-") {
		t.Fatalf("first answer %+v", r0)
	}

	// Asking again (reconnecting with the session) keeps the home: stable.
	req := choose("cam-0", "agent-7")
	req.SessionID = r0.SessionID
	again, err := c.Choose(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Host != r0.Host || again.Epoch != 1 || again.SessionID != r0.SessionID || again.NoticeSecret != "" {
		t.Fatalf("reconnect answer %+v, first %+v", again, r0)
	}
	// The session stores the declared capabilities.
	e, err := h.env.Stores.Sessions.Get(ctx, r0.SessionID)
	if err != nil || !strings.Contains(string(e.Value()), `"can_move":true`) {
		t.Fatalf("session %s: %v %s", r0.SessionID, err, e.Value())
	}
	// The notice secret is not in the session (ingest hosts read sessions)
	// but in session_secrets, which only the notifier reads.
	if strings.Contains(string(e.Value()), r0.NoticeSecret) || strings.Contains(string(e.Value()), "notice_secret") {
		t.Fatalf("session %s holds the notice secret: %s", r0.SessionID, e.Value())
	}
	se, err := h.env.Stores.SessionSecrets.Get(ctx, r0.SessionID)
	var sec events.SessionSecret
	if err != nil || json.Unmarshal(se.Value(), &sec) != nil || sec.NoticeSecret != r0.NoticeSecret || sec.SessionID != r0.SessionID {
		t.Fatalf("session secret of %s: %v %+v, want the secret choose returned", r0.SessionID, err, sec)
	}

	// get answers where the stream lives.
	p, err := c.Get(ctx, "cam-0")
	if err != nil || p.Host != r0.Host || p.SessionID != r0.SessionID {
		t.Fatalf("get: %+v %v", p, err)
	}
	if _, err := c.Get(ctx, "nope"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
}

func TestChooseBadInputWritesNothing(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 10)
	h.start(testConfig("p1"), false)
	for _, tc := range []struct {
		name, body, want string
	}{
		{"not json", `{nope`, "body: not a JSON choose request"},
		{"empty stream", `{"stream":"","client_id":"a"}`, "stream: required"},
		{"slash in stream", `{"stream":"cam/1","client_id":"a"}`, `stream: "cam/1" must match`},
		{"dot in stream", `{"stream":"cam.1","client_id":"a"}`, `stream: "cam.1" must match`},
		{"leading dash", `{"stream":"-cam","client_id":"a"}`, `stream: "-cam" must match`},
		{"too long", `{"stream":"` + strings.Repeat("a", 65) + `","client_id":"a"}`, "stream: \"aaaa"},
		{"no client", `{"stream":"cam-1"}`, "client_id: required"},
		{"bad session", `{"stream":"cam-1","client_id":"a","session_id":"abc"}`, `session_id: "abc" must match`},
		{"unknown capability", `{"stream":"cam-1","client_id":"a","capabilities":{"can_move":true,"can_teleport":true,"channels":["nats"]}}`, "capabilities.can_teleport: unknown capability"},
		{"unknown channel", `{"stream":"cam-1","client_id":"a","capabilities":{"can_move":true,"channels":["fax"]}}`, `capabilities.channels: unknown channel "fax"`},
		{"webhook without url", `{"stream":"cam-1","client_id":"a","capabilities":{"can_move":true,"channels":["webhook"]}}`, "capabilities.webhook_url: required"},
		{"webhook bad url", `{"stream":"cam-1","client_id":"a","capabilities":{"can_move":true,"channels":["webhook"],"webhook_url":"ftp://x"}}`, "capabilities.webhook_url: \"ftp://x\" must be"},
		{"can move without channel", `{"stream":"cam-1","client_id":"a","capabilities":{"can_move":true}}`, "capabilities.channels: can_move needs"},
		{"bad mode", `{"stream":"cam-1","client_id":"a","mode":"teleport"}`, `mode: "teleport" must be push or pull`},
		{"pull without source", `{"stream":"cam-1","client_id":"a","mode":"pull"}`, "source_url: required for mode pull"},
		{"pull with http source", `{"stream":"cam-1","client_id":"a","mode":"pull","source_url":"http://cam"}`, "source_url: \"http://cam\" must be an rtsp:// URL"},
		{"push with source", `{"stream":"cam-1","client_id":"a","source_url":"rtsp://cam/1"}`, "source_url: only for mode pull"},
		{"unknown field", `{"stream":"cam-1","client_id":"a","priority":9}`, "priority: unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := h.env.NC.Request(subject.PlacementChoose, []byte(tc.body), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			err = client.ReplyError(subject.PlacementChoose, m)
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Code != client.CodeBadRequest || !strings.HasPrefix(ce.Description, tc.want) {
				t.Fatalf("reply %v (body %s), want 400 starting %q", err, m.Data, tc.want)
			}
		})
	}
	if p := h.placements(); len(p) != 0 {
		t.Fatalf("placements written by bad requests: %v", p)
	}
	if keys, _ := h.env.Stores.Sessions.ListKeys(h.ctx); keys != nil {
		for k := range keys.Keys() {
			t.Fatalf("session written by a bad request: %s", k)
		}
	}
}

func TestAbsurdCapacityIsRefusedAndLogged(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 1_000_000_000)
	h.host("h2", "zone-a", 10, func(r *events.HostRecord) { r.CapacityBitrate = -5 })
	r := h.start(testConfig("p1"), false)
	_, err := h.client().Choose(h.ctx, choose("cam-1", "agent-1"))
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != client.CodeNoCapacity || !strings.Contains(ce.Description, "absurd capacity") {
		t.Fatalf("choose with only absurd hosts: %v, want 503 naming the absurd capacity", err)
	}
	for _, want := range []string{`"host":"h1"`, "capacity_streams 1000000000", `"host":"h2"`, "capacity_bitrate -5", "host record rejected"} {
		if !strings.Contains(r.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, r.log.String())
		}
	}
	if p := h.placements(); len(p) != 0 {
		t.Fatalf("placements written: %v", p)
	}
	// A sane record for h1 makes it usable again.
	h.host("h1", "zone-a", 10)
	ftu.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		_, err := h.client().Choose(h.ctx, choose("cam-1", "agent-1"))
		return err
	})
}

func TestChooseNeverOnUnfitHosts(t *testing.T) {
	h := newHarness(t)
	h.host("draining", "zone-a", 100, func(r *events.HostRecord) { r.Status = "draining" })
	h.host("predicted", "zone-a", 100)
	h.host("future-maint", "zone-a", 100)
	h.host("stale", "zone-a", 100, func(r *events.HostRecord) { r.UpdatedAt = time.Now().Add(-time.Minute) })
	h.silence("stale")
	h.host("down", "zone-a", 100)
	h.host("ok", "zone-b", 100)
	h.predict("predicted", 30*time.Second)
	h.predict("future-maint", 48*time.Hour) // maintenance far ahead still keeps new streams away
	h.hostDown("down")
	h.start(testConfig("p1"), false)
	for i := range 10 {
		r, err := h.client().Choose(h.ctx, choose(fmt.Sprintf("cam-%d", i), fmt.Sprintf("agent-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if r.Host != "ok" {
			t.Fatalf("cam-%d placed on %s", i, r.Host)
		}
	}
}

func TestReconnectToDeadHomeMovesOnce(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 10)
	h.host("h2", "zone-b", 10)
	h.seed("cam-1", "h1", "agent-1", true)
	h.start(testConfig("p1"), false)
	sid := h.placements()["cam-1"].SessionID
	h.hostDown("h1")
	req := choose("cam-1", "agent-1")
	req.SessionID = sid
	var r client.ChooseResponse
	ftu.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		var err error
		r, err = h.client().Choose(h.ctx, req)
		if err == nil && r.Host != "h2" {
			return fmt.Errorf("answered %s", r.Host)
		}
		return err
	})
	if r.Epoch != 2 || r.SessionID != sid || r.NoticeSecret != "" {
		t.Fatalf("reconnect answer %+v", r)
	}
	p := h.placements()["cam-1"]
	if p.Host != "h2" || p.FromHost != "h1" || p.MigrationID == "" {
		t.Fatalf("placement %+v", p)
	}
	// Asking again does not move it again.
	r2, err := h.client().Choose(h.ctx, req)
	if err != nil || r2.Host != "h2" || r2.Epoch != 2 {
		t.Fatalf("second reconnect %+v %v", r2, err)
	}
	ms := h.migrations()
	if len(ms) != 1 || ms[0].Kind != "reconnect" || !ms[0].Fallback {
		t.Fatalf("migrations %+v", ms)
	}
}

func TestPullModeSendsPullCommand(t *testing.T) {
	h := newHarness(t)
	h.host("h1", "zone-a", 10)
	h.start(testConfig("p1"), false)
	req := client.ChooseRequest{Stream: "cam-9", ClientID: "ops", Mode: "pull", SourceURL: "rtsp://camera.local/stream1"}
	r, err := h.client().Choose(h.ctx, req)
	if err != nil || r.Host != "h1" {
		t.Fatalf("%+v %v", r, err)
	}
	ftu.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := h.subjects("FERRY_COMMANDS", subject.IngestPull("h1"))[subject.IngestPull("h1")]; n != 1 {
			return fmt.Errorf("%d pull commands", n)
		}
		return nil
	})
	// Asking again does not send a second command.
	if _, err := h.client().Choose(h.ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := h.subjects("FERRY_COMMANDS", subject.IngestPull("h1"))[subject.IngestPull("h1")]; n != 1 {
		t.Fatalf("%d pull commands after a repeated choose", n)
	}
}

func TestReconnectKeepsHomeUnlessItMustBeLeft(t *testing.T) {
	for _, tc := range []struct {
		name   string
		signal func(h *harness)
		want   string
	}{
		{"healthy", func(h *harness) {}, "h1"},
		{"maintenance beyond the lead", func(h *harness) { h.predict("h1", 48*time.Hour) }, "h1"},
		{"outage within the lead", func(h *harness) { h.predict("h1", time.Minute) }, "h2"},
		{"draining", func(h *harness) {
			h.host("h1", "zone-a", 10, func(r *events.HostRecord) { r.Status = "draining" })
		}, "h2"},
		{"down", func(h *harness) { h.hostDown("h1") }, "h2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.host("h1", "zone-a", 10)
			h.host("h2", "zone-b", 10)
			h.seed("cam-1", "h1", "agent-1", true)
			tc.signal(h)
			h.start(testConfig("p1"), false) // views replay the signal before serving
			req := choose("cam-1", "agent-1")
			req.SessionID = h.placements()["cam-1"].SessionID
			var r client.ChooseResponse
			ftu.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
				var err error
				r, err = h.client().Choose(h.ctx, req)
				return err
			})
			if r.Host != tc.want {
				t.Fatalf("answered %s, want %s", r.Host, tc.want)
			}
			wantEpoch := uint64(1)
			if tc.want != "h1" {
				wantEpoch = 2
			}
			if r.Epoch != wantEpoch {
				t.Fatalf("epoch %d, want %d", r.Epoch, wantEpoch)
			}
		})
	}
}
