// Package tasks accounts for the goroutines a component starts on the side
// (a watcher, a delayed report, a retire callback): each runs under a Group,
// and Close refuses new ones and waits for those running. Starting one after
// Close is refused instead of racing a WaitGroup's Add against its Wait.
package tasks

import "sync"

// Group tracks goroutines. The zero value is ready to use.
type Group struct {
	mu     sync.Mutex // guards closed against wg.Add
	closed bool
	wg     sync.WaitGroup
}

// Go runs f in a new goroutine and reports true, or reports false (and does
// not run f) once Close was called.
func (g *Group) Go(f func()) bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

// Closed reports whether Close was called.
func (g *Group) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Close refuses new goroutines and waits for the running ones to return. It
// may be called more than once, but not from a goroutine of the group.
func (g *Group) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}
