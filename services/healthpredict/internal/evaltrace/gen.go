package evaltrace

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"
)

// Kinds of generated hosts.
const (
	// KindStable: memory and descriptors at a noisy level with load steps.
	KindStable = "stable"
	// KindSawtooth: a garbage-collector sawtooth (5–25% of the limit, 5–90 s period).
	KindSawtooth = "gc_sawtooth"
	// KindSpikes: short memory spikes (5–30 s) up to 85–97% of the limit.
	KindSpikes = "spikes"
	// KindErrorBursts: short bursts (10–90 s) of errors and lost packets.
	KindErrorBursts = "error_bursts"
	// KindSlowLeak: a leak too slow to reach the limit within the trace (plus an hour).
	KindSlowLeak = "slow_leak"
	// KindMemLeak: a memory leak that crashes 2–10 minutes after its onset.
	KindMemLeak = "mem_leak"
	// KindMemLeakGC: the same on top of a garbage-collector sawtooth.
	KindMemLeakGC = "mem_leak_gc"
	// KindMemLeakSlow: a memory leak that crashes 10–60 minutes after its onset.
	KindMemLeakSlow = "mem_leak_slow"
	// KindFDLeak: a descriptor leak that exhausts the limit 2–10 minutes after its onset.
	KindFDLeak = "fd_leak"
	// KindErrorStorm: a sustained error surge that ends in a crash 4–10 minutes later.
	KindErrorStorm = "error_storm"
	// KindSlowSawtooth: a slow garbage-collector sawtooth (30–50% of the
	// limit, mean period 3–7 min, ±10% per cycle) peaking at 70–90%.
	KindSlowSawtooth = "gc_slow"
	// KindMemLeakGCSlow: a memory leak under a slow sawtooth that crashes
	// 4–15 minutes after its onset (at the first peak that reaches the limit).
	KindMemLeakGCSlow = "mem_leak_gc_slow"
	// KindMemLeakAccel: an accelerating memory leak that crashes 5–10 minutes
	// after its onset: slow for the first 50–65% of that time (25–40% of the
	// way to the limit), then two to five times faster.
	KindMemLeakAccel = "mem_leak_accel"
	// KindStepFlat: memory steps up (within 5–20 s) to 75–90% of the limit and
	// stays there, noisy, until the trace ends.
	KindStepFlat = "step_flat"
)

// kinds lists every kind in the order hosts are dealt.
var kinds = []string{KindStable, KindSawtooth, KindSlowSawtooth, KindSpikes, KindErrorBursts, KindSlowLeak, KindStepFlat,
	KindMemLeak, KindMemLeakGC, KindMemLeakGCSlow, KindMemLeakAccel, KindMemLeakSlow, KindFDLeak, KindErrorStorm}

// Kinds returns every kind the generator makes.
func Kinds() []string { return append([]string(nil), kinds...) }

// LeakKinds are the kinds that leak memory or descriptors until they crash.
// The recall target is about those of their hosts that crash within
// Options.TargetWithin (10 min) of the leak's onset, by the labels' actual
// onset and crash times (a mem_leak_gc_slow host may crash 4–15 min after
// its onset, a mem_leak_slow one after 10–60 min).
var LeakKinds = []string{KindMemLeak, KindMemLeakGC, KindMemLeakGCSlow, KindMemLeakAccel, KindMemLeakSlow, KindFDLeak}

// FastLeakKinds are the leaks drawn to crash within 10 minutes of their
// onset. A label without an onset (files written before onsets were
// labelled) counts for the recall target when its kind is one of these.
var FastLeakKinds = []string{KindMemLeak, KindMemLeakGC, KindMemLeakAccel, KindFDLeak}

