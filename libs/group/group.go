// Package group runs the parts of a service side by side: they share one
// context, the first to fail stops the others, and Run returns when all have
// returned.
package group

import (
	"context"
	"fmt"
	"sync"
)

// Task is one part of a service. Run must return soon after its context ends.
type Task struct {
	Name string
	Run  func(context.Context) error
}

// Run runs every task until ctx ends or one of them fails, and returns the
// first failure (wrapped with its task's name), or nil. A task that returns
// nil early leaves the others running; errors returned once the context has
// ended (the shutdown of the others) are not failures.
func Run(ctx context.Context, tasks ...Task) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, t := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := t.Run(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			once.Do(func() {
				first = fmt.Errorf("%s: %w", t.Name, err)
				cancel()
			})
		}()
	}
	wg.Wait()
	return first
}
