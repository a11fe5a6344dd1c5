package publisher

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// printer writes what the agent does, as plain lines ("12:00:01 published
// cam-1 to ingest-1 (session s-..)") or, with --json, as JSON lines carrying
// the same message plus its fields. mu guards w.
type printer struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
	now  func() time.Time
}

// say prints msg (a fmt format) as event with fields.
func (p *printer) say(event string, fields map[string]any, format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	now := p.now()
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.json {
		fmt.Fprintf(p.w, "%s %s\n", now.Format("15:04:05"), msg)
		return
	}
	out := map[string]any{"time": now.UTC().Format(time.RFC3339Nano), "event": event, "msg": msg}
	for k, v := range fields {
		out[k] = v
	}
	b, err := json.Marshal(out)
	if err != nil {
		return
	}
	_, _ = p.w.Write(append(b, '\n'))
}
