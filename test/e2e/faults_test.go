package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl/stack"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
)

func TestMaintenanceMoves20Streams(t *testing.T) {
	// One origin first, so that all 20 streams land on it; then two more
	// origins join as targets, and the first goes into maintenance.
	s := startStack(t, stack.Options{Origins: 1, MinDeadline: 15 * time.Second})
	ctx := testutil.Context(t)
	const n = 20
	streams := make([]string, n)
	for i := range streams {
		streams[i] = fmt.Sprintf("cam-%02d", i+1)
		if _, err := s.StartPublisher(ctx, streams[i], fmt.Sprintf("agent-%02d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	host := ""
	for _, st := range streams {
		host = placedOn(t, s, st)
	}
	for i := 0; i < 2; i++ {
		if _, err := s.AddOrigin(ctx); err != nil {
			t.Fatal(err)
		}
	}
	viewers := map[string]*stack.Viewer{}
	for _, st := range streams {
		viewers[st] = watchFlowing(t, s, st, stack.WatchOptions{})
	}
	chain, err := stack.WatchChain(ctx, s.JS, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Stop()
	start := time.Now()
	scheduleMaintenance(t, s, host, 15*time.Second)
	for _, st := range streams {
		done := waitMigration(t, s, chain, st, 90*time.Second)
		if done.Env.Type != events.TypeMigrationCompleted {
			t.Errorf("%s: migration failed: %v", st, done.Data)
		}
	}
	evacuated := time.Since(start)
	var lost, dups int64
	targets := map[string]int{}
	for _, st := range streams {
		done, _ := chain.First(events.TypeMigrationCompleted, stack.Field("stream", st))
		targets[done.Str("to_host")]++
		edgeSwitched(t, chain, done.Str("migration_id"))
		settle(t, viewers[st], 25)
		r := viewers[st].Close()
		lost += r.Missing
		dups += r.Duplicates
		if r.Disconnected != "" {
			t.Errorf("%s: viewer disconnected: %s", st, r.Disconnected)
		}
	}
	t.Logf("%d streams moved off %s in %v (targets %v): %d frames lost, %d duplicated in total",
		n, host, evacuated.Round(time.Millisecond), targets, lost, dups)
	if lost != 0 || dups != 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dups)
	}
	for _, st := range streams {
		p, err := s.Placement(ctx, st)
		if err != nil || p.Host == host {
			t.Errorf("%s still on %s (%v)", st, host, err)
		}
		if c := chain.Count(events.TypeReassigned, stack.Field("stream", st)); c != 1 {
			t.Errorf("%s reassigned %d times", st, c)
		}
	}
}

func TestDrainBySIGTERM(t *testing.T) {
	s := startStack(t, stack.Options{DrainGrace: 15 * time.Second})
	ctx := testutil.Context(t)
	if _, err := s.StartPublisher(ctx, "cam-d", "agent-d"); err != nil {
		t.Fatal(err)
	}
	from := placedOn(t, s, "cam-d")
	v := watchFlowing(t, s, "cam-d", stack.WatchOptions{})
	chain, err := stack.WatchChain(ctx, s.JS, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Stop()
	if err := s.Terminate(from); err != nil {
		t.Fatal(err)
	}
	done := waitMigration(t, s, chain, "cam-d", 45*time.Second)
	if done.Env.Type != events.TypeMigrationCompleted {
		t.Fatalf("migration failed: %v", done.Data)
	}
	if _, ok := chain.First(events.TypeDraining, stack.Field("host", from)); !ok {
		t.Error("no draining event")
	}
	edgeSwitched(t, chain, done.Str("migration_id"))
	settle(t, v, 25)
	rep := v.Close()
	if rep.Missing != 0 || rep.Duplicates != 0 || rep.Disconnected != "" {
		t.Fatalf("viewer: %+v", rep)
	}
	// With every stream moved the drained host exits on its own.
	testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if !s.Exited(from) {
			return fmt.Errorf("%s still running", from)
		}
		return nil
	})
}

func TestUnpredictedKill(t *testing.T) {
	s := startStack(t, stack.Options{})
	ctx := testutil.Context(t)
	pub, err := s.StartPublisher(ctx, "cam-k", "agent-k")
	if err != nil {
		t.Fatal(err)
	}
	from := placedOn(t, s, "cam-k")
	v := watchFlowing(t, s, "cam-k", stack.WatchOptions{})
	chain, err := stack.WatchChain(ctx, s.JS, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Stop()
	killed := time.Now()
	if err := s.Kill(from); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if _, ok := chain.First(events.TypeHostDown, stack.Field("host", from)); !ok {
			return fmt.Errorf("no host_down for %s", from)
		}
		return nil
	})
	testutil.CheckFor(t, 40*time.Second, 100*time.Millisecond, func() error {
		p, err := s.Placement(ctx, "cam-k")
		if err != nil {
			return err
		}
		if p.Host == from {
			return fmt.Errorf("still placed on %s", from)
		}
		if pub.Exited() {
			t.Fatalf("publisher exited; log %s", pub.Log())
		}
		return nil
	})
	settle(t, v, 50)
	recovered := time.Since(killed)
	rep := v.Close()
	t.Logf("kill -9 of %s: viewer resumed after %v; longest gap %.0f ms, %d frames lost (break), report %+v",
		from, recovered.Round(time.Millisecond), rep.MaxGapMS, rep.Missing, rep)
	if rep.Disconnected != "" {
		t.Fatalf("viewer disconnected: %s", rep.Disconnected)
	}
	if rep.MaxGapMS > 20000 {
		t.Fatalf("gap %.0f ms is beyond the 20 s bound", rep.MaxGapMS)
	}
	if rep.Duplicates != 0 || rep.TSBackwards != 0 {
		t.Fatalf("splice broke continuity: %+v", rep)
	}
}

