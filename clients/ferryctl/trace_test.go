package ferryctl_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/testutil"
)

type traceJSON struct {
	MigrationID string `json:"migration_id"`
	Stream      string `json:"stream"`
	FromHost    string `json:"from_host"`
	ToHost      string `json:"to_host"`
	Steps       []struct {
		Step         string  `json:"step"`
		SinceStartMS float64 `json:"since_start_ms"`
		DeltaMS      float64 `json:"delta_ms"`
		Cause        bool    `json:"cause"`
	} `json:"steps"`
	Outcome         string  `json:"outcome"`
	DurationMS      float64 `json:"duration_ms"`
	MakeBeforeBreak *bool   `json:"make_before_break"`
	FailedStep      string  `json:"failed_step"`
	FailReason      string  `json:"fail_reason"`
	PlacementSteps  []any   `json:"placement_steps"`
}

func TestTraceOrdersStepsAndTimesThem(t *testing.T) {
	env := testutil.NATS(t)
	seedChain(t, env)
	for _, viaBucket := range []bool{false, true} {
		name := "found through the events"
		if viaBucket {
			name = "found through the migrations bucket"
			putJSON(t, env.JS, bus.BucketMigrations, "m-1", map[string]any{"migration_id": "m-1", "stream": "cam-1", "from_host": "ingest-2", "to_host": "ingest-1", "state": "completed"})
		}
		t.Run(name, func(t *testing.T) {
			var tr traceJSON
			if err := json.Unmarshal([]byte(mustCtl(t, env.URL, "trace", "m-1", "--json").stdout), &tr); err != nil {
				t.Fatal(err)
			}
			if tr.MigrationID != "m-1" || tr.Stream != "cam-1" || tr.FromHost != "ingest-2" || tr.ToHost != "ingest-1" {
				t.Errorf("trace header %+v", tr)
			}
			want := []struct {
				step         string
				since, delta float64
				cause        bool
			}{
				{"health.outage_predicted", -2000, 0, true},
				{"placement.reassigned", 0, 2000, false},
				{"notify.delivered", 40, 40, false},
				{"notify.acked", 120, 80, false},
				{"ingest.publisher_attached", 300, 180, false},
				{"edge.switched", 380, 80, false},
				{"ingest.stream_ceased", 450, 70, false},
				{"placement.migration_completed", 500, 50, false},
			}
			if len(tr.Steps) != len(want) {
				t.Fatalf("%d steps, want %d: %+v", len(tr.Steps), len(want), tr.Steps)
			}
			for i, w := range want {
				s := tr.Steps[i]
				if s.Step != w.step || s.SinceStartMS != w.since || s.DeltaMS != w.delta || s.Cause != w.cause {
					t.Errorf("step %d = %+v, want %+v", i, s, w)
				}
			}
			if tr.Outcome != "completed" || tr.DurationMS != 500 || tr.MakeBeforeBreak == nil || !*tr.MakeBeforeBreak || len(tr.PlacementSteps) != 3 {
				t.Errorf("outcome %q duration %v mbb %v placement steps %v", tr.Outcome, tr.DurationMS, tr.MakeBeforeBreak, tr.PlacementSteps)
			}
		})
	}

	// the text rendering
	out := mustCtl(t, env.URL, "trace", "m-1").stdout
	ls := lines(out)
	if ls[0] != "migration m-1  stream cam-1  ingest-2 -> ingest-1  reason maintenance" {
		t.Errorf("first line %q", ls[0])
	}
	if f := strings.Fields(ls[1]); strings.Join(f, " ") != "TIME SINCE DELTA STEP DETAIL" {
		t.Errorf("header %q", ls[1])
	}
	if !strings.Contains(ls[2], "-2000.0ms") || !strings.Contains(ls[2], "health.outage_predicted (cause)") {
		t.Errorf("cause row %q", ls[2])
	}
	if !strings.Contains(ls[6], "300.0ms") || !strings.Contains(ls[6], "+180.0ms") || !strings.Contains(ls[6], "ingest.publisher_attached") {
		t.Errorf("attached row %q", ls[6])
	}
	if ls[10] != "completed in 500.0 ms, make-before-break" {
		t.Errorf("outcome line %q", ls[10])
	}
	if ls[11] != "placement's step timings: decided 0.0ms notified 120.0ms completed 500.0ms" {
		t.Errorf("placement line %q", ls[11])
	}
}

func TestTraceFailed(t *testing.T) {
	env := testutil.NATS(t)
	seedChain(t, env)
	out := lines(mustCtl(t, env.URL, "trace", "m-2").stdout)
	if len(out) != 5 { // header, column header, reassigned, failed, outcome
		t.Fatalf("output:\n%s", strings.Join(out, "\n"))
	}
	if out[4] != "failed at step attached after 880.0 ms: publisher did not attach before the deadline" {
		t.Errorf("outcome line %q", out[4])
	}

	r := ctl(t, env.URL, "trace", "m-404")
	if r.code != 1 || !strings.Contains(r.stderr, "migration m-404: no event in FERRY_EVENTS carries this id") {
		t.Errorf("unknown migration: exit %d stderr %q", r.code, r.stderr)
	}
}
