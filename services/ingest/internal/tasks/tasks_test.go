package tasks

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestGroup(t *testing.T) {
	t.Parallel()
	var g Group
	release := make(chan struct{})
	var ran atomic.Int32
	if !g.Go(func() { <-release; ran.Add(1) }) {
		t.Fatal("Go refused before Close")
	}
	closed := make(chan struct{})
	go func() { g.Close(); close(closed) }()
	// Close waits for the running goroutine
	select {
	case <-closed:
		t.Fatal("Close returned while a goroutine of the group runs")
	default:
	}
	close(release)
	<-closed
	if ran.Load() != 1 {
		t.Fatalf("ran %d times, want 1", ran.Load())
	}
	if g.Go(func() { ran.Add(1) }) {
		t.Fatal("Go accepted after Close")
	}
	if !g.Closed() || ran.Load() != 1 {
		t.Fatalf("closed %v, ran %d", g.Closed(), ran.Load())
	}
	g.Close() // again: no-op
}

// TestGoWhileClosing runs Go and Close concurrently (under -race: no Add
// racing Wait, and no goroutine runs after Close returned).
func TestGoWhileClosing(t *testing.T) {
	t.Parallel()
	for range 50 {
		var g Group
		var after atomic.Bool
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.Go(func() {
					if after.Load() {
						t.Error("a goroutine of the group ran after Close returned")
					}
				})
			}()
		}
		g.Close()
		after.Store(true)
		wg.Wait()
	}
}
