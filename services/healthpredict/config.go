package healthpredict

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/cli"
	"github.com/ferrystream/ferry/libs/env"
	"github.com/ferrystream/ferry/services/healthpredict/internal/predict"
	"github.com/ferrystream/ferry/services/healthpredict/internal/service"
)

// Config is the service configuration: defaults, then environment
// (HEALTHPREDICT_*, FERRY_NATS_*), then flags.
type Config struct {
	// NATS is how to reach NATS (FERRY_NATS_*, --nats).
	NATS bus.Config
	// Instance names this replica (HEALTHPREDICT_INSTANCE, --instance; default random).
	Instance string
	// MetricsAddr serves /metrics /healthz /readyz (HEALTHPREDICT_METRICS_ADDR, --metrics-addr;
	// the variable set to "off" or the flag set to "" disables it).
	MetricsAddr string
	// MaxFuture: telemetry stamped further ahead than this is rejected (HEALTHPREDICT_MAX_FUTURE).
	MaxFuture time.Duration
	// Tick: clock checks of maintenance windows and publish retries (HEALTHPREDICT_TICK).
	Tick time.Duration
	// DeadLetterEvery: at most one dead-letter copy per feed, host and reason
	// per period, 0 = every message (HEALTHPREDICT_DLQ_EVERY).
	DeadLetterEvery time.Duration
	// Predict holds the predictors' thresholds, windows and horizon (see Knobs).
	Predict predict.Config
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		NATS:            bus.Config{Name: "ferry-healthpredict"},
		MetricsAddr:     "127.0.0.1:9312",
		MaxFuture:       30 * time.Second,
		Tick:            5 * time.Second,
		DeadLetterEvery: time.Minute,
		Predict:         predict.Default(),
	}
}

// Knob is one predictor setting read from the environment.
type Knob struct {
	// Key is the environment variable, Field the predict.Config field.
	Key, Field string
	// Doc says what it does (the README's table must match, see TestReadmeDocumentsEveryKnob).
	Doc     string
	dur     *time.Duration
	num     *float64
	integer *int
	flag    *bool
	durs    *[]time.Duration
}

