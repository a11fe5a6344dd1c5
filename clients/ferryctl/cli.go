package ferryctl

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/cli"
)

var (
	// errUsage marks a malformed command line (exit code 2).
	errUsage = errors.New("usage")
	// errFlagParse is a command line the usage text was printed for.
	errFlagParse = errors.New("bad flags")
	// errReported is an error whose message was already printed.
	errReported = errors.New("failed")
	// ErrUnreachable is returned when NATS cannot be reached.
	ErrUnreachable = errors.New("cannot reach NATS")
	// ErrNotBootstrapped is returned when Ferry's streams or buckets do not
	// exist on the NATS server (no Ferry service ever started there).
	ErrNotBootstrapped = errors.New("not set up for Ferry")
)

// usageError is a malformed command line; it matches errUsage. flag is set
// for a flag error, which is printed as its one line without the hint.
type usageError struct {
	msg  string
	flag bool
}

func (u usageError) Error() string        { return u.msg }
func (u usageError) Is(target error) bool { return target == errUsage }

// usageErr returns a usageError (exit code 2).
func usageErr(format string, a ...any) error {
	return usageError{msg: fmt.Sprintf(format, a...)}
}

// globalFlags are the connection settings every command accepts, before or
// after its name.
type globalFlags struct {
	nats    string
	creds   string
	timeout time.Duration
}

func (g *globalFlags) register(fs *flag.FlagSet) {
	if g.timeout == 0 {
		g.timeout = 10 * time.Second
	}
	fs.StringVar(&g.nats, "nats", g.nats, "NATS server URL(s) (env FERRY_NATS_URL, default nats://127.0.0.1:4222)")
	fs.StringVar(&g.creds, "creds", g.creds, "NATS credentials file (env FERRY_NATS_CREDS)")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "bound for the whole command (one-shot commands)")
}

// newFlags returns a flag set for a command with the connection flags when
// withConn, and a usage text made of synopsis, description and the flags.
func (e *env) newFlags(name, synopsis, description string, withConn bool) *flag.FlagSet {
	fs := flag.NewFlagSet("ferryctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	if withConn {
		e.global.register(fs)
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage:\n  %s\n\n%s\n", synopsis, strings.TrimSpace(description))
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(w, "\nFlags:")
			cli.PrintDefaults(w, fs)
		}
	}
	return fs
}

// parse parses args allowing flags and positional arguments in any order
// ("schedule ingest-2 --in 2m" as well as "schedule --in 2m ingest-2"); a
// "--" ends the flags. It returns the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseFlags is fs.Parse with Ferry's conventions: -h prints the usage and
// returns flag.ErrHelp; a malformed flag is one line naming the flag and the
// expected form (`--in: "10x" is not a duration like 30s or 2m`), a usage
// error, with nothing else printed.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := cli.ParseFlags(fs, args, fs.Output())
	if errors.Is(err, cli.ErrFlag) {
		return usageError{msg: err.Error(), flag: true}
	}
	return err
}

// positional checks the number of positional arguments.
func positional(pos []string, want int, names string) error {
	switch {
	case len(pos) < want:
		return usageErr("missing %s", names)
	case len(pos) > want:
		return usageErr("unexpected argument %q", pos[want])
	}
	return nil
}

// oneArg parses fs and returns its one positional argument (names, in the
// usage error, says what and how), validated by check as what (checkName,
// checkID).
func oneArg(fs *flag.FlagSet, args []string, names, what string, check func(what, v string) error) (string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if err := positional(pos, 1, names); err != nil {
		return "", err
	}
	if err := check(what, pos[0]); err != nil {
		return "", err
	}
	return pos[0], nil
}

// nameRE is the syntax of host and stream names (they are subject tokens).
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// checkName validates a host or stream name; what is "host" or "stream".
func checkName(what, v string) error {
	if !nameRE.MatchString(v) {
		return usageErr("%s name %q: must be 1-64 letters, digits, '-' or '_', starting with a letter or digit", what, v)
	}
	return nil
}

// idRE is the syntax accepted for maintenance and migration ids.
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

func checkID(what, v string) error {
	if !idRE.MatchString(v) {
		return usageErr("%s %q: must be letters, digits, '-' or '_' (like mw-0a1b2c3d4e5f)", what, v)
	}
	return nil
}

// natsConfig is the connection configuration: defaults, then env, then flags.
func (e *env) natsConfig() bus.Config {
	cfg := bus.ConfigFromEnv(e.getenv, bus.Config{Name: "ferryctl"})
	if e.global.nats != "" {
		cfg.URL = e.global.nats
	}
	if e.global.creds != "" {
		cfg.CredsFile = e.global.creds
	}
	return cfg
}

// conn is a NATS connection with its JetStream context.
type conn struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	url string
}

func (c *conn) Close() { c.nc.Close() }

// connect dials NATS. Failing to reach it gives one line naming the URL.
func (e *env) connect() (*conn, error) {
	if e.global.nats != "" {
		if err := bus.CheckURL(e.global.nats); err != nil {
			return nil, usageError{msg: fmt.Sprintf("--nats: %v", err), flag: true}
		}
	}
	cfg := e.natsConfig()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: e.stderr, NoColor: true, TimeFormat: "15:04:05"}).
		Level(zerolog.WarnLevel).With().Timestamp().Logger()
	opts, err := cfg.Options(log)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Timeout(3*time.Second))
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, cfg.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &conn{nc: nc, js: js, url: cfg.URL}, nil
}

// oneShot bounds a one-shot command by --timeout.
func (e *env) oneShot() (context.Context, context.CancelFunc) {
	return context.WithTimeout(e.ctx, e.global.timeout)
}

// bucket opens a Ferry bucket with a clear error when it does not exist.
func (c *conn) bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bucket %s on %s: %w (start a Ferry service, or `ferryctl dev`, first)", name, c.url, ErrNotBootstrapped)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	return kv, nil
}

// stream checks that a Ferry stream exists.
func (c *conn) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := c.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s on %s: %w (start a Ferry service, or `ferryctl dev`, first)", name, c.url, ErrNotBootstrapped)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return s, nil
}

// hostKnown reports whether host is registered in ingest_hosts.
func (c *conn) hostKnown(ctx context.Context, host string) bool {
	kv, err := c.js.KeyValue(ctx, bus.BucketHosts)
	if err != nil {
		return false
	}
	_, err = kv.Get(ctx, host)
	return err == nil
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() { _ = t.tw.Flush() }

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newID returns prefix + 2n random hex digits.
func newID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// age renders how long ago t was ("3.2s", "5m", "2h10m"); "-" for zero.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return human(now.Sub(t))
}

// human renders a duration compactly.
func human(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < 10*time.Second:
		s = fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		s = fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
	if neg {
		return "-" + s
	}
	return s
}

// relative renders t relative to now: "in 1m58s" or "42s ago".
func relative(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if t.After(now) {
		return "in " + human(t.Sub(now))
	}
	return human(now.Sub(t)) + " ago"
}

// stamp renders a wall-clock time in the local zone.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