// GenConfig configures the generator.
type GenConfig struct {
	// Hosts to generate and the trace's Duration.
	Hosts    int
	Duration time.Duration
	// Interval between samples, jittered by ±Jitter of itself; DropRate of
	// samples are missing.
	Interval time.Duration
	Jitter   float64
	DropRate float64
	// Seed makes the trace reproducible.
	Seed uint64
	// Mix weighs the kinds (nil: DefaultMix).
	Mix map[string]float64
}

// DefaultMix is the default share of each kind.
var DefaultMix = map[string]float64{
	KindStable: 0.14, KindSawtooth: 0.10, KindSlowSawtooth: 0.12, KindSpikes: 0.08, KindErrorBursts: 0.08,
	KindSlowLeak: 0.04, KindStepFlat: 0.06,
	KindMemLeak: 0.08, KindMemLeakGC: 0.06, KindMemLeakGCSlow: 0.06, KindMemLeakAccel: 0.05, KindMemLeakSlow: 0.04,
	KindFDLeak: 0.05, KindErrorStorm: 0.04,
}

// DefaultGen is 200 hosts over 6 hours, sampled every 5 s.
func DefaultGen() GenConfig {
	return GenConfig{Hosts: 200, Duration: 6 * time.Hour, Interval: 5 * time.Second, Jitter: 0.1, DropRate: 0.01, Seed: 1}
}

// kindOf deals kinds to hosts in proportion to the mix, deterministically:
// host i gets the kind whose cumulative share covers (i + 0.5) / n.
func (c GenConfig) kindOf(i int) string {
	mix := c.Mix
	if mix == nil {
		mix = DefaultMix
	}
	total := 0.0
	for _, k := range kinds {
		total += mix[k]
	}
	x := (float64(i) + 0.5) / float64(c.Hosts) * total
	acc := 0.0
	for _, k := range kinds {
		acc += mix[k]
		if x < acc {
			return k
		}
	}
	return KindStable
}

// Host generates host i: its label and its samples in time order. A host
// that crashes has no sample after the crash.
func (c GenConfig) Host(i int) (Label, []Record) {
	rng := newRand(c, i)
	kind := c.kindOf(i)
	name := fmt.Sprintf("ingest-%03d", i)
	h := newSim(rng, kind, c)
	var recs []Record
	dt := c.Interval.Seconds()
	dur := c.Duration.Seconds()
	for k := 0; ; k++ {
		t := float64(k)*dt + (rng.Float64()*2-1)*c.Jitter*dt
		if k == 0 {
			t = 0
		}
		if t > dur {
			break
		}
		rec, crashed := h.step(t)
		rec.Host, rec.T = name, math.Round(t*1000)/1000
		if crashed {
			recs = append(recs, rec) // the last sample, at the limit
			ct := rec.T
			l := Label{Host: name, Kind: kind, CrashAt: &ct}
			if on := math.Min(h.leakStart, h.stormAt); on <= ct {
				on = math.Round(on*1000) / 1000
				l.OnsetAt = &on
			}
			return l, recs
		}
		if rng.Float64() < c.DropRate && k > 0 {
			continue
		}
		recs = append(recs, rec)
	}
	return Label{Host: name, Kind: kind}, recs
}

// sim is the state of one simulated host.
type sim struct {
	rng  *rand.Rand
	kind string
	dur  float64

	memLimit, fdLimit int64
	level             float64 // memory level, fraction of the limit
	noise             float64 // its per-sample noise (σ)
	nextStep          float64 // next load step
	sawA, sawP        float64 // sawtooth amplitude and mean period (0: none)
	sawJ              float64 // per-cycle jitter of the period (fraction)
	maxLevel          float64 // ceiling of load steps
	cycleStart, cycle float64
	spikeAt, spikeEnd float64 // current or next spike
	spikeTo           float64
	leakStart         float64 // onset of a leak (Inf: none)
	leakSlope         float64 // per second, fraction of the limit
	accelF, accelR    float64 // accelerating leak: share of the time and of the rise that is slow
	accelSlope        float64 // its later, faster slope
	accelAt           float64 // seconds after the onset when it speeds up
	stepAt, stepRamp  float64 // step_flat: onset and ramp of the step
	stepFrom, stepTo  float64
	fdLevel           float64 // descriptors, fraction of the limit
	fdNoise           float64
	fdSlope           float64
	errRate, lossRate float64 // background rates per second
	burstAt, burstEnd float64
	burstMul          float64
	stormAt           float64
	errors, loss      int64
	prevT             float64
}