// Knobs lists the predictor settings of c, bound to its fields.
func Knobs(c *predict.Config) []Knob {
	return []Knob{
		{Key: "HEALTHPREDICT_HORIZON", Field: "Horizon", dur: &c.Horizon,
			Doc: "a resource trend predicts only when its limit is this close"},
		{Key: "HEALTHPREDICT_BUCKET", Field: "Bucket", dur: &c.Bucket,
			Doc: "resolution of the upper envelope (one maximum per bucket); trends are evaluated per bucket"},
		{Key: "HEALTHPREDICT_ENVELOPE_SPAN", Field: "EnvelopeSpan", dur: &c.EnvelopeSpan,
			Doc: "rolling maximum forming the envelope; a GC sawtooth with a shorter period stays flat"},
		{Key: "HEALTHPREDICT_WINDOWS", Field: "Windows", durs: &c.Windows,
			Doc: "fit windows, comma-separated, increasing; the longest good and consistent fit decides"},
		{Key: "HEALTHPREDICT_MIN_POINTS", Field: "MinPoints", integer: &c.MinPoints, Doc: "fewest envelope points a window needs"},
		{Key: "HEALTHPREDICT_COVERAGE", Field: "Coverage", num: &c.Coverage, Doc: "fraction of a window's buckets that must hold a point"},
		{Key: "HEALTHPREDICT_MAX_POINTS", Field: "MaxPoints", integer: &c.MaxPoints, Doc: "points fitted per window at most (adjacent points merged)"},
		{Key: "HEALTHPREDICT_MIN_TAU", Field: "MinTau", num: &c.MinTau, Doc: "least Kendall rank correlation of a rising window"},
		{Key: "HEALTHPREDICT_MIN_R2", Field: "MinR2", num: &c.MinR2, Doc: "least R² of the Theil–Sen line"},
		{Key: "HEALTHPREDICT_RECENT_RATIO", Field: "RecentRatio", num: &c.RecentRatio,
			Doc: "the recent half's slope must be at least this fraction of the window's (a step then a plateau is no leak)"},
		{Key: "HEALTHPREDICT_MIN_RISE", Field: "MinRise", num: &c.MinRise, Doc: "least rise over the window, fraction of the limit"},
		{Key: "HEALTHPREDICT_NOISE_RISE", Field: "NoiseRise", num: &c.NoiseRise, Doc: "the rise must also exceed this many times the sample noise"},
		{Key: "HEALTHPREDICT_NOISE_RISE_MAX", Field: "NoiseRiseMax", num: &c.NoiseRiseMax,
			Doc: "cap of that noise-based rise (a fast GC sawtooth reads as sample noise)"},
		{Key: "HEALTHPREDICT_MAX_GAP", Field: "MaxGap", dur: &c.MaxGap, Doc: "a longer silence in telemetry resets a host's history"},
		{Key: "HEALTHPREDICT_TREND_WARMUP", Field: "TrendWarmup", dur: &c.TrendWarmup,
			Doc: "history a resource needs (since a reset) before its trend predicts"},
		{Key: "HEALTHPREDICT_CYCLE_DROP", Field: "CycleDrop", num: &c.CycleDrop,
			Doc: "a fall of this fraction of the limit within two buckets is a collection (GC, flush, rotation)"},
		{Key: "HEALTHPREDICT_CYCLE_MEMORY", Field: "CycleMemory", dur: &c.CycleMemory,
			Doc: "how long a collection is remembered; slow cycles meanwhile need more evidence"},
		{Key: "HEALTHPREDICT_CYCLE_MARGIN", Field: "CycleMargin", num: &c.CycleMargin,
			Doc: "during slow cycles: rise above the last peak, or of a cycle over the last, that counts"},
		{Key: "HEALTHPREDICT_CYCLE_NOISE", Field: "CycleNoise", num: &c.CycleNoise,
			Doc: "a cycle's rise over the last counts above this many times the median of earlier such rises (0: CYCLE_MARGIN)"},
		{Key: "HEALTHPREDICT_CYCLE_MARGIN_MIN", Field: "CycleMarginMin", num: &c.CycleMarginMin,
			Doc: "the least that noise-scaled rise of a cycle over the last may be"},
		{Key: "HEALTHPREDICT_CYCLE_SHAPE", Field: "CycleShape", flag: &c.CycleShape,
			Doc: "two completed cycles in a row above their predecessors, fraction for fraction of their lengths, predict when the peaks so rising reach the limit"},
		{Key: "HEALTHPREDICT_CYCLE_STEEP", Field: "CycleSteep", num: &c.CycleSteep,
			Doc: "above every recent peak, a climb this many times the cycles' ramp rate predicts even past the next collection (0: never)"},
		{Key: "HEALTHPREDICT_OPEN_AFTER", Field: "OpenAfter", dur: &c.OpenAfter, Doc: "a condition must hold this long before a prediction opens"},
		{Key: "HEALTHPREDICT_FAST_OPEN_AFTER", Field: "FastOpenAfter", dur: &c.FastOpenAfter,
			Doc: "…or this long, during slow cycles, when the resource climbs steadily above every recent peak toward the limit"},
		{Key: "HEALTHPREDICT_FAST_RAMP_SPAN", Field: "FastRampSpan", dur: &c.FastRampSpan, Doc: "how long that climb must have lasted"},
		{Key: "HEALTHPREDICT_FAST_WITHIN", Field: "FastWithin", dur: &c.FastWithin, Doc: "how soon that climb must reach the limit"},
		{Key: "HEALTHPREDICT_CLEAR_AFTER", Field: "ClearAfter", dur: &c.ClearAfter, Doc: "an open prediction is cleared after its condition has failed this long"},
		{Key: "HEALTHPREDICT_UPDATE_MIN_SHIFT", Field: "UpdateMinShift", dur: &c.UpdateMinShift, Doc: "least move of the expected time worth a revision"},
		{Key: "HEALTHPREDICT_UPDATE_FRACTION", Field: "UpdateFraction", num: &c.UpdateFraction,
			Doc: "…or this fraction of the time still to go, if larger"},
		{Key: "HEALTHPREDICT_SURGE_BASELINE_HALF_LIFE", Field: "SurgeBaselineHalfLife", dur: &c.SurgeBaselineHalfLife,
			Doc: "half-life of a host's error/loss baseline"},
		{Key: "HEALTHPREDICT_SURGE_WARMUP", Field: "SurgeWarmup", dur: &c.SurgeWarmup, Doc: "history needed before a surge is judged"},
		{Key: "HEALTHPREDICT_SURGE_WINDOW", Field: "SurgeWindow", dur: &c.SurgeWindow, Doc: "span over which the current rate is measured"},
		{Key: "HEALTHPREDICT_SURGE_FACTOR", Field: "SurgeFactor", num: &c.SurgeFactor, Doc: "a surge is above this many times the baseline"},
		{Key: "HEALTHPREDICT_SURGE_SIGMA", Field: "SurgeSigma", num: &c.SurgeSigma, Doc: "…and above baseline + this many typical deviations"},
		{Key: "HEALTHPREDICT_SURGE_MIN_ERROR_RATE", Field: "SurgeMinErrorRate", num: &c.SurgeMinErrorRate, Doc: "…and above this many errors per second"},
		{Key: "HEALTHPREDICT_SURGE_MIN_LOSS_RATE", Field: "SurgeMinLossRate", num: &c.SurgeMinLossRate, Doc: "…or lost packets per second"},
		{Key: "HEALTHPREDICT_SURGE_HOLD", Field: "SurgeHold", dur: &c.SurgeHold, Doc: "a surge must last this long to predict"},
		{Key: "HEALTHPREDICT_SURGE_CALM_RATIO", Field: "SurgeCalmRatio", num: &c.SurgeCalmRatio, Doc: "a surge ends below this fraction of its threshold"},
		{Key: "HEALTHPREDICT_SURGE_QUIET", Field: "SurgeQuiet", dur: &c.SurgeQuiet,
			Doc: "…or when every sample interval stays below that level this long: bursts with pauses are not one surge (0: off)"},
		{Key: "HEALTHPREDICT_SURGE_LEAD", Field: "SurgeLead", dur: &c.SurgeLead, Doc: "a surge predicts the outage this long after it is confirmed"},
		{Key: "HEALTHPREDICT_SURGE_FREEZE_MAX", Field: "SurgeFreezeMax", dur: &c.SurgeFreezeMax,
			Doc: "the baseline stops learning during a surge for at most this long"},
		{Key: "HEALTHPREDICT_DRAIN_GRACE", Field: "DrainGrace", dur: &c.DrainGrace,
			Doc: "a drained host reporting this long after its deadline is back (drain cleared)"},
	}
}

