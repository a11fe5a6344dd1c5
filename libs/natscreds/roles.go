package natscreds

import (
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/ferrystream/ferry/libs/subject"
)

// Role is what a user is for; each role has its own scoped signing key in the
// account, and the key's template holds the role's permissions, so a user's
// rights come from its role and its name alone: a credential signed with the
// ingest key for "ingest-1" can speak only for ingest-1, whatever else its JWT
// says.
type Role string

// The roles. A fleet has one user per service role, one per ingest host and
// one per publisher agent.
const (
	RoleOps           Role = "ops"
	RoleMonitor       Role = "monitor"
	RoleIngest        Role = "ingest"
	RoleHealthpredict Role = "healthpredict"
	RolePlacement     Role = "placement"
	RoleNotifier      Role = "notifier"
	RoleAgent         Role = "agent"
)

// Roles lists every role, in the order the files are written.
var Roles = []Role{RoleOps, RoleMonitor, RoleIngest, RoleHealthpredict, RolePlacement, RoleNotifier, RoleAgent}

// serviceRoles are the roles with exactly one user, named like the role.
var serviceRoles = []Role{RoleOps, RoleMonitor, RoleHealthpredict, RolePlacement, RoleNotifier}

// name is the template the server replaces by the user's name (the host id
// for ingest, the client id for an agent, the role's name for a service).
const name = "{{name()}}"

// InboxPrefix is the inbox prefix the user named n must use
// (FERRY_NATS_INBOX_PREFIX): every user may subscribe only under its own, so
// nobody reads another's replies (placement's answers carry publish tokens).
func InboxPrefix(n string) string { return "_INBOX_" + n }

// Durable consumers and who owns them. A role may read a stream whose
// durables belong to others, but it may not create, read from, ack or delete
// another role's durable: those subjects are denied by name. markers: the
// durable keeps idempotency markers in the processed bucket (bus.Consume).
var durables = []struct {
	stream, durable string
	owners          []Role
	markers         bool
}{
	{"FERRY_EVENTS", "placement-migrations", []Role{RolePlacement}, true},
	{"FERRY_EVENTS", "notifier-reassigned", []Role{RoleNotifier}, true},
	// bus.DeadLetters, shared by the control-plane services
	{"FERRY_DLQ_ADVISORIES", "dlq-forwarder", []Role{RoleHealthpredict, RolePlacement, RoleNotifier}, false},
	// bus.CommandDeadLetters
	{"FERRY_DLQ_ADVISORIES", "dlq-forwarder-commands", []Role{RoleNotifier}, false},
}

// jsBase lets a user look streams up (never create or update them).
func jsBase() []string {
	return []string{"$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.INFO.*", "$JS.FC.>"}
}

// readStream lets a user run consumers on a stream and read its messages.
func readStream(s string) []string {
	return []string{
		"$JS.API.CONSUMER.CREATE." + s + ".>",
		"$JS.API.CONSUMER.INFO." + s + ".*",
		"$JS.API.CONSUMER.MSG.NEXT." + s + ".*",
		"$JS.API.CONSUMER.DELETE." + s + ".*",
		"$JS.ACK." + s + ".>",
	}
}

// readKV lets a user get and watch the keys of a bucket.
func readKV(buckets ...string) []string {
	var out []string
	for _, b := range buckets {
		s := "KV_" + b
		out = append(out,
			"$JS.API.DIRECT.GET."+s+".>",
			"$JS.API.STREAM.MSG.GET."+s,
			"$JS.API.CONSUMER.CREATE."+s+".>",
			"$JS.API.CONSUMER.INFO."+s+".*",
			"$JS.API.CONSUMER.DELETE."+s+".*",
		)
	}
	return out
}

// writeKV lets a user put and delete keys of a bucket.
func writeKV(buckets ...string) []string {
	var out []string
	for _, b := range buckets {
		out = append(out, "$KV."+b+".>")
	}
	return out
}

// durable lets a user run the durable d on stream s whose filter is pinned in
// the API subject (the server checks that the request's filter equals it).
func durable(s, d, filter string) []string {
	return []string{
		"$JS.API.CONSUMER.CREATE." + s + "." + d + "." + filter,
		"$JS.API.CONSUMER.INFO." + s + "." + d,
		"$JS.API.CONSUMER.MSG.NEXT." + s + "." + d,
		"$JS.ACK." + s + "." + d + ".>",
	}
}

