// Command ferry-placement runs Ferry's placement service.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferrystream/ferry/libs/cli"
	"github.com/ferrystream/ferry/services/placement"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := placement.Run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-placement:", err)
		stop()
		os.Exit(cli.ExitCode(err))
	}
}
