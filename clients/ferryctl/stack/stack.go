// Package stack starts Ferry's local stack as separate processes on loopback:
// an embedded NATS server (in this process), ingest origins, edges, and one
// instance of every other service, each with its logs in a file. ferryctl dev
// and demo use it, and so do the end-to-end tests.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/natsembed"
)

// Options configures a stack.
type Options struct {
	// BinDir holds the ferry binaries (default: the directory of this executable).
	BinDir string
	// DataDir holds NATS data and logs (default: a new temporary directory, removed on Stop).
	DataDir string
	// NATSPort is the client port (0 = random).
	NATSPort int
	// Origins and Edges are the number of ingest hosts in each role (defaults 3 and 1).
	Origins, Edges int
	// UDP enables RTSP over UDP on the ingest hosts.
	UDP bool
	// DrainGrace is the ingest drain grace (default 30s).
	DrainGrace time.Duration
	// MinDeadline is placement's minimum migration deadline (default 10s).
	MinDeadline time.Duration
	// ExtraEnv is added to every process's environment.
	ExtraEnv []string
	// LogLevel for the services (default info).
	LogLevel string
	// OnExit, if set, is called (from another goroutine) when a process of
	// the stack exits without the stack having stopped or killed it: a host
	// that drained and left, or one that failed. status is like
	// "exit status 0" or "signal: killed".
	OnExit func(name, status string)
}

// Host is one ingest process.
type Host struct {
	ID         string
	Role       string
	Zone       string
	RTSPURL    string
	MetricsURL string
	proc       *proc
}

// Stack is a running local stack.
type Stack struct {
	Opts        Options
	NATS        *server.Server
	NATSURL     string
	NC          *nats.Conn
	JS          jetstream.JetStream
	Secret      string
	Hosts       []*Host
	Services    map[string]string // service name -> metrics URL
	NotifierURL string
	LogDir      string

	procs   *procs
	tempDir bool
	common  []string
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// DefaultBinDir is the directory of the running executable.
func DefaultBinDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "bin"
	}
	return filepath.Dir(exe)
}

