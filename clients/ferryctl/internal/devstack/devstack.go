// Package devstack implements `ferryctl dev` (the local stack without Docker)
// and `ferryctl demo` (the stack, a synthetic camera, a viewer, a maintenance
// window, and a report of the migration).
package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl/stack"
	"github.com/ferrystream/ferry/libs/cli"
)

func stackFlags(fs *flag.FlagSet, o *stack.Options, udp bool) {
	fs.StringVar(&o.BinDir, "bin", "", "directory of the ferry binaries (default: next to ferryctl)")
	fs.StringVar(&o.DataDir, "data", "", "data and log directory (default: a temporary directory, removed at exit)")
	fs.IntVar(&o.NATSPort, "nats-port", 0, "NATS client port (default: random)")
	fs.IntVar(&o.Origins, "origins", 3, "ingest hosts in the origin role")
	fs.IntVar(&o.Edges, "edges", 1, "ingest hosts in the edge role")
	fs.BoolVar(&o.UDP, "udp", udp, "serve RTSP over UDP too (RTP/RTCP port pairs from the free ports), not only over TCP")
	fs.StringVar(&o.LogLevel, "log-level", "info", "services' log level")
}

// DevDescription is the paragraph of `ferryctl dev -h`.
const DevDescription = `Runs Ferry's local stack on loopback until Ctrl-C, without Docker: an
embedded NATS server, ingest origins and an edge (RTSP over TCP and UDP), and
one healthpredict, placement and notifier, each a child process from the bin
directory with its log in the data directory. It prints the addresses, then a
line whenever one of its processes exits (naming it and its exit status), and
"stopped" once everything is down. Point ferryctl, ferry-publish, ffmpeg or a
player at it.`

// DemoDescription is the paragraph of `ferryctl demo -h`.
const DemoDescription = `Runs the local stack (as ferryctl dev), a synthetic camera publishing
through ferry-publish and a viewer probing the edge, schedules maintenance on
the camera's host --in from now, and reports the migration it causes: each
step's time, frames sent, received, lost and duplicated, and the longest gap
the viewer saw. The last line is the report as JSON; the exit code is 0 only
when the stream moved with no frame lost.`

// syncWriter serializes writes to w (the stack reports exits from its own goroutines).
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Dev runs the local stack until ctx ends.
func Dev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ferryctl dev", flag.ContinueOnError)
	cli.SetUsage(fs, stderr, "ferryctl dev [--origins N] [--edges N] [--publishers N] [--udp=false] [--data DIR] [--bin DIR]", DevDescription)
	var o stack.Options
	stackFlags(fs, &o, true)
	publishers := fs.Int("publishers", 0, "synthetic publishers to start (streams cam-1..cam-N)")
	if err := cli.ParseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *publishers < 0 || *publishers > 200 {
		return fmt.Errorf("--publishers: must be 0..200, got %d", *publishers)
	}
	out := &syncWriter{w: stdout}
	stdout = out
	o.OnExit = func(name, status string) {
		fmt.Fprintf(out, "%s  %s exited (%s)\n", time.Now().Format("15:04:05"), name, status)
	}
	fmt.Fprintln(stdout, "starting the Ferry dev stack...")
	s, err := stack.Start(ctx, o)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	for i := 1; i <= *publishers; i++ {
		if _, err := s.StartPublisher(ctx, fmt.Sprintf("cam-%d", i), fmt.Sprintf("agent-%d", i)); err != nil {
			return err
		}
	}
	printStack(stdout, s)
	fmt.Fprintln(stdout, "\nready. Try, in another shell:")
	fmt.Fprintf(stdout, "  export FERRY_NATS_URL=%s\n", s.NATSURL)
	fmt.Fprintln(stdout, "  bin/ferryctl status")
	fmt.Fprintln(stdout, "  bin/ferry-publish --stream cam-x --client-id me --source synthetic")
	if e := s.Edge(); e != nil {
		fmt.Fprintf(stdout, "  bin/ferryctl probe %s/cam-x\n", e.RTSPURL)
	}
	fmt.Fprintln(stdout, "  bin/ferryctl maintenance schedule ingest-1 --in 30s --reason test")
	fmt.Fprintln(stdout, "Ctrl-C stops everything.")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, "stopping...")
			s.Stop()
			stopped = true
			fmt.Fprintln(stdout, "stopped")
			return nil
		case <-tick.C:
			if err := s.Check(); err != nil {
				return err
			}
		}
	}
}

