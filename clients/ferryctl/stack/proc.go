package stack

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one child process of the stack.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	ready   string // URL of its /readyz, or ""
	done    chan struct{}
	err     error
	// expected is set when the stack itself stopped or killed the process.
	expected atomic.Bool
}

// procs owns the children; the mutex guards list.
type procs struct {
	mu     sync.Mutex
	list   []*proc
	binDir string
	logDir string
	// onExit, if set, is told when a child exits that the stack did not stop.
	onExit func(name, status string)
}

// start launches bin with args and env (added to the current environment),
// its stdout and stderr going to <logDir>/<name>.log.
func (p *procs) start(ctx context.Context, name, bin string, args []string, env []string, ready string) (*proc, error) {
	path := filepath.Join(p.binDir, bin)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%s: %w (run `make build` first, or pass --bin)", path, err)
	}
	logPath := filepath.Join(p.logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = f
	cmd.Stderr = f
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pr := &proc{name: name, cmd: cmd, logPath: logPath, ready: ready, done: make(chan struct{})}
	onExit := p.onExit
	go func() {
		pr.err = cmd.Wait()
		f.Close()
		close(pr.done)
		if onExit != nil && !pr.expected.Load() {
			onExit(name, exitStatus(cmd.ProcessState, pr.err))
		}
	}()
	p.mu.Lock()
	p.list = append(p.list, pr)
	p.mu.Unlock()
	return pr, nil
}

// exitStatus renders how a process ended: "exit status 0", "signal: killed".
func exitStatus(ps *os.ProcessState, err error) string {
	if ps != nil {
		return ps.String()
	}
	if err != nil {
		return err.Error()
	}
	return "exited"
}

// exited reports whether the process has ended.
func (pr *proc) exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to grace, then kills.
func (pr *proc) stop(grace time.Duration) {
	pr.expected.Store(true)
	if pr.exited() {
		return
	}
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(grace):
		_ = pr.cmd.Process.Kill()
		<-pr.done
	}
}

// kill sends SIGKILL (an unpredicted crash).
func (pr *proc) kill() {
	pr.expected.Store(true)
	if !pr.exited() {
		_ = pr.cmd.Process.Kill()
		<-pr.done
	}
}

// stopAll stops every child, newest first.
func (p *procs) stopAll(grace time.Duration) {
	p.mu.Lock()
	list := append([]*proc(nil), p.list...)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(list) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(pr *proc) { defer wg.Done(); pr.stop(grace) }(list[i])
	}
	wg.Wait()
}

// waitReady polls each process's /readyz until all answer 200 or wait passes.
func (p *procs) waitReady(ctx context.Context, wait time.Duration, list ...*proc) error {
	deadline := time.Now().Add(wait)
	client := &http.Client{Timeout: time.Second}
	for _, pr := range list {
		if pr.ready == "" {
			continue
		}
		for {
			if pr.exited() {
				return fmt.Errorf("%s exited: %v (log: %s)\n%s", pr.name, pr.err, pr.logPath, tail(pr.logPath, 15))
			}
			resp, err := client.Get(pr.ready)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not ready after %v (log: %s)\n%s", pr.name, wait, pr.logPath, tail(pr.logPath, 15))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			lines++
			if lines > n {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}

// handedOut remembers the ports freePort returned, so that two children
// never get the same port before either has bound it. The mutex guards it.
var (
	portsMu   sync.Mutex
	handedOut = map[int]bool{}
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// has not been handed out before in this process.
func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < 100; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !handedOut[p] {
			handedOut[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free TCP port")
}

// freeUDPPair returns an even UDP port p with p+1 also free (RTP/RTCP).
func freeUDPPair() (int, error) {
	for i := 0; i < 50; i++ {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		portsMu.Lock()
		taken := handedOut[p] || handedOut[p+1]
		portsMu.Unlock()
		if p%2 == 1 || p >= 65535 || taken {
			continue
		}
		c1, err1 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		c2, err2 := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p+1))
		if c1 != nil {
			c1.Close()
		}
		if c2 != nil {
			c2.Close()
		}
		if err1 == nil && err2 == nil {
			portsMu.Lock()
			handedOut[p], handedOut[p+1] = true, true
			portsMu.Unlock()
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free UDP port pair")
}

var sigterm = syscall.SIGTERM
