package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl/stack"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
)

// startStack runs the local stack for one test.
func startStack(t testing.TB, o stack.Options) *stack.Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	o.BinDir = binDir
	if o.MinDeadline == 0 {
		o.MinDeadline = 8 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := stack.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// placedOn waits until stream has a home and returns it.
func placedOn(t testing.TB, s *stack.Stack, stream string) string {
	t.Helper()
	var host string
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		p, err := s.Placement(context.Background(), stream)
		if err != nil {
			return err
		}
		host = p.Host
		return s.Check()
	})
	return host
}

// watchFlowing opens a viewer on the edge and waits until frames flow.
func watchFlowing(t testing.TB, s *stack.Stack, stream string, o stack.WatchOptions) *stack.Viewer {
	t.Helper()
	url := s.Edge().RTSPURL + "/" + stream
	var v *stack.Viewer
	testutil.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		var err error
		v, err = stack.Watch(context.Background(), url, o)
		return err
	})
	t.Cleanup(func() { v.Close() })
	testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if n := v.Frames(); n < 25 {
			return fmt.Errorf("%s: %d frames", url, n)
		}
		return nil
	})
	return v
}

func scheduleMaintenance(t testing.TB, s *stack.Stack, host string, in time.Duration) events.MaintenanceScheduled {
	t.Helper()
	mw := events.MaintenanceScheduled{MaintenanceID: fmt.Sprintf("mw-%d", time.Now().UnixNano()), Host: host,
		StartAt: time.Now().Add(in).UTC(), EndAt: time.Now().Add(in + time.Hour).UTC(), Reason: "e2e", RequestedBy: "test"}
	if _, err := events.Publish(context.Background(), s.JS, "test/e2e", mw); err != nil {
		t.Fatal(err)
	}
	return mw
}

// waitMigration waits for the stream's migration to end and returns the
// closing event.
func waitMigration(t testing.TB, s *stack.Stack, chain *stack.Chain, stream string, wait time.Duration) stack.Seen {
	t.Helper()
	var done stack.Seen
	testutil.CheckFor(t, wait, 100*time.Millisecond, func() error {
		if e, ok := chain.First(events.TypeMigrationCompleted, stack.Field("stream", stream)); ok {
			done = e
			return nil
		}
		if e, ok := chain.First(events.TypeMigrationFailed, stack.Field("stream", stream)); ok {
			done = e
			return nil
		}
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
		return fmt.Errorf("migration of %s not finished", stream)
	})
	return done
}

// edgeSwitched waits until the edge reported switching the stream for a migration.
func edgeSwitched(t testing.TB, chain *stack.Chain, migration string) {
	t.Helper()
	testutil.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if _, ok := chain.First(events.TypeEdgeSwitched, stack.Field("migration_id", migration)); !ok {
			return fmt.Errorf("edge has not switched for %s", migration)
		}
		return nil
	})
}

// settle waits until the viewer got n more frames.
func settle(t testing.TB, v *stack.Viewer, n int64) {
	t.Helper()
	after := v.Frames()
	testutil.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if v.Frames() < after+n {
			return fmt.Errorf("viewer stalled at %d frames", v.Frames())
		}
		return nil
	})
}

func TestMaintenanceMovesStreamWithoutLoss(t *testing.T) {
	for _, udp := range []bool{false, true} {
		name := "tcp"
		if udp {
			name = "udp"
		}
		t.Run(name, func(t *testing.T) {
			s := startStack(t, stack.Options{UDP: udp})
			ctx := testutil.Context(t)
			if _, err := s.StartPublisher(ctx, "cam-1", "agent-1"); err != nil {
				t.Fatal(err)
			}
			from := placedOn(t, s, "cam-1")
			v := watchFlowing(t, s, "cam-1", stack.WatchOptions{UDP: udp})
			chain, err := stack.WatchChain(ctx, s.JS, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer chain.Stop()
			mw := scheduleMaintenance(t, s, from, 8*time.Second)
			done := waitMigration(t, s, chain, "cam-1", 60*time.Second)
			if done.Env.Type != events.TypeMigrationCompleted {
				t.Fatalf("migration failed: %v", done.Data)
			}
			if to := done.Str("to_host"); to == from || to == "" {
				t.Fatalf("moved to %q from %q", to, from)
			}
			edgeSwitched(t, chain, done.Str("migration_id"))
			settle(t, v, 50)
			rep := v.Close()
			t.Logf("maintenance on %s: migration %s -> %s in %v; viewer: %d frames, %d missing, %d duplicated, longest gap %.1f ms",
				from, done.Str("migration_id"), done.Str("to_host"), done.At.Sub(mw.StartAt.Add(-8*time.Second)).Round(time.Millisecond),
				rep.Frames, rep.Missing, rep.Duplicates, rep.MaxGapMS)
			if rep.Missing != 0 || rep.Duplicates != 0 || rep.SSRCChanges != 0 || rep.Disconnected != "" {
				t.Fatalf("viewer saw loss: %+v", rep)
			}
			for _, typ := range []string{events.TypeOutagePredicted, events.TypeReassigned, events.TypePublisherAttached, events.TypeStreamCeased} {
				if _, ok := chain.First(typ, nil); !ok {
					t.Errorf("no %s in the chain", typ)
				}
			}
		})
	}
}
