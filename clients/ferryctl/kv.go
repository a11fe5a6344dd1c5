package ferryctl

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// eachKey calls fn with the current value of every key of kv (deleted keys
// skipped), reading the bucket in one pass with a watcher.
func eachKey(ctx context.Context, kv jetstream.KeyValue, fn func(key string, value []byte)) error {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("read bucket %s: %w", kv.Bucket(), err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("read bucket %s: %w", kv.Bucket(), ctx.Err())
		case entry, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("read bucket %s: watcher closed", kv.Bucket())
			}
			if entry == nil {
				return nil // every current value delivered
			}
			fn(entry.Key(), entry.Value())
		}
	}
}
