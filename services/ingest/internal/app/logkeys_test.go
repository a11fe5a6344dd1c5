package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/ingest/internal/config"
)

// TestLogLinesHaveUniqueKeys: every JSON log line of a node (origin, edge,
// handover, camera, registry) carries "host" once.
func TestLogLinesHaveUniqueKeys(t *testing.T) {
	t.Parallel()
	if d, _ := testutil.DuplicateKeys(`{"host":"a","x":1,"host":"a"}`); len(d) != 1 {
		t.Fatalf("duplicateKeys misses a duplicate: %v", d)
	}
	env := testutil.NATS(t)
	cfg, err := config.Load(nil, func(k string) string {
		return map[string]string{"INGEST_HOST_ID": "ingest-1", "INGEST_RTSP_ADDR": "127.0.0.1:0",
			"FERRY_TOKEN_SECRET": testSecret, "FERRY_NATS_URL": env.URL, "FERRY_LOG_LEVEL": "debug"}[k]
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf testutil.Buffer
	a, err := New(cfg, Deps{Log: zerolog.New(&buf).Level(zerolog.DebugLevel), NC: env.NC, JS: env.JS})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = a.Run(ctx) }()
	select {
	case <-a.Started():
	case <-time.After(10 * time.Second):
		t.Fatal("node did not start")
	}
	cancel()
	<-a.Done()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("only %d log lines", len(lines))
	}
	hosts := 0
	for _, l := range lines {
		d, err := testutil.DuplicateKeys(l)
		if err != nil {
			t.Fatal(err)
		}
		if len(d) > 0 {
			t.Errorf("duplicate keys %v in %s", d, l)
		}
		if strings.Contains(l, `"host":"ingest-1"`) {
			hosts++
		}
	}
	if hosts < len(lines)/2 {
		t.Errorf("only %d of %d lines carry the host", hosts, len(lines))
	}
}
