package cli

import (
	"bytes"
	"errors"
	"flag"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func newFS() *flag.FlagSet {
	fs := flag.NewFlagSet("ferry-test", flag.ContinueOnError)
	fs.Duration("in", 2*time.Minute, "how long until it starts")
	fs.Int("n", 3, "how many")
	fs.Bool("json", false, "print JSON")
	fs.String("nats", "nats://127.0.0.1:4222", "NATS `URL`")
	fs.Bool("follow", false, "keep going")
	fs.Bool("f", false, "short for --follow")
	return fs
}

// TestParseErrors checks that every kind of flag error is one line naming
// the flag with two dashes and the expected form, and that nothing is printed.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"duration", []string{"--in", "10x"}, `--in: "10x" is not a duration like 30s or 2m`},
		{"duration single dash", []string{"-in=10x"}, `--in: "10x" is not a duration like 30s or 2m`},
		{"integer", []string{"--n", "three"}, `--n: "three" is not an integer`},
		{"boolean", []string{"--json=maybe"}, `--json: "maybe" is not a boolean (true or false)`},
		{"unknown", []string{"--bogus"}, `--bogus: unknown flag (see ferry-test -h)`},
		{"missing value", []string{"--in"}, `--in: needs a value (a duration like 30s or 2m)`},
		{"missing string value", []string{"--nats"}, `--nats: needs a value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Parse(newFS(), tc.args, &out)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
			if !errors.Is(err, ErrFlag) {
				t.Errorf("%v does not match ErrFlag", err)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q, want nothing", out.String())
			}
		})
	}
}

// TestHelpDoubleDash checks the usage text: description first, then
// synopsis, then every flag with two dashes and its default.
func TestHelpDoubleDash(t *testing.T) {
	var out bytes.Buffer
	fs := newFS()
	SetUsage(fs, &out, "ferry-test [flags]", "Ferry-test tests things.")
	if err := Parse(fs, []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	got := out.String()
	if !strings.HasPrefix(got, "Ferry-test tests things.\n\nUsage:\n  ferry-test [flags]\n\nFlags:\n") {
		t.Errorf("usage starts %q", got)
	}
	for _, want := range []string{
		"  --in duration\n    \thow long until it starts (default 2m0s)\n",
		"  --json\n    \tprint JSON\n",
		"  --nats URL\n    \tNATS URL (default \"nats://127.0.0.1:4222\")\n",
		"  --version\n    \tprint the version and exit\n",
		"  -f, --follow\n    \tkeep going\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("usage lacks %q:\n%s", want, got)
		}
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.Contains(line, "--f\t") || strings.Contains(line, "short for") {
			t.Errorf("an alias listed on its own: %q", line)
		}
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "-") && !strings.HasPrefix(l, "--") && !strings.HasPrefix(l, "-f, --follow") {
			t.Errorf("single-dash flag in help: %q", line)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	err := Parse(newFS(), []string{"--version"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	if !strings.HasPrefix(out.String(), "ferry-test ") || !strings.Contains(out.String(), "(commit ") {
		t.Errorf("version line %q", out.String())
	}
}

func TestInfoFrom(t *testing.T) {
	vcs := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "44f3fe3f9f120257a224d7c08dfe3c9d25ac9eb4"},
		{Key: "vcs.time", Value: "2026-12-06T03:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	for _, tc := range []struct {
		name     string
		bi       *debug.BuildInfo
		ok       bool
		ldV, ldC string
		want     string
	}{
		{"vcs", vcs, true, "", "", "x devel (commit 44f3fe3f9f12+dirty, 2026-12-06T03:00:00Z, go1.26.8)"},
		{"buildvcs=false", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true, "", "", "x devel (commit unknown, go1.26.8)"},
		{"buildvcs=false with ldflags", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true, "v1.4.0", "0123456789ab", "x v1.4.0 (commit 0123456789ab, go1.26.8)"},
		{"module version", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.1"}}, true, "", "", "x v0.3.1 (commit unknown, go1.26.8)"},
		{"no build info", nil, false, "", "", "x devel (commit unknown, unknown)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := infoFrom("x", tc.bi, tc.ok, tc.ldV, tc.ldC).String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCheckSet(t *testing.T) {
	bad := func(s string) error {
		if strings.HasPrefix(s, "nats://") {
			return nil
		}
		return errors.New("not nats")
	}
	fs := newFS()
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := CheckSet(fs, "nats", bad); err != nil {
		t.Errorf("flag not given: %v", err)
	}
	fs = newFS()
	if err := fs.Parse([]string{"--nats", "http://x:4222"}); err != nil {
		t.Fatal(err)
	}
	if err := CheckSet(fs, "nats", bad); err == nil || err.Error() != "--nats: not nats" {
		t.Errorf("err = %v, want --nats: not nats", err)
	}
}
