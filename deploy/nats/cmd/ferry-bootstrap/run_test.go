package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/natscreds"
)

// startNATS runs single.conf with a freshly minted fleet's operator.conf
// beside it and returns the URL and the fleet.
func startNATS(t *testing.T) (string, *natscreds.Dir) {
	t.Helper()
	d, err := natscreds.Init(filepath.Join(t.TempDir(), "creds"), []string{"ingest-1"}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../single.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(filepath.Dir(d.ConfPath()), "single.conf")
	if err := os.WriteFile(conf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.HTTPPort, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, 0, t.TempDir(), true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL(), d
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name    string
		user    string
		env     map[string]string
		wantErr bool
	}{
		{"ops bootstraps", "ops", nil, false},
		{"a service may not create the layout", "ingest-1", nil, true},
		{"3 replicas on one node time out", "ops", map[string]string{"FERRY_NATS_REPLICAS": "3"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, d := startNATS(t)
			env := map[string]string{"FERRY_NATS_URL": url, "FERRY_BOOTSTRAP_TIMEOUT": "3s", "FERRY_LOG_LEVEL": "error",
				"FERRY_NATS_CREDS": d.CredsPath(tc.user), "FERRY_NATS_INBOX_PREFIX": natscreds.InboxPrefix(tc.user)}
			for k, v := range tc.env {
				env[k] = v
			}
			var out bytes.Buffer
			err := Run(context.Background(), nil, func(k string) string { return env[k] }, &out)
			if tc.wantErr {
				if err == nil || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err %v, want a deadline", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var sum Summary
			if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
				t.Fatalf("%v: %q", err, out.String())
			}
			if want := len(bus.Streams(1)) + len(bus.Buckets(1)); len(sum.Streams) != want || sum.Replicas != 1 {
				t.Fatalf("summary %+v, want %d streams", sum, want)
			}
		})
	}
}
