package registry

import (
	"bytes"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// Proc is one sample of the process's resource use.
type Proc struct {
	// CPUSeconds is user+system CPU time since start.
	CPUSeconds float64
	// RSS is the resident set size in bytes.
	RSS int64
	// MemLimit is the cgroup memory limit in bytes, or the machine's total
	// memory (MemTotal) when the cgroup sets none (0: neither found).
	MemLimit int64
	// FDs is the number of open descriptors and FDLimit the soft limit.
	FDs, FDLimit int64
	// Goroutines is runtime.NumGoroutine().
	Goroutines int64
}

// clockTicks is USER_HZ, 100 on every Linux ABI Go supports.
const clockTicks = 100

// ReadProc samples /proc/self and the cgroup of the process. Fields it
// cannot read stay zero (non-Linux systems).
func ReadProc() Proc {
	p := Proc{Goroutines: int64(runtime.NumGoroutine())}
	p.CPUSeconds = readCPU("/proc/self/stat")
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			p.RSS = pages * int64(os.Getpagesize())
		}
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		p.FDs = int64(len(ents))
	}
	var rl syscall.Rlimit
	cur := uint64(0)
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		cur = rl.Cur
	}
	p.FDLimit = fdLimit(cur, "/proc/sys/fs/nr_open")
	p.MemLimit = memLimit(CgroupMemLimit(), "/proc/meminfo")
	return p
}

// memLimit is the memory the process may use: the cgroup's limit, else the
// machine's total memory (MemTotal in meminfo), else 0.
func memLimit(cgroup int64, meminfo string) int64 {
	if cgroup > 0 {
		return cgroup
	}
	return MemTotal(meminfo)
}

// MemTotal returns MemTotal from a meminfo file (/proc/meminfo) in bytes, 0
// when unreadable.
func MemTotal(meminfo string) int64 {
	b, err := os.ReadFile(meminfo)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "MemTotal:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || n <= 0 {
				return 0
			}
			if len(f) >= 3 && strings.EqualFold(f[2], "kB") {
				n *= 1024
			}
			return n
		}
	}
	return 0
}

// fdLimit is the descriptor limit to report for a soft RLIMIT_NOFILE of cur:
// cur itself when it is a real limit; when it is 0 (unknown) or unlimited
// (RLIM_INFINITY, which does not fit an int64), the kernel's per-process
// maximum (/proc/sys/fs/nr_open), else 0.
func fdLimit(cur uint64, nrOpen string) int64 {
	if cur > 0 && cur <= math.MaxInt64 {
		return int64(cur)
	}
	b, err := os.ReadFile(nrOpen)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// ReadCPUOf returns the CPU seconds of another process (for benchmarks).
func ReadCPUOf(pid int) float64 { return readCPU("/proc/" + strconv.Itoa(pid) + "/stat") }

// ReadRSSOf returns the resident set size of another process in bytes.
func ReadRSSOf(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func readCPU(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	// the command name (field 2) may contain spaces: fields start after ")"
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// CgroupMemLimit returns the memory limit of the process's cgroup (v2
// memory.max or v1 memory.limit_in_bytes), 0 when unlimited or unknown.
func CgroupMemLimit() int64 {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0
		}
		return n
	}
	return 0
}
