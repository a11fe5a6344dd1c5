// Command ferry-publish is Ferry's camera-side agent: it publishes a source
// (a synthetic pattern, a camera it pulls, or a local RTSP push) to the host
// placement chooses, and moves make-before-break when told to.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferrystream/ferry/clients/publisher"
	"github.com/ferrystream/ferry/libs/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := publisher.Run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-publish:", err)
		os.Exit(cli.ExitCode(err))
	}
}