// Value renders the knob's current value.
func (k Knob) Value() string {
	switch {
	case k.dur != nil:
		return k.dur.String()
	case k.num != nil:
		return strconv.FormatFloat(*k.num, 'g', -1, 64)
	case k.integer != nil:
		return strconv.Itoa(*k.integer)
	case k.flag != nil:
		return strconv.FormatBool(*k.flag)
	default:
		var parts []string
		for _, d := range *k.durs {
			parts = append(parts, d.String())
		}
		return strings.Join(parts, ",")
	}
}

func (k Knob) set(v string) error {
	switch {
	case k.dur != nil:
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration (e.g. 10s)", k.Key, v)
		}
		*k.dur = d
	case k.num != nil:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", k.Key, v)
		}
		*k.num = f
	case k.integer != nil:
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not an integer", k.Key, v)
		}
		*k.integer = n
	case k.flag != nil:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", k.Key, v)
		}
		*k.flag = b
	default:
		var ds []time.Duration
		for _, p := range strings.Split(v, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(p))
			if err != nil {
				return fmt.Errorf("%s: %q is not a comma-separated list of durations (e.g. 1m,2m,4m)", k.Key, v)
			}
			ds = append(ds, d)
		}
		*k.durs = ds
	}
	return nil
}

// LoadPredict reads the predictor settings from getenv over the defaults.
func LoadPredict(getenv func(string) string) (predict.Config, error) {
	c := predict.Default()
	var errs []error
	for _, k := range Knobs(&c) {
		if v := getenv(k.Key); v != "" {
			if err := k.set(v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return c, errors.Join(errs...)
}

// ValidatePredict checks predictor settings; errors name the environment key.
func ValidatePredict(c predict.Config) error {
	err := c.Validate()
	if err == nil {
		return nil
	}
	keys := map[string]string{}
	for _, k := range Knobs(&c) {
		keys[k.Field] = k.Key
	}
	var out []error
	for _, e := range flatten(err) {
		var fe *predict.FieldError
		if errors.As(e, &fe) && keys[fe.Field] != "" {
			out = append(out, fmt.Errorf("%s: %s", keys[fe.Field], fe.Reason))
			continue
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// Description is the paragraph that opens `ferry-healthpredict -h`.
const Description = `ferry-healthpredict predicts ingest outages: it reads every host's telemetry
and heartbeats from NATS, scores each host with its predictors (memory and
descriptor leaks, error storms, packet loss, scheduled maintenance, missing
heartbeats) and publishes health.outage_predicted, with a cause, a confidence
and an offline time, early enough for placement to move the host's streams.
eval and gen replay or generate telemetry traces to measure the predictors.
Settings come from the environment (HEALTHPREDICT_*, FERRY_*) and then from
these flags.`

// ErrHelp is returned by Load for -h/--help or --version (the text was printed).
var ErrHelp = flag.ErrHelp

// Load builds the configuration from defaults, getenv and args. Usage and
// flag errors are written to out. It does not validate; call Validate.
func Load(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	c := DefaultConfig()
	var errs []error
	p, err := LoadPredict(getenv)
	if err != nil {
		errs = append(errs, err)
	}
	c.Predict = p
	r := env.New(getenv)
	r.Str(&c.Instance, "HEALTHPREDICT_INSTANCE")
	if v, ok := lookup(getenv, "HEALTHPREDICT_METRICS_ADDR"); ok {
		c.MetricsAddr = v // set but empty disables the endpoint
	}
	r.Dur(&c.MaxFuture, "HEALTHPREDICT_MAX_FUTURE")
	r.Dur(&c.Tick, "HEALTHPREDICT_TICK")
	r.Dur(&c.DeadLetterEvery, "HEALTHPREDICT_DLQ_EVERY")
	if err := r.Err(); err != nil {
		errs = append(errs, err)
	}
	c.NATS = bus.ConfigFromEnv(getenv, c.NATS)
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	fs := flag.NewFlagSet("ferry-healthpredict", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.NATS.URL, "nats", c.NATS.URL, "NATS URL(s) (FERRY_NATS_URL)")
	fs.StringVar(&c.Instance, "instance", c.Instance, "name of this replica (HEALTHPREDICT_INSTANCE; default random)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, `metrics/health address, "" disables (HEALTHPREDICT_METRICS_ADDR)`)
	fs.Usage = func() {
		fmt.Fprintf(out, "%s\n\nUsage:\n  ferry-healthpredict [run] [flags]\n  ferry-healthpredict eval --telemetry FILE --labels FILE\n"+
			"  ferry-healthpredict gen --telemetry FILE --labels FILE [--hosts N --duration D --interval D --seed N]\n\nFlags of run:\n", Description)
		cli.PrintDefaults(out, fs)
		fmt.Fprintf(out, "\npredictor settings (environment):\n")
		for _, k := range Knobs(&c.Predict) {
			fmt.Fprintf(out, "  %-40s %-18s %s\n", k.Key, k.Value(), k.Doc)
		}
	}
	if err := cli.Parse(fs, args, out); err != nil {
		return c, err
	}
	if err := cli.CheckSet(fs, "nats", bus.CheckURL); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.Instance == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.Instance = "healthpredict-" + hex.EncodeToString(b)
	}
	return c, nil
}

// lookup distinguishes an empty variable from an unset one when getenv is
// os.Getenv: "" can disable the metrics server only through the flag; the
// variable set to "off" disables it too.
func lookup(getenv func(string) string, key string) (string, bool) {
	v := getenv(key)
	if v == "" {
		return "", false
	}
	if v == "off" {
		return "", true
	}
	return v, true
}

var instancePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Validate checks the configuration; every error names its key.
func (c Config) Validate() error {
	errs := []error{c.NATS.Validate(), ValidatePredict(c.Predict)}
	if !instancePattern.MatchString(c.Instance) {
		errs = append(errs, fmt.Errorf("HEALTHPREDICT_INSTANCE: %q must match %s", c.Instance, instancePattern))
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("HEALTHPREDICT_METRICS_ADDR: %q must be host:port", c.MetricsAddr))
		}
	}
	between := func(key string, d, lo, hi time.Duration) {
		if d < lo || d > hi {
			errs = append(errs, fmt.Errorf("%s: must be between %v and %v, got %v", key, lo, hi, d))
		}
	}
	between("HEALTHPREDICT_MAX_FUTURE", c.MaxFuture, time.Second, time.Hour)
	between("HEALTHPREDICT_TICK", c.Tick, 100*time.Millisecond, time.Minute)
	between("HEALTHPREDICT_DLQ_EVERY", c.DeadLetterEvery, 0, time.Hour)
	return errors.Join(errs...)
}

// Service returns the service's configuration.
func (c Config) Service() service.Config {
	return service.Config{Predict: c.Predict, Instance: c.Instance, MaxFuture: c.MaxFuture, Tick: c.Tick,
		DeadLetterEvery: c.DeadLetterEvery}
}
