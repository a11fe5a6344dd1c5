package group_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/group"
)

// waiter returns when its context ends, reporting the context's error the
// way a server's Run often does.
func waiter(stopped *bool) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		*stopped = true
		return ctx.Err()
	}
}

func TestFailureStopsTheOthers(t *testing.T) {
	boom := errors.New("boom")
	var aStopped, bStopped bool
	err := group.Run(context.Background(),
		group.Task{Name: "a", Run: waiter(&aStopped)},
		group.Task{Name: "b", Run: waiter(&bStopped)},
		group.Task{Name: "failing", Run: func(context.Context) error { return boom }},
	)
	if !errors.Is(err, boom) || err.Error() != "failing: boom" {
		t.Fatalf("got %v, want failing: boom", err)
	}
	if !aStopped || !bStopped {
		t.Fatalf("the others were not stopped and waited for: a %v b %v", aStopped, bStopped)
	}
}

func TestShutdownIsNotAFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stopped bool
	done := make(chan error, 1)
	go func() { done <- group.Run(ctx, group.Task{Name: "a", Run: waiter(&stopped)}) }()
	cancel()
	select {
	case err := <-done:
		if err != nil || !stopped {
			t.Fatalf("got %v (stopped %v), want nil after the task stopped", err, stopped)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestEarlyNilIsNotAFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	var stopped bool
	done := make(chan error, 1)
	go func() {
		done <- group.Run(ctx,
			group.Task{Name: "short", Run: func(context.Context) error { close(ran); return nil }},
			group.Task{Name: "long", Run: waiter(&stopped)})
	}()
	<-ran
	cancel()
	if err := <-done; err != nil || !stopped {
		t.Fatalf("got %v (long stopped %v), want nil once every task returned", err, stopped)
	}
}
