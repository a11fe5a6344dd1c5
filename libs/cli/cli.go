// Package cli holds the command-line conventions every Ferry binary follows:
// `--version` (module version and VCS commit), help that spells flags with
// two dashes, and flag errors that are one line naming the flag and the form
// it expects (`--in: "10x" is not a duration like 30s or 2m`) instead of the
// flag package's error followed by the whole usage text.
//
//	fs := flag.NewFlagSet("ferry-ingest", flag.ContinueOnError)
//	cli.SetUsage(fs, out, "ferry-ingest [flags]", "Runs a Ferry ingest node ...")
//	...
//	if err := cli.Parse(fs, args, out); err != nil { // flag.ErrHelp after -h or --version
//		return err
//	}
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
)

// Set at link time when the build has no VCS information (CI builds with
// -buildvcs=false, Docker builds without .git):
//
//	go build -ldflags "-X github.com/ferrystream/ferry/libs/cli.commit=$(git rev-parse --short=12 HEAD)"
var (
	version string
	commit  string
)

// Info is what `--version` prints.
type Info struct {
	// Name is the binary's name.
	Name string
	// Version is the main module's version ("devel" for a workspace build).
	Version string
	// Commit is the VCS revision, 12 hex digits, with "+dirty" when the
	// tree had local changes; "unknown" when the build recorded none.
	Commit string
	// Time is the commit time (RFC 3339), or "".
	Time string
	// Go is the toolchain version.
	Go string
}

// String renders i as one line: "ferryctl devel (commit 0123456789ab, 2026-12-06T03:00:00Z, go1.26.8)".
func (i Info) String() string {
	s := fmt.Sprintf("%s %s (commit %s", i.Name, i.Version, i.Commit)
	if i.Time != "" {
		s += ", " + i.Time
	}
	return s + ", " + i.Go + ")"
}

// BuildInfo returns the version information of the running binary name.
func BuildInfo(name string) Info {
	bi, ok := debug.ReadBuildInfo()
	return infoFrom(name, bi, ok, version, commit)
}

func infoFrom(name string, bi *debug.BuildInfo, ok bool, ldVersion, ldCommit string) Info {
	i := Info{Name: name, Version: "devel", Commit: "unknown", Go: "unknown"}
	if ok && bi != nil {
		i.Go = bi.GoVersion
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			i.Version = v
		}
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				i.Time = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			i.Commit = rev[:min(12, len(rev))]
			if modified == "true" {
				i.Commit += "+dirty"
			}
		}
	}
	if ldVersion != "" {
		i.Version = ldVersion
	}
	if i.Commit == "unknown" && ldCommit != "" {
		i.Commit = ldCommit
	}
	return i
}