// Start brings the stack up and waits until every process is ready.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	if o.BinDir == "" {
		o.BinDir = DefaultBinDir()
	}
	if o.Origins == 0 {
		o.Origins = 3
	}
	if o.Edges == 0 {
		o.Edges = 1
	}
	if o.DrainGrace == 0 {
		o.DrainGrace = 30 * time.Second
	}
	if o.MinDeadline == 0 {
		o.MinDeadline = 10 * time.Second
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	s := &Stack{Opts: o, Secret: randHex(16), Services: map[string]string{}}
	if o.DataDir == "" {
		d, err := os.MkdirTemp("", "ferry-dev-")
		if err != nil {
			return nil, err
		}
		o.DataDir, s.tempDir = d, true
		s.Opts.DataDir = d
	}
	s.LogDir = filepath.Join(o.DataDir, "logs")
	if err := os.MkdirAll(s.LogDir, 0o755); err != nil {
		return nil, err
	}
	s.procs = &procs{binDir: o.BinDir, logDir: s.LogDir, onExit: o.OnExit}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	port := o.NATSPort
	if port == 0 {
		port = -1
	}
	s.NATS, err = natsembed.Run(natsembed.Config{Name: "ferry-dev", Port: port, StoreDir: filepath.Join(o.DataDir, "nats")})
	if err != nil {
		return nil, err
	}
	s.NATSURL = s.NATS.ClientURL()
	s.NC, err = nats.Connect(s.NATSURL, nats.Name("ferryctl-stack"))
	if err != nil {
		return nil, err
	}
	s.JS, err = jetstream.New(s.NC)
	if err != nil {
		return nil, err
	}
	if err := bus.Bootstrap(ctx, s.JS, 1); err != nil {
		return nil, err
	}

	common := []string{
		"FERRY_NATS_URL=" + s.NATSURL,
		"FERRY_TOKEN_SECRET=" + s.Secret,
		"FERRY_LOG_LEVEL=" + o.LogLevel,
	}
	common = append(common, o.ExtraEnv...)
	s.common = common
	var all []*proc
	for i := 1; i <= o.Origins+o.Edges; i++ {
		role, id, zone := "origin", fmt.Sprintf("ingest-%d", i), "zone-a"
		if i%2 == 0 {
			zone = "zone-b"
		}
		if i > o.Origins {
			role, id = "edge", fmt.Sprintf("edge-%d", i-o.Origins)
			zone = "zone-b"
		}
		h, p, err := s.startHost(ctx, id, role, zone, common)
		if err != nil {
			return nil, err
		}
		s.Hosts = append(s.Hosts, h)
		all = append(all, p)
	}
	for _, svc := range []string{"healthpredict", "placement", "notifier"} {
		mport, err := freePort()
		if err != nil {
			return nil, err
		}
		prefix := map[string]string{"healthpredict": "HEALTHPREDICT", "placement": "PLACEMENT", "notifier": "NOTIFIER"}[svc]
		env := append([]string{prefix + "_METRICS_ADDR=127.0.0.1:" + strconv.Itoa(mport)}, common...)
		switch svc {
		case "notifier":
			hport, err := freePort()
			if err != nil {
				return nil, err
			}
			s.NotifierURL = "http://127.0.0.1:" + strconv.Itoa(hport)
			env = append(env, "NOTIFIER_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(hport))
		case "placement":
			env = append(env, "PLACEMENT_MIN_DEADLINE="+o.MinDeadline.String())
		}
		murl := "http://127.0.0.1:" + strconv.Itoa(mport)
		p, err := s.procs.start(ctx, svc, "ferry-"+svc, nil, env, murl+"/readyz")
		if err != nil {
			return nil, err
		}
		s.Services[svc] = murl
		all = append(all, p)
	}
	if err := s.procs.waitReady(ctx, 60*time.Second, all...); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Stack) startHost(ctx context.Context, id, role, zone string, common []string) (*Host, *proc, error) {
	rport, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	mport, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(rport)
	env := append([]string{
		"INGEST_HOST_ID=" + id,
		"INGEST_ROLE=" + role,
		"INGEST_ZONE=" + zone,
		"INGEST_RTSP_ADDR=" + addr,
		"INGEST_METRICS_ADDR=127.0.0.1:" + strconv.Itoa(mport),
		"INGEST_DRAIN_GRACE=" + s.Opts.DrainGrace.String(),
	}, common...)
	if s.Opts.UDP {
		up, err := freeUDPPair()
		if err != nil {
			return nil, nil, err
		}
		env = append(env, fmt.Sprintf("INGEST_UDP_RTP_ADDR=127.0.0.1:%d", up), fmt.Sprintf("INGEST_UDP_RTCP_ADDR=127.0.0.1:%d", up+1))
	}
	murl := "http://127.0.0.1:" + strconv.Itoa(mport)
	p, err := s.procs.start(ctx, id, "ferry-ingest", nil, env, murl+"/readyz")
	if err != nil {
		return nil, nil, err
	}
	return &Host{ID: id, Role: role, Zone: zone, RTSPURL: "rtsp://" + addr, MetricsURL: murl, proc: p}, p, nil
}

// Host returns the host with the given id.
func (s *Stack) Host(id string) *Host {
	for _, h := range s.Hosts {
		if h.ID == id {
			return h
		}
	}
	return nil
}

// Edge returns the first edge host.
func (s *Stack) Edge() *Host {
	for _, h := range s.Hosts {
		if h.Role == "edge" {
			return h
		}
	}
	return nil
}

// Kill sends SIGKILL to a host (an unpredicted crash).
func (s *Stack) Kill(id string) error {
	h := s.Host(id)
	if h == nil {
		return fmt.Errorf("no host %s", id)
	}
	h.proc.kill()
	return nil
}

// Terminate sends SIGTERM to a host (it drains) and does not wait.
func (s *Stack) Terminate(id string) error {
	h := s.Host(id)
	if h == nil {
		return fmt.Errorf("no host %s", id)
	}
	h.proc.expected.Store(true)
	return h.proc.cmd.Process.Signal(sigterm)
}

// Exited reports whether a host process has ended.
func (s *Stack) Exited(id string) bool {
	h := s.Host(id)
	return h != nil && h.proc.exited()
}

// Publisher is a ferry-publish process.
type Publisher struct {
	Stream, Client string
	MetricsURL     string
	proc           *proc
}

// Exited reports whether the publisher process ended.
func (p *Publisher) Exited() bool { return p.proc.exited() }

// Log returns the path of the publisher's log.
func (p *Publisher) Log() string { return p.proc.logPath }

// Stop stops the publisher.
func (p *Publisher) Stop() { p.proc.stop(5 * time.Second) }

// StartPublisher runs ferry-publish with a synthetic source for stream.
func (s *Stack) StartPublisher(ctx context.Context, stream, client string, extraArgs ...string) (*Publisher, error) {
	mport, err := freePort()
	if err != nil {
		return nil, err
	}
	murl := "http://127.0.0.1:" + strconv.Itoa(mport)
	args := append([]string{"--stream", stream, "--client-id", client, "--source", "synthetic",
		"--channels", "nats", "--json", "--metrics-addr", "127.0.0.1:" + strconv.Itoa(mport),
		"--notifier-url", s.NotifierURL}, extraArgs...)
	env := []string{"FERRY_NATS_URL=" + s.NATSURL, "FERRY_LOG_LEVEL=" + s.Opts.LogLevel}
	p, err := s.procs.start(ctx, "publish-"+stream, "ferry-publish", args, env, "")
	if err != nil {
		return nil, err
	}
	return &Publisher{Stream: stream, Client: client, MetricsURL: murl, proc: p}, nil
}

// StartProcess runs any binary from the bin directory under the stack's
// environment (used for plain ffmpeg-like cases by tests).
func (s *Stack) StartProcess(ctx context.Context, name, bin string, args, env []string) (*Publisher, error) {
	env = append([]string{"FERRY_NATS_URL=" + s.NATSURL, "FERRY_TOKEN_SECRET=" + s.Secret}, env...)
	p, err := s.procs.start(ctx, name, bin, args, env, "")
	if err != nil {
		return nil, err
	}
	return &Publisher{Stream: name, proc: p}, nil
}

// Stop stops every process and the embedded NATS server, and removes a
// temporary data directory.
func (s *Stack) Stop() {
	if s.procs != nil {
		s.procs.stopAll(5 * time.Second)
	}
	if s.NC != nil {
		s.NC.Close()
	}
	if s.NATS != nil {
		s.NATS.Shutdown()
		s.NATS.WaitForShutdown()
	}
	if s.tempDir && os.Getenv("FERRY_KEEP_DATA") == "" {
		_ = os.RemoveAll(s.Opts.DataDir)
	}
}

// ErrStopped is returned when a process of the stack stopped unexpectedly.
var ErrStopped = errors.New("a process of the stack stopped")

// Check returns ErrStopped naming the first service process that exited.
func (s *Stack) Check() error {
	s.procs.mu.Lock()
	list := append([]*proc(nil), s.procs.list...)
	s.procs.mu.Unlock()
	for _, p := range list {
		// A process the stack stopped, or one that ended cleanly (a host
		// that drained), is not a failure.
		if p.exited() && !p.expected.Load() && p.err != nil && !isPublisher(p.name) {
			return fmt.Errorf("%w: %s (%v); log %s\n%s", ErrStopped, p.name, p.err, p.logPath, tail(p.logPath, 10))
		}
	}
	return nil
}

func isPublisher(name string) bool { return len(name) > 8 && name[:8] == "publish-" }

// Placement returns the current placement record of stream.
func (s *Stack) Placement(ctx context.Context, stream string) (events.Placement, error) {
	var p events.Placement
	kv, err := s.JS.KeyValue(ctx, bus.BucketPlacements)
	if err != nil {
		return p, err
	}
	e, err := kv.Get(ctx, events.PlacementKey(stream))
	if err != nil {
		return p, fmt.Errorf("placement of %s: %w", stream, err)
	}
	return p, json.Unmarshal(e.Value(), &p)
}

// AddOrigin starts one more ingest origin (ingest-<n>) and waits until it is ready.
func (s *Stack) AddOrigin(ctx context.Context) (*Host, error) {
	n := 0
	for _, h := range s.Hosts {
		if h.Role == "origin" {
			n++
		}
	}
	id, zone := fmt.Sprintf("ingest-%d", n+1), "zone-a"
	if (n+1)%2 == 0 {
		zone = "zone-b"
	}
	h, p, err := s.startHost(ctx, id, "origin", zone, s.common)
	if err != nil {
		return nil, err
	}
	if err := s.procs.waitReady(ctx, 30*time.Second, p); err != nil {
		return nil, err
	}
	s.Hosts = append(s.Hosts, h)
	return h, nil
}
