package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is one process the simulation started: the NATS server or a
// control-plane service binary.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	// killed is set when the simulation killed it on purpose.
	killed bool
	usage  *usage
}

// startChild runs path with args and env (added to this environment), its
// output going to <logDir>/<name>.log.
func startChild(name, path string, args, env []string, logDir string) (*child, error) {
	f, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), usage: newUsage(cmd.Process.Pid)}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

// stop ends the child with SIGTERM, then SIGKILL after grace.
func (c *child) stop(grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// kill ends the child with SIGKILL (a crash).
func (c *child) kill() {
	c.killed = true
	_ = c.cmd.Process.Kill()
	<-c.done
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// waitReady polls url until it answers 200.
func waitReady(ctx context.Context, c *child, url string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if c.exited() {
			return fmt.Errorf("%s exited before it was ready (see %s.log)", c.name, c.name)
		}
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %v (see %s.log)", c.name, wait, c.name)
}

// natsChild is the NATS server (one node or a 3-node cluster) running in a
// child process: this very program started with -nats-child.
type natsChild struct {
	*child
	urls     string
	monitors []string
}

// startNATS re-executes this program as the NATS server and reads the line
// it prints once ready: {"urls":"...","monitors":[...]}.
func startNATS(ctx context.Context, nodes int, dir, logDir string) (*natsChild, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(logDir, "nats.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-nats-child", "-nodes", strconv.Itoa(nodes), "-dir", dir)
	cmd.Stderr = f
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	c := &child{name: "nats", cmd: cmd, done: make(chan struct{}), usage: newUsage(cmd.Process.Pid)}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			return nil, errors.New("nats child exited before it was ready (see nats.log)")
		}
		var r struct {
			URLs     string   `json:"urls"`
			Monitors []string `json:"monitors"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("nats child: %q: %w", line, err)
		}
		return &natsChild{child: c, urls: r.URLs, monitors: r.Monitors}, nil
	case <-time.After(90 * time.Second):
		c.kill()
		return nil, errors.New("nats child not ready after 90s")
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	}
}

// varz is the part of NATS's /varz the report uses.
type varz struct {
	InMsgs   int64 `json:"in_msgs"`
	OutMsgs  int64 `json:"out_msgs"`
	InBytes  int64 `json:"in_bytes"`
	OutBytes int64 `json:"out_bytes"`
	Conns    int   `json:"connections"`
	Mem      int64 `json:"mem"`
	Subs     int   `json:"subscriptions"`
}

// varz sums /varz over every node.
func (n *natsChild) varz() (varz, error) {
	var sum varz
	for _, m := range n.monitors {
		res, err := http.Get(m + "/varz")
		if err != nil {
			return sum, err
		}
		var v varz
		err = json.NewDecoder(res.Body).Decode(&v)
		res.Body.Close()
		if err != nil {
			return sum, err
		}
		sum.InMsgs += v.InMsgs
		sum.OutMsgs += v.OutMsgs
		sum.InBytes += v.InBytes
		sum.OutBytes += v.OutBytes
		sum.Conns += v.Conns
		sum.Mem += v.Mem
		sum.Subs += v.Subs
	}
	return sum, nil
}

// usage samples one process's CPU and RSS from /proc; peak RSS is tracked
// by sample (called every second by the sampler). mu guards the fields.
type usage struct {
	pid int
	mu  sync.Mutex
	rss int64
	// peak is the largest RSS sampled.
	peak int64
}

func newUsage(pid int) *usage { return &usage{pid: pid} }

// cpu returns user+system CPU seconds of the process so far.
func (u *usage) cpu() float64 { return procCPU(u.pid) }

func (u *usage) sample() {
	r := procRSS(u.pid)
	u.mu.Lock()
	defer u.mu.Unlock()
	if r > 0 {
		u.rss = r
	}
	if r > u.peak {
		u.peak = r
	}
}

func (u *usage) rssNow() (cur, peak int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rss, u.peak
}

// resetPeak starts a new peak window (one per scenario).
func (u *usage) resetPeak() {
	u.mu.Lock()
	u.peak = u.rss
	u.mu.Unlock()
}

func procCPU(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func procRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
