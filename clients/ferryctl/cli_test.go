package ferryctl_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl/internal/camtest"
	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/natsembed"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
)

func TestDrain(t *testing.T) {
	env := testutil.NATS(t)
	putJSON(t, env.JS, bus.BucketHosts, "ingest-1", events.HostRecord{Host: "ingest-1", Status: "ok"})
	r := mustCtl(t, env.URL, "drain", "ingest-1", "--grace", "45s", "--reason", "deploy v1.4")
	if !regexp.MustCompile(`^drain cmd-[0-9a-f]{16} sent to ingest-1 on ferry\.cmd\.ingest\.ingest-1\.drain \(grace 45s\)\n$`).MatchString(r.stdout) {
		t.Errorf("stdout %q", r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("stderr %q", r.stderr)
	}
	msg := lastEvent(t, env.JS, bus.StreamCommands, subject.IngestDrain("ingest-1"))
	_, cmd, err := events.DecodeAs[events.DrainCommand](msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Host != "ingest-1" || cmd.GraceSeconds != 45 || cmd.Reason != "deploy v1.4" || !strings.HasPrefix(cmd.CommandID, "cmd-") {
		t.Errorf("command %+v", cmd)
	}

	// no grace: the host's own; an unregistered host gets a warning
	r = mustCtl(t, env.URL, "drain", "ingest-9")
	if !strings.Contains(r.stderr, "warning: host ingest-9 is not registered") ||
		!regexp.MustCompile(`^drain cmd-[0-9a-f]{16} sent to ingest-9 on ferry\.cmd\.ingest\.ingest-9\.drain \(the host's own grace, INGEST_DRAIN_GRACE\)\n$`).MatchString(r.stdout) {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}
	_, cmd, err = events.DecodeAs[events.DrainCommand](lastEvent(t, env.JS, bus.StreamCommands, subject.IngestDrain("ingest-9")).Data)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.GraceSeconds != 0 {
		t.Errorf("grace %v, want none", cmd.GraceSeconds)
	}
}

// closedPort returns a 127.0.0.1 port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

func TestBadInput(t *testing.T) {
	dead := fmt.Sprintf("nats://127.0.0.1:%d", closedPort(t))
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name string
		args []string
		code int
		// stderr must contain want
		want string
	}{
		{"bad host name", []string{"maintenance", "schedule", "ingest.2", "--in", "2m"}, 2,
			`ferryctl: host name "ingest.2": must be 1-64 letters, digits, '-' or '_', starting with a letter or digit`},
		{"host name with a wildcard", []string{"drain", "ingest-*"}, 2, `host name "ingest-*"`},
		{"in and at together", []string{"maintenance", "schedule", "ingest-2", "--in", "2m", "--at", "2030-01-01T00:00:00Z"}, 2,
			"ferryctl: use either --in or --at, not both"},
		{"neither in nor at", []string{"maintenance", "schedule", "ingest-2"}, 2, "say when the window starts: --in D"},
		{"bad duration", []string{"maintenance", "schedule", "ingest-2", "--in", "2 minutes"}, 2,
			`ferryctl: --in: "2 minutes" is not a duration like 30s or 2m` + "\n"},
		{"bad --for", []string{"maintenance", "schedule", "ingest-2", "--in", "2m", "--for", "-5m"}, 2, "--for -5m0s: must be positive"},
		{"bad --at", []string{"maintenance", "schedule", "ingest-2", "--at", "tomorrow"}, 2, `--at "tomorrow": not an RFC3339 time`},
		{"--at in the past", []string{"maintenance", "schedule", "ingest-2", "--at", past}, 2, "is in the past"},
		{"missing host", []string{"maintenance", "schedule", "--in", "2m"}, 2, "missing host"},
		{"two hosts", []string{"drain", "ingest-1", "ingest-2"}, 2, `unexpected argument "ingest-2"`},
		{"bad grace", []string{"drain", "ingest-1", "--grace", "soon"}, 2, `ferryctl: --grace: "soon" is not a duration like 30s or 2m` + "\n"},
		{"bad global flag", []string{"--timeout", "10x", "status"}, 2, `ferryctl: --timeout: "10x" is not a duration like 30s or 2m` + "\n"},
		{"dev bad flag", []string{"dev", "--origins", "three"}, 2, `ferryctl: --origins: "three" is not an integer` + "\n"},
		{"demo bad flag", []string{"demo", "--in", "10x"}, 2, `ferryctl: --in: "10x" is not a duration like 30s or 2m` + "\n"},
		{"nats flag scheme", []string{"--nats", "http://127.0.0.1:4222", "status"}, 2,
			`ferryctl: --nats: "http://127.0.0.1:4222": scheme "http" is not a NATS scheme (nats, tls, ws or wss), e.g. nats://127.0.0.1:4222` + "\n"},
		{"completion shell", []string{"completion", "fish"}, 2, `completion: unknown shell "fish" (bash or zsh)`},
		{"missing subcommand", []string{"maintenance"}, 2, "maintenance: missing subcommand (cancel, list, schedule)"},
		{"unknown subcommand", []string{"maintenance", "postpone"}, 2, `maintenance: unknown subcommand "postpone"`},
		{"bad maintenance id", []string{"maintenance", "cancel", "mw-1 2"}, 2, `maintenance id "mw-1 2"`},
		{"bad --since", []string{"events", "--since", "yesterday"}, 2, `--since "yesterday": want a duration like 10m or an RFC3339 time`},
		{"bad stream name", []string{"events", "--stream", "cam.1"}, 2, `stream name "cam.1"`},
		{"bad migration id", []string{"trace", "m-1>"}, 2, `migration id "m-1>"`},
		{"unknown command", []string{"launch"}, 2, `ferryctl: unknown command "launch"`},
		{"unknown flag", []string{"status", "--colour"}, 2, "ferryctl: --colour: unknown flag (see ferryctl status -h)\n"},
		{"probe bad url", []string{"probe", "http://cam/x"}, 2, `url "http://cam/x": scheme must be rtsp or rtsps`},
		{"probe bad transport", []string{"probe", "rtsp://cam/x", "--transport", "quic"}, 2, `transport "quic": must be tcp, udp or auto`},
		{"place bad stream", []string{"place", "cam 1"}, 2, `stream name "cam 1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(t, dead, tc.args...) // validation happens before any connection
			if strings.HasSuffix(tc.want, "\n") && r.stderr != tc.want {
				// a flag error: exactly this one line, no usage text
				t.Errorf("stderr:\n%s\nwant exactly %q", r.stderr, tc.want)
			}
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", r.code, r.stderr, tc.code, tc.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

// TestNATSURLBlame checks that a non-NATS URL is refused and blamed on
// where it came from: the --nats flag, or FERRY_NATS_URL.
func TestNATSURLBlame(t *testing.T) {
	r := ctl(t, "nats://127.0.0.1:1", "--nats", "https://127.0.0.1:4222", "status")
	if r.code != 2 || r.stderr != `ferryctl: --nats: "https://127.0.0.1:4222": scheme "https" is not a NATS scheme (nats, tls, ws or wss), e.g. nats://127.0.0.1:4222`+"\n" {
		t.Errorf("flag: exit %d stderr %q", r.code, r.stderr)
	}
	r = ctl(t, "https://127.0.0.1:4222", "status")
	if r.code != 1 || !strings.HasPrefix(r.stderr, `ferryctl: FERRY_NATS_URL: "https://127.0.0.1:4222": scheme "https"`) {
		t.Errorf("env: exit %d stderr %q", r.code, r.stderr)
	}
}

func TestUnreachableNATS(t *testing.T) {
	dead := fmt.Sprintf("nats://127.0.0.1:%d", closedPort(t))
	for _, args := range [][]string{
		{"status"},
		{"maintenance", "list"},
		{"maintenance", "schedule", "ingest-1", "--in", "1m"},
		{"drain", "ingest-1"},
		{"events"},
		{"trace", "m-0123"},
		{"place", "cam-1"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := ctl(t, dead, args...)
			want := "ferryctl: cannot reach NATS at " + dead + ": "
			if r.code != 1 || !strings.HasPrefix(r.stderr, want) || len(lines(r.stderr)) != 1 {
				t.Errorf("exit %d, stderr %q; want exit 1 and one line starting %q", r.code, r.stderr, want)
			}
		})
	}
	// --nats wins over FERRY_NATS_URL
	env := testutil.NATS(t)
	r := ctl(t, env.URL, "--nats", dead, "status")
	if r.code != 1 || !strings.Contains(r.stderr, dead) {
		t.Errorf("--nats ignored: exit %d stderr %q", r.code, r.stderr)
	}
	r = ctl(t, env.URL, "status", "--nats", dead)
	if r.code != 1 || !strings.Contains(r.stderr, dead) {
		t.Errorf("--nats after the command ignored: exit %d stderr %q", r.code, r.stderr)
	}
}

func TestNotBootstrapped(t *testing.T) {
	s, err := natsembed.Run(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	r := ctl(t, s.ClientURL(), "status")
	if r.code != 1 || !strings.Contains(r.stderr, "bucket ingest_hosts on "+s.ClientURL()+": not set up for Ferry") {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help"}, "Commands:\n  status"},
		{[]string{"--help"}, "ferryctl is the operator's command line"},
		{[]string{"help", "drain"}, "Usage:\n  ferryctl drain <host> [--grace D] [--reason TEXT]"},
		{[]string{"help", "maintenance", "schedule"}, "ferryctl maintenance schedule <host> (--in D | --at RFC3339)"},
		{[]string{"maintenance", "-h"}, "ferryctl maintenance cancel <id>"},
		{[]string{"maintenance", "list", "-h"}, "-host string"},
		{[]string{"status", "-h"}, "MIGRATIONS  migrations in flight"},
		{[]string{"events", "--help"}, "--follow it prints new events"},
		{[]string{"trace", "-h"}, "SINCE is the time from the decision"},
		{[]string{"probe", "-h"}, "\n  --fail-on-loss\n"},
		{[]string{"probe", "-h"}, "\n  --max-gap duration\n"},
		{[]string{"place", "-h"}, "\n  --no-move\n"},
		{[]string{"maintenance", "schedule", "-h"}, "\n  --in duration\n"},
		{[]string{"dev", "-h"}, "Runs Ferry's local stack on loopback until Ctrl-C, without Docker"},
		{[]string{"dev", "-h"}, "\n  --udp\n    \tserve RTSP over UDP too"},
		{[]string{"demo", "-h"}, "Runs the local stack (as ferryctl dev), a synthetic camera"},
		{[]string{"help", "dev"}, "Usage:\n  ferryctl dev [--origins N]"},
		{[]string{"version"}, "ferryctl devel (commit "},
		{[]string{"--version"}, "ferryctl devel (commit "},
		{[]string{"completion", "bash"}, "complete -o default -F _ferryctl ferryctl\n"},
		{[]string{"completion", "zsh"}, "#compdef ferryctl\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := ctl(t, "nats://127.0.0.1:1", tc.args...)
			if r.code != 0 || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Errorf("exit %d, output:\n%s%s\nwant %q", r.code, r.stdout, r.stderr, tc.want)
			}
		})
	}
	// help spells every flag with two dashes
	for _, args := range [][]string{{"help"}, {"status", "-h"}, {"probe", "-h"}, {"place", "-h"}, {"dev", "-h"}, {"demo", "-h"},
		{"events", "-h"}, {"maintenance", "schedule", "-h"}, {"drain", "-h"}, {"trace", "-h"}} {
		r := ctl(t, "nats://127.0.0.1:1", args...)
		for _, l := range lines(r.stdout + r.stderr) {
			if f := strings.Fields(l); len(f) > 0 && regexp.MustCompile(`^-[a-z]`).MatchString(f[0]) &&
				!(len(f) > 1 && regexp.MustCompile(`^-[a-z],$`).MatchString(f[0]) && strings.HasPrefix(f[1], "--")) { // "-f, --follow"
				t.Errorf("%v: single-dash flag in %q", args, l)
			}
		}
	}
	if r := ctl(t, "nats://127.0.0.1:1"); r.code != 2 || !strings.Contains(r.stderr, "Commands:") {
		t.Errorf("no arguments: exit %d stderr %q", r.code, r.stderr)
	}
}