// SetUsage makes fs's usage text: a description paragraph, the synopsis and
// the flags with two dashes, written to out.
func SetUsage(fs *flag.FlagSet, out io.Writer, synopsis, description string) {
	fs.SetOutput(out)
	fs.Usage = func() {
		w := fs.Output()
		if d := strings.TrimSpace(description); d != "" {
			fmt.Fprintf(w, "%s\n\n", d)
		}
		fmt.Fprintf(w, "Usage:\n  %s\n", synopsis)
		if hasFlags(fs) {
			fmt.Fprintln(w, "\nFlags:")
			PrintDefaults(w, fs)
		}
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// PrintDefaults writes fs's flags like flag.PrintDefaults, spelled with two
// dashes ("--in duration"). A one-letter flag whose usage is "short for
// --long" is shown beside its long form ("-f, --follow"), not on its own.
func PrintDefaults(w io.Writer, fs *flag.FlagSet) {
	short := map[string]string{} // long name -> its one-letter alias
	fs.VisitAll(func(f *flag.Flag) {
		if long, ok := strings.CutPrefix(f.Usage, shortFor); ok && len(f.Name) == 1 && fs.Lookup(long) != nil {
			short[long] = f.Name
		}
	})
	fs.VisitAll(func(f *flag.Flag) {
		if long, ok := strings.CutPrefix(f.Usage, shortFor); ok && short[long] == f.Name {
			return
		}
		var b strings.Builder
		if s, ok := short[f.Name]; ok {
			fmt.Fprintf(&b, "  -%s, --%s", s, f.Name)
		} else {
			fmt.Fprintf(&b, "  --%s", f.Name)
		}
		name, usage := flag.UnquoteUsage(f)
		if name != "" {
			b.WriteString(" " + name)
		}
		if b.Len() <= 6 {
			b.WriteString("\t")
		} else {
			b.WriteString("\n    \t")
		}
		b.WriteString(strings.ReplaceAll(usage, "\n", "\n    \t"))
		if def := f.DefValue; !isZeroDefault(f, def) {
			if isString(f) {
				fmt.Fprintf(&b, " (default %q)", def)
			} else {
				fmt.Fprintf(&b, " (default %v)", def)
			}
		}
		fmt.Fprintln(w, b.String())
	})
}

// shortFor starts the usage of a one-letter alias: "short for --follow".
const shortFor = "short for --"

func isString(f *flag.Flag) bool {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	_, s := g.Get().(string)
	return s
}

func isZeroDefault(f *flag.Flag, def string) bool {
	switch def {
	case "", "0", "false", "0s", "[]":
		return true
	}
	// a type's own zero value (custom flag.Value types)
	t := reflect.TypeOf(f.Value)
	if t.Kind() == reflect.Pointer {
		z := reflect.New(t.Elem())
		if v, ok := z.Interface().(flag.Value); ok {
			return def == v.String()
		}
	}
	return false
}

// Parse parses args into fs with Ferry's conventions:
//   - a --version flag is added when fs has none; given, it prints the
//     version line to out and Parse returns flag.ErrHelp (callers that stop
//     cleanly on -h stop cleanly on --version);
//   - -h/--help prints fs.Usage to out and returns flag.ErrHelp;
//   - a malformed flag returns one-line FlagError naming the flag and the
//     expected form, printing nothing.
func Parse(fs *flag.FlagSet, args []string, out io.Writer) error {
	var showVersion *bool
	if fs.Lookup("version") == nil {
		showVersion = fs.Bool("version", false, "print the version and exit")
	}
	if err := ParseFlags(fs, args, out); err != nil {
		return err
	}
	if showVersion != nil && *showVersion {
		fmt.Fprintln(out, BuildInfo(fs.Name()))
		return flag.ErrHelp
	}
	return nil
}

// ParseFlags is Parse without the --version flag (for subcommands).
func ParseFlags(fs *flag.FlagSet, args []string, out io.Writer) error {
	usage := fs.Usage
	fs.Usage = func() {}
	prev := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(prev)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(out)
		fs.Usage()
		fs.SetOutput(prev)
		return flag.ErrHelp
	case err != nil:
		return FlagError(fs, err)
	}
	return nil
}

// Exit codes of Ferry's binaries.
const (
	ExitOK    = 0
	ExitError = 1
	// ExitUsage is a malformed command line (a FlagError).
	ExitUsage = 2
)

// ExitCode is the exit code for the error a binary's Run returned.
func ExitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, ErrFlag):
		return ExitUsage
	}
	return ExitError
}

// ErrFlag is matched by every error FlagError returns.
var ErrFlag = errors.New("bad flag")

type flagError struct{ msg string }

func (e flagError) Error() string        { return e.msg }
func (e flagError) Is(target error) bool { return target == ErrFlag }

var (
	reInvalid   = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-(\S+): (.*)$`)
	reUndefined = regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)
	reNeedsArg  = regexp.MustCompile(`^flag needs an argument: -+(.+)$`)
)

// FlagError turns an error of fs.Parse into one line naming the flag and
// what it expects: `--in: "10x" is not a duration like 30s or 2m`,
// `--bogus: unknown flag`, `--in: needs a value (a duration like 30s or 2m)`.
// The result matches ErrFlag.
func FlagError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	if m := reInvalid.FindStringSubmatch(msg); m != nil {
		return flagError{fmt.Sprintf("--%s: %q is not %s", m[2], m[1], expected(fs.Lookup(m[2]), m[3]))}
	}
	if m := reUndefined.FindStringSubmatch(msg); m != nil {
		return flagError{fmt.Sprintf("--%s: unknown flag (see %s -h)", m[1], fs.Name())}
	}
	if m := reNeedsArg.FindStringSubmatch(msg); m != nil {
		if e := expected(fs.Lookup(m[1]), ""); e != "" {
			return flagError{fmt.Sprintf("--%s: needs a value (%s)", m[1], e)}
		}
		return flagError{fmt.Sprintf("--%s: needs a value", m[1])}
	}
	return flagError{msg}
}

// expected describes the form a flag's value takes.
func expected(f *flag.Flag, fallback string) string {
	if f == nil {
		return fallback
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return fallback
	}
	switch g.Get().(type) {
	case time.Duration:
		return "a duration like 30s or 2m"
	case bool:
		return "a boolean (true or false)"
	case int, int64:
		return "an integer"
	case uint, uint64:
		return "a non-negative integer"
	case float64:
		return "a number"
	}
	return fallback
}

// CheckSet runs check on the value of flag name when it was given on the
// command line, and blames the flag: `--nats: "http://x" ...`. It returns
// nil when the flag was not given (the environment's value is checked, and
// blamed, elsewhere).
func CheckSet(fs *flag.FlagSet, name string, check func(string) error) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			if e := check(f.Value.String()); e != nil {
				err = flagError{fmt.Sprintf("--%s: %v", name, e)}
			}
		}
	})
	return err
}