func newSim(rng *rand.Rand, kind string, c GenConfig) *sim {
	h := &sim{rng: rng, kind: kind, dur: c.Duration.Seconds(), leakStart: math.Inf(1), stormAt: math.Inf(1),
		spikeAt: math.Inf(1), burstAt: math.Inf(1), stepAt: math.Inf(1), sawJ: 0.2, maxLevel: 0.6}
	h.memLimit = []int64{2 << 30, 4 << 30, 8 << 30, 16 << 30}[rng.IntN(4)]
	h.fdLimit = []int64{1024, 4096, 16384}[rng.IntN(3)]
	h.level = 0.25 + 0.3*rng.Float64()
	h.noise = 0.003 + 0.012*rng.Float64()
	h.nextStep = h.expo(1200)
	h.fdLevel = 0.05 + 0.25*rng.Float64()
	h.fdNoise = 0.002 + 0.01*rng.Float64()
	h.errRate = 0.01 + 0.3*rng.Float64()
	h.lossRate = 3 * rng.Float64()
	onset := func(minLeft float64) float64 { // leave room for the crash inside the trace
		return 1200 + rng.Float64()*math.Max(0, h.dur-1200-minLeft)
	}
	switch kind {
	case KindSawtooth, KindMemLeakGC:
		h.sawA = 0.05 + 0.2*rng.Float64()
		h.sawP = 5 + 85*rng.Float64()
		h.level = 0.2 + 0.25*rng.Float64()
	case KindSlowSawtooth, KindMemLeakGCSlow:
		h.sawA = 0.3 + 0.2*rng.Float64()
		h.sawP = 180 + 240*rng.Float64()
		h.sawJ = 0.1
		h.maxLevel = 0.9 - h.sawA
		h.level = min(0.3+0.15*rng.Float64(), h.maxLevel)
	case KindStepFlat:
		h.stepAt = 1200 + rng.Float64()*math.Max(0, h.dur-3000)
		h.stepRamp = 5 + 15*rng.Float64()
		h.stepTo = 0.75 + 0.15*rng.Float64()
		h.noise = math.Min(h.noise, 0.01)
	case KindSpikes:
		h.spikeAt = h.expo(1200)
	case KindErrorBursts:
		h.burstAt = h.expo(1500)
	}
	switch kind {
	case KindMemLeak, KindMemLeakGC:
		h.leakStart = onset(700)
		d := 120 + 480*rng.Float64() // 2–10 min
		h.leakSlope = -d             // resolved at onset (depends on the level then)
	case KindMemLeakGCSlow:
		h.leakStart = onset(1400)
		h.leakSlope = -(240 + 660*rng.Float64()) // 4–15 min
	case KindMemLeakAccel:
		h.leakStart = onset(700)
		h.leakSlope = -(300 + 300*rng.Float64()) // 5–10 min
		h.accelF = 0.5 + 0.15*rng.Float64()
		h.accelR = 0.25 + 0.15*rng.Float64()
	case KindMemLeakSlow:
		h.leakStart = onset(3700)
		h.leakSlope = -(600 + 3000*rng.Float64())
	case KindSlowLeak:
		h.leakStart = 0
		reach := h.dur + 3600 + rng.Float64()*5*3600
		h.leakSlope = (0.97 - h.level - 4*h.noise) / reach
	case KindFDLeak:
		h.leakStart = onset(700)
		h.fdSlope = -(120 + 480*rng.Float64())
	case KindErrorStorm:
		h.stormAt = onset(700)
	}
	if kind == KindErrorStorm {
		d := 240 + 360*rng.Float64() // crash 4–10 min after the storm begins
		h.burstAt, h.burstEnd = h.stormAt, h.stormAt+d
		h.burstMul = 30 + 70*rng.Float64()
	}
	h.cycle = h.period()
	return h
}

