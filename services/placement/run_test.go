package placement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/placement/client"
)

func TestRunServesChooseAndReadiness(t *testing.T) {
	env := testutil.NATS(t)
	now := time.Now().UTC()
	rec, _ := json.Marshal(events.HostRecord{Host: "ingest-1", RTSPURL: "rtsp://127.0.0.1:8554", Zone: "zone-a", Role: "both",
		CapacityStreams: 10, Status: "ok", StartedAt: now, UpdatedAt: now})
	if _, err := env.Stores.Hosts.Put(context.Background(), "ingest-1", rec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &testutil.Buffer{}
	done := make(chan error, 1)
	getenv := envOf(map[string]string{"FERRY_TOKEN_SECRET": secret})
	go func() {
		done <- RunWithLog(ctx, []string{"--nats", env.URL, "--metrics-addr", "127.0.0.1:0", "--id", "p-run"}, getenv, io.Discard, logs)
	}()
	var addr string
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		m := regexp.MustCompile(`"addr":"([^"]+)".*metrics listening`).FindStringSubmatch(logs.String())
		if m == nil {
			return errors.New("no metrics address logged yet")
		}
		addr = m[1]
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	r, err := client.New(env.NC).Choose(ctx, client.ChooseRequest{Stream: "cam-1", ClientID: "agent-1",
		Capabilities: events.Capabilities{CanMove: true, Channels: []string{"nats"}}})
	if err != nil || r.Host != "ingest-1" || !strings.HasPrefix(r.URL, "rtsp://127.0.0.1:8554/cam-1?token=") {
		t.Fatalf("choose %+v %v", r, err)
	}
	// The single replica becomes the leader; metrics show it.
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, want := range []string{"ferry_placement_leader 1", `ferry_placement_decisions_total{kind="initial"} 1`} {
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("metrics lack %q", want)
			}
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// Every log line carries each key once (the replica was added twice).
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if d, err := testutil.DuplicateKeys(l); err != nil || len(d) > 0 {
			t.Errorf("log line with duplicate keys %v (%v): %s", d, err, l)
		}
	}
	// A clean stop released the lease.
	if _, err := env.Stores.Leases.Get(context.Background(), "placement.leader"); err == nil {
		t.Fatal("lease still held after a clean stop")
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	err := Run(context.Background(), []string{"--pace", "-1s"}, envOf(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "FERRY_TOKEN_SECRET: required") || !strings.Contains(err.Error(), "PLACEMENT_PACE: must be") {
		t.Fatalf("err = %v", err)
	}
}