func printStack(w io.Writer, s *stack.Stack) {
	fmt.Fprintf(w, "  nats         %s\n", s.NATSURL)
	for _, h := range s.Hosts {
		fmt.Fprintf(w, "  %-12s %-6s %-7s rtsp %s  metrics %s/metrics\n", h.ID, h.Role, h.Zone, h.RTSPURL, h.MetricsURL)
	}
	if s.Opts.UDP {
		fmt.Fprintln(w, "  rtsp         over TCP and UDP (RTP/RTCP port pairs from the free ports)")
	} else {
		fmt.Fprintln(w, "  rtsp         over TCP only (--udp to add UDP)")
	}
	for _, name := range []string{"healthpredict", "placement", "notifier"} {
		fmt.Fprintf(w, "  %-12s metrics %s/metrics\n", name, s.Services[name])
	}
	fmt.Fprintf(w, "  notifier     http %s\n", s.NotifierURL)
	fmt.Fprintf(w, "  logs         %s\n", s.LogDir)
}

// Result is the demo's one-line JSON report.
type Result struct {
	Result         string  `json:"result"`
	Reason         string  `json:"reason,omitempty"`
	MigrationID    string  `json:"migration_id"`
	From           string  `json:"from"`
	To             string  `json:"to"`
	FramesSent     int64   `json:"frames_sent"`
	FramesReceived int64   `json:"frames_received"`
	FramesLost     int64   `json:"frames_lost"`
	Duplicates     int64   `json:"duplicates"`
	MaxGapMS       float64 `json:"max_gap_ms"`
	PredictedMS    float64 `json:"predicted_ms"`
	ReassignedMS   float64 `json:"reassigned_ms"`
	NotifiedMS     float64 `json:"notified_ms"`
	AttachedMS     float64 `json:"attached_ms"`
	CeasedMS       float64 `json:"ceased_ms"`
	CompletedMS    float64 `json:"completed_ms"`
}

// ErrDemoFailed is returned when the migration did not complete with zero frames lost.
var ErrDemoFailed = errors.New("demo failed")

// Demo runs the stack, a publisher and a probe on the edge, schedules
// maintenance on the publisher's host, and reports the migration.
func Demo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ferryctl demo", flag.ContinueOnError)
	cli.SetUsage(fs, stderr, "ferryctl demo [--in 12s] [--timeout 90s] [--stream NAME] [--origins N] [--edges N] [--udp] [--data DIR] [--bin DIR]", DemoDescription)
	var o stack.Options
	stackFlags(fs, &o, false)
	lead := fs.Duration("in", 12*time.Second, "maintenance starts this long after it is scheduled")
	timeout := fs.Duration("timeout", 90*time.Second, "give up after this long")
	streamName := fs.String("stream", "demo-cam", "stream name")
	if err := cli.ParseFlags(fs, args, stderr); err != nil {
		return err
	}
	o.MinDeadline = *lead
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	start := time.Now()
	say := func(format string, a ...any) {
		fmt.Fprintf(stdout, "%7.3fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}
	say("starting an embedded NATS, %d ingest origins, %d edge, healthpredict, placement, notifier", max(o.Origins, 3), max(o.Edges, 1))
	s, err := stack.Start(ctx, o)
	if err != nil {
		return err
	}
	defer s.Stop()
	printStack(stdout, s)
	res, err := runDemo(ctx, s, *streamName, *lead, say)
	line, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(line))
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v (logs in %s; set FERRY_KEEP_DATA=1 to keep them)\n", err, s.LogDir)
		return fmt.Errorf("%w: %v", ErrDemoFailed, err)
	}
	return nil
}

func msSince(t0, t time.Time) float64 {
	if t.IsZero() {
		return -1
	}
	return float64(t.Sub(t0).Microseconds()) / 1000
}

func describe(s stack.Seen) string {
	typ := strings.TrimPrefix(strings.TrimSuffix(s.Env.Type, ".v1"), "io.ferry.")
	parts := []string{typ}
	for _, k := range []string{"host", "stream", "from_host", "to_host", "cause", "channel", "reason", "migration_id"} {
		if v := s.Str(k); v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}