// chooseURL asks placement for a publish URL as an operator would for a plain
// ffmpeg publisher (a client that cannot move).
func chooseURL(ctx context.Context, s *stack.Stack, stream, client string) (string, error) {
	req, _ := json.Marshal(map[string]any{"stream": stream, "client_id": client, "mode": "push",
		"capabilities": map[string]any{"can_move": false}})
	m, err := s.NC.RequestWithContext(ctx, subject.PlacementChoose, req)
	if err != nil {
		return "", err
	}
	if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
		return "", fmt.Errorf("choose: %s %s", code, m.Header.Get("Nats-Service-Error"))
	}
	var resp struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return "", err
	}
	return resp.URL, nil
}

func TestPlainFFmpegFallback(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatal("ffmpeg not installed: run scripts/ensure-ffmpeg.sh (make test does)")
	}
	s := startStack(t, stack.Options{})
	ctx := testutil.Context(t)
	// A supervisor like systemd: whenever ffmpeg exits, ask placement again and restart it.
	var mu sync.Mutex
	restarts := 0
	go func() {
		for ctx.Err() == nil {
			url, err := chooseURL(ctx, s, "cam-ff", "ffmpeg-1")
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			cmd := exec.CommandContext(ctx, "ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
				"testsrc=size=320x240:rate=25", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
				"-g", "25", "-f", "rtsp", "-rtsp_transport", "tcp", url)
			_ = cmd.Run()
			mu.Lock()
			restarts++
			mu.Unlock()
		}
	}()
	from := placedOn(t, s, "cam-ff")
	url := s.Edge().RTSPURL + "/cam-ff"
	var v *stack.Viewer
	testutil.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		var err error
		v, err = stack.Watch(ctx, url)
		return err
	})
	defer v.Close()
	testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if v.Packets() < 50 {
			return fmt.Errorf("%d packets", v.Packets())
		}
		return nil
	})
	chain, err := stack.WatchChain(ctx, s.JS, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Stop()
	scheduleMaintenance(t, s, from, 8*time.Second)
	done := waitMigration(t, s, chain, "cam-ff", 60*time.Second)
	failedNotice, _ := chain.First(events.TypeNoticeFailed, stack.Field("stream", "cam-ff"))
	if failedNotice.Str("reason") != "not-capable" {
		t.Errorf("notifier outcome for a plain ffmpeg: %v, want failed not-capable", failedNotice.Data)
	}
	before := v.Packets()
	testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if v.Packets() < before+100 {
			return fmt.Errorf("stream did not resume on the edge")
		}
		return nil
	})
	rep := v.Close()
	mu.Lock()
	t.Logf("plain ffmpeg fallback: %s %v make_before_break=%v; ffmpeg restarts %d; viewer longest gap %.0f ms (a break, reported), %+v",
		done.Env.Type, done.Data["to_host"], done.Data["make_before_break"], restarts, rep.MaxGapMS, rep)
	mu.Unlock()
	if done.Env.Type != events.TypeMigrationCompleted {
		t.Fatalf("fallback migration did not complete: %v", done.Data)
	}
	if mbb, _ := done.Data["make_before_break"].(bool); mbb {
		t.Fatal("a plain ffmpeg move was reported as make-before-break")
	}
	if rep.Disconnected != "" || rep.TSBackwards != 0 {
		t.Fatalf("viewer: %+v", rep)
	}
}
