package publisher_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferrystream/ferry/clients/publisher"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
)

// BenchmarkNoticeLatency measures the time from a `reassigned` event to the
// agent's ack, as the `acked` event shows it, over 1,000 notices per run: the
// real notifier and the real agent (its notice receivers, loop and acker) on
// an embedded NATS. Each notice names the host the agent is already on, so
// the agent acks it and has nothing to move: the figure is the notice path
// alone. "sequential" sends one notice at a time; "burst" publishes 1,000
// reassigned events at once (queueing included).
func BenchmarkNoticeLatency(b *testing.B) {
	const n = 1000
	for _, tc := range []struct {
		channel string
		burst   bool
	}{
		{publisher.ChannelNATS, false},
		{publisher.ChannelNATS, true},
		{publisher.ChannelWebhook, false},
		{publisher.ChannelSSE, false},
	} {
		name := tc.channel + "/sequential"
		if tc.burst {
			name = tc.channel + "/burst"
		}
		b.Run(name, func(b *testing.B) {
			env := testutil.NATS(b)
			notifierURL := startNotifier(b, env)
			pl := newPlacementStub(b, env)
			h := newMiniHost(b, "ingest-a")
			pl.addHost("ingest-a", h.url)
			ag := startAgent(b, env, func(c *publisher.Config) {
				c.Channels = []string{tc.channel}
				c.NotifierURL = notifierURL
				c.FPS = 5
			}, nil)
			ag.waitHost(b, "ingest-a", 10*time.Second)
			sess := pl.session("cam-1")

			var mu sync.Mutex
			acked := map[string]time.Time{}
			ackCh := make(chan string, n)
			sub, err := env.NC.Subscribe(subject.NoticeAcked("cam-1"), func(m *nats.Msg) {
				if _, d, err := events.DecodeAs[events.NoticeOutcome](m.Data); err == nil {
					mu.Lock()
					if _, dup := acked[d.MigrationID]; !dup {
						acked[d.MigrationID] = time.Now()
						ackCh <- d.MigrationID
					}
					mu.Unlock()
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Unsubscribe()
			_ = env.NC.Flush()

			reassign := func(i, run int) {
				r := events.Reassigned{MigrationID: fmt.Sprintf("m-%d-%d", run, i), Stream: "cam-1", FromHost: "ingest-a",
					ToHost: "ingest-a", ToURL: h.url + "/cam-1", Epoch: uint64(i + 2), Deadline: time.Now().Add(time.Minute),
					Reason: "bench", SessionID: sess.SessionID, ClientID: "agent-1", Mode: "push"}
				if _, err := events.Publish(context.Background(), env.JS, "bench/placement", r); err != nil {
					b.Fatal(err)
				}
			}
			// warm up (and, for SSE, wait until the stream is open): not measured
			for i := range 5 {
				reassign(i, -1)
				select {
				case <-ackCh:
				case <-time.After(10 * time.Second):
					b.Fatalf("warm-up notice %d not acked; agent output tail: %s", i, tail(ag.out.String()))
				}
			}
			var lat []time.Duration
			b.ResetTimer()
			for run := range b.N {
				sent := make([]time.Time, n)
				if tc.burst {
					for i := range n {
						sent[i] = time.Now()
						reassign(i, run)
					}
					for range n {
						select {
						case <-ackCh:
						case <-time.After(30 * time.Second):
							b.Fatalf("acks missing; agent output tail: %s", tail(ag.out.String()))
						}
					}
				} else {
					for i := range n {
						sent[i] = time.Now()
						reassign(i, run)
						select {
						case <-ackCh:
						case <-time.After(10 * time.Second):
							b.Fatalf("notice %d not acked; agent output tail: %s", i, tail(ag.out.String()))
						}
					}
				}
				mu.Lock()
				for i := range n {
					lat = append(lat, acked[fmt.Sprintf("m-%d-%d", run, i)].Sub(sent[i]))
				}
				mu.Unlock()
			}
			b.StopTimer()
			slices.Sort(lat)
			p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
			b.ReportMetric(float64(p(0.50).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p(0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
			fmt.Printf("notice latency reassigned -> agent ack (%s, %d notices): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
				name, len(lat), float64(p(0.50).Microseconds())/1000, float64(p(0.99).Microseconds())/1000,
				float64(lat[len(lat)-1].Microseconds())/1000)
			if st := ag.Stats(); st.Moves != 0 || st.Host != "ingest-a" {
				b.Fatalf("agent moved during the benchmark: %+v", st)
			}
		})
	}
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}

// BenchmarkAgentCPU runs ferry-publish processes (the real binary, each
// publishing one synthetic stream at 25 fps to an in-process RTSP host) and
// reads their CPU time from /proc over a steady 10 s window: the agent's CPU
// per published stream, at the minimal synthetic bitrate and at 2 Mbit/s.
func BenchmarkAgentCPU(b *testing.B) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		b.Skip("needs /proc")
	}
	bin := filepath.Join(b.TempDir(), "ferry-publish")
	build := exec.Command("go", "build", "-o", bin, "./cmd/ferry-publish")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	ticks := clockTicks()
	for _, tc := range []struct {
		name    string
		bitrate int
	}{{"minimal", 0}, {"2Mbps", 2_000_000}} {
		b.Run(tc.name, func(b *testing.B) {
			const procs = 4
			const window = 10 * time.Second
			env := testutil.NATS(b)
			pl := newPlacementStub(b, env)
			h := newMiniHost(b, "ingest-a")
			pl.addHost("ingest-a", h.url)
			var perStream []float64
			for range b.N {
				ctx, cancel := context.WithCancel(context.Background())
				var cmds []*exec.Cmd
				for i := range procs {
					cmd := exec.CommandContext(ctx, bin, "--stream", fmt.Sprintf("cpu-%d", i), "--client-id", fmt.Sprintf("cpu-agent-%d", i),
						"--source", "synthetic", "--fps", "25", "--bitrate", strconv.Itoa(tc.bitrate), "--channels", "nats", "--nats", env.URL)
					cmd.Env = append(os.Environ(), "FERRY_LOG_LEVEL=error")
					if err := cmd.Start(); err != nil {
						b.Fatal(err)
					}
					cmds = append(cmds, cmd)
				}
				testutil.CheckFor(b, 15*time.Second, 50*time.Millisecond, func() error {
					if p := h.publishers(); p < procs {
						return fmt.Errorf("%d of %d agents publishing", p, procs)
					}
					return nil
				})
				time.Sleep(2 * time.Second) // let start-up settle; not an assertion
				start := make([]float64, procs)
				for i, c := range cmds {
					start[i] = cpuSeconds(b, c.Process.Pid, ticks)
				}
				t0 := time.Now()
				time.Sleep(window)
				wall := time.Since(t0).Seconds()
				for i, c := range cmds {
					perStream = append(perStream, 100*(cpuSeconds(b, c.Process.Pid, ticks)-start[i])/wall)
				}
				cancel()
				for _, c := range cmds {
					_ = c.Wait()
				}
			}
			var sum float64
			for _, v := range perStream {
				sum += v
			}
			mean := sum / float64(len(perStream))
			b.ReportMetric(mean, "cpu-%/stream")
			fmt.Printf("agent CPU per published stream (%s, 25 fps, %d processes, %s window): %.2f%% of one core (each: %s)\n",
				tc.name, procs, window, mean, fmtFloats(perStream))
		})
	}
}

func fmtFloats(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strings.Join(s, " ")
}

func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}

// cpuSeconds reads utime+stime of pid from /proc/<pid>/stat.
func cpuSeconds(b *testing.B, pid int, ticks float64) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / ticks
}
