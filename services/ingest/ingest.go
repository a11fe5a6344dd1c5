// Package ingest is Ferry's RTSP data plane: the ferry-ingest service in the
// origin role (publishers, camera pulls, the handover of a moved stream), the
// edge role (viewers of streams hosted elsewhere), or both.
//
// Run is the whole service; cmd/ferry-ingest calls it, and tests and
// `ferryctl dev` can too.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ferrystream/ferry/libs/obs"
	"github.com/ferrystream/ferry/services/ingest/internal/app"
	"github.com/ferrystream/ferry/services/ingest/internal/config"
)

// Run runs an ingest node configured by args and getenv until ctx ends (it
// then drains: new publishers are refused and the node exits once its streams
// have moved, or at the drain deadline) or a drain command arrives. Logs go to
// stderr; stdout gets the usage text of -h.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.Load(args, getenv, stdout)
	if errors.Is(err, config.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ferry-ingest: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("ferry-ingest: invalid configuration:\n%w", err)
	}
	log := obs.NewLogger(os.Stderr, getenv, "ingest")
	a, err := app.New(cfg, app.Deps{Log: log})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
