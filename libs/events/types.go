package events

import (
	"github.com/ferrystream/ferry/libs/subject"

	"fmt"
	"time"
)

// Data is implemented by every event payload: it knows its CloudEvents type,
// the subject it travels on, and the business key its event id derives from.
type Data interface {
	EventType() string
	EventSubject() string
	// EventKey is the business key; equal keys mean the same event, so a
	// retried publish is a duplicate, not a second event.
	EventKey() string
}

// Event type names, io.ferry.<domain>.<event>.v<N>.
const (
	TypeMaintenanceScheduled = "io.ferry.ops.maintenance_scheduled.v1"
	TypeMaintenanceCancelled = "io.ferry.ops.maintenance_cancelled.v1"
	TypeDraining             = "io.ferry.ingest.draining.v1"
	TypeHostLeft             = "io.ferry.ingest.host_left.v1"
	TypePublisherAttached    = "io.ferry.ingest.publisher_attached.v1"
	TypePublisherDetached    = "io.ferry.ingest.publisher_detached.v1"
	TypeStreamCeased         = "io.ferry.ingest.stream_ceased.v1"
	TypeTelemetry            = "io.ferry.ingest.telemetry.v1"
	TypeHeartbeat            = "io.ferry.ingest.heartbeat.v1"
	TypeEdgeSwitched         = "io.ferry.edge.switched.v1"
	TypeOutagePredicted      = "io.ferry.health.outage_predicted.v1"
	TypeOutageCleared        = "io.ferry.health.outage_cleared.v1"
	TypeHostDown             = "io.ferry.health.host_down.v1"
	TypeReassigned           = "io.ferry.placement.reassigned.v1"
	TypeMigrationCompleted   = "io.ferry.placement.migration_completed.v1"
	TypeMigrationFailed      = "io.ferry.placement.migration_failed.v1"
	TypeReleased             = "io.ferry.placement.released.v1"
	TypeMoveNotice           = "io.ferry.notify.move_notice.v1"
	TypeNoticeDelivered      = "io.ferry.notify.delivered.v1"
	TypeNoticeAcked          = "io.ferry.notify.acked.v1"
	TypeNoticeFailed         = "io.ferry.notify.failed.v1"
	TypeDrainCommand         = "io.ferry.ingest.drain_command.v1"
	TypePullCommand          = "io.ferry.ingest.pull_command.v1"
)

// Capabilities is what a publisher declared when it asked placement for a
// home: whether it can move mid-stream, and where it can receive move notices.
type Capabilities struct {
	// CanMove confirms the client reconnects make-before-break on a notice.
	CanMove bool `json:"can_move"`
	// Channels lists notice channels: "nats", "webhook", "sse".
	Channels []string `json:"channels,omitempty"`
	// WebhookURL is where webhook notices are POSTed (channel "webhook").
	WebhookURL string `json:"webhook_url,omitempty"`
}

// MaintenanceScheduled announces a maintenance window on a host.
type MaintenanceScheduled struct {
	MaintenanceID string    `json:"maintenance_id"`
	Host          string    `json:"host"`
	StartAt       time.Time `json:"start_at"`
	EndAt         time.Time `json:"end_at"`
	Reason        string    `json:"reason,omitempty"`
	RequestedBy   string    `json:"requested_by,omitempty"`
}

func (e MaintenanceScheduled) EventType() string    { return TypeMaintenanceScheduled }
func (e MaintenanceScheduled) EventSubject() string { return subject.MaintenanceScheduled(e.Host) }
func (e MaintenanceScheduled) EventKey() string     { return e.MaintenanceID }

// MaintenanceCancelled withdraws a maintenance window.
type MaintenanceCancelled struct {
	MaintenanceID string `json:"maintenance_id"`
	Host          string `json:"host"`
	Reason        string `json:"reason,omitempty"`
}

func (e MaintenanceCancelled) EventType() string    { return TypeMaintenanceCancelled }
func (e MaintenanceCancelled) EventSubject() string { return subject.MaintenanceCancelled(e.Host) }
func (e MaintenanceCancelled) EventKey() string     { return e.MaintenanceID }

// Draining says a host takes no new publishers and goes offline at Deadline.
type Draining struct {
	Host     string    `json:"host"`
	Deadline time.Time `json:"deadline"`
	Reason   string    `json:"reason,omitempty"`
	Streams  int       `json:"streams"`
}

func (e Draining) EventType() string    { return TypeDraining }
func (e Draining) EventSubject() string { return subject.Draining(e.Host) }
func (e Draining) EventKey() string     { return e.Host + "/" + e.Deadline.UTC().Format(time.RFC3339) }

