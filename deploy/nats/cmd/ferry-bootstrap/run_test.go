package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ferrystream/ferry/libs/bus"
)

func startNATS(t *testing.T) string {
	t.Helper()
	t.Setenv("FERRY_NATS_PASSWORD_OPS", "pw-ops")
	for _, u := range []string{"MONITOR", "INGEST", "HEALTHPREDICT", "PLACEMENT", "NOTIFIER", "AGENT_1", "AGENT_2"} {
		t.Setenv("FERRY_NATS_PASSWORD_"+u, "pw")
	}
	opts, err := server.ProcessConfigFile("../../single.conf")
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
	return s.ClientURL()
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr bool
	}{
		{"ops bootstraps", map[string]string{"FERRY_NATS_USER": "ops", "FERRY_NATS_PASSWORD": "pw-ops", "FERRY_NATS_INBOX_PREFIX": "_INBOX_ops"}, false},
		{"a service may not create the layout", map[string]string{"FERRY_NATS_USER": "ingest", "FERRY_NATS_PASSWORD": "pw", "FERRY_NATS_INBOX_PREFIX": "_INBOX_ingest"}, true},
		{"3 replicas on one node time out", map[string]string{"FERRY_NATS_USER": "ops", "FERRY_NATS_PASSWORD": "pw-ops",
			"FERRY_NATS_INBOX_PREFIX": "_INBOX_ops", "FERRY_NATS_REPLICAS": "3"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := startNATS(t)
			env := map[string]string{"FERRY_NATS_URL": url, "FERRY_BOOTSTRAP_TIMEOUT": "3s", "FERRY_LOG_LEVEL": "error"}
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
