package ferryctl

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl/internal/timeline"
	"github.com/ferrystream/ferry/libs/subject"
)

func cmdEvents(e *env) error {
	fs := e.newFlags("events", "ferryctl events [--follow|-f] [--stream S] [--host H] [--since 10m|RFC3339] [--type T] [--json]",
		`Prints Ferry's event log (the FERRY_EVENTS stream), one line per event:

  12:00:01.234 placement.reassigned cam-1 ingest-2 -> ingest-1 migration m-...

Without --follow it prints what is stored (7 days at most) and exits; with
--follow it prints new events as they come until Ctrl-C (add --since to start
in the past).

--stream keeps the events of one stream; --host keeps the events that name a
host (its maintenance, drain, predictions, and the streams moving to or from it).

Examples:
  ferryctl events --since 10m
  ferryctl events --follow --stream cam-1
  ferryctl events --host ingest-2 --type health`, true)
	follow := fs.Bool("follow", false, "keep printing new events until Ctrl-C")
	fs.BoolVar(follow, "f", false, "short for --follow")
	stream := fs.String("stream", "", "only events of this stream")
	host := fs.String("host", "", "only events that name this host")
	since := fs.String("since", "", "only events at most this old (10m) or since this RFC3339 time")
	typ := fs.String("type", "", "only events whose type contains this (e.g. placement, reassigned, health)")
	asJSON := fs.Bool("json", false, "print each event's CloudEvents envelope as one JSON line")
	pos, err := parse(fs, e.args)
	if err != nil {
		return err
	}
	if err := positional(pos, 0, ""); err != nil {
		return err
	}
	if *stream != "" {
		if err := checkName("stream", *stream); err != nil {
			return err
		}
	}
	if *host != "" {
		if err := checkName("host", *host); err != nil {
			return err
		}
	}
	start, err := parseSince(*since, time.Now())
	if err != nil {
		return err
	}
	o := replayOpts{since: start, follow: *follow}
	if *stream != "" {
		o.filters = subject.EventsAbout(*stream)
	}
	keep := func(ev timeline.Event) bool {
		// the consumer starts by storage time; the event's own time decides
		if !start.IsZero() && ev.Env.Time.Before(start) {
			return false
		}
		if *stream != "" && ev.Str("stream") != *stream {
			return false
		}
		if *host != "" && !ev.About(*host) {
			return false
		}
		return *typ == "" || strings.Contains(ev.Short(), *typ)
	}

	ctx, cancel := e.ctx, context.CancelFunc(func() {})
	if !*follow {
		ctx, cancel = e.oneShot()
	}
	defer cancel()
	c, err := e.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.readEvents(ctx, o, func(ev timeline.Event) error {
		if !keep(ev) {
			return nil
		}
		if *asJSON {
			b, err := json.Marshal(ev.Env)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, string(b))
			return err
		}
		_, err := fmt.Fprintln(e.stdout, timeline.Line(ev, time.Local))
		return err
	})
}

// parseSince reads --since: a duration before now, or an RFC3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, usageErr("--since %s: must not be negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, usageErr("--since %q: want a duration like 10m or an RFC3339 time", s)
}