// HostLeft says a host that drained is leaving on purpose: it deleted its
// registry record and its heartbeats stop, and nobody should take that
// silence for a failure.
type HostLeft struct {
	Host string `json:"host"`
	// Reason is why it drained (e.g. "signal", "drain command").
	Reason string `json:"reason"`
	// StreamsLeft is how many streams it still hosted when it closed them
	// at its drain deadline (0: every stream had moved).
	StreamsLeft int       `json:"streams_left"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	At          time.Time `json:"at"`
}

func (e HostLeft) EventType() string    { return TypeHostLeft }
func (e HostLeft) EventSubject() string { return subject.HostLeft(e.Host) }
func (e HostLeft) EventKey() string     { return e.Host + "/" + e.At.UTC().Format(time.RFC3339Nano) }

// PublisherAttached reports that a publisher session began recording on a host.
type PublisherAttached struct {
	Stream       string       `json:"stream"`
	Host         string       `json:"host"`
	SessionID    string       `json:"session_id"`
	ClientID     string       `json:"client_id,omitempty"`
	Capabilities Capabilities `json:"capabilities"`
	MigrationID  string       `json:"migration_id,omitempty"`
	// Mode is "push" (a publisher connected) or "pull" (the host pulls a camera).
	Mode string    `json:"mode"`
	At   time.Time `json:"at"`
}

func (e PublisherAttached) EventType() string    { return TypePublisherAttached }
func (e PublisherAttached) EventSubject() string { return subject.PublisherAttached(e.Stream, e.Host) }
func (e PublisherAttached) EventKey() string {
	return e.Stream + "/" + e.Host + "/" + e.SessionID + "/" + e.MigrationID + "/" + e.At.UTC().Format(time.RFC3339Nano)
}

// PublisherDetached reports that a publisher session ended on a host.
type PublisherDetached struct {
	Stream      string    `json:"stream"`
	Host        string    `json:"host"`
	SessionID   string    `json:"session_id"`
	ClientID    string    `json:"client_id,omitempty"`
	MigrationID string    `json:"migration_id,omitempty"`
	Reason      string    `json:"reason"`
	At          time.Time `json:"at"`
}

func (e PublisherDetached) EventType() string    { return TypePublisherDetached }
func (e PublisherDetached) EventSubject() string { return subject.PublisherDetached(e.Stream, e.Host) }
func (e PublisherDetached) EventKey() string {
	return e.Stream + "/" + e.Host + "/" + e.SessionID + "/" + e.At.UTC().Format(time.RFC3339Nano)
}

// StreamCeased reports that the old host stopped hosting a stream.
type StreamCeased struct {
	Stream      string `json:"stream"`
	Host        string `json:"host"`
	NewHost     string `json:"new_host,omitempty"`
	MigrationID string `json:"migration_id,omitempty"`
	// ReadersRelayed is how many local readers were moved onto the relay.
	ReadersRelayed int       `json:"readers_relayed"`
	At             time.Time `json:"at"`
}

func (e StreamCeased) EventType() string    { return TypeStreamCeased }
func (e StreamCeased) EventSubject() string { return subject.StreamCeased(e.Stream, e.Host) }
func (e StreamCeased) EventKey() string     { return e.Stream + "/" + e.Host + "/" + e.MigrationID }

// Telemetry is one sample of an ingest host's resource use.
type Telemetry struct {
	Host        string    `json:"host"`
	At          time.Time `json:"at"`
	CPUSeconds  float64   `json:"cpu_seconds"`
	CPUPercent  float64   `json:"cpu_percent"`
	MemBytes    int64     `json:"mem_bytes"`
	MemLimit    int64     `json:"mem_limit"`
	FDs         int64     `json:"fds"`
	FDLimit     int64     `json:"fd_limit"`
	Goroutines  int64     `json:"goroutines"`
	Publishers  int64     `json:"publishers"`
	Readers     int64     `json:"readers"`
	Streams     int64     `json:"streams"`
	BitrateIn   int64     `json:"bitrate_in"`
	BitrateOut  int64     `json:"bitrate_out"`
	RTPLost     int64     `json:"rtp_lost"`
	WriteErrors int64     `json:"write_errors"`
	Errors      int64     `json:"errors"`
	DiskBytes   int64     `json:"disk_bytes,omitempty"`
	DiskLimit   int64     `json:"disk_limit,omitempty"`
}

func (e Telemetry) EventType() string    { return TypeTelemetry }
func (e Telemetry) EventSubject() string { return subject.Telemetry(e.Host) }
func (e Telemetry) EventKey() string     { return e.Host + "/" + e.At.UTC().Format(time.RFC3339Nano) }

// Heartbeat says a host is alive; it is published with a message TTL so that
// its absence produces a delete marker.
type Heartbeat struct {
	Host string    `json:"host"`
	Seq  uint64    `json:"seq"`
	At   time.Time `json:"at"`
}

func (e Heartbeat) EventType() string    { return TypeHeartbeat }
func (e Heartbeat) EventSubject() string { return subject.Heartbeat(e.Host) }
func (e Heartbeat) EventKey() string     { return fmt.Sprintf("%s/%d/%d", e.Host, e.At.UnixNano(), e.Seq) }

// EdgeSwitched reports an edge switching a stream's upstream.
type EdgeSwitched struct {
	Stream        string    `json:"stream"`
	Edge          string    `json:"edge"`
	FromHost      string    `json:"from_host,omitempty"`
	ToHost        string    `json:"to_host"`
	MigrationID   string    `json:"migration_id,omitempty"`
	Mode          string    `json:"mode"` // "sequence" or "keyframe"
	FramesMissing int64     `json:"frames_missing"`
	Duplicates    int64     `json:"duplicates"`
	GapMS         float64   `json:"gap_ms"`
	At            time.Time `json:"at"`
}

func (e EdgeSwitched) EventType() string    { return TypeEdgeSwitched }
func (e EdgeSwitched) EventSubject() string { return subject.EdgeSwitched(e.Stream, e.Edge) }
func (e EdgeSwitched) EventKey() string {
	return e.Stream + "/" + e.Edge + "/" + e.ToHost + "/" + e.At.UTC().Format(time.RFC3339Nano)
}

// OutagePredicted says a host is expected to go offline.
type OutagePredicted struct {
	PredictionID      string            `json:"prediction_id"`
	Host              string            `json:"host"`
	Cause             string            `json:"cause"` // maintenance, drain, memory, fds, disk, errors, loss
	ExpectedOfflineAt time.Time         `json:"expected_offline_at"`
	Confidence        float64           `json:"confidence"`
	Evidence          map[string]any    `json:"evidence"`
	Revision          int               `json:"revision"`
	Labels            map[string]string `json:"labels,omitempty"`
}

func (e OutagePredicted) EventType() string    { return TypeOutagePredicted }
func (e OutagePredicted) EventSubject() string { return subject.OutagePredicted(e.Host) }
func (e OutagePredicted) EventKey() string     { return fmt.Sprintf("%s/%d", e.PredictionID, e.Revision) }

// OutageCleared withdraws a prediction.
type OutageCleared struct {
	PredictionID string `json:"prediction_id"`
	Host         string `json:"host"`
	Cause        string `json:"cause"`
	Reason       string `json:"reason"`
	// Revision distinguishes a second clear of a prediction raised again.
	Revision int `json:"revision,omitempty"`
}

func (e OutageCleared) EventType() string    { return TypeOutageCleared }
func (e OutageCleared) EventSubject() string { return subject.OutageCleared(e.Host) }
func (e OutageCleared) EventKey() string     { return fmt.Sprintf("%s/%d", e.PredictionID, e.Revision) }

// HostDown reports an unpredicted loss of a host (heartbeat silence).
type HostDown struct {
	Host       string    `json:"host"`
	LastSeen   time.Time `json:"last_seen"`
	DetectedAt time.Time `json:"detected_at"`
	Reason     string    `json:"reason"`
}

func (e HostDown) EventType() string    { return TypeHostDown }
func (e HostDown) EventSubject() string { return subject.HostDown(e.Host) }
func (e HostDown) EventKey() string     { return e.Host + "/" + e.LastSeen.UTC().Format(time.RFC3339Nano) }

// Reassigned records a stream's new home.
type Reassigned struct {
	MigrationID string `json:"migration_id"`
	Stream      string `json:"stream"`
	FromHost    string `json:"from_host"`
	ToHost      string `json:"to_host"`
	// ToURL is the new host's RTSP URL without a token (the notifier mints one).
	ToURL     string    `json:"to_url"`
	Epoch     uint64    `json:"epoch"`
	Deadline  time.Time `json:"deadline"`
	Reason    string    `json:"reason"`
	SessionID string    `json:"session_id,omitempty"`
	ClientID  string    `json:"client_id,omitempty"`
	// Mode is "push" or "pull" (pull-mode streams are moved by the hosts).
	Mode string `json:"mode"`
}

func (e Reassigned) EventType() string    { return TypeReassigned }
func (e Reassigned) EventSubject() string { return subject.Reassigned(e.Stream) }
func (e Reassigned) EventKey() string     { return e.MigrationID }

// StepTiming is one step of a migration.
type StepTiming struct {
	Step string    `json:"step"`
	At   time.Time `json:"at"`
	// SinceStartMS is milliseconds since the migration was decided.
	SinceStartMS float64 `json:"since_start_ms"`
}

// MigrationCompleted closes a migration successfully.
type MigrationCompleted struct {
	MigrationID string       `json:"migration_id"`
	Stream      string       `json:"stream"`
	FromHost    string       `json:"from_host"`
	ToHost      string       `json:"to_host"`
	Steps       []StepTiming `json:"steps"`
	DurationMS  float64      `json:"duration_ms"`
	// MakeBeforeBreak is false when the fallback (break-before-make) was used.
	MakeBeforeBreak bool `json:"make_before_break"`
}

func (e MigrationCompleted) EventType() string    { return TypeMigrationCompleted }
func (e MigrationCompleted) EventSubject() string { return subject.MigrationCompleted(e.Stream) }
func (e MigrationCompleted) EventKey() string     { return e.MigrationID }

// MigrationFailed closes a migration that missed a step.
type MigrationFailed struct {
	MigrationID string       `json:"migration_id"`
	Stream      string       `json:"stream"`
	FromHost    string       `json:"from_host"`
	ToHost      string       `json:"to_host,omitempty"`
	Step        string       `json:"step"`
	Reason      string       `json:"reason"`
	Steps       []StepTiming `json:"steps"`
}

func (e MigrationFailed) EventType() string    { return TypeMigrationFailed }
func (e MigrationFailed) EventSubject() string { return subject.MigrationFailed(e.Stream) }
func (e MigrationFailed) EventKey() string     { return e.MigrationID }

// Released says placement deleted a stream's placement because no
// publisher was attached to it for longer than placement's release period
// (the publisher was killed, or never published after choose).
type Released struct {
	Stream    string `json:"stream"`
	Host      string `json:"host"`
	Epoch     uint64 `json:"epoch"`
	Mode      string `json:"mode"`
	SessionID string `json:"session_id,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	// IdleSince is when the stream was last seen with a publisher (or placed,
	// if it never had one).
	IdleSince time.Time `json:"idle_since"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
}

func (e Released) EventType() string    { return TypeReleased }
func (e Released) EventSubject() string { return subject.Released(e.Stream) }
func (e Released) EventKey() string {
	return fmt.Sprintf("%s/%d/%s", e.Stream, e.Epoch, e.IdleSince.UTC().Format(time.RFC3339Nano))
}

// MoveNotice tells one client to move one stream (ferry.cmd.client.<client>.notice).
type MoveNotice struct {
	NoticeID    string `json:"notice_id"`
	MigrationID string `json:"migration_id"`
	ClientID    string `json:"client_id"`
	Stream      string `json:"stream"`
	SessionID   string `json:"session_id"`
	FromHost    string `json:"from_host"`
	ToHost      string `json:"to_host"`
	// NewURL carries a fresh publish token for the new host.
	NewURL    string    `json:"new_url"`
	OfflineAt time.Time `json:"offline_at"`
	Reason    string    `json:"reason"`
}

func (e MoveNotice) EventType() string    { return TypeMoveNotice }
func (e MoveNotice) EventSubject() string { return subject.ClientNotice(e.ClientID) }
func (e MoveNotice) EventKey() string     { return e.NoticeID }

// NoticeOutcome is the payload of delivered, acked and failed.
type NoticeOutcome struct {
	NoticeID    string    `json:"notice_id"`
	MigrationID string    `json:"migration_id"`
	Stream      string    `json:"stream"`
	ClientID    string    `json:"client_id"`
	Channel     string    `json:"channel,omitempty"`
	Attempts    int       `json:"attempts"`
	Reason      string    `json:"reason,omitempty"`
	At          time.Time `json:"at"`
	// Outcome is "delivered", "acked" or "failed"; it selects type and subject.
	Outcome string `json:"outcome"`
}

func (e NoticeOutcome) EventType() string {
	switch e.Outcome {
	case "delivered":
		return TypeNoticeDelivered
	case "acked":
		return TypeNoticeAcked
	default:
		return TypeNoticeFailed
	}
}

func (e NoticeOutcome) EventSubject() string {
	switch e.Outcome {
	case "delivered":
		return subject.NoticeDelivered(e.Stream)
	case "acked":
		return subject.NoticeAcked(e.Stream)
	default:
		return subject.NoticeFailed(e.Stream)
	}
}

func (e NoticeOutcome) EventKey() string {
	return e.NoticeID + "/" + e.Outcome + "/" + e.Channel
}

// DrainCommand asks a host to drain (ferry.cmd.ingest.<host>.drain).
type DrainCommand struct {
	CommandID string `json:"command_id"`
	Host      string `json:"host"`
	// GraceSeconds overrides the host's configured grace when > 0.
	GraceSeconds float64 `json:"grace_seconds,omitempty"`
	Reason       string  `json:"reason,omitempty"`
}

func (e DrainCommand) EventType() string    { return TypeDrainCommand }
func (e DrainCommand) EventSubject() string { return subject.IngestDrain(e.Host) }
func (e DrainCommand) EventKey() string     { return e.CommandID }

// PullCommand asks a host to pull a camera's RTSP URL as a stream's source
// (ferry.cmd.ingest.<host>.pull).
type PullCommand struct {
	CommandID   string `json:"command_id"`
	Host        string `json:"host"`
	Stream      string `json:"stream"`
	SourceURL   string `json:"source_url"`
	MigrationID string `json:"migration_id,omitempty"`
	// Stop ends the pull instead of starting it.
	Stop bool `json:"stop,omitempty"`
}

func (e PullCommand) EventType() string    { return TypePullCommand }
func (e PullCommand) EventSubject() string { return subject.IngestPull(e.Host) }
func (e PullCommand) EventKey() string     { return e.CommandID }

// Registry and KV values (not events, but shared contracts).

// HostRecord is the value of ingest_hosts.<host>.
type HostRecord struct {
	Host    string `json:"host"`
	RTSPURL string `json:"rtsp_url"` // rtsp://addr:port (no path)
	Zone    string `json:"zone"`
	// Role is "origin", "edge" or "both".
	Role string `json:"role"`
	// CapacityStreams and CapacityBitrate are declared limits (0 = none set).
	CapacityStreams int   `json:"capacity_streams"`
	CapacityBitrate int64 `json:"capacity_bitrate"`
	Streams         int   `json:"streams"`
	Readers         int   `json:"readers"`
	BitrateIn       int64 `json:"bitrate_in"`
	// Status is "ok" or "draining".
	Status    string    `json:"status"`
	Deadline  time.Time `json:"deadline,omitzero"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Placement is the value of placements.stream.<stream>: the authoritative home.
type Placement struct {
	Stream      string    `json:"stream"`
	Host        string    `json:"host"`
	RTSPURL     string    `json:"rtsp_url"`
	Epoch       uint64    `json:"epoch"`
	MigrationID string    `json:"migration_id,omitempty"`
	FromHost    string    `json:"from_host,omitempty"`
	Deadline    time.Time `json:"deadline,omitzero"`
	SessionID   string    `json:"session_id,omitempty"`
	ClientID    string    `json:"client_id,omitempty"`
	// Mode is "push" or "pull"; SourceURL is set for pull.
	Mode      string `json:"mode"`
	SourceURL string `json:"source_url,omitempty"`
	// PlacedAt is when the stream was first placed (kept across moves);
	// zero in records written before it existed.
	PlacedAt  time.Time `json:"placed_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Session is the value of sessions.<session>: a publisher's declaration.
type Session struct {
	SessionID    string       `json:"session_id"`
	Stream       string       `json:"stream"`
	ClientID     string       `json:"client_id"`
	Capabilities Capabilities `json:"capabilities"`
	// NoticeSecret is empty in every session written since the secrets moved
	// to their own bucket (SessionSecret); an older record may still carry it.
	NoticeSecret string    `json:"notice_secret,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

// SessionSecret is the value of session_secrets.<session>: the session's
// notice secret, which signs webhook notices and authenticates the client's
// server-sent-events stream and acks. Placement writes it and returns it
// once, at choose; only the notifier reads it. It lives apart from Session so
// that ingest hosts, which read sessions, cannot read it.
type SessionSecret struct {
	SessionID    string    `json:"session_id"`
	NoticeSecret string    `json:"notice_secret"`
	CreatedAt    time.Time `json:"created_at"`
}

// PlacementKey is the placements bucket key of a stream: stream.<stream>.
func PlacementKey(stream string) string { return "stream." + stream }
