package registry

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestReadCPU(t *testing.T) {
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