// TestDocsSynopses: every command's usage line, as its -h prints it, is in
// docs/ferryctl.md word for word (the doc was written from real runs; a
// flag added later must reach it).
func TestDocsSynopses(t *testing.T) {
	doc, err := os.ReadFile("../../docs/ferryctl.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status"}, {"maintenance", "schedule"}, {"maintenance", "cancel"}, {"maintenance", "list"},
		{"drain"}, {"place"}, {"events"}, {"trace"}, {"probe"}, {"dev"}, {"demo"}} {
		r := ctl(t, "nats://127.0.0.1:1", append(args, "-h")...)
		usage := ""
		if ls := lines(r.stdout + r.stderr); len(ls) > 0 {
			for i, l := range ls {
				if strings.TrimSpace(l) == "Usage:" && i+1 < len(ls) {
					usage = strings.TrimSpace(ls[i+1])
					break
				}
			}
		}
		if usage == "" {
			t.Errorf("%v -h: no usage line in %q", args, r.stdout+r.stderr)
			continue
		}
		if !strings.Contains(string(doc), "\n"+usage+"\n") {
			t.Errorf("docs/ferryctl.md lacks the usage line of %v:\n  %s", args, usage)
		}
	}
}

func TestProbeCommand(t *testing.T) {
	cam := camtest.Start(t, false)
	r := mustCtl(t, "nats://127.0.0.1:1", "probe", cam.URL, "--duration", "500ms", "--json")
	var rep struct {
		URL    string `json:"url"`
		Medias []struct {
			Codec         string `json:"codec"`
			Frames        uint64 `json:"frames"`
			FramesMissing uint64 `json:"frames_missing"`
		} `json:"medias"`
		DecodeErrors uint64 `json:"decode_errors"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json output %q: %v", r.stdout, err)
	}
	if rep.URL != cam.URL || len(rep.Medias) != 1 || rep.Medias[0].Codec != "H264" || rep.Medias[0].Frames == 0 || rep.Medias[0].FramesMissing != 0 {
		t.Errorf("report %+v", rep)
	}

	r = mustCtl(t, "", "probe", cam.URL, "--duration", "400ms", "--interval", "100ms", "--fail-on-loss")
	out := lines(r.stdout)
	if len(out) < 6 || !strings.HasPrefix(out[0], "probing "+cam.URL+" over tcp for 400ms") {
		t.Fatalf("output:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`^\d\d:\d\d:\d\d  frames \d+ \([\d.]+/s\)  missing 0  dup 0  ssrc-changes 0`).MatchString(out[2]) {
		t.Errorf("progress line %q", out[2])
	}
	if !strings.Contains(r.stdout, "MEDIA  CODEC") || !strings.HasSuffix(r.stdout, "result: clean\n") {
		t.Errorf("final report:\n%s", r.stdout)
	}

	// nothing at that path's port
	r = ctl(t, "", "probe", fmt.Sprintf("rtsp://127.0.0.1:%d/cam", closedPort(t)), "--duration", "1s")
	if r.code != 1 || !strings.Contains(r.stderr, "ferryctl: probe rtsp://") {
		t.Errorf("probe of a closed port: exit %d stderr %q", r.code, r.stderr)
	}
}
