package registry

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestReadCPU(t *testing.T) {
	t.Parallel()
	// a command name with spaces and parentheses, utime 250 and stime 50 ticks
	line := "1234 (my (odd) proc) S 1 1 1 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5 0 100 1000 200 18446744073709551615"
	p := filepath.Join(t.TempDir(), "stat")
	if err := os.WriteFile(p, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := readCPU(p); got != 3 {
		t.Fatalf("readCPU = %v, want 3", got)
	}
}

func TestTelemetrySample(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	load := Load{Readers: 3, Publishers: 1, Streams: 2, BytesIn: 1000}
	r := New(Config{Host: "ingest-1", MemLimit: 1 << 30}, nil, nil, func() Load { return load }, zerolog.Nop())
	t0 := time.Now()
	first := r.Telemetry(t0)
	load.BytesIn += 125_000
	second := r.Telemetry(t0.Add(time.Second))
	if first.MemBytes <= 0 || first.FDs <= 0 || first.FDLimit <= 0 || first.Goroutines <= 0 || first.MemLimit != 1<<30 {
		t.Fatalf("sample %+v", first)
	}
	if second.BitrateIn != 1_000_000 || second.Readers != 3 || second.Publishers != 1 {
		t.Fatalf("second sample %+v", second)
	}
	rec := r.Record(Load{Hosted: 2, Draining: true, Deadline: t0})
	if rec.Status != "draining" || rec.Streams != 2 || rec.Deadline.IsZero() {
		t.Fatalf("record %+v", rec)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	meminfo := write("meminfo", "MemTotal:       16318412 kB\nMemFree:         1234 kB\n")
	nrOpen := write("nr_open", "1048576\n")
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name    string
		cgroup  int64
		meminfo string
		wantMem int64
		rlimit  uint64
		nrOpen  string
		wantFDs int64
	}{
		{"cgroup limit wins", 512 << 20, meminfo, 512 << 20, 1024, nrOpen, 1024},
		{"no cgroup limit: machine memory", 0, meminfo, 16318412 * 1024, 1024, nrOpen, 1024},
		{"nothing readable", 0, missing, 0, 0, missing, 0},
		{"unlimited descriptors: kernel maximum", 0, meminfo, 16318412 * 1024, ^uint64(0), nrOpen, 1048576},
		{"unknown descriptor limit: kernel maximum", 0, meminfo, 16318412 * 1024, 0, nrOpen, 1048576},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := memLimit(tc.cgroup, tc.meminfo); got != tc.wantMem {
				t.Errorf("memLimit = %d, want %d", got, tc.wantMem)
			}
			if got := fdLimit(tc.rlimit, tc.nrOpen); got != tc.wantFDs {
				t.Errorf("fdLimit = %d, want %d", got, tc.wantFDs)
			}
		})
	}
	// on this machine the sample never reports a zero limit
	if _, err := os.Stat("/proc/meminfo"); err == nil {
		if p := ReadProc(); p.MemLimit <= 0 || p.FDLimit <= 0 {
			t.Errorf("ReadProc: mem limit %d, fd limit %d (want > 0)", p.MemLimit, p.FDLimit)
		}
	}
}
