// Package natsembed runs NATS servers with JetStream in this process, for
// tests and the dev stack. It lives apart from bus so that service binaries
// do not link the NATS server.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures an in-process NATS server with JetStream.
type Config struct {
	// Name is the server name (required for clustering).
	Name string
	// Host defaults to 127.0.0.1; Port -1 picks a random port.
	Host string
	Port int
	// HTTPPort enables the monitoring endpoint (-1 random, 0 off).
	HTTPPort int
	// StoreDir holds JetStream data (required).
	StoreDir string
	// ClusterName, ClusterPort and Routes form a cluster.
	ClusterName string
	ClusterPort int
	Routes      []string
	// Log enables the server's own logging.
	Log bool
}

// Run starts a NATS server with JetStream in this process and waits
// until it accepts connections. Call Shutdown on the result.
func Run(c Config) (*server.Server, error) {
	if c.StoreDir == "" {
		return nil, errors.New("embedded nats: StoreDir is required")
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = -1
	}
	opts := &server.Options{
		ServerName: c.Name,
		Host:       c.Host,
		Port:       c.Port,
		JetStream:  true,
		StoreDir:   c.StoreDir,
		NoLog:      !c.Log,
		NoSigs:     true,
		// Cap memory so tests and the dev stack stay small.
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  4 << 30,
	}
	if c.HTTPPort != 0 {
		opts.HTTPHost = c.Host
		opts.HTTPPort = c.HTTPPort
	}
	if c.ClusterName != "" {
		opts.Cluster = server.ClusterOpts{Name: c.ClusterName, Host: c.Host, Port: c.ClusterPort}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("embedded nats: route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if c.Log {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded nats: not ready after 10s")
	}
	return s, nil
}

// Cluster is an in-process NATS JetStream cluster on loopback.
type Cluster struct {
	Servers []*server.Server
	configs []Config
}

// RunCluster starts n clustered servers with stores under dir (one
// subdirectory each) and waits until JetStream has a meta leader and every
// peer. Cluster ports start at basePort (keep it outside the ephemeral range,
// e.g. 14222 + an offset per test), retrying higher ports when taken.
func RunCluster(dir string, n, basePort int) (*Cluster, error) {
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		ports := make([]int, 0, n)
		for p := basePort + attempt*n*7; len(ports) < n && p < 65000; p++ {
			if portFree(p) {
				ports = append(ports, p)
			}
		}
		cl, err := startCluster(dir, ports, attempt)
		if err == nil {
			return cl, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func portFree(p int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

func startCluster(dir string, ports []int, attempt int) (*Cluster, error) {
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	cl := &Cluster{}
	for i, p := range ports {
		c := Config{
			Name: fmt.Sprintf("n%d", i+1), Port: -1, HTTPPort: -1,
			StoreDir:    fmt.Sprintf("%s/a%d-n%d", dir, attempt, i+1),
			ClusterName: "ferry", ClusterPort: p, Routes: routes,
		}
		s, err := Run(c)
		if err != nil {
			cl.Shutdown()
			return nil, err
		}
		cl.Servers = append(cl.Servers, s)
		cl.configs = append(cl.configs, c)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cl.ready() {
			return cl, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cl.Shutdown()
	return nil, errors.New("cluster did not form within 30s")
}

func (c *Cluster) ready() bool {
	leader := false
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == len(c.Servers) {
			leader = true
		}
	}
	return leader
}

// URLs returns the comma-separated client URLs of the running servers.
func (c *Cluster) URLs() string {
	out := ""
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		if out != "" {
			out += ","
		}
		out += s.ClientURL()
	}
	return out
}

// Shutdown stops every server.
func (c *Cluster) Shutdown() {
	for _, s := range c.Servers {
		s.Shutdown()
	}
}
