// Package subject builds every NATS subject Ferry uses, one function each;
// services never write subject literals.
//
// Entity ids (hosts, streams, clients) are the last token so consumers can
// filter on them.
package subject

import "strings"

const prefix = "ferry."

// Wildcards for consumers and stream definitions.
const (
	// AllEvents is ferry.evt.>
	AllEvents = prefix + "evt.>"
	// AllTelemetry is ferry.telemetry.>
	AllTelemetry = prefix + "telemetry.>"
	// AllHeartbeats is ferry.hb.>
	AllHeartbeats = prefix + "hb.>"
	// AllCommands is ferry.cmd.>
	AllCommands = prefix + "cmd.>"
	// AllDeadLetters is ferry.dlq.>
	AllDeadLetters = prefix + "dlq.>"
)

// EventsAbout is ferry.evt.*.*.<id> and ferry.evt.*.*.<id>.*: every event
// about one entity id (a host or a stream), e.g. for `ferryctl events
// --stream cam-1`; the second form is the lifecycle events a host reports
// about a stream, whose subject ends with the reporting host. The two never
// overlap (different token counts), so they can be one consumer's filters.
func EventsAbout(id string) []string {
	return []string{prefix + "evt.*.*." + id, prefix + "evt.*.*." + id + ".*"}
}

// Lifecycle events reported by a host about a stream end with the reporting
// host, so that NATS permissions bind the reporter: a host's credential may
// publish them only with its own id last, and their consumers check that
// this host is the stream's home (or previous home) for the migration named.

// MaintenanceScheduled is ferry.evt.ops.maintenance_scheduled.<host>
func MaintenanceScheduled(host string) string {
	return prefix + "evt.ops.maintenance_scheduled." + host
}

// MaintenanceCancelled is ferry.evt.ops.maintenance_cancelled.<host>
func MaintenanceCancelled(host string) string {
	return prefix + "evt.ops.maintenance_cancelled." + host
}

// Draining is ferry.evt.ingest.draining.<host>
func Draining(host string) string { return prefix + "evt.ingest.draining." + host }

// HostLeft is ferry.evt.ingest.host_left.<host>: a host that drained
// announces, as it exits, that it left on purpose (it is not down).
func HostLeft(host string) string { return prefix + "evt.ingest.host_left." + host }

// PublisherAttached is ferry.evt.ingest.publisher_attached.<stream>.<host>
func PublisherAttached(stream, host string) string {
	return prefix + "evt.ingest.publisher_attached." + stream + "." + host
}

// PublisherDetached is ferry.evt.ingest.publisher_detached.<stream>.<host>
func PublisherDetached(stream, host string) string {
	return prefix + "evt.ingest.publisher_detached." + stream + "." + host
}

// StreamCeased is ferry.evt.ingest.stream_ceased.<stream>.<host>
func StreamCeased(stream, host string) string {
	return prefix + "evt.ingest.stream_ceased." + stream + "." + host
}

// EdgeSwitched is ferry.evt.edge.switched.<stream>.<edge>
func EdgeSwitched(stream, edge string) string {
	return prefix + "evt.edge.switched." + stream + "." + edge
}

// ReportingHost returns the host a lifecycle subject ends with (the last of
// its six tokens), or "" for any other subject.
func ReportingHost(subj string) string {
	t := strings.Split(subj, ".")
	if len(t) != 6 || t[0] != "ferry" || t[1] != "evt" {
		return ""
	}
	return t[5]
}

// Telemetry is ferry.telemetry.ingest.<host>
func Telemetry(host string) string { return prefix + "telemetry.ingest." + host }

// Heartbeat is ferry.hb.ingest.<host>
func Heartbeat(host string) string { return prefix + "hb.ingest." + host }

// OutagePredicted is ferry.evt.health.outage_predicted.<host>
func OutagePredicted(host string) string { return prefix + "evt.health.outage_predicted." + host }

// OutageCleared is ferry.evt.health.outage_cleared.<host>
func OutageCleared(host string) string { return prefix + "evt.health.outage_cleared." + host }

// HostDown is ferry.evt.health.host_down.<host>
func HostDown(host string) string { return prefix + "evt.health.host_down." + host }

// Reassigned is ferry.evt.placement.reassigned.<stream>
func Reassigned(stream string) string { return prefix + "evt.placement.reassigned." + stream }

// MigrationCompleted is ferry.evt.placement.migration_completed.<stream>
func MigrationCompleted(stream string) string {
	return prefix + "evt.placement.migration_completed." + stream
}

