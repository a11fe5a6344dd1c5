// Command ferry-healthcheck is the health check of Ferry's FROM-scratch
// images, which have no shell and no curl: it GETs each URL given and exits 0
// only when every answer is 2xx within the timeout.
//
//	ferry-healthcheck [-timeout 2s] http://127.0.0.1:9100/readyz
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
		fmt.Fprintln(os.Stderr, "ferry-healthcheck:", err)
		stop()
		os.Exit(1)
	}
}
