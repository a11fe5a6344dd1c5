package predict

import (
	"errors"
	"fmt"
	"time"
)

// Causes of a predicted outage (the schema's enum).
const (
	CauseMaintenance = "maintenance"
	CauseDrain       = "drain"
	CauseMemory      = "memory"
	CauseFDs         = "fds"
	CauseDisk        = "disk"
	CauseErrors      = "errors"
	CauseLoss        = "loss"
)

// Sample is one telemetry reading of a host. Errors and Lost are cumulative
// counters (a decrease means the host restarted).
type Sample struct {
	Host      string
	T         time.Time
	MemBytes  int64
	MemLimit  int64
	FDs       int64
	FDLimit   int64
	DiskBytes int64
	DiskLimit int64
	Errors    int64
	Lost      int64
}

// ErrInvalidSample marks a sample whose fields are missing or absurd.
var ErrInvalidSample = errors.New("invalid telemetry sample")

// Check rejects samples that would corrupt a host's model: no host or time, a
// negative reading, a zero limit (a host always has a memory and a
// descriptor limit), usage far beyond its limit, or a time more than
// maxFuture ahead of now (such a sample would make every later, genuine one
// look out of order). A zero now skips the future check (offline replay).
func (s Sample) Check(now time.Time, maxFuture time.Duration) error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidSample}, a...)...))
	}
	if s.Host == "" {
		bad("host is missing")
	}
	if s.T.IsZero() || s.T.Year() < 2000 {
		bad("time %s is missing or before 2000", s.T.UTC().Format(time.RFC3339))
	} else if !now.IsZero() && s.T.Sub(now) > maxFuture {
		bad("time %s is %s in the future (limit %s)", s.T.UTC().Format(time.RFC3339Nano),
			s.T.Sub(now).Round(time.Millisecond), maxFuture)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"mem_bytes", s.MemBytes}, {"mem_limit", s.MemLimit}, {"fds", s.FDs}, {"fd_limit", s.FDLimit},
		{"disk_bytes", s.DiskBytes}, {"disk_limit", s.DiskLimit}, {"errors", s.Errors}, {"loss", s.Lost}} {
		if f.v < 0 {
			bad("%s is negative (%d)", f.name, f.v)
		}
	}
	if s.MemLimit == 0 {
		bad("mem_limit is 0: the host must report its memory limit (cgroup or machine memory)")
	}
	if s.FDLimit == 0 {
		bad("fd_limit is 0: the host must report its descriptor limit")
	}
	if s.MemLimit > 0 && s.MemBytes > 4*s.MemLimit {
		bad("mem_bytes %d is more than 4× mem_limit %d", s.MemBytes, s.MemLimit)
	}
	if s.FDLimit > 0 && s.FDs > s.FDLimit {
		bad("fds %d exceeds fd_limit %d", s.FDs, s.FDLimit)
	}
	if s.DiskLimit > 0 && s.DiskBytes > 4*s.DiskLimit {
		bad("disk_bytes %d is more than 4× disk_limit %d", s.DiskBytes, s.DiskLimit)
	}
	return errors.Join(errs...)
}
