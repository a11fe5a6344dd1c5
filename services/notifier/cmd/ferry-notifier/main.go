// Command ferry-notifier delivers move notices to publishers over the channels
// they declared (NATS, webhook, server-sent events) and reports the outcomes.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferrystream/ferry/libs/cli"
	"github.com/ferrystream/ferry/services/notifier"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := notifier.Run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-notifier:", err)
		os.Exit(cli.ExitCode(err))
	}
}
