package healthpredict

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
)

func TestRunServesReadinessAndPredicts(t *testing.T) {
	env := testutil.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testutil.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- RunWithLog(ctx, []string{"run", "--nats", env.URL, "--metrics-addr", "127.0.0.1:0", "--instance", "hp-run"}[1:],
			envOf(nil), io.Discard, logs)
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
	now := time.Now().UTC()
	if _, err := events.Publish(ctx, env.JS, "test", events.Draining{Host: "ingest-1", Deadline: now.Add(time.Minute), Streams: 2}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), `ferry_healthpredict_published_total{result="stored",type="io.ferry.health.outage_predicted.v1"} 1`) {
			return errors.New("prediction not counted yet")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"message":"outage predicted"`) || !strings.Contains(logs.String(), `"cause":"drain"`) {
		t.Fatalf("logs:\n%s", logs.String())
	}
}

func TestGenThenEval(t *testing.T) {
	dir := t.TempDir()
	trace, labels := filepath.Join(dir, "trace.jsonl"), filepath.Join(dir, "labels.jsonl")
	var out bytes.Buffer
	err := Run(context.Background(), []string{"gen", "--hosts", "20", "--duration", "1h", "--seed", "3",
		"--telemetry", trace, "--labels", labels}, envOf(nil), &out)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := Run(context.Background(), []string{"eval", "--telemetry", trace, "--labels", labels}, envOf(nil), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var rep struct {
		Hosts   int     `json:"hosts"`
		Samples int     `json:"samples"`
		Recall  float64 `json:"recall"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("last line is not the JSON report: %v\n%s", err, out.String())
	}
	if rep.Hosts != 20 || rep.Samples == 0 || !strings.Contains(out.String(), "recall, leaks crashing within 10 min") {
		t.Fatalf("report %+v\n%s", rep, out.String())
	}
	// a predictor setting from the environment reaches eval
	out.Reset()
	err = Run(context.Background(), []string{"eval", "--telemetry", trace, "--labels", labels},
		envOf(map[string]string{"HEALTHPREDICT_MIN_TAU": "2"}), &out)
	if err == nil || !strings.Contains(err.Error(), "HEALTHPREDICT_MIN_TAU: must be in (0,1], got 2") {
		t.Fatalf("err %v", err)
	}
	if err := Run(context.Background(), []string{"eval", "--labels", labels}, envOf(nil), io.Discard); !errors.Is(err, ErrUsage) {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(trace); err != nil {
		t.Fatal(err)
	}
}
