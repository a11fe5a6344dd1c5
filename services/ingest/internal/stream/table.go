package stream

import (
	"sort"
	"sync"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
)

// Table is a node's set of streams, one per path.
type Table struct {
	srv  *gortsplib.Server
	opts Options

	mu sync.Mutex // guards m and the totals of removed streams
	m  map[string]*Stream
	// bytes and packets of streams already removed
	goneIn, goneOut, gonePkts uint64
	// OnChange, if set, is called (without the lock) after a stream is added or removed.
	OnChange func()
}

// NewTable returns an empty table creating streams on srv with opts.
func NewTable(srv *gortsplib.Server, opts Options) *Table {
	return &Table{srv: srv, opts: opts, m: map[string]*Stream{}}
}

// Get returns the stream of a path, or nil.
func (t *Table) Get(name string) *Stream {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[name]
}

// GetOrCreate returns the stream of a path, creating it with desc if needed.
func (t *Table) GetOrCreate(name string, desc *description.Session) (*Stream, bool, error) {
	t.mu.Lock()
	if s, ok := t.m[name]; ok {
		t.mu.Unlock()
		return s, false, nil
	}
	s, err := New(t.srv, name, desc, t.opts)
	if err != nil {
		t.mu.Unlock()
		return nil, false, err
	}
	t.m[name] = s
	t.mu.Unlock()
	if t.OnChange != nil {
		t.OnChange()
	}
	return s, true, nil
}

// Remove closes s and removes it if it is still the stream of its path.
func (t *Table) Remove(s *Stream, reason string) {
	t.mu.Lock()
	removed := false
	if t.m[s.Name] == s {
		delete(t.m, s.Name)
		removed = true
	}
	t.mu.Unlock()
	s.Close(reason)
	if removed {
		in, out, pk := s.BytesIn(), s.BytesOut(), s.PacketsIn()
		t.mu.Lock()
		t.goneIn += in
		t.goneOut += out
		t.gonePkts += pk
		t.mu.Unlock()
	}
	if removed && t.OnChange != nil {
		t.OnChange()
	}
}

// All returns every stream, sorted by name.
func (t *Table) All() []*Stream {
	t.mu.Lock()
	out := make([]*Stream, 0, len(t.m))
	for _, s := range t.m {
		out = append(out, s)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Len returns the number of streams.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// Bytes returns the RTP bytes received from feeds and sent to readers by
// every stream this table ever held.
func (t *Table) Bytes() (in, out uint64) {
	t.mu.Lock()
	in, out = t.goneIn, t.goneOut
	t.mu.Unlock()
	for _, s := range t.All() {
		in += s.BytesIn()
		out += s.BytesOut()
	}
	return in, out
}

// In returns the RTP bytes and packets received by every stream this table
// ever held (cheaper than Bytes: no reader statistics).
func (t *Table) In() (bytes, packets uint64) {
	t.mu.Lock()
	bytes, packets = t.goneIn, t.gonePkts
	t.mu.Unlock()
	for _, s := range t.All() {
		bytes += s.BytesIn()
		packets += s.PacketsIn()
	}
	return bytes, packets
}
