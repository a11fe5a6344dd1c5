package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
)

// sim is one run: the NATS child, the service children, the simulated
// hosts and agents, the observer.
type sim struct {
	cfg     config
	ctx     context.Context
	cancel  context.CancelFunc
	out     io.Writer
	log     zerolog.Logger
	secret  []byte
	natsURL string
	logDir  string

	nats     *natsChild
	services map[string]*child // healthpredict, placement-1, placement-2, notifier
	svcEnv   map[string][]string

	nc *nats.Conn
	js jetstream.JetStream

	hosts   []*simHost
	byID    map[string]*simHost
	agents  []*agent
	byCli   map[string]*agent
	agentNC []*nats.Conn

	obs       *observer
	attach    *attachments
	notices   jetstream.ConsumeContext
	chooseLat latencies
	started   time.Time
	self      *usage

	// mu guards counters, violations and services.
	mu         sync.Mutex
	counters   map[string]int64
	violations []string
	nviol      int
}

func newSim(parent context.Context, c config, out io.Writer) (*sim, error) {
	if err := checkShapes(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(parent)
	s := &sim{cfg: c, ctx: ctx, cancel: cancel, out: out, log: zerolog.New(io.Discard), byID: map[string]*simHost{},
		byCli: map[string]*agent{}, services: map[string]*child{}, svcEnv: map[string][]string{}, counters: map[string]int64{},
		attach: newAttachments(), started: time.Now()}
	s.obs = newObserver(s)
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	s.secret = []byte(hex.EncodeToString(b))
	s.logDir = filepath.Join(c.workDir, "logs")
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		return nil, err
	}
	if err := s.start(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *sim) say(format string, a ...any) {
	fmt.Fprintf(s.out, "%8.1fs  %s\n", time.Since(s.started).Seconds(), fmt.Sprintf(format, a...))
}

func (s *sim) start() error {
	var err error
	s.nats, err = startNATS(s.ctx, s.cfg.natsNodes, filepath.Join(s.cfg.workDir, "nats"), s.logDir)
	if err != nil {
		return err
	}
	s.natsURL = s.nats.urls
	s.say("nats: %s (monitor %v)", s.natsURL, s.nats.monitors)
	s.nc, s.js, err = bus.Connect(s.ctx, bus.Config{URL: s.natsURL, Name: "scale-control", Replicas: s.cfg.replicas}, s.log)
	if err != nil {
		return err
	}
	bctx, cancel := context.WithTimeout(s.ctx, 60*time.Second)
	err = bus.Bootstrap(bctx, s.js, s.cfg.replicas)
	cancel()
	if err != nil {
		return err
	}
	placements, err := s.js.KeyValue(s.ctx, bus.BucketPlacements)
	if err != nil {
		return err
	}
	if err := s.obs.run(s.ctx, s.nc, placements); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for bus.Sleep(s.ctx, 30*time.Second) {
			s.attach.prune(2 * time.Minute)
		}
	}()
	for _, name := range []string{"healthpredict", "placement-1", "placement-2", "notifier"} {
		if err := s.startService(name); err != nil {
			return err
		}
	}
	s.say("services ready: healthpredict, placement-1, placement-2, notifier (logs in %s)", s.logDir)

	// hosts, registered concurrently
	s.hosts = make([]*simHost, s.cfg.hosts)
	for i := range s.hosts {
		h := newSimHost(s, i+1)
		s.hosts[i] = h
		s.byID[h.id] = h
	}
	if err := parallel(s.ctx, 32, len(s.hosts), func(i int) error { return s.hosts[i].start(s.ctx) }); err != nil {
		return fmt.Errorf("start hosts: %w", err)
	}
	s.say("%d simulated hosts registered, heartbeating, watching placements (%s)", len(s.hosts), s.cfg.watch)

	for i := 0; i < s.cfg.agentConns; i++ {
		nc, _, err := bus.Connect(s.ctx, bus.Config{URL: s.natsURL, Name: "scale-agents-" + strconv.Itoa(i), Replicas: s.cfg.replicas}, s.log)
		if err != nil {
			return err
		}
		s.agentNC = append(s.agentNC, nc)
	}
	s.agents = make([]*agent, s.cfg.streams)
	for i := range s.agents {
		a := newAgent(s, i+1, s.agentNC[i%len(s.agentNC)])
		s.agents[i] = a
		s.byCli[a.client] = a
	}
	js, err := jetstream.New(s.agentNC[0])
	if err != nil {
		return err
	}
	if s.notices, err = s.consumeNotices(s.ctx, js); err != nil {
		return err
	}
	go s.sampler()
	return nil
}

