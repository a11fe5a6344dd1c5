package ferryctl_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

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
				SessionID: "s-00000000000000aa", Epoch: 1, ExpiresAt: time.Now().Add(time.Hour), NoticeSecret: "secret"})
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakePlacement) last() placement.ChooseRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

func TestPlace(t *testing.T) {
	env := testutil.NATS(t)

	r := ctl(t, env.URL, "place", "cam-7", "--no-move")
	if r.code != 1 || !strings.Contains(r.stderr, "placement is not running") {
		t.Errorf("without placement: exit %d stderr %q", r.code, r.stderr)
	}

	f := startPlacement(t, env)
	r = mustCtl(t, env.URL, "place", "cam-7", "--no-move", "--client", "ffmpeg-7")
	req := f.last()
	if req.Stream != "cam-7" || req.ClientID != "ffmpeg-7" || req.Capabilities.CanMove || len(req.Capabilities.Channels) != 0 || req.Mode != "push" {
		t.Errorf("request %+v", req)
	}
	for _, want := range []string{
		"host     ingest-2\n",
		"session  s-00000000000000aa\n",
		"Publish URL:\n  rtsp://127.0.0.1:8555/cam-7?token=tok.en\n",
		"-f rtsp -rtsp_transport tcp 'rtsp://127.0.0.1:8555/cam-7?token=tok.en'\n",
		"-c copy -f rtsp -rtsp_transport tcp 'rtsp://127.0.0.1:8555/cam-7?token=tok.en'\n",
		"This publisher cannot move",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}

	r = mustCtl(t, env.URL, "place", "cam-8", "--json", "--session", "s-00000000000000aa")
	var resp placement.ChooseResponse
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.URL != "rtsp://127.0.0.1:8555/cam-8?token=tok.en" {
		t.Errorf("--json %q: %v", r.stdout, err)
	}
	if req := f.last(); !req.Capabilities.CanMove || req.Capabilities.Channels[0] != "nats" || req.ClientID != "ferryctl" || req.SessionID != "s-00000000000000aa" {
		t.Errorf("request %+v", req)
	}

	mustCtl(t, env.URL, "place", "cam-9", "--pull", "rtsp://user:pw@10.0.0.9/stream1")
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
