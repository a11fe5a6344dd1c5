// Command ferry-bootstrap creates (or updates) Ferry's JetStream streams and
// Key-Value buckets with ops credentials, waiting for the cluster to have
// enough peers for the replica count, then checks that every stream has a
// leader and all its replicas. The compose stack runs it once before the
// services, which are not allowed to create or update streams.
//
//	FERRY_NATS_URL=nats://nats-1:4222,... FERRY_NATS_CREDS=creds/users/ops.creds \
//	FERRY_NATS_INBOX_PREFIX=_INBOX_ops FERRY_NATS_REPLICAS=3 ferry-bootstrap
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bootstrap:", err)
		stop()
		os.Exit(1)
	}
}
