// Package timeline turns Ferry events into what an operator reads: one line
// per event (ferryctl events) and the ordered steps of one migration with
// their timings (ferryctl trace).
package timeline

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferrystream/ferry/libs/events"
)

// Event is one stored event, decoded loosely: Data keeps every field, so
// events of types this build does not know still print.
type Event struct {
	// Seq is the event's sequence in FERRY_EVENTS (0 when unknown).
	Seq uint64 `json:"seq,omitempty"`
	// Subject is the NATS subject it was stored under.
	Subject string `json:"subject,omitempty"`
	// Env is the CloudEvents envelope.
	Env events.Envelope `json:"event"`
	// Data is Env.Data as a map.
	Data map[string]any `json:"-"`
	// Invalid says why the event failed its schema ("" when valid).
	Invalid string `json:"invalid,omitempty"`
}

// Parse decodes a message body. A body that fails its schema is still
// returned (with Invalid set) when it is a JSON envelope at all; only
// unreadable bodies give an error.
func Parse(seq uint64, subj string, body []byte) (Event, error) {
	e := Event{Seq: seq, Subject: subj}
	env, err := events.Decode(body)
	if err != nil {
		e.Invalid = err.Error()
		if jerr := json.Unmarshal(body, &env); jerr != nil {
			return e, fmt.Errorf("event %d on %s: %w", seq, subj, err)
		}
	}
	e.Env = env
	if len(env.Data) > 0 {
		_ = json.Unmarshal(env.Data, &e.Data)
	}
	if e.Data == nil {
		e.Data = map[string]any{}
	}
	return e, nil
}

// Str returns a string field of the data ("" when absent).
func (e Event) Str(k string) string {
	v, _ := e.Data[k].(string)
	return v
}

// Num returns a number field of the data (0 when absent).
func (e Event) Num(k string) float64 {
	v, _ := e.Data[k].(float64)
	return v
}

// Time returns a time field of the data (zero when absent or malformed).
func (e Event) Time(k string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, e.Str(k))
	if err != nil {
		return time.Time{}
	}
	return t
}

// Short is the event type without the io.ferry. prefix and version suffix:
// "placement.reassigned".
func (e Event) Short() string { return ShortType(e.Env.Type) }

// ShortType strips io.ferry. and the .vN suffix from an event type.
func ShortType(typ string) string {
	s := strings.TrimPrefix(typ, "io.ferry.")
	if i := strings.LastIndex(s, ".v"); i > 0 {
		if _, err := strconv.Atoi(s[i+2:]); err == nil {
			s = s[:i]
		}
	}
	return s
}

// Entity is the id the event's subject ends with (a host or a stream).
func (e Event) Entity() string {
	subj := e.Subject
	if subj == "" {
		subj = e.Env.Subject
	}
	if i := strings.LastIndexByte(subj, '.'); i >= 0 {
		return subj[i+1:]
	}
	return subj
}

