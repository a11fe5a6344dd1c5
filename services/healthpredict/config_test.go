package healthpredict

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadPrecedence(t *testing.T) {
	env := map[string]string{"FERRY_NATS_URL": "nats://env:4222", "HEALTHPREDICT_INSTANCE": "hp-env",
		"HEALTHPREDICT_HORIZON": "15m", "HEALTHPREDICT_WINDOWS": "1m, 3m,9m", "HEALTHPREDICT_MIN_TAU": "0.8",
		"HEALTHPREDICT_MIN_POINTS": "5", "HEALTHPREDICT_METRICS_ADDR": "off"}
	c, err := Load([]string{"--nats", "nats://flag:4222", "--instance", "hp-flag"}, envOf(env), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != "nats://flag:4222" || c.Instance != "hp-flag" || c.MetricsAddr != "" ||
		c.Predict.Horizon != 15*time.Minute || c.Predict.MinTau != 0.8 || c.Predict.MinPoints != 5 ||
		len(c.Predict.Windows) != 3 || c.Predict.Windows[1] != 3*time.Minute || c.MaxFuture != 30*time.Second {
		t.Fatalf("config %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := Load(nil, envOf(nil), &bytes.Buffer{})
	if err != nil || !strings.HasPrefix(d.Instance, "healthpredict-") || d.MetricsAddr != "127.0.0.1:9312" || d.Validate() != nil {
		t.Fatalf("defaults %+v: %v %v", d, err, d.Validate())
	}
	s := c.Service()
	if s.Instance != "hp-flag" || s.Predict.Horizon != 15*time.Minute || s.DeadLetterEvery != time.Minute {
		t.Fatalf("service config %+v", s)
	}
}

func TestConfErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"bad duration", map[string]string{"HEALTHPREDICT_HORIZON": "soon"}, nil, `HEALTHPREDICT_HORIZON: "soon" is not a duration (e.g. 10s)`},
		{"bad number", map[string]string{"HEALTHPREDICT_MIN_TAU": "high"}, nil, `HEALTHPREDICT_MIN_TAU: "high" is not a number`},
		{"bad integer", map[string]string{"HEALTHPREDICT_MIN_POINTS": "6.5"}, nil, `HEALTHPREDICT_MIN_POINTS: "6.5" is not an integer`},
		{"bad flag", map[string]string{"HEALTHPREDICT_CYCLE_SHAPE": "maybe"}, nil, `HEALTHPREDICT_CYCLE_SHAPE: "maybe" is not true or false`},
		{"negative steep", map[string]string{"HEALTHPREDICT_CYCLE_STEEP": "-1"}, nil, "HEALTHPREDICT_CYCLE_STEEP: must be ≥ 0, got -1"},
		{"negative quiet", map[string]string{"HEALTHPREDICT_SURGE_QUIET": "-1s"}, nil, "HEALTHPREDICT_SURGE_QUIET: must not be negative, got -1s"},
		{"bad windows", map[string]string{"HEALTHPREDICT_WINDOWS": "1m,two"}, nil,
			`HEALTHPREDICT_WINDOWS: "1m,two" is not a comma-separated list of durations (e.g. 1m,2m,4m)`},
		{"zero horizon", map[string]string{"HEALTHPREDICT_HORIZON": "0s"}, nil, "HEALTHPREDICT_HORIZON: must be positive, got 0s"},
		{"windows decreasing", map[string]string{"HEALTHPREDICT_WINDOWS": "4m,2m"}, nil, "HEALTHPREDICT_WINDOWS: must increase, got 2m0s after 4m0s"},
		{"window too short", map[string]string{"HEALTHPREDICT_WINDOWS": "30s"}, nil,
			"HEALTHPREDICT_WINDOWS: 30s is shorter than MinPoints × Bucket = 1m0s"},
		{"tau", map[string]string{"HEALTHPREDICT_MIN_TAU": "0"}, nil, "HEALTHPREDICT_MIN_TAU: must be in (0,1], got 0"},
		{"cycle drop", map[string]string{"HEALTHPREDICT_CYCLE_DROP": "1"}, nil, "HEALTHPREDICT_CYCLE_DROP: must be in (0,1), got 1"},
		{"surge factor", map[string]string{"HEALTHPREDICT_SURGE_FACTOR": "0.5"}, nil, "HEALTHPREDICT_SURGE_FACTOR: must be above 1, got 0.5"},
		{"negative open-after", map[string]string{"HEALTHPREDICT_OPEN_AFTER": "-1s"}, nil, "HEALTHPREDICT_OPEN_AFTER: must not be negative, got -1s"},
		{"instance", map[string]string{"HEALTHPREDICT_INSTANCE": "hp.1"}, nil, `HEALTHPREDICT_INSTANCE: "hp.1" must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`},
		{"metrics addr", nil, []string{"--metrics-addr", "9312"}, `HEALTHPREDICT_METRICS_ADDR: "9312" must be host:port`},
		{"max future", map[string]string{"HEALTHPREDICT_MAX_FUTURE": "0s"}, nil, "HEALTHPREDICT_MAX_FUTURE: must be between 1s and 1h0m0s, got 0s"},
		{"tick", map[string]string{"HEALTHPREDICT_TICK": "1h"}, nil, "HEALTHPREDICT_TICK: must be between 100ms and 1m0s, got 1h0m0s"},
		{"dlq every", map[string]string{"HEALTHPREDICT_DLQ_EVERY": "-1s"}, nil, "HEALTHPREDICT_DLQ_EVERY: must be between 0s and 1h0m0s, got -1s"},
		{"nats url", map[string]string{"FERRY_NATS_URL": "localhost"}, nil, `FERRY_NATS_URL: "localhost" must be a URL like nats://127.0.0.1:4222`},
		{"stray argument", nil, []string{"extra"}, "unexpected arguments: extra"},
		{"nats flag scheme", nil, []string{"--nats", "http://127.0.0.1:4222"}, `--nats: "http://127.0.0.1:4222": scheme "http" is not a NATS scheme`},
		{"flag parse error", nil, []string{"--instance"}, `--instance: needs a value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, envOf(tc.env), &bytes.Buffer{})
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestUsageListsEveryKnob(t *testing.T) {
	var out bytes.Buffer
	if _, err := Load([]string{"--help"}, envOf(nil), &out); err != ErrHelp {
		t.Fatalf("err %v", err)
	}
	if !strings.HasPrefix(out.String(), "ferry-healthpredict predicts ingest outages: ") {
		t.Errorf("usage does not open with the description:\n%s", out.String())
	}
	for _, want := range []string{"HEALTHPREDICT_HORIZON", "10m0s", "HEALTHPREDICT_WINDOWS", "1m0s,2m0s,4m0s,8m0s",
		"HEALTHPREDICT_SURGE_HOLD", "ferry-healthpredict eval --telemetry FILE --labels FILE",
		"\n  --metrics-addr string\n", "\n  --version\n"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("usage lacks %q:\n%s", want, out.String())
		}
	}
}

func TestLoadFlagErrorsHelpAndVersion(t *testing.T) {
	var out bytes.Buffer
	if _, err := Load([]string{"--nope"}, envOf(nil), &out); err == nil || err.Error() != "--nope: unknown flag (see ferry-healthpredict -h)" || out.Len() != 0 {
		t.Fatalf("unknown flag: %v %q", err, out.String())
	}
	out.Reset()
	if _, err := Load([]string{"-h"}, envOf(nil), &out); !errors.Is(err, ErrHelp) ||
		!strings.HasPrefix(out.String(), "ferry-healthpredict predicts ingest outages") || !strings.Contains(out.String(), "\n  --nats string\n") {
		t.Fatalf("help: %v %q", err, out.String())
	}
	out.Reset()
	if _, err := Load([]string{"--version"}, envOf(nil), &out); !errors.Is(err, ErrHelp) || !strings.HasPrefix(out.String(), "ferry-healthpredict ") ||
		!strings.Contains(out.String(), "(commit ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
}
