// Package evaltrace evaluates the predictors offline: it generates synthetic
// telemetry traces with labels (leaks that end in a crash, stable but noisy
// hosts, fast and slow garbage-collector sawtooth, short spikes, steps,
// error bursts, accelerating leaks), replays a trace through a
// predict.Tracker on the samples' own timestamps, and scores the predictions
// against the labels: recall, lead time before the crash, and false
// predictions per 24 host-hours, per kind.
package evaltrace

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ferrystream/ferry/services/healthpredict/internal/predict"
)

// Epoch is the wall-clock time of t = 0 when a trace is replayed.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Record is one line of a telemetry trace (JSON lines). T is in seconds from
// the start of the trace; Errors and Loss are cumulative counters (errors of
// any kind, RTP packets lost), as in the ingest telemetry event.
type Record struct {
	Host     string  `json:"host"`
	T        float64 `json:"t"`
	MemBytes int64   `json:"mem_bytes"`
	MemLimit int64   `json:"mem_limit"`
	FDs      int64   `json:"fds"`
	FDLimit  int64   `json:"fd_limit"`
	Errors   int64   `json:"errors"`
	Loss     int64   `json:"loss"`
}

// Sample converts r to a predictor sample.
func (r Record) Sample() predict.Sample {
	return predict.Sample{
		Host: r.Host, T: Epoch.Add(time.Duration(r.T * float64(time.Second))),
		MemBytes: r.MemBytes, MemLimit: r.MemLimit, FDs: r.FDs, FDLimit: r.FDLimit,
		Errors: r.Errors, Lost: r.Loss,
	}
}

// Label is one line of a labels file: the host's kind, when it crashes
// (seconds from the trace start), or null when it never does, and when the
// fault that crashes it began (the leak's or storm's onset; absent when
// unknown or when it never crashes).
type Label struct {
	Host    string   `json:"host"`
	Kind    string   `json:"kind"`
	CrashAt *float64 `json:"crash_at"`
	OnsetAt *float64 `json:"onset_at,omitempty"`
}

// ErrBadLine marks a line of a trace or labels file that cannot be read.
var ErrBadLine = errors.New("bad line")

// ReadLabels reads a labels file.
func ReadLabels(r io.Reader) (map[string]Label, error) {
	out := map[string]Label{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if len(trimSpace(line)) == 0 {
			continue
		}
		var l Label
		if err := json.Unmarshal(line, &l); err != nil {
			return nil, fmt.Errorf("%w: labels line %d: %v", ErrBadLine, n, err)
		}
		if l.Host == "" {
			return nil, fmt.Errorf("%w: labels line %d: host is missing", ErrBadLine, n)
		}
		out[l.Host] = l
	}
	return out, sc.Err()
}

// ReadTrace calls f for each record of a trace, in file order. A line that is
// not valid JSON is reported to bad (with its number) and skipped.
func ReadTrace(r io.Reader, f func(Record) error, bad func(line int, err error)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if len(trimSpace(line)) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			bad(n, fmt.Errorf("%w: %v", ErrBadLine, err))
			continue
		}
		if err := f(rec); err != nil {
			bad(n, err)
		}
	}
	return sc.Err()
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
