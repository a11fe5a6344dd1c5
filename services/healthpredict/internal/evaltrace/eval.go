package evaltrace

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferrystream/ferry/services/healthpredict/internal/predict"
)

// Options configure an evaluation.
type Options struct {
	// Predict configures the predictors.
	Predict predict.Config
	// MinLead: a prediction counts for a crash only this long before it (default 30s).
	MinLead time.Duration
	// TargetKinds are the kinds the recall target is about (default
	// LeakKinds), and TargetWithin how soon after its onset a host of those
	// kinds must crash to be in the target population (default 10m), by its
	// label's onset and crash times. A label without an onset counts when its
	// kind is also one of FastLeakKinds.
	TargetKinds  []string
	TargetWithin time.Duration
}

// DefaultOptions returns the default evaluation options.
func DefaultOptions() Options {
	return Options{Predict: predict.Default(), MinLead: 30 * time.Second, TargetKinds: LeakKinds, TargetWithin: 10 * time.Minute}
}

// Evaluator replays records through a Tracker and keeps what it predicted.
type Evaluator struct {
	opts     Options
	tr       *predict.Tracker
	hosts    map[string]*hostEval
	samples  int
	rejected int
}

type hostEval struct {
	first, last float64
	preds       []made
}

// made is one published prediction (open or update).
type made struct {
	at    float64
	kind  predict.Kind
	id    string
	cause string
}

// NewEvaluator returns an evaluator; opts.Predict must be valid.
func NewEvaluator(opts Options) *Evaluator {
	if opts.MinLead == 0 {
		opts.MinLead = 30 * time.Second
	}
	if opts.TargetKinds == nil {
		opts.TargetKinds = LeakKinds
	}
	if opts.TargetWithin == 0 {
		opts.TargetWithin = 10 * time.Minute
	}
	return &Evaluator{opts: opts, tr: predict.NewTracker(opts.Predict), hosts: map[string]*hostEval{}}
}

// Feed replays one record. A record that fails predict.Sample.Check or is
// out of order is rejected (counted, returned) and changes nothing.
func (e *Evaluator) Feed(r Record) error {
	s := r.Sample()
	if err := s.Check(time.Time{}, 0); err != nil {
		e.rejected++
		return fmt.Errorf("host %s t=%v: %w", r.Host, r.T, err)
	}
	ds, err := e.tr.Observe(s)
	if err != nil {
		e.rejected++
		return fmt.Errorf("host %s t=%v: %w", r.Host, r.T, err)
	}
	e.samples++
	h := e.hosts[r.Host]
	if h == nil {
		h = &hostEval{first: r.T}
		e.hosts[r.Host] = h
	}
	h.last = r.T
	for _, d := range ds {
		if d.Kind == predict.Open || d.Kind == predict.Update {
			h.preds = append(h.preds, made{at: d.At.Sub(Epoch).Seconds(), kind: d.Kind, id: d.Prediction.ID, cause: d.Prediction.Cause})
		}
	}
	return nil
}

// KindStats are the figures of one kind of host.
type KindStats struct {
	Kind      string  `json:"kind"`
	Hosts     int     `json:"hosts"`
	HostHours float64 `json:"host_hours"`
	Crashes   int     `json:"crashes"`
	// Predicted crashes: a prediction at least MinLead and at most the
	// horizon before the crash.
	Predicted int `json:"predicted"`
	// Late crashes: predicted, but less than MinLead ahead.
	Late     int     `json:"late"`
	LeadP10S float64 `json:"lead_p10_s"`
	LeadP50S float64 `json:"lead_p50_s"`
	// LeadMinS is the shortest lead of the kind's predicted crashes.
	LeadMinS float64 `json:"lead_min_s"`
	// False predictions: opened on a host that does not crash within the
	// horizon of the opening; FalsePer24h per 24 of the kind's host-hours.
	False       int     `json:"false"`
	FalsePer24h float64 `json:"false_per_24h"`
}