// deadLetterForwarder is what bus.RunDeadLetters(bus.DeadLetters) needs:
// its durable on the advisories (filtered by stream with FilterSubjects, so
// the filter is not pinned in the API subject: the services sharing it may
// pull and ack from it anyway) and by-sequence reads of the streams whose
// messages it forwards: events, telemetry, heartbeats. Not FERRY_COMMANDS,
// which holds every client's move notices.
func deadLetterForwarder() []string {
	d := "dlq-forwarder"
	return []string{
		"ferry.dlq.>",
		"$JS.API.CONSUMER.CREATE.FERRY_DLQ_ADVISORIES." + d,
		"$JS.API.CONSUMER.INFO.FERRY_DLQ_ADVISORIES." + d,
		"$JS.API.CONSUMER.MSG.NEXT.FERRY_DLQ_ADVISORIES." + d,
		"$JS.ACK.FERRY_DLQ_ADVISORIES." + d + ".>",
		"$JS.API.STREAM.MSG.GET.FERRY_EVENTS",
		"$JS.API.STREAM.MSG.GET.FERRY_TELEMETRY",
		"$JS.API.STREAM.MSG.GET.FERRY_HEARTBEATS",
	}
}

// commandDeadLetterForwarder is what
// bus.RunDeadLetters(bus.CommandDeadLetters) needs, the notifier's only: its
// durable with the filter pinned in the API subject, reading FERRY_COMMANDS
// by sequence and deleting a dead command once copied.
func commandDeadLetterForwarder() []string {
	return append(durable("FERRY_DLQ_ADVISORIES", "dlq-forwarder-commands", subject.AdvisoriesOf("FERRY_COMMANDS")),
		"ferry.dlq.>",
		"$JS.API.STREAM.MSG.GET.FERRY_COMMANDS",
		"$JS.API.STREAM.MSG.DELETE.FERRY_COMMANDS",
	)
}

// processed lets a role write the idempotency markers of its own durables
// in the processed bucket (keys "<durable>.<event id>", written by
// bus.Consume and the notifier) and no others: event ids are derived from the
// event, so whoever may write another consumer's marker can make it skip a
// genuine event.
func processed(r Role) []string {
	var out []string
	for _, d := range durables {
		if d.markers && slices.Contains(d.owners, r) {
			out = append(out, "$KV.processed."+d.durable+".>")
		}
	}
	return out
}

// lease lets a service hold its decider lease.
func lease(r Role) []string {
	return []string{"$KV.leases." + string(r), "$KV.leases." + string(r) + ".>"}
}

