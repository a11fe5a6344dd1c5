// Package devstack runs Ferry's local stack without Docker (ferryctl dev) and
// the one-command demo (ferryctl demo).
package devstack

import (
	"context"
	"errors"
	"io"
)

// Dev runs the local stack until ctx ends. (Being written by the lead.)
func Dev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return errors.New("dev: not implemented yet")
}

// Demo runs the stack, a publisher and a probe, schedules maintenance and
// reports the migration. (Being written by the lead.)
func Demo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return errors.New("demo: not implemented yet")
}
