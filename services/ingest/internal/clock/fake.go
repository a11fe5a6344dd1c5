package clock

import (
	"sync"
	"time"
)

// Fake is a Clock for tests. Its time moves only when a waiter asks to wait
// (Instant) or when Advance is called; it records every wait it was asked
// for, so a test can check a backoff without spending it.
type Fake struct {
	// Instant makes After fire at once, moving the time forward by d.
	Instant bool

	mu      sync.Mutex
	now     time.Time
	waits   []time.Duration
	pending []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

// NewFake returns a fake clock at start; instant: waits return at once.
func NewFake(start time.Time, instant bool) *Fake { return &Fake{now: start, Instant: instant} }

// Now implements Clock.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After implements Clock.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits = append(f.waits, d)
	ch := make(chan time.Time, 1)
	if f.Instant || d <= 0 {
		if d > 0 {
			f.now = f.now.Add(d)
		}
		ch <- f.now
		return ch
	}
	f.pending = append(f.pending, fakeTimer{at: f.now.Add(d), ch: ch})
	return ch
}

// Advance moves the time forward by d and fires the waits that are due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.pending[:0]
	for _, t := range f.pending {
		if t.at.After(f.now) {
			kept = append(kept, t)
			continue
		}
		t.ch <- f.now
	}
	f.pending = kept
}

// Waiting returns the number of waits not fired yet.
func (f *Fake) Waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}

// Waits returns every duration After was asked for, in order.
func (f *Fake) Waits() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.waits...)
}