func (h *sim) expo(mean float64) float64 { return -mean * math.Log(1-h.rng.Float64()) }

func (h *sim) period() float64 {
	if h.sawP == 0 {
		return 0
	}
	return h.sawP * (1 - h.sawJ + 2*h.sawJ*h.rng.Float64())
}

func (h *sim) poisson(lambda float64) int64 {
	if lambda <= 0 {
		return 0
	}
	if lambda > 30 {
		return int64(math.Max(0, math.Round(lambda+math.Sqrt(lambda)*h.rng.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), int64(0), 1.0
	for {
		p *= h.rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// step advances the host to t and returns its sample and whether it crashed.
func (h *sim) step(t float64) (Record, bool) {
	dt := t - h.prevT
	h.prevT = t
	leaking := t >= h.leakStart
	// load steps (not while a leak runs, so its crash time stays as drawn)
	if t >= h.nextStep && !leaking && t < h.stepAt {
		h.level = math.Min(h.maxLevel, math.Max(0.15, h.level+0.03*h.rng.NormFloat64()))
		h.nextStep = t + h.expo(1200)
	}
	saw := 0.0
	if h.sawP > 0 {
		for t-h.cycleStart >= h.cycle {
			h.cycleStart += h.cycle
			h.cycle = h.period()
		}
		saw = h.sawA * (t - h.cycleStart) / h.cycle
	}
	// resolve a leak's slope at its onset so that the envelope (level +
	// sawtooth peak) reaches the limit after the drawn duration
	if leaking && h.leakSlope < 0 {
		d := -h.leakSlope
		h.leakSlope = (1 - h.level - h.sawA) / d
		if h.accelF > 0 { // slow for accelF of d, covering accelR of the way
			rest := 1 - h.level - h.sawA
			h.leakSlope = h.accelR * rest / (h.accelF * d)
			h.accelSlope = (1 - h.accelR) * rest / ((1 - h.accelF) * d)
			h.accelAt = h.accelF * d
		}
	}
	if t >= h.stepAt {
		if h.stepFrom == 0 {
			h.stepFrom = h.level
		}
		h.level = h.stepFrom + (h.stepTo-h.stepFrom)*math.Min(1, (t-h.stepAt)/h.stepRamp)
	}
	if leaking && h.fdSlope < 0 {
		d := -h.fdSlope
		h.fdSlope = (1 - h.fdLevel) / d
	}
	u := h.level + saw + h.noise*h.rng.NormFloat64()
	if leaking && h.leakSlope > 0 {
		if h.accelSlope > 0 {
			el := t - h.leakStart
			u += h.leakSlope*math.Min(el, h.accelAt) + h.accelSlope*math.Max(0, el-h.accelAt)
		} else {
			u += h.leakSlope * (t - h.leakStart)
		}
	}
	if h.kind == KindSpikes {
		if t >= h.spikeAt && h.spikeEnd == 0 {
			h.spikeEnd = h.spikeAt + 5 + 25*h.rng.Float64()
			h.spikeTo = 0.85 + 0.12*h.rng.Float64()
		}
		if h.spikeEnd > 0 && t >= h.spikeEnd {
			h.spikeAt, h.spikeEnd = t+h.expo(1200), 0
		}
		if h.spikeEnd > 0 && t < h.spikeEnd {
			u = math.Max(u, h.spikeTo+0.005*h.rng.NormFloat64())
		}
	}
	crashed := false
	switch h.kind {
	case KindMemLeak, KindMemLeakGC, KindMemLeakSlow, KindMemLeakGCSlow, KindMemLeakAccel:
		crashed = u >= 1
	default:
		u = math.Min(u, 0.985)
	}
	u = math.Max(u, 0.01)
	fd := h.fdLevel + h.fdNoise*h.rng.NormFloat64()
	if leaking && h.fdSlope > 0 {
		fd += h.fdSlope * (t - h.leakStart)
	}
	fds := int64(math.Round(fd * float64(h.fdLimit)))
	fds = max(fds, 8)
	if h.kind == KindFDLeak && fds >= h.fdLimit {
		crashed = true
	}
	fds = min(fds, h.fdLimit)
	// errors and lost packets
	mul := 1.0
	if h.kind == KindErrorBursts && t >= h.burstAt {
		if h.burstEnd == 0 {
			h.burstEnd = h.burstAt + 10 + 80*h.rng.Float64()
			h.burstMul = 20 + 180*h.rng.Float64()
		}
		if t < h.burstEnd {
			mul = h.burstMul
		} else {
			h.burstAt, h.burstEnd = t+h.expo(1500), 0
		}
	}
	if h.kind == KindErrorStorm && t >= h.burstAt {
		mul = h.burstMul * (1 + (t-h.burstAt)/120) // and growing
		if t >= h.burstEnd {
			crashed = true
		}
	}
	if dt > 0 {
		rate := h.errRate
		if mul > 1 {
			rate = math.Max(rate*mul, 2) // a burst is at least 2 errors/s
		}
		h.errors += h.poisson(rate * dt)
		h.loss += h.poisson(h.lossRate * math.Sqrt(mul) * dt)
	}
	return Record{MemBytes: int64(u * float64(h.memLimit)), MemLimit: h.memLimit, FDs: fds, FDLimit: h.fdLimit,
		Errors: h.errors, Loss: h.loss}, crashed
}

// Write generates every host and writes the trace in time order (as a
// recorder would see it) and the labels.
func (c GenConfig) Write(trace, labels io.Writer) error {
	hosts := make([][]Record, c.Hosts)
	le := json.NewEncoder(labels)
	for i := range c.Hosts {
		l, recs := c.Host(i)
		hosts[i] = recs
		if err := le.Encode(l); err != nil {
			return err
		}
	}
	q := &merge{}
	for i, recs := range hosts {
		if len(recs) > 0 {
			q.items = append(q.items, cursor{host: i})
		}
	}
	q.hosts = hosts
	heap.Init(q)
	te := json.NewEncoder(trace)
	for q.Len() > 0 {
		cur := &q.items[0]
		if err := te.Encode(hosts[cur.host][cur.pos]); err != nil {
			return err
		}
		cur.pos++
		if cur.pos == len(hosts[cur.host]) {
			heap.Pop(q)
		} else {
			heap.Fix(q, 0)
		}
	}
	return nil
}

type cursor struct{ host, pos int }

// merge is a heap of per-host cursors ordered by the time of their next record.
type merge struct {
	items []cursor
	hosts [][]Record
}

func (m *merge) Len() int { return len(m.items) }
func (m *merge) Less(i, j int) bool {
	a, b := m.items[i], m.items[j]
	ta, tb := m.hosts[a.host][a.pos].T, m.hosts[b.host][b.pos].T
	if ta != tb {
		return ta < tb
	}
	return a.host < b.host
}
func (m *merge) Swap(i, j int) { m.items[i], m.items[j] = m.items[j], m.items[i] }
func (m *merge) Push(x any)    { m.items = append(m.items, x.(cursor)) }
func (m *merge) Pop() any {
	x := m.items[len(m.items)-1]
	m.items = m.items[:len(m.items)-1]
	return x
}

func newRand(c GenConfig, i int) *rand.Rand { return rand.New(rand.NewPCG(c.Seed, uint64(i)+1)) }