// serviceEnv is the environment of a service child.
func (s *sim) serviceEnv(name string, metrics string) []string {
	env := []string{"FERRY_NATS_URL=" + s.natsURL, "FERRY_TOKEN_SECRET=" + string(s.secret),
		"FERRY_NATS_REPLICAS=" + strconv.Itoa(s.cfg.replicas), "FERRY_LOG_LEVEL=" + s.cfg.logLevel}
	switch {
	case name == "healthpredict":
		env = append(env, "HEALTHPREDICT_METRICS_ADDR="+metrics, "HEALTHPREDICT_INSTANCE=healthpredict-1")
	case name == "notifier":
		hp, _ := freePort()
		env = append(env, "NOTIFIER_METRICS_ADDR="+metrics, "NOTIFIER_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(hp), "NOTIFIER_INSTANCE=notifier-1")
	default: // placement-N
		env = append(env, "PLACEMENT_METRICS_ADDR="+metrics, "PLACEMENT_ID="+name)
	}
	return append(env, s.cfg.serviceEnv...)
}

func (s *sim) startService(name string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	metrics := "127.0.0.1:" + strconv.Itoa(port)
	bin := "ferry-" + name
	if len(name) > 10 && name[:10] == "placement-" {
		bin = "ferry-placement"
	}
	env := s.serviceEnv(name, metrics)
	c, err := startChild(name, filepath.Join(s.cfg.binDir, bin), nil, env, s.logDir)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.services[name] = c
	s.mu.Unlock()
	s.say("%s started: metrics (and /debug/pprof/ with -service-env FERRY_PPROF=1) on http://%s", name, metrics)
	return waitReady(s.ctx, c, "http://"+metrics+"/readyz", 90*time.Second)
}

// serviceList returns the service processes started so far (a scenario
// restarts services while the sampler reads them).
func (s *sim) serviceList() []*child {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*child, 0, len(s.services))
	for _, c := range s.services {
		out = append(out, c)
	}
	return out
}

// sampler records every process's RSS each second.
func (s *sim) sampler() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	self := newUsage(os.Getpid())
	s.mu.Lock()
	s.self = self
	s.mu.Unlock()
	for {
		s.nats.usage.sample()
		for _, c := range s.serviceList() {
			c.usage.sample()
		}
		self.sample()
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sim) close() {
	if s.notices != nil {
		s.notices.Stop()
	}
	for _, h := range s.hosts {
		if h != nil && h.alive.Swap(false) {
			h.cancel()
			h.nc.Close()
		}
	}
	for _, nc := range s.agentNC {
		nc.Close()
	}
	var wg sync.WaitGroup
	for _, c := range s.services {
		wg.Go(func() { c.stop(5 * time.Second) })
	}
	wg.Wait()
	if s.nc != nil {
		s.nc.Close()
	}
	if s.nats != nil {
		s.nats.stop(10 * time.Second)
	}
	s.cancel()
}

func (s *sim) hostByID(id string) *simHost { return s.byID[id] }

func (s *sim) agentByClient(id string) *agent { return s.byCli[id] }

func (s *sim) count(name string) {
	s.mu.Lock()
	s.counters[name]++
	s.mu.Unlock()
}

// violation records a broken invariant (the first 20 are kept verbatim).
func (s *sim) violation(format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nviol++
	if len(s.violations) < 20 {
		s.violations = append(s.violations, fmt.Sprintf(format, a...))
	}
}

func (s *sim) violationCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nviol
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// parallel runs f(0..n-1) with at most k at once and returns the first error.
func parallel(ctx context.Context, k, n int, f func(i int) error) error {
	sem := make(chan struct{}, k)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// latencies collects durations; mu guards d.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// take returns the durations collected so far, sorted, and starts over.
func (l *latencies) take() []time.Duration {
	l.mu.Lock()
	d := l.d
	l.d = nil
	l.mu.Unlock()
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(p*float64(len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