// Hosts returns every host the event names (host, from/to, edge, new host).
func (e Event) Hosts() []string {
	var out []string
	for _, k := range []string{"host", "from_host", "to_host", "new_host", "edge"} {
		if v := e.Str(k); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// About reports whether the event names host h in any of its host fields.
func (e Event) About(h string) bool {
	for _, v := range e.Hosts() {
		if v == h {
			return true
		}
	}
	return false
}

// Clock formats t as the time of day with milliseconds in loc.
func Clock(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "--:--:--.---"
	}
	return t.In(loc).Format("15:04:05.000")
}

// Line is the one-line rendering of an event:
//
//	12:00:01.234 placement.reassigned cam-1 ingest-2 -> ingest-1 migration m-..
func Line(e Event, loc *time.Location) string {
	s := Clock(e.Env.Time, loc) + " " + e.Short()
	if d := Describe(e, loc); d != "" {
		s += " " + d
	}
	if e.Invalid != "" {
		s += " (invalid: " + e.Invalid + ")"
	}
	return s
}

// Describe is the type-specific part of Line.
func Describe(e Event, loc *time.Location) string {
	var p parts
	mig := func() { p.kv("migration", e.Str("migration_id")) }
	switch e.Env.Type {
	case events.TypeMaintenanceScheduled:
		start, end := e.Time("start_at"), e.Time("end_at")
		p.add(e.Str("host"), e.Str("maintenance_id"))
		p.add("from " + Clock(start, loc) + " for " + Round(end.Sub(start)).String())
		p.kv("reason", quote(e.Str("reason")))
		p.kv("by", e.Str("requested_by"))
	case events.TypeMaintenanceCancelled:
		p.add(e.Str("host"), e.Str("maintenance_id"))
		p.kv("reason", quote(e.Str("reason")))
	case events.TypeDraining:
		p.add(e.Str("host"))
		p.kv("deadline", Clock(e.Time("deadline"), loc))
		p.kv("streams", fmt.Sprint(int(e.Num("streams"))))
		p.kv("reason", quote(e.Str("reason")))
	case events.TypePublisherAttached:
		p.add(e.Str("stream"), "on "+e.Str("host"))
		p.kv("session", e.Str("session_id"))
		p.kv("client", e.Str("client_id"))
		p.kv("mode", e.Str("mode"))
		mig()
	case events.TypePublisherDetached:
		p.add(e.Str("stream"), "from "+e.Str("host"))
		p.kv("session", e.Str("session_id"))
		p.kv("reason", quote(e.Str("reason")))
		mig()
	case events.TypeStreamCeased:
		p.add(e.Str("stream"), arrow(e.Str("host"), e.Str("new_host")))
		mig()
		p.kv("readers-relayed", fmt.Sprint(int(e.Num("readers_relayed"))))
	case events.TypeEdgeSwitched:
		p.add(e.Str("stream"), e.Str("edge")+":", arrow(e.Str("from_host"), e.Str("to_host")))
		p.kv("at", e.Str("mode"))
		p.kv("missing", fmt.Sprint(int64(e.Num("frames_missing"))))
		p.kv("dup", fmt.Sprint(int64(e.Num("duplicates"))))
		p.kv("gap", fmt.Sprintf("%.1fms", e.Num("gap_ms")))
		mig()
	case events.TypeOutagePredicted:
		p.add(e.Str("host"))
		p.kv("cause", e.Str("cause"))
		p.kv("offline", Clock(e.Time("expected_offline_at"), loc))
		p.kv("confidence", fmt.Sprintf("%.2f", e.Num("confidence")))
		p.kv("prediction", e.Str("prediction_id"))
		if r := e.Num("revision"); r > 0 {
			p.kv("rev", fmt.Sprint(int(r)))
		}
	case events.TypeOutageCleared:
		p.add(e.Str("host"))
		p.kv("cause", e.Str("cause"))
		p.kv("prediction", e.Str("prediction_id"))
		p.kv("reason", quote(e.Str("reason")))
	case events.TypeHostDown:
		p.add(e.Str("host"))
		p.kv("last-seen", Clock(e.Time("last_seen"), loc))
		p.kv("reason", quote(e.Str("reason")))
	case events.TypeHostLeft:
		p.add(e.Str("host"))
		p.kv("reason", quote(e.Str("reason")))
		p.kv("streams-left", fmt.Sprint(int(e.Num("streams_left"))))
	case events.TypeReleased:
		p.add(e.Str("stream"), "on "+e.Str("host"))
		p.kv("client", e.Str("client_id"))
		p.kv("mode", e.Str("mode"))
		p.kv("idle-since", Clock(e.Time("idle_since"), loc))
		p.kv("reason", quote(e.Str("reason")))
	case events.TypeReassigned:
		p.add(e.Str("stream"), arrow(e.Str("from_host"), e.Str("to_host")))
		mig()
		p.kv("deadline", Clock(e.Time("deadline"), loc))
		p.kv("mode", e.Str("mode"))
		p.kv("reason", quote(e.Str("reason")))
	case events.TypeMigrationCompleted:
		p.add(e.Str("stream"), arrow(e.Str("from_host"), e.Str("to_host")))
		mig()
		p.kv("in", fmt.Sprintf("%.1fms", e.Num("duration_ms")))
		if mbb, ok := e.Data["make_before_break"].(bool); ok {
			if mbb {
				p.add("make-before-break")
			} else {
				p.add("break-before-make")
			}
		}
	case events.TypeMigrationFailed:
		p.add(e.Str("stream"), arrow(e.Str("from_host"), e.Str("to_host")))
		mig()
		p.kv("step", e.Str("step"))
		p.kv("reason", quote(e.Str("reason")))
	case events.TypeNoticeDelivered, events.TypeNoticeAcked, events.TypeNoticeFailed:
		p.add(e.Str("stream"))
		p.kv("client", e.Str("client_id"))
		p.kv("via", e.Str("channel"))
		mig()
		if n := e.Num("attempts"); n > 0 {
			p.kv("attempts", fmt.Sprint(int(n)))
		}
		p.kv("reason", quote(e.Str("reason")))
	default:
		p.add(e.Entity())
		for _, k := range []string{"host", "stream", "migration_id"} {
			p.kv(k, e.Str(k))
		}
	}
	return strings.Join(p, " ")
}

type parts []string

func (p *parts) add(s ...string) {
	for _, v := range s {
		if v != "" {
			*p = append(*p, v)
		}
	}
}

func (p *parts) kv(k, v string) {
	if v != "" {
		*p = append(*p, k+" "+v)
	}
}

func arrow(from, to string) string {
	switch {
	case from == "" && to == "":
		return ""
	case from == "":
		from = "?"
	case to == "":
		to = "?"
	}
	return from + " -> " + to
}

func quote(s string) string {
	if s == "" {
		return ""
	}
	if strings.ContainsAny(s, " \t\"") {
		return strconv.Quote(s)
	}
	return s
}

// Round rounds d for display: to 0.1s under a minute, to the second above.
func Round(d time.Duration) time.Duration {
	if d < 0 {
		return -Round(-d)
	}
	if d < time.Minute {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