// Permissions returns the permission template of a role; "{{name()}}" in it
// stands for the user's name.
func Permissions(r Role) (jwt.Permissions, error) {
	var pub, sub []string
	resp := true
	sub = append(sub, InboxPrefix(name)+".>")
	switch r {
	case RoleOps:
		pub = []string{"ferry.evt.ops.>", "ferry.cmd.ingest.*.drain", "$KV.maintenance.>",
			"placement.v1.>", "$SRV.>", "$JS.API.>", "$JS.ACK.>", "$JS.FC.>"}
		sub = append(sub, "ferry.>")
		resp = false
	case RoleMonitor:
		pub = []string{"placement.v1.get",
			"$SRV.PING", "$SRV.PING.>", "$SRV.INFO", "$SRV.INFO.>", "$SRV.STATS", "$SRV.STATS.>",
			"$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.API.STREAM.INFO.*",
			"$JS.API.CONSUMER.INFO.*.*", "$JS.FC.>"}
		for _, s := range []string{"FERRY_EVENTS", "FERRY_TELEMETRY", "FERRY_HEARTBEATS", "FERRY_DLQ"} {
			pub = append(pub, "$JS.API.CONSUMER.CREATE."+s+".>", "$JS.API.CONSUMER.MSG.NEXT."+s+".*",
				"$JS.API.STREAM.MSG.GET."+s)
		}
		pub = append(pub, readKV("ingest_hosts", "placements", "migrations", "maintenance")...)
		resp = false
	case RoleIngest:
		// Its own heartbeat, telemetry, registry record, drain and departure,
		// and lifecycle events about any stream but only with its own id as
		// the reporting host (the subject's last token); their consumers check
		// that host against the placement record.
		pub = []string{
			subject.Heartbeat(name),
			subject.Telemetry(name),
			subject.Draining(name),
			subject.HostLeft(name),
			subject.PublisherAttached("*", name),
			subject.PublisherDetached("*", name),
			subject.StreamCeased("*", name),
			subject.EdgeSwitched("*", name),
			"$KV.ingest_hosts." + name,
		}
		pub = append(pub, jsBase()...)
		pub = append(pub, readStream("FERRY_EVENTS")...)
		pub = append(pub, durable("FERRY_COMMANDS", "ingest-"+name, subject.IngestCommands(name))...)
		pub = append(pub, readKV("placements", "ingest_hosts", "sessions")...)
		// placement notices: its own streams' (one subject, only its own)
		// and those of the streams its edge serves from other hosts
		sub = append(sub, "$SRV.>", subject.PlacementHostAll(name), subject.PlacementStream("*"))
	case RoleHealthpredict:
		pub = []string{"ferry.evt.health.>", "$KV.maintenance.>"}
		pub = append(pub, lease(r)...)
		pub = append(pub, jsBase()...)
		for _, s := range []string{"FERRY_EVENTS", "FERRY_TELEMETRY", "FERRY_HEARTBEATS"} {
			pub = append(pub, readStream(s)...)
		}
		pub = append(pub, readKV("ingest_hosts", "maintenance", "leases", "placements")...)
		pub = append(pub, deadLetterForwarder()...)
		sub = append(sub, "$SRV.>")
	case RolePlacement:
		pub = []string{"ferry.evt.placement.>", "ferry.cmd.ingest.*.pull",
			subject.PlacementHost("*", "*"), subject.PlacementStream("*")}
		pub = append(pub, writeKV("placements", "sessions", "session_secrets", "migrations")...)
		pub = append(pub, processed(RolePlacement)...)
		pub = append(pub, lease(r)...)
		pub = append(pub, jsBase()...)
		pub = append(pub, readStream("FERRY_EVENTS")...)
		pub = append(pub, readStream("FERRY_TELEMETRY")...)
		pub = append(pub, readKV("ingest_hosts", "placements", "sessions", "session_secrets", "migrations", "maintenance", "leases", "processed")...)
		pub = append(pub, deadLetterForwarder()...)
		sub = append(sub, "placement.v1.>", "$SRV.>")
	case RoleNotifier:
		pub = []string{"ferry.cmd.client.*.notice", "ferry.evt.notify.>"}
		pub = append(pub, writeKV("notices")...)
		pub = append(pub, processed(RoleNotifier)...)
		pub = append(pub, lease(r)...)
		pub = append(pub, jsBase()...)
		pub = append(pub, readStream("FERRY_EVENTS")...)
		// whether an agent acked its notice (its consumer's ack floor)
		pub = append(pub, "$JS.API.CONSUMER.INFO.FERRY_COMMANDS.*")
		pub = append(pub, readKV("notices", "sessions", "session_secrets", "placements", "migrations", "leases", "processed")...)
		pub = append(pub, deadLetterForwarder()...)
		pub = append(pub, commandDeadLetterForwarder()...)
		sub = append(sub, "ferry.ack.client.*", "$SRV.>")
	case RoleAgent:
		// Only its own notices: one durable, client-<id>, filter pinned.
		pub = []string{"placement.v1.choose", "placement.v1.get", subject.NoticeAck(name)}
		pub = append(pub, durable("FERRY_COMMANDS", "client-"+name, subject.ClientNotice(name))...)
		resp = false
	default:
		return jwt.Permissions{}, fmt.Errorf("unknown role %q", r)
	}
	var deny []string
	if r != RoleOps {
		for _, d := range durables {
			if slices.Contains(d.owners, r) {
				continue
			}
			deny = append(deny,
				"$JS.API.CONSUMER.CREATE."+d.stream+"."+d.durable,
				"$JS.API.CONSUMER.CREATE."+d.stream+"."+d.durable+".>",
				"$JS.API.CONSUMER.DURABLE.CREATE."+d.stream+"."+d.durable,
				"$JS.API.CONSUMER.MSG.NEXT."+d.stream+"."+d.durable,
				"$JS.API.CONSUMER.DELETE."+d.stream+"."+d.durable,
				"$JS.ACK."+d.stream+"."+d.durable+".>",
			)
		}
	}
	p := jwt.Permissions{
		Pub: jwt.Permission{Allow: dedupe(pub), Deny: deny},
		Sub: jwt.Permission{Allow: dedupe(sub)},
	}
	if resp {
		p.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	}
	return p, nil
}

func dedupe(s []string) jwt.StringList {
	out := make([]string, 0, len(s))
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
