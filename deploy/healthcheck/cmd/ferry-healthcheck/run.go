package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ErrUnhealthy is returned when a URL does not answer 2xx.
var ErrUnhealthy = errors.New("unhealthy")

// Run checks every URL in args (after flags) and returns nil only when each
// answers 2xx.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ferry-healthcheck", flag.ContinueOnError)
	fs.SetOutput(stdout)
	timeout := fs.Duration("timeout", 2*time.Second, "time allowed for each URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: ferry-healthcheck [-timeout 2s] URL...")
	}
	client := &http.Client{Timeout: *timeout}
	for _, u := range fs.Args() {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("%q: not an http(s) URL", u)
		}
		if err := check(ctx, client, u); err != nil {
			return err
		}
	}
	return nil
}

func check(ctx context.Context, client *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnhealthy, u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %s: %s %s", ErrUnhealthy, u, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
