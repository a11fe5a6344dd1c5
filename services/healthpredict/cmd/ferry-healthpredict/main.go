// Command ferry-healthpredict runs Ferry's health-prediction service, or
// evaluates its predictors on a telemetry trace (eval, gen).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferrystream/ferry/libs/cli"
	"github.com/ferrystream/ferry/services/healthpredict"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := healthpredict.Run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-healthpredict:", err)
		stop()
		os.Exit(cli.ExitCode(err))
	}
}
