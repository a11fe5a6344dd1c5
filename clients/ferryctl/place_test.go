package ferryctl_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
	placement "github.com/ferrystream/ferry/services/placement/client"
)

// fakePlacement answers placement.v1.choose like the service: 503 for
// stream "full", 400 for client "bad", a placement otherwise. It records the
// requests; the mutex guards reqs.
type fakePlacement struct {
	mu   sync.Mutex
	reqs []placement.ChooseRequest
}

func startPlacement(t *testing.T, env *testutil.Env) *fakePlacement {
	t.Helper()
	f := &fakePlacement{}
	svc, err := micro.AddService(env.NC, micro.Config{Name: subject.PlacementService, Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	err = svc.AddGroup(subject.PlacementGroup).AddEndpoint("choose", micro.HandlerFunc(func(r micro.Request) {
		var req placement.ChooseRequest
		if err := json.Unmarshal(r.Data(), &req); err != nil {
			_ = r.Error("400", "body: not JSON", nil)
			return
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		switch {
		case req.Stream == "full":
			_ = r.Error("503", "no healthy host with capacity", nil)
		case req.ClientID == "bad":
			_ = r.Error("400", "client_id: reserved", nil)
		default:
			_ = r.RespondJSON(placement.ChooseResponse{Stream: req.Stream, Host: "ingest-2",
				URL:       "rtsp://127.0.0.1:8555/" + req.Stream + "?token=tok.en",
				SessionID: "s-00000000000000aa", Epoch: 1, ExpiresAt: time.Now().Add(placementTokenTTL), NoticeSecret: "secret"})
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	// the server knows the endpoint's subscription once a round trip is done
	if err := env.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakePlacement) last() placement.ChooseRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

// placementTokenTTL is the token lifetime of the real placement service
// (PLACEMENT_TOKEN_TTL's default; services/placement's TestDocsTokenLifetime
// checks docs/ferryctl.md against it).
const placementTokenTTL = 10 * time.Minute

func TestPlace(t *testing.T) {
	env := testutil.NATS(t)

	r := ctl(t, env.URL, "place", "cam-7", "--no-move")
	if r.code != 1 || !strings.Contains(r.stderr, "placement is not running") {
		t.Errorf("without placement: exit %d stderr %q", r.code, r.stderr)
	}

	f := startPlacement(t, env)
	r = mustCtl(t, env.URL, "place", "cam-7", "--no-move", "--client", "ffmpeg-7")
	if !strings.Contains(r.stdout, "Watch it: no edge is registered (viewers read from a host with INGEST_ROLE=edge or both).\n") {
		t.Errorf("no edge: output:\n%s", r.stdout)
	}
	putJSON(t, env.JS, bus.BucketHosts, "ingest-2", events.HostRecord{Host: "ingest-2", Role: "origin", RTSPURL: "rtsp://127.0.0.1:8555"})
	putJSON(t, env.JS, bus.BucketHosts, "edge-1", events.HostRecord{Host: "edge-1", Role: "edge", RTSPURL: "rtsp://127.0.0.1:8600"})
	r = mustCtl(t, env.URL, "place", "cam-7", "--no-move", "--client", "ffmpeg-7")
	req := f.last()
	if req.Stream != "cam-7" || req.ClientID != "ffmpeg-7" || req.Capabilities.CanMove || len(req.Capabilities.Channels) != 0 || req.Mode != "push" {
		t.Errorf("request %+v", req)
	}
	for _, want := range []string{
		"host     ingest-2\n",
		"session  s-00000000000000aa\n",
		"Publish URL:\n  rtsp://127.0.0.1:8555/cam-7?token=tok.en\n",
		"\nPublish a test pattern with ffmpeg (H.264 4:2:0, a keyframe every 25 frames = 1 s):\n" +
			"  ffmpeg -re -f lavfi -i testsrc=size=1280x720:rate=25 -c:v libx264 -preset veryfast -tune zerolatency -pix_fmt yuv420p -g 25 -keyint_min 25 -sc_threshold 0 -f rtsp -rtsp_transport tcp 'rtsp://127.0.0.1:8555/cam-7?token=tok.en'\n",
		"\nRepublish a camera with ffmpeg (no transcoding):\n  ffmpeg -rtsp_transport tcp -i 'rtsp://CAMERA/stream' -c copy -f rtsp -rtsp_transport tcp 'rtsp://127.0.0.1:8555/cam-7?token=tok.en'\n",
		"\nWatch it on the edge:\n  ffplay -rtsp_transport tcp rtsp://127.0.0.1:8600/cam-7\n",
		"This publisher cannot move",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	// the lifetime printed is placement's (10 min), as docs/ferryctl.md shows
	if !regexp.MustCompile(`\nexpires  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(in 9m5\ds; the token is checked when the publisher connects\)\n`).MatchString(r.stdout) {
		t.Errorf("expires line:\n%s", r.stdout)
	}
	// a client that cannot move never gets notices: no secret, in text or JSON
	if strings.Contains(r.stdout, "secret") {
		t.Errorf("notice secret printed to a --no-move client:\n%s", r.stdout)
	}
	r = mustCtl(t, env.URL, "place", "cam-7", "--no-move", "--json")
	if strings.Contains(r.stdout, "secret") {
		t.Errorf("notice secret in --no-move --json:\n%s", r.stdout)
	}
	r = mustCtl(t, env.URL, "place", "cam-7", "--client", "agent-7")
	if !strings.Contains(r.stdout, "notice secret (for webhook/SSE notices, shown once): secret\n") {
		t.Errorf("a client that moves gets the secret:\n%s", r.stdout)
	}

	r = mustCtl(t, env.URL, "place", "cam-8", "--json", "--session", "s-00000000000000aa")
	var resp placement.ChooseResponse
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.URL != "rtsp://127.0.0.1:8555/cam-8?token=tok.en" {
		t.Errorf("--json %q: %v", r.stdout, err)
	}
	if req := f.last(); !req.Capabilities.CanMove || req.Capabilities.Channels[0] != "nats" || req.ClientID != "ferryctl" || req.SessionID != "s-00000000000000aa" {
		t.Errorf("request %+v", req)
	}

	r = mustCtl(t, env.URL, "place", "cam-9", "--pull", "rtsp://user:pw@10.0.0.9/stream1")
	if !strings.Contains(r.stdout, "\ningest-2 now pulls rtsp://user:xxxxx@10.0.0.9/stream1.\nWatch it on the edge:\n  ffplay -rtsp_transport tcp rtsp://127.0.0.1:8600/cam-9\n") ||
		strings.Contains(r.stdout, "secret") {
		t.Errorf("pull output:\n%s", r.stdout)
	}
	if req := f.last(); req.Mode != "pull" || req.SourceURL != "rtsp://user:pw@10.0.0.9/stream1" || req.Capabilities.CanMove {
		t.Errorf("pull request %+v", req)
	}

	r = ctl(t, env.URL, "place", "full")
	if r.code != 1 || !strings.Contains(r.stderr, "placement found no healthy host with capacity") || !strings.Contains(r.stderr, "503") {
		t.Errorf("503: exit %d stderr %q", r.code, r.stderr)
	}
	r = ctl(t, env.URL, "place", "cam-1", "--client", "bad")
	if r.code != 1 || !strings.Contains(r.stderr, "placement rejected the request") || !strings.Contains(r.stderr, "client_id: reserved") {
		t.Errorf("400: exit %d stderr %q", r.code, r.stderr)
	}
}
