// Command nats-server runs NATS (github.com/nats-io/nats-server/v2, the
// version pinned in deploy/go.mod) from a configuration file. It exists so the
// compose stack's NATS image is built like every other Ferry image: a static
// binary in a FROM-scratch image, with nothing pulled from a registry.
//
//	nats-server -c /etc/nats/cluster.conf
//
// It accepts nats-server's own command-line options. SIGINT and SIGTERM stop
// it; SIGHUP reloads the configuration file, as nats-server's own signal
// handling does (`docker kill -s HUP ferry-nats-1` applies a revocation or a
// rotation written into operator.conf); a reload that fails is logged and
// the server keeps running on its previous configuration.
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
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // one already waiting: it reads the file as it is then
			}
		}
	}()
	if err := Run(ctx, os.Args[1:], os.Stdout, reload); err != nil {
		fmt.Fprintln(os.Stderr, "nats-server:", err)
		stop()
		os.Exit(1)
	}
}
