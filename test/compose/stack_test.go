//go:build compose

package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/clients/ferryctl/probe"
	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/testutil"
)

// project is the compose project name (containers are named explicitly,
// ferry-<service>; networks are ferry_bus and ferry_media).
const project = "ferry"

var (
	root     string // repository root
	credsDir string // the fleet's credentials (scripts/compose-secrets.sh)
	onlyNATS = os.Getenv("FERRY_COMPOSE_ONLY_NATS") == "1"
	natsURL  = "nats://127.0.0.1:" + envOr("FERRY_NATS_PORT", "14222")
	edgeURL  = "rtsp://127.0.0.1:" + envOr("FERRY_EDGE_RTSP_PORT", "18554")
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// images each mode needs (make images builds them).
func neededImages() []string {
	if onlyNATS {
		return []string{"nats-server"}
	}
	return []string{"nats-server", "ingest", "healthpredict", "placement", "notifier", "publish", "ferryctl"}
}

func TestMain(m *testing.M) {
	var err error
	root, err = filepath.Abs("../..")
	if err == nil {
		// The stack's secrets, generated once (git-ignored): JWT credentials
		// per service, host and agent, random route and token secrets.
		var out string
		if out, err = run("bash", "scripts/compose-secrets.sh"); err != nil {
			err = fmt.Errorf("%w\n%s", err, out)
		}
		credsDir = filepath.Join(root, envOr("FERRY_COMPOSE_CREDS", "deploy/compose/secrets/creds"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "compose:", err)
		os.Exit(1)
	}
	for _, img := range neededImages() {
		if _, err := docker("image", "inspect", "ferry/"+img+":dev"); err != nil {
			fmt.Fprintf(os.Stderr, "compose: image ferry/%s:dev is missing: run make images\n", img)
			os.Exit(1)
		}
	}
	_, _ = dc("down", "-v", "--remove-orphans") // a clean slate
	up := []string{"up", "-d"}
	if onlyNATS {
		up = append(up, "bootstrap")
	}
	started := time.Now()
	if out, err := dc(up...); err != nil {
		fmt.Fprintf(os.Stderr, "compose: docker-compose up: %v\n%s\n", err, out)
		_, _ = dc("down", "-v", "--remove-orphans")
		os.Exit(1)
	}
	fmt.Printf("compose: docker-compose up -d returned after %v\n", time.Since(started).Round(time.Millisecond))
	code := m.Run()
	if code != 0 {
		out, _ := dc("logs", "--no-color", "--tail", "60")
		fmt.Fprintf(os.Stderr, "compose: last log lines of every container:\n%s\n", out)
	}
	if os.Getenv("FERRY_COMPOSE_KEEP") == "1" {
		fmt.Println("compose: FERRY_COMPOSE_KEEP=1: the stack stays up (make down)")
	} else if out, err := dc("down", "-v", "--remove-orphans"); err != nil {
		fmt.Fprintf(os.Stderr, "compose: docker-compose down: %v\n%s\n", err, out)
		code = 1
	}
	os.Exit(code)
}

// credsFile is the credential of a fleet user; "ingest" is the host ingest-1.
func credsFile(user string) string {
	return filepath.Join(credsDir, "users", fleetUser(user)+".creds")
}

func fleetUser(user string) string {
	if user == "ingest" {
		return "ingest-1"
	}
	return user
}

func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out.String(), nil
}

func dc(args ...string) (string, error) {
	env := envOr("FERRY_COMPOSE_ENV_FILE", "deploy/compose/secrets/stack.env")
	return run("docker-compose", append([]string{"-p", project, "--env-file", env, "-f", "docker-compose.yml"}, args...)...)
}

func docker(args ...string) (string, error) { return run("docker", args...) }

// mustDocker runs docker and fails the test on error.
func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := docker(args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// container is one container's state.
type container struct {
	Name, State, Health string
	ExitCode            int
}

func containers(t *testing.T) []container {
	t.Helper()
	ids, err := dc("ps", "-q")
	if err != nil {
		t.Fatalf("%v\n%s", err, ids)
	}
	if strings.TrimSpace(ids) == "" {
		return nil
	}
	out := mustDocker(t, append([]string{"inspect", "--format",
		"{{.Name}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.ExitCode}}"},
		strings.Fields(ids)...)...)
	var cs []container
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 4 {
			continue
		}
		c := container{Name: strings.TrimPrefix(f[0], "/"), State: f[1], Health: f[2]}
		fmt.Sscan(f[3], &c.ExitCode)
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	return cs
}

// waitHealthy waits until every container is running (and healthy when it
// has a health check), the bootstrap has exited 0, and the named ones are
// among them.
func waitHealthy(t *testing.T, wait time.Duration, names ...string) {
	t.Helper()
	testutil.CheckFor(t, wait, time.Second, func() error {
		cs := containers(t)
		seen := map[string]bool{}
		var pending []string
		for _, c := range cs {
			seen[c.Name] = true
			switch {
			case c.Name == "ferry-bootstrap":
				if c.State == "exited" && c.ExitCode != 0 {
					out, _ := docker("logs", c.Name)
					t.Fatalf("bootstrap failed (exit %d):\n%s", c.ExitCode, out)
				}
				if c.State != "exited" {
					pending = append(pending, c.Name+":"+c.State)
				}
			case c.State != "running" || (c.Health != "" && c.Health != "healthy"):
				pending = append(pending, c.Name+":"+c.State+"/"+c.Health)
			}
		}
		for _, n := range names {
			if !seen[n] {
				pending = append(pending, n+":absent")
			}
		}
		if len(pending) > 0 {
			return fmt.Errorf("not ready: %s", strings.Join(pending, " "))
		}
		return nil
	})
}

// user is one NATS user's connection from the host, through nats-1's
// published port, recording the errors the server reports.
type user struct {
	name string
	nc   *nats.Conn
	js   jetstream.JetStream
	mu   sync.Mutex // guards errs
	errs []error
}

func dialUser(t *testing.T, name string) *user {
	t.Helper()
	name = fleetUser(name)
	u := &user{name: name}
	cfg := bus.Config{URL: natsURL, Name: "compose-test-" + name, CredsFile: credsFile(name), Replicas: 3}
	opts, err := cfg.Options(zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, nats.CustomInboxPrefix("_INBOX_"+name), nats.Timeout(5*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			u.mu.Lock()
			u.errs = append(u.errs, err)
			u.mu.Unlock()
		}))
	u.nc, err = nats.Connect(natsURL, opts...)
	if err != nil {
		t.Fatalf("connect as %s to %s: %v", name, natsURL, err)
	}
	t.Cleanup(u.nc.Close)
	if u.js, err = jetstream.New(u.nc); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u *user) violationsSince(n int) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, err := range u.errs[n:] {
		if errors.Is(err, nats.ErrPermissionViolation) {
			out = append(out, err.Error())
		}
	}
	return out
}