// Report is the result of an evaluation.
type Report struct {
	Hosts           int     `json:"hosts"`
	Samples         int     `json:"samples"`
	Rejected        int     `json:"rejected"`
	HostHours       float64 `json:"host_hours"`
	StableHostHours float64 `json:"stable_host_hours"`
	HorizonS        float64 `json:"horizon_s"`
	MinLeadS        float64 `json:"min_lead_s"`
	// Recall over the crashes of the target kinds that came within
	// TargetWithinS of their onset, and its lead times; LeadMinS is the
	// shortest lead measured among them (MinLeadS is the least that counts).
	TargetKinds     []string `json:"target_kinds"`
	TargetWithinS   float64  `json:"target_within_s"`
	TargetCrashes   int      `json:"target_crashes"`
	TargetPredicted int      `json:"target_predicted"`
	Recall          float64  `json:"recall"`
	LeadP10S        float64  `json:"lead_p10_s"`
	LeadP50S        float64  `json:"lead_p50_s"`
	LeadMinS        float64  `json:"lead_min_s"`
	// Recall over every crashing leak (kinds containing "leak").
	LeakCrashes    int     `json:"leak_crashes"`
	LeakPredicted  int     `json:"leak_predicted"`
	RecallAllLeaks float64 `json:"recall_all_leaks"`
	// Recall over every crash, whatever its kind.
	Crashes         int     `json:"crashes"`
	CrashesPredicts int     `json:"crashes_predicted"`
	RecallAll       float64 `json:"recall_all"`
	// False predictions on hosts that never crash, per 24 of their host-hours,
	// and on every host.
	FalseStable       int     `json:"false_stable"`
	FalsePer24hStable float64 `json:"false_per_24h_stable"`
	FalseAll          int     `json:"false_all"`
	FalsePer24hAll    float64 `json:"false_per_24h_all"`
	// WorstFalseKind is the never-crashing kind with the most false
	// predictions per 24 of its host-hours, and WorstFalsePer24h that rate.
	WorstFalseKind   string  `json:"worst_false_kind"`
	WorstFalsePer24h float64 `json:"worst_false_per_24h"`
	// Opened predictions in total.
	Opened int `json:"opened"`
	// FalseByCause splits the false predictions by cause.
	FalseByCause map[string]int `json:"false_by_cause"`
	Kinds        []KindStats    `json:"kinds"`
	// Missed lists target hosts not predicted in time (at most 20).
	Missed []string `json:"missed,omitempty"`
}

// Report scores what was predicted against labels. Hosts without a label
// are taken as never crashing.
func (e *Evaluator) Report(labels map[string]Label) Report {
	horizon := e.opts.Predict.Horizon.Seconds()
	minLead := e.opts.MinLead.Seconds()
	rep := Report{Hosts: len(e.hosts), Samples: e.samples, Rejected: e.rejected, HorizonS: horizon, MinLeadS: minLead,
		TargetKinds: e.opts.TargetKinds, TargetWithinS: e.opts.TargetWithin.Seconds(), FalseByCause: map[string]int{}}
	kinds := map[string]*KindStats{}
	kindLeads := map[string][]float64{}
	var targetLeads []float64
	for _, name := range sortedHosts(e.hosts) {
		h := e.hosts[name]
		l, ok := labels[name]
		if !ok {
			l = Label{Host: name, Kind: "unlabelled"}
		}
		ks := kinds[l.Kind]
		if ks == nil {
			ks = &KindStats{Kind: l.Kind}
			kinds[l.Kind] = ks
		}
		hours := (h.last - h.first) / 3600
		ks.Hosts++
		ks.HostHours += hours
		rep.HostHours += hours
		crash := math.Inf(1)
		if l.CrashAt != nil {
			crash = *l.CrashAt
		}
		for _, p := range h.preds {
			if p.kind != predict.Open {
				continue
			}
			rep.Opened++
			if crash-p.at > horizon {
				ks.False++
				rep.FalseAll++
				rep.FalseByCause[p.cause]++
				if l.CrashAt == nil {
					rep.FalseStable++
				}
			}
		}
		if l.CrashAt == nil {
			rep.StableHostHours += hours
			continue
		}
		ks.Crashes++
		rep.Crashes++
		lead, late := -1.0, false
		for _, p := range h.preds {
			ahead := crash - p.at
			if ahead > horizon {
				continue
			}
			if ahead >= minLead {
				lead = ahead
				break
			}
			late = true
		}
		target := slices.Contains(e.opts.TargetKinds, l.Kind)
		if l.OnsetAt != nil {
			target = target && crash-*l.OnsetAt <= e.opts.TargetWithin.Seconds()
		} else {
			target = target && slices.Contains(FastLeakKinds, l.Kind)
		}
		leak := strings.Contains(l.Kind, "leak")
		if target {
			rep.TargetCrashes++
		}
		if leak {
			rep.LeakCrashes++
		}
		switch {
		case lead >= 0:
			ks.Predicted++
			rep.CrashesPredicts++
			kindLeads[l.Kind] = append(kindLeads[l.Kind], lead)
			if target {
				rep.TargetPredicted++
				targetLeads = append(targetLeads, lead)
			}
			if leak {
				rep.LeakPredicted++
			}
		case late:
			ks.Late++
		}
		if lead < 0 && target && len(rep.Missed) < 20 {
			rep.Missed = append(rep.Missed, name)
		}
	}
	rep.Recall = ratio(rep.TargetPredicted, rep.TargetCrashes)
	rep.RecallAllLeaks = ratio(rep.LeakPredicted, rep.LeakCrashes)
	rep.RecallAll = ratio(rep.CrashesPredicts, rep.Crashes)
	rep.LeadP10S, rep.LeadP50S = percentile(targetLeads, 0.1), percentile(targetLeads, 0.5)
	rep.LeadMinS = percentile(targetLeads, 0)
	if rep.StableHostHours > 0 {
		rep.FalsePer24hStable = round(float64(rep.FalseStable)/rep.StableHostHours*24, 3)
	}
	if rep.HostHours > 0 {
		rep.FalsePer24hAll = round(float64(rep.FalseAll)/rep.HostHours*24, 3)
	}
	rep.HostHours, rep.StableHostHours = round(rep.HostHours, 1), round(rep.StableHostHours, 1)
	for _, k := range sortedHosts(kinds) {
		ks := kinds[k]
		ks.HostHours = round(ks.HostHours, 1)
		ks.LeadP10S, ks.LeadP50S = percentile(kindLeads[k], 0.1), percentile(kindLeads[k], 0.5)
		ks.LeadMinS = percentile(kindLeads[k], 0)
		if ks.HostHours > 0 {
			ks.FalsePer24h = round(float64(ks.False)/ks.HostHours*24, 3)
		}
		if ks.Crashes == 0 && (rep.WorstFalseKind == "" || ks.FalsePer24h > rep.WorstFalsePer24h) {
			rep.WorstFalseKind, rep.WorstFalsePer24h = ks.Kind, ks.FalsePer24h
		}
		rep.Kinds = append(rep.Kinds, *ks)
	}
	return rep
}

