package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/ingest/internal/rtsptest"
)

func hostRecord(t *testing.T, h *harness, host string) (events.HostRecord, error) {
	t.Helper()
	e, err := h.env.Stores.Hosts.Get(context.Background(), host)
	if err != nil {
		return events.HostRecord{}, err
	}
	var rec events.HostRecord
	err = json.Unmarshal(e.Value(), &rec)
	return rec, err
}

// TestDrainEmpty: a drain command on a host without streams announces the
// deadline and the host exits at once, removing its record.
func TestDrainEmpty(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.node("ingest-1")
	if _, err := events.Publish(context.Background(), h.env.JS, "test", events.DrainCommand{CommandID: "c-1", Host: "ingest-1", GraceSeconds: 20, Reason: "deploy"}); err != nil {
		t.Fatal(err)
	}
	dr := waitEvent(h, events.TypeDraining, 5*time.Second, func(e events.Draining) bool { return e.Host == "ingest-1" })
	if dr.Streams != 0 || dr.Reason != "deploy" || time.Until(dr.Deadline) < 15*time.Second {
		t.Fatalf("draining = %+v", dr)
	}
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("an empty host did not exit after the drain")
	}
	if _, err := hostRecord(t, h, "ingest-1"); err == nil {
		t.Fatal("host record still present after a clean exit")
	}
	// It says it left on purpose, so its heartbeat silence is not a failure.
	left := waitEvent(h, events.TypeHostLeft, 5*time.Second, func(e events.HostLeft) bool { return e.Host == "ingest-1" })
	if left.Reason != "deploy" || left.StreamsLeft != 0 || left.StartedAt.IsZero() || left.At.Before(dr.Deadline.Add(-20*time.Second)) {
		t.Fatalf("host_left = %+v", left)
	}
}

// TestDrainWithStreams: while draining, new publishers get 503 with
// Retry-After; the host keeps hosting until its stream moved (it then exits
// before the deadline), or until the deadline.
func TestDrainWithStreams(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		move bool
	}{
		{"stream moves", true},
		{"deadline", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			a := h.node("ingest-1")
			b := h.node("ingest-2")
			h.place("cam-1", a, "s-1", "", "", time.Time{})
			h.place("cam-2", a, "s-2", "", "", time.Time{})
			ag := rtsptest.NewAgent(fakeH264(t))
			old, err := ag.Connect(publishURL(a, "cam-1", h.token("cam-1", "ingest-1", "s-1", "", time.Minute)), gortsplib.ProtocolTCP)
			if err != nil {
				t.Fatal(err)
			}
			runAgent(t, ag)
			grace := 4 * time.Second
			start := time.Now()
			a.Drain(grace, "maintenance")
			waitEvent(h, events.TypeDraining, 5*time.Second, func(e events.Draining) bool { return e.Host == "ingest-1" && e.Streams == 1 })
			testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
				rec, err := hostRecord(t, h, "ingest-1")
				if err != nil {
					return err
				}
				if rec.Status != "draining" || rec.Deadline.IsZero() {
					return fmt.Errorf("record %+v", rec)
				}
				return nil
			})
			// a new publisher is refused with Retry-After
			var retryAfter string
			c := gortsplib.Client{OnResponse: func(res *base.Response) {
				if res.StatusCode == base.StatusServiceUnavailable {
					retryAfter = res.Header["Retry-After"][0]
				}
			}}
			err = c.StartRecording(publishURL(a, "cam-2", h.token("cam-2", "ingest-1", "s-2", "", time.Minute)), fakeH264(t).Description())
			var bs liberrors.ErrClientBadStatusCode
			if !errors.As(err, &bs) || bs.Code != base.StatusServiceUnavailable || retryAfter == "" {
				t.Fatalf("publish while draining: %v (Retry-After %q), want 503 with Retry-After", err, retryAfter)
			}
			t.Logf("refused: %d %s, Retry-After: %s", bs.Code, bs.Message, retryAfter)

			if tc.move {
				h.place("cam-1", b, "s-1", "m-1", "ingest-1", time.Now().Add(grace))
				if _, err := ag.Connect(publishURL(b, "cam-1", h.token("cam-1", "ingest-2", "s-1", "m-1", time.Minute)), gortsplib.ProtocolTCP); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-a.Done():
			case <-time.After(grace + 5*time.Second):
				t.Fatal("host did not exit")
			}
			took := time.Since(start)
			t.Logf("host exited %v after the drain began", took)
			if tc.move && took >= grace {
				t.Errorf("host waited for the deadline although its stream moved (%v)", took)
			}
			if !tc.move && took < grace {
				t.Errorf("host exited after %v, before the deadline, with a stream still here", took)
			}
			select {
			case <-old.Done():
			case <-time.After(3 * time.Second):
				t.Error("the publisher on the drained host was not closed")
			}
		})
	}
}

// TestDrainOnSignal: cancelling Run's context (SIGTERM in main) drains with
// the configured grace.
func TestDrainOnSignal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.node("ingest-1")
	h.signal(a)
	dr := waitEvent(h, events.TypeDraining, 5*time.Second, func(e events.Draining) bool { return e.Host == "ingest-1" })
	if d := time.Until(dr.Deadline); d < 8*time.Second || d > 11*time.Second || dr.Reason != "signal" {
		t.Fatalf("draining %+v: deadline in %v, want the configured 10s grace", dr, d)
	}
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("host did not exit")
	}
	left := waitEvent(h, events.TypeHostLeft, 5*time.Second, func(e events.HostLeft) bool { return e.Host == "ingest-1" })
	if left.Reason != "signal" || left.StreamsLeft != 0 {
		t.Fatalf("host_left = %+v, want reason signal, no stream left", left)
	}
}