// refused runs op and waits for the server's permissions violation naming subj.
func (u *user) refused(t *testing.T, subj string, op func(ctx context.Context) error) {
	t.Helper()
	u.mu.Lock()
	n := len(u.errs)
	u.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, v := range u.violationsSince(n) {
			if strings.Contains(v, `"`+subj+`"`) {
				return nil
			}
		}
		return fmt.Errorf("%s: no permissions violation for %q", u.name, subj)
	})
	cancel()
	<-done
}

// ferryctl runs bin/ferryctl from the host against nats-1 as the given user.
func ferryctl(t *testing.T, as string, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(root, "bin", "ferryctl")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run make build", bin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"FERRY_NATS_URL="+natsURL, "FERRY_NATS_CREDS="+credsFile(as),
		"FERRY_NATS_INBOX_PREFIX=_INBOX_"+as, "FERRY_NATS_REPLICAS=3", "FERRY_LOG_LEVEL=warn")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ferryctl %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// probeReports stops the probe container (SIGTERM: it prints its final
// report as JSON and exits) and returns every report in its log (one per run:
// it restarts when the edge ends its session) and its restart count.
func probeReports(t *testing.T) ([]probe.Report, int, error) {
	t.Helper()
	mustDocker(t, "stop", "--time", "20", "ferry-probe")
	restarts := 0
	if out, err := docker("inspect", "--format", "{{.RestartCount}}", "ferry-probe"); err == nil {
		fmt.Sscan(strings.TrimSpace(out), &restarts)
	}
	out, err := docker("logs", "ferry-probe")
	if err != nil {
		return nil, restarts, err
	}
	// Reports are indented JSON objects starting with a "{" line.
	var reports []probe.Report
	lines := strings.SplitAfter(out, "\n")
	for i, l := range lines {
		if l != "{\n" {
			continue
		}
		var r probe.Report
		if err := json.NewDecoder(strings.NewReader(strings.Join(lines[i:], ""))).Decode(&r); err == nil && r.URL != "" {
			reports = append(reports, r)
		}
	}
	if len(reports) == 0 {
		return nil, restarts, fmt.Errorf("no JSON report in the probe's log:\n%s", out)
	}
	return reports, restarts, nil
}