// WriteText writes the report for a human.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "healthpredict evaluation: %d hosts, %.1f host-hours, %d samples (%d rejected)\n",
		r.Hosts, r.HostHours, r.Samples, r.Rejected)
	fmt.Fprintf(&b, "horizon %s, a prediction counts when it comes %s to %s before the crash\n",
		secs(r.HorizonS), secs(r.MinLeadS), secs(r.HorizonS))
	fmt.Fprintf(&b, "recall, leaks crashing within %g min of their onset (%s): %d/%d = %.1f%%\n",
		r.TargetWithinS/60, strings.Join(r.TargetKinds, ", "), r.TargetPredicted, r.TargetCrashes, 100*r.Recall)
	fmt.Fprintf(&b, "lead time before the crash: min %.0f s, p10 %.0f s, p50 %.0f s\n", r.LeadMinS, r.LeadP10S, r.LeadP50S)
	fmt.Fprintf(&b, "recall, every crashing leak: %d/%d = %.1f%%; every crash: %d/%d = %.1f%%\n",
		r.LeakPredicted, r.LeakCrashes, 100*r.RecallAllLeaks, r.CrashesPredicts, r.Crashes, 100*r.RecallAll)
	fmt.Fprintf(&b, "false predictions: %d on never-crashing hosts over %.1f host-hours = %.3f per 24 host-hours; all hosts %d = %.3f per 24 host-hours\n",
		r.FalseStable, r.StableHostHours, r.FalsePer24hStable, r.FalseAll, r.FalsePer24hAll)
	fmt.Fprintf(&b, "worst never-crashing kind: %s, %.3f false predictions per 24 host-hours\n", r.WorstFalseKind, r.WorstFalsePer24h)
	fmt.Fprintf(&b, "predictions opened: %d; false by cause:", r.Opened)
	for _, c := range sortedHosts(r.FalseByCause) {
		fmt.Fprintf(&b, " %s %d", c, r.FalseByCause[c])
	}
	fmt.Fprintln(&b)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "kind\thosts\thost-h\tcrashes\tpredicted\tlate\tfalse\tfalse/24h\tlead min s\tlead p10 s\tlead p50 s")
	for _, k := range r.Kinds {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%d\t%d\t%d\t%d\t%.3f\t%.0f\t%.0f\t%.0f\n", k.Kind, k.Hosts, k.HostHours, k.Crashes, k.Predicted,
			k.Late, k.False, k.FalsePer24h, k.LeadMinS, k.LeadP10S, k.LeadP50S)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Missed) > 0 {
		fmt.Fprintf(&b, "missed: %s\n", strings.Join(r.Missed, " "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one JSON line.
func (r Report) WriteJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(r)
}

func secs(s float64) string { return (time.Duration(s) * time.Second).String() }

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return round(float64(a)/float64(b), 4)
}

// percentile is the nearest-rank percentile of xs (0 when empty).
func percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	i = max(0, min(i, len(s)-1))
	return round(s[i], 1)
}

func round(x float64, d int) float64 {
	p := math.Pow(10, float64(d))
	return math.Round(x*p) / p
}

func sortedHosts[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Run generates the trace of c host by host and evaluates it with opts
// (without going through files).
func Run(c GenConfig, opts Options) Report {
	e := NewEvaluator(opts)
	labels := map[string]Label{}
	for i := range c.Hosts {
		l, recs := c.Host(i)
		labels[l.Host] = l
		for _, r := range recs {
			_ = e.Feed(r)
		}
	}
	return e.Report(labels)
}
