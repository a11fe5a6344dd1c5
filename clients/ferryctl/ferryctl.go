// Package ferryctl is the operator's command line for Ferry: maintenance
// windows, drains, placing a stream for a plain publisher, the fleet's status,
// the event log, a migration's trace, a viewer probe, and the local dev stack
// and demo. cmd/ferryctl is a thin main around Run.
package ferryctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ferrystream/ferry/clients/ferryctl/internal/devstack"
	"github.com/ferrystream/ferry/libs/cli"
)

// env is what every command gets: arguments after its name, the environment,
// and where to write.
type env struct {
	ctx    context.Context
	args   []string
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	global globalFlags
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(e *env) error
}

// commands lists every subcommand, in the order help shows them.
func commands() []command {
	return []command{
		{"status", "hosts, streams and migrations in flight", cmdStatus},
		{"maintenance", "schedule, cancel and list maintenance windows", cmdMaintenance},
		{"drain", "ask an ingest host to drain", cmdDrain},
		{"place", "place a stream and print its publish URL and an ffmpeg command", cmdPlace},
		{"events", "print (or follow) the event log", cmdEvents},
		{"trace", "the steps of one migration with their timings", cmdTrace},
		{"creds", "mint, add and revoke the fleet's NATS credentials (per-host identity)", cmdCreds},
		{"probe", "read an RTSP stream and report frames lost, gaps, jumps", cmdProbe},
		{"dev", "run the local stack (NATS, ingest hosts, services) until Ctrl-C", cmdDev},
		{"demo", "run the stack, a camera and a viewer, and move the camera", cmdDemo},
		{"version", "print ferryctl's version and commit", cmdVersion},
		{"completion", "print a bash or zsh completion script", cmdCompletion},
		{"help", "show help for a command", nil},
	}
}

// Exit codes of Run.
const (
	ExitOK    = 0
	ExitError = 1
	// ExitUsage is returned for a malformed command line.
	ExitUsage = 2
)

// Run runs the command line args (without the program name) and returns the
// process exit code. Errors are printed to stderr as one line each.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	err := run(ctx, args, getenv, stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "ferryctl: %v\n", err)
		if ue, ok := errors.AsType[usageError](err); !ok || !ue.flag {
			fmt.Fprintln(stderr, "run `ferryctl help` for usage")
		}
		return ExitUsage
	case errors.Is(err, errReported):
		return ExitError
	case errors.Is(err, errFlagParse):
		// the flag package already printed the error and the usage
		return ExitUsage
	default:
		fmt.Fprintf(stderr, "ferryctl: %v\n", err)
		var ce codeError
		if errors.As(err, &ce) {
			return ce.ExitCode()
		}
		return ExitError
	}
}

// codeError is an error that carries its own exit code.
type codeError interface {
	error
	ExitCode() int
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	e := &env{ctx: ctx, getenv: getenv, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("ferryctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e.global.register(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() { usage(stderr) }
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *showVersion {
		return cmdVersion(e)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		usage(stderr)
		return errFlagParse // usage printed; exit 2
	}
	name, rest := rest[0], rest[1:]
	if name == "help" || name == "-h" || name == "--help" {
		return help(e, rest)
	}
	for _, c := range commands() {
		if c.name == name && c.run != nil {
			e.args = rest
			return c.run(e)
		}
	}
	return usageErr("unknown command %q", name)
}

func help(e *env, args []string) error {
	if len(args) == 0 {
		usage(e.stdout)
		return nil
	}
	// `ferryctl help maintenance schedule` = `ferryctl maintenance schedule -h`
	e.args = append(append([]string{}, args[1:]...), "-h")
	e.stderr = e.stdout
	for _, c := range commands() {
		if c.name == args[0] && c.run != nil {
			err := c.run(e)
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
	}
	return usageErr("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprint(w, `ferryctl is the operator's command line for Ferry.

Usage:
  ferryctl [--nats URL] [--creds FILE] <command> [arguments]
  ferryctl --version

Commands:
`)
	cs := commands()
	width := 0
	for _, c := range cs {
		width = max(width, len(c.name))
	}
	for _, c := range cs {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprint(w, `
Connection (every command that talks to NATS):
  --nats URL     NATS server URL(s), comma separated (env FERRY_NATS_URL, default nats://127.0.0.1:4222)
  --creds FILE   NATS credentials file (env FERRY_NATS_CREDS)
  --timeout D    bound for one-shot commands (default 10s)
  Also read: FERRY_NATS_USER, FERRY_NATS_PASSWORD, FERRY_NATS_CA, FERRY_NATS_CERT, FERRY_NATS_KEY.

Examples:
  ferryctl status
  ferryctl maintenance schedule ingest-2 --in 2m --for 30m --reason "kernel upgrade"
  ferryctl events --follow --stream cam-1
  ferryctl trace m-0123456789abcdef
  ferryctl probe rtsp://127.0.0.1:8554/cam-1 --duration 30s

Run 'ferryctl help <command>' or 'ferryctl <command> -h' for a command's flags.
`)
}

// commandNames lists the subcommands of a group, for messages.
func commandNames(m map[string]func(*env) error) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func cmdVersion(e *env) error {
	fs := e.newFlags("version", "ferryctl version", "Prints ferryctl's module version, VCS commit and Go version (also: ferryctl --version).", false)
	pos, err := parse(fs, e.args)
	if err != nil {
		return err
	}
	if err := positional(pos, 0, ""); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, cli.BuildInfo("ferryctl"))
	return nil
}

func cmdDev(e *env) error {
	return flagUsage(devstack.Dev(e.ctx, e.args, e.getenv, e.stdout, e.stderr))
}

func cmdDemo(e *env) error {
	err := devstack.Demo(e.ctx, e.args, e.getenv, e.stdout, e.stderr)
	if errors.Is(err, devstack.ErrDemoFailed) {
		return errReported // Demo printed its report and the reason
	}
	return flagUsage(err)
}

// flagUsage turns a cli flag error into a one-line usage error (exit 2).
func flagUsage(err error) error {
	if errors.Is(err, cli.ErrFlag) {
		return usageError{msg: err.Error(), flag: true}
	}
	return err
}
