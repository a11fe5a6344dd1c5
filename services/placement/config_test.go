package placement

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

const secret = "0123456789abcdef"

func TestLoadPrecedence(t *testing.T) {
	env := map[string]string{"FERRY_TOKEN_SECRET": secret, "PLACEMENT_PACE": "250ms", "PLACEMENT_ID": "p-env",
		"FERRY_NATS_URL": "nats://env:4222", "PLACEMENT_WORKERS": "4"}
	c, err := Load([]string{"--pace", "50ms", "--nats", "nats://flag:4222"}, envOf(env), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Pace != 50*time.Millisecond || c.NATS.URL != "nats://flag:4222" || c.ID != "p-env" || c.Workers != 4 ||
		c.MinDeadline != 10*time.Second || c.TokenSecret != secret {
		t.Fatalf("config %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	e := c.Engine()
	if e.Pace != 50*time.Millisecond || string(e.TokenSecret) != secret || e.ID != "p-env" {
		t.Fatalf("engine config %+v", e)
	}
	// Default id is random and valid.
	c2, _ := Load(nil, envOf(map[string]string{"FERRY_TOKEN_SECRET": secret}), &bytes.Buffer{})
	if !strings.HasPrefix(c2.ID, "placement-") || c2.Validate() != nil {
		t.Fatalf("default id %q: %v", c2.ID, c2.Validate())
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no secret", map[string]string{}, nil, "FERRY_TOKEN_SECRET: required (the secret shared with ingest and notifier)"},
		{"short secret", map[string]string{"FERRY_TOKEN_SECRET": "short"}, nil, "FERRY_TOKEN_SECRET: must be at least 16 bytes, got 5"},
		{"bad duration", map[string]string{"PLACEMENT_PACE": "fast"}, nil, `PLACEMENT_PACE: "fast" is not a duration (e.g. 10s)`},
		{"negative pace", nil, []string{"--pace", "-1s"}, "PLACEMENT_PACE: must be between 0s and 10s, got -1s"},
		{"tiny token ttl", map[string]string{"PLACEMENT_TOKEN_TTL": "1s"}, nil, "PLACEMENT_TOKEN_TTL: must be between 10s and 24h0m0s, got 1s"},
		{"zero min deadline", nil, []string{"--min-deadline", "0s"}, "PLACEMENT_MIN_DEADLINE: must be between 1s and 1h0m0s, got 0s"},
		{"bad id", map[string]string{"PLACEMENT_ID": "p.1"}, nil, `PLACEMENT_ID: "p.1" must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`},
		{"bad metrics addr", map[string]string{"PLACEMENT_METRICS_ADDR": "9313"}, nil, `PLACEMENT_METRICS_ADDR: "9313" must be host:port`},
		{"bad workers", map[string]string{"PLACEMENT_WORKERS": "0"}, nil, "PLACEMENT_WORKERS: must be 1..256, got 0"},
		{"workers not a number", map[string]string{"PLACEMENT_WORKERS": "many"}, nil, `PLACEMENT_WORKERS: "many" is not an integer`},
		{"default over max", map[string]string{"PLACEMENT_DEFAULT_CAPACITY": "500", "PLACEMENT_MAX_CAPACITY": "100"}, nil,
			"PLACEMENT_DEFAULT_CAPACITY: must be 1..PLACEMENT_MAX_CAPACITY (100), got 500"},
		{"bitrate", map[string]string{"PLACEMENT_STREAM_BITRATE": "0"}, nil, "PLACEMENT_STREAM_BITRATE: must be 1..1000000000 bit/s, got 0"},
		{"stale", map[string]string{"PLACEMENT_STALE_AFTER": "100ms"}, nil, "PLACEMENT_STALE_AFTER: must be between 1s and 5m0s, got 100ms"},
		{"release too soon", nil, []string{"--release-after", "1s"}, "PLACEMENT_RELEASE_AFTER: must be between 10s and 720h0m0s, got 1s"},
		{"release negative", map[string]string{"PLACEMENT_RELEASE_AFTER": "-1m"}, nil, "PLACEMENT_RELEASE_AFTER: must be between 10s and 720h0m0s, got -1m0s"},
		{"nats url", nil, []string{"--nats", "localhost:4222"}, `--nats: "localhost:4222" must be a URL like nats://127.0.0.1:4222`},
		{"nats flag scheme", nil, []string{"--nats", "http://127.0.0.1:4222"}, `--nats: "http://127.0.0.1:4222": scheme "http" is not a NATS scheme (nats, tls, ws or wss), e.g. nats://127.0.0.1:4222`},
		{"flag parse error", nil, []string{"--token-ttl", "10x"}, `--token-ttl: "10x" is not a duration like 30s or 2m`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"FERRY_TOKEN_SECRET": secret}
			if tc.env != nil && tc.name == "no secret" {
				env = map[string]string{}
			}
			for k, v := range tc.env {
				env[k] = v
			}
			c, err := Load(tc.args, envOf(env), &bytes.Buffer{})
			if err == nil {
				err = c.Validate()
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadFlagErrorsAndHelp(t *testing.T) {
	var out bytes.Buffer
	// one line naming the flag, and no usage dump
	if _, err := Load([]string{"--nope"}, envOf(nil), &out); err == nil || err.Error() != "--nope: unknown flag (see ferry-placement -h)" || out.Len() != 0 {
		t.Fatalf("unknown flag: %v %q", err, out.String())
	}
	out.Reset()
	if _, err := Load([]string{"-h"}, envOf(nil), &out); !errors.Is(err, ErrHelp) ||
		!strings.HasPrefix(out.String(), "ferry-placement decides where every stream lives") || !strings.Contains(out.String(), "\n  --token-secret string\n") {
		t.Fatalf("help: %v %q", err, out.String())
	}
	out.Reset()
	if _, err := Load([]string{"--version"}, envOf(nil), &out); !errors.Is(err, ErrHelp) || !strings.HasPrefix(out.String(), "ferry-placement ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
	if _, err := Load([]string{"extra"}, envOf(nil), &out); err == nil {
		t.Fatal("positional argument accepted")
	}
}
