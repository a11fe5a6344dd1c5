// Command nats-server runs NATS (github.com/nats-io/nats-server/v2, the
// version pinned in deploy/go.mod) from a configuration file. It exists so the
// compose stack's NATS image is built like every other Ferry image: a static
// binary in a FROM-scratch image, with nothing pulled from a registry.
//
//	nats-server -c /etc/nats/cluster.conf
//
// It accepts nats-server's own command-line options.
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
	if err := Run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "nats-server:", err)
		stop()
		os.Exit(1)
	}
}