// MigrationFailed is ferry.evt.placement.migration_failed.<stream>
func MigrationFailed(stream string) string {
	return prefix + "evt.placement.migration_failed." + stream
}

// Released is ferry.evt.placement.released.<stream>: a placement whose
// publisher stayed away too long was deleted.
func Released(stream string) string { return prefix + "evt.placement.released." + stream }

// Placement change notices (core NATS, not stored): placement publishes
// each placements record it writes on the subject of the stream's home, of
// its previous home, and of the stream, so that a host follows every stream
// it hosts with one subscription that never changes, and the fleet's hosts
// do not each receive every change. The placements bucket stays the only
// source of truth: a notice says "read or apply revision N", nothing more.

// PlacementHost is ferry.placement.host.<host>.<stream>
func PlacementHost(host, stream string) string {
	return prefix + "placement.host." + host + "." + stream
}

// PlacementHostAll is ferry.placement.host.<host>.> (every notice for one host).
func PlacementHostAll(host string) string { return prefix + "placement.host." + host + ".>" }

// PlacementStream is ferry.placement.stream.<stream>
func PlacementStream(stream string) string { return prefix + "placement.stream." + stream }

// ClientNotice is ferry.cmd.client.<client>.notice
func ClientNotice(client string) string { return prefix + "cmd.client." + client + ".notice" }

// ClientNoticeAll is ferry.cmd.client.*.notice
const ClientNoticeAll = prefix + "cmd.client.*.notice"

// NoticeDelivered is ferry.evt.notify.delivered.<stream>
func NoticeDelivered(stream string) string { return prefix + "evt.notify.delivered." + stream }

// NoticeAcked is ferry.evt.notify.acked.<stream>
func NoticeAcked(stream string) string { return prefix + "evt.notify.acked." + stream }

// NoticeFailed is ferry.evt.notify.failed.<stream>
func NoticeFailed(stream string) string { return prefix + "evt.notify.failed." + stream }

// NoticeAck is ferry.ack.client.<client>: core-NATS subject on which an agent
// acknowledges a notice it received on a channel that has no ack of its own
// (webhook, server-sent events). The notifier listens on ferry.ack.client.*.
func NoticeAck(client string) string { return prefix + "ack.client." + client }

// NoticeAckAll is ferry.ack.client.*
const NoticeAckAll = prefix + "ack.client.*"

// NoticeSSE is ferry.sse.client.<client>: core-NATS fan-out of a move notice
// to whichever notifier replica holds the client's server-sent-events stream
// (that replica subscribes while the stream is open and replies once written).
func NoticeSSE(client string) string { return prefix + "sse.client." + client }

// IngestDrain is ferry.cmd.ingest.<host>.drain
func IngestDrain(host string) string { return prefix + "cmd.ingest." + host + ".drain" }

// IngestPull is ferry.cmd.ingest.<host>.pull
func IngestPull(host string) string { return prefix + "cmd.ingest." + host + ".pull" }

// IngestCommands is ferry.cmd.ingest.<host>.> (every command for one host).
func IngestCommands(host string) string { return prefix + "cmd.ingest." + host + ".>" }

// DeadLetter is ferry.dlq.<stream>.<consumer>
func DeadLetter(stream, consumer string) string { return prefix + "dlq." + stream + "." + consumer }

// Placement micro service endpoints (request/reply).
const (
	// PlacementService is the micro service name.
	PlacementService = "placement"
	// PlacementGroup is the micro endpoint group: placement.v1
	PlacementGroup = "placement.v1"
	// PlacementChoose is placement.v1.choose
	PlacementChoose = PlacementGroup + ".choose"
	// PlacementGet is placement.v1.get
	PlacementGet = PlacementGroup + ".get"
)

// Advisory subjects captured into the dead-letter advisories stream.
const (
	// AdvisoryMaxDeliveries is $JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>
	AdvisoryMaxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"
	// AdvisoryTerminated is $JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>
	AdvisoryTerminated = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>"
)

// AdvisoriesOf is $JS.EVENT.ADVISORY.CONSUMER.*.<stream>.*: the max-deliveries
// and terminated advisories of the consumers of one stream, as the
// advisories stream holds them (no other advisory kind is captured there;
// stream and consumer names contain no dots).
func AdvisoriesOf(stream string) string { return "$JS.EVENT.ADVISORY.CONSUMER.*." + stream + ".*" }
