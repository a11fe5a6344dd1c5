// Command ferryctl is the operator's command line for Ferry; see package
// github.com/ferrystream/ferry/clients/ferryctl and `ferryctl help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferrystream/ferry/clients/ferryctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := ferryctl.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
