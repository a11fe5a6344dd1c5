// Command plain-relay runs the benchmark's baseline relay on BENCH_ADDR until
// it is killed.
package main

import (
	"fmt"
	"os"

	"github.com/ferrystream/ferry/services/ingest/internal/bench/relay"
)

func main() {
	if _, err := relay.Start(os.Getenv("BENCH_ADDR")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	select {}
}
