package ferryctl

import (
	"fmt"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
)

func cmdDrain(e *env) error {
	fs := e.newFlags("drain", "ferryctl drain <host> [--grace D] [--reason TEXT]",
		`Asks an ingest host to drain: publishes io.ferry.ingest.drain_command.v1 on
ferry.cmd.ingest.<host>.drain. The host stops taking new publishers, announces
its offline deadline (now + grace), and Ferry moves its streams away before it.
A host that is down picks the command up when it comes back (within 1h).

Examples:
  ferryctl drain ingest-2
  ferryctl drain ingest-2 --grace 2m --reason "deploy v1.4"`, true)
	grace := fs.Duration("grace", 0, "time until the host goes offline (default: the host's INGEST_DRAIN_GRACE, 30s)")
	reason := fs.String("reason", "", "why")
	host, err := oneArg(fs, e.args, "host (ferryctl drain <host>)", "host", checkName)
	if err != nil {
		return err
	}
	if *grace < 0 {
		return usageErr("--grace %v: must not be negative", *grace)
	}
	if len(*reason) > 1024 {
		return usageErr("--reason: at most 1024 characters")
	}
	cmd := events.DrainCommand{CommandID: newID("cmd-", 8), Host: host, GraceSeconds: grace.Seconds(), Reason: *reason}

	ctx, cancel := e.oneShot()
	defer cancel()
	c, err := e.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.stream(ctx, bus.StreamCommands); err != nil {
		return err
	}
	if !c.hostKnown(ctx, host) {
		fmt.Fprintf(e.stderr, "warning: host %s is not registered in %s; the command waits for it in %s\n",
			host, bus.BucketHosts, bus.StreamCommands)
	}
	if _, err := events.Publish(ctx, c.js, eventSource, cmd); err != nil {
		return err
	}
	g := "the host's own grace, INGEST_DRAIN_GRACE"
	if *grace > 0 {
		g = "grace " + grace.String()
	}
	fmt.Fprintf(e.stdout, "drain %s sent to %s on %s (%s)\n", cmd.CommandID, host, subject.IngestDrain(host), g)
	return nil
}
