package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl"
	"github.com/ferrystream/ferry/clients/ferryctl/probe"
	"github.com/ferrystream/ferry/libs/testutil"
)

// TestDev runs `ferryctl dev` as an operator does and checks what it says:
// a UDP viewer (ffprobe's first try) reads the edge without 461 Unsupported
// Transport, a host that drains and exits is announced with its exit status,
// and Ctrl-C ends with "stopped".
func TestDev(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb testutil.Buffer
	done := make(chan int, 1)
	go func() {
		done <- ferryctl.Run(ctx, []string{"dev", "--bin", binDir, "--origins", "2", "--edges", "1", "--publishers", "1"},
			os.Getenv, &out, &errb)
	}()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()
	natsRE := regexp.MustCompile(`(?m)^  nats +(nats://\S+)$`)
	edgeRE := regexp.MustCompile(`(?m)^  edge-1 +edge +\S+ +rtsp (rtsp://\S+) `)
	testutil.CheckFor(t, 90*time.Second, 100*time.Millisecond, func() error {
		select {
		case code := <-done:
			stopped = true
			t.Fatalf("dev exited %d:\n%s\n%s", code, out.String(), errb.String())
		default:
		}
		if !strings.Contains(out.String(), "\nready.") {
			return errors.New("not ready")
		}
		return nil
	})
	natsURL := natsRE.FindStringSubmatch(out.String())
	edge := edgeRE.FindStringSubmatch(out.String())
	if natsURL == nil || edge == nil {
		t.Fatalf("no nats or edge line:\n%s", out.String())
	}

	// a UDP reader on the edge
	var p *probe.Probe
	testutil.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		var err error
		p, err = probe.Start(ctx, probe.Config{URL: edge[1] + "/cam-1", Transport: probe.TransportUDP})
		return err
	})
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if n := p.Report().Video().Frames; n < 25 {
			return fmt.Errorf("%d frames over UDP", n)
		}
		return nil
	})
	if rep := p.Close(); rep.Transport != probe.TransportUDP || rep.Video().FramesMissing != 0 {
		t.Errorf("UDP read: transport %q, %d frames missing", rep.Transport, rep.Video().FramesMissing)
	}

	// a host that drains and exits is announced
	var ctlOut, ctlErr testutil.Buffer
	if code := ferryctl.Run(ctx, []string{"--nats", natsURL[1], "drain", "ingest-2", "--grace", "2s"}, os.Getenv, &ctlOut, &ctlErr); code != 0 {
		t.Fatalf("drain: exit %d %s", code, ctlErr.String())
	}
	exitRE := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  ingest-2 exited \(exit status 0\)$`)
	testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		if !exitRE.MatchString(out.String()) {
			return errors.New("no exit line for ingest-2 yet")
		}
		return nil
	})

	cancel()
	code := <-done
	stopped = true
	if code != 0 || !strings.HasSuffix(out.String(), "\nstopping...\nstopped\n") {
		t.Errorf("exit %d, output ends:\n%s", code, tailOf(out.String(), 5))
	}
	if n := strings.Count(out.String(), " exited ("); n != 1 {
		t.Errorf("%d exit lines, want 1 (processes the stack stops are not announced):\n%s", n, out.String())
	}
}

func tailOf(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
