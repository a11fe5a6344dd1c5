package ferryctl_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl"
	"github.com/ferrystream/ferry/clients/ferryctl/internal/camtest"
	"github.com/ferrystream/ferry/libs/testutil"
)

// TestProbeCommandStall freezes the camera for half a second mid-probe: with
// --max-gap 200ms the result is not clean (and --fail-on-loss exits 3)
// though no frame is missing; with --max-gap 0 stalls are not judged.
func TestProbeCommandStall(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		result  *regexp.Regexp
		longest *regexp.Regexp
	}{
		{"max gap 200ms, fail on loss", []string{"--max-gap", "200ms", "--fail-on-loss"}, 3,
			regexp.MustCompile(`\nresult: NOT clean: stalled \d+\.\ds \(longer than --max-gap 200ms\)\n$`),
			regexp.MustCompile(`\n0      H264   \d+ +\d+ +0 +0 .* ([5-9]\d\d|\d{4,})\.\dms\n`)},
		{"default max gap 1s is exceeded by a 1.2s stall", []string{"--fail-on-loss"}, 3,
			regexp.MustCompile(`\nresult: NOT clean: stalled \d+\.\ds \(longer than --max-gap 1s\)\n$`), nil},
		{"max gap 0", []string{"--max-gap", "0", "--fail-on-loss"}, 0, regexp.MustCompile(`\nresult: clean\n$`), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stall := 500 * time.Millisecond
			if tc.name == "default max gap 1s is exceeded by a 1.2s stall" {
				stall = 1200 * time.Millisecond
			}
			cam := camtest.Start(t, false)
			ctx, cancel := context.WithCancel(testutil.Context(t))
			defer cancel()
			var out, errb testutil.Buffer
			done := make(chan int, 1)
			go func() {
				args := append([]string{"probe", cam.URL, "--duration", "0", "--interval", "0"}, tc.args...)
				done <- ferryctl.Run(ctx, args, envFor(""), &out, &errb)
			}()
			testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
				if n := cam.Written(); n < 20 {
					return fmt.Errorf("%d frames written", n)
				}
				return nil
			})
			cam.Pause()
			pausedAt := time.Now()
			testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
				if d := time.Since(pausedAt); d < stall {
					return fmt.Errorf("paused for %v", d)
				}
				return nil
			})
			cam.Resume()
			w := cam.Written()
			testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
				if n := cam.Written(); n < w+20 {
					return fmt.Errorf("%d frames written since the pause, want 20", n-w)
				}
				return nil
			})
			cancel()
			code := <-done
			if code != tc.code || !tc.result.MatchString(out.String()) {
				t.Errorf("exit %d (want %d), stdout:\n%s\nwant it to match %s\nstderr: %s", code, tc.code, out.String(), tc.result, errb.String())
			}
			if tc.longest != nil && !tc.longest.MatchString(out.String()) {
				t.Errorf("report table does not show the stall as LONGEST-GAP with nothing missing:\n%s", out.String())
			}
		})
	}
}
