package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/subject"
)

// Stream names.
const (
	StreamEvents     = "FERRY_EVENTS"
	StreamTelemetry  = "FERRY_TELEMETRY"
	StreamHeartbeats = "FERRY_HEARTBEATS"
	StreamCommands   = "FERRY_COMMANDS"
	// StreamAdvisories captures max-deliveries and terminated advisories.
	StreamAdvisories = "FERRY_DLQ_ADVISORIES"
	// StreamDeadLetter holds copies of the messages those advisories point at.
	StreamDeadLetter = "FERRY_DLQ"
)

// Bucket names.
const (
	BucketHosts      = "ingest_hosts"
	BucketPlacements = "placements"
	BucketSessions   = "sessions"
	// BucketSessionSecrets holds each session's notice secret (events.SessionSecret),
	// apart from sessions so that ingest hosts cannot read it.
	BucketSessionSecrets = "session_secrets"
	BucketLeases         = "leases"
	BucketProcessed      = "processed"
	BucketMigrations     = "migrations"
	BucketMaintenance    = "maintenance"
	// BucketNotices holds the notifier's delivery state, one key per move notice.
	BucketNotices = "notices"
)

// Durations of the layout.
const (
	EventsMaxAge       = 7 * 24 * time.Hour
	DedupWindow        = 10 * time.Minute
	TelemetryMaxAge    = 15 * time.Minute
	HeartbeatMarkerTTL = time.Minute
	CommandsMaxAge     = time.Hour
	DeadLetterMaxAge   = 14 * 24 * time.Hour
	// LeaseTTL is the bucket TTL of leases: a holder renews every LeaseTTL/3.
	LeaseTTL = 6 * time.Second
	// ProcessedTTL bounds the idempotency record of a consumed event.
	ProcessedTTL = 24 * time.Hour
)

// Streams returns the stream layout for the given replica count.
func Streams(replicas int) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{Name: StreamEvents, Subjects: []string{subject.AllEvents}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, MaxAge: EventsMaxAge, Duplicates: DedupWindow, Replicas: replicas},
		{Name: StreamTelemetry, Subjects: []string{subject.AllTelemetry}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, MaxAge: TelemetryMaxAge, Duplicates: time.Minute, Replicas: replicas},
		{Name: StreamHeartbeats, Subjects: []string{subject.AllHeartbeats}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.MemoryStorage, MaxMsgsPerSubject: 1, AllowMsgTTL: true,
			SubjectDeleteMarkerTTL: HeartbeatMarkerTTL, Duplicates: time.Minute, Replicas: replicas},
		{Name: StreamCommands, Subjects: []string{subject.AllCommands}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, MaxAge: CommandsMaxAge, Duplicates: DedupWindow, Replicas: replicas},
		{Name: StreamAdvisories, Subjects: []string{subject.AdvisoryMaxDeliveries, subject.AdvisoryTerminated},
			Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, MaxAge: DeadLetterMaxAge, Replicas: replicas},
		{Name: StreamDeadLetter, Subjects: []string{subject.AllDeadLetters}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, MaxAge: DeadLetterMaxAge, Duplicates: DedupWindow, Replicas: replicas},
	}
}

// Buckets returns the Key-Value layout for the given replica count.
func Buckets(replicas int) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{Bucket: BucketHosts, Description: "ingest host registry", History: 5, Replicas: replicas},
		{Bucket: BucketPlacements, Description: "authoritative home of each stream (CAS writes only)", History: 10, Replicas: replicas},
		{Bucket: BucketSessions, Description: "publisher sessions and declared capabilities", History: 1, TTL: 7 * 24 * time.Hour, Replicas: replicas},
		{Bucket: BucketSessionSecrets, Description: "notice secrets of publisher sessions (placement writes, the notifier reads)", History: 1, TTL: 7 * 24 * time.Hour, Replicas: replicas},
		{Bucket: BucketLeases, Description: "single active decider leases", History: 1, TTL: LeaseTTL, LimitMarkerTTL: time.Minute, Replicas: replicas},
		{Bucket: BucketProcessed, Description: "consumer idempotency records", History: 1, TTL: ProcessedTTL, Replicas: replicas},
		{Bucket: BucketMigrations, Description: "migration state machines", History: 5, TTL: 7 * 24 * time.Hour, Replicas: replicas},
		{Bucket: BucketMaintenance, Description: "maintenance windows", History: 5, TTL: 30 * 24 * time.Hour, Replicas: replicas},
		{Bucket: BucketNotices, Description: "move notice delivery state (notifier)", History: 1, TTL: 7 * 24 * time.Hour, Replicas: replicas},
	}
}

// Bootstrap creates every stream and bucket that is missing and updates
// those whose layout differs. It is idempotent and every service calls it at
// start. When the layout is already in place it only looks streams up
// (STREAM.INFO), so users without the right to create or update streams (the
// services on a cluster with permissions, where ops bootstraps) pass.
func Bootstrap(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if replicas < 1 {
		replicas = 1
	}
	for _, sc := range Streams(replicas) {
		if err := ensureStream(ctx, js, sc); err != nil {
			return err
		}
	}
	for _, kc := range Buckets(replicas) {
		if err := ensureBucket(ctx, js, kc); err != nil {
			return err
		}
	}
	return nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	st, err := js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateStream(ctx, want); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	if sameLayout(st.CachedInfo().Config, want) {
		return nil
	}
	if _, err := js.UpdateStream(ctx, want); err != nil {
		return fmt.Errorf("update stream %s: %w", want.Name, err)
	}
	return nil
}

func ensureBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) error {
	st, err := js.Stream(ctx, "KV_"+want.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateKeyValue(ctx, want); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("create bucket %s: %w", want.Bucket, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("look up bucket %s: %w", want.Bucket, err)
	}
	have := st.CachedInfo().Config
	if have.MaxMsgsPerSubject == int64(max(want.History, 1)) && have.MaxAge == want.TTL && have.Replicas == want.Replicas &&
		have.SubjectDeleteMarkerTTL == want.LimitMarkerTTL {
		return nil
	}
	if _, err := js.UpdateKeyValue(ctx, want); err != nil {
		return fmt.Errorf("update bucket %s: %w", want.Bucket, err)
	}
	return nil
}

// sameLayout reports whether have matches every field want sets (the server
// fills in defaults for the others).
func sameLayout(have, want jetstream.StreamConfig) bool {
	if !slices.Equal(have.Subjects, want.Subjects) || have.Retention != want.Retention ||
		have.Storage != want.Storage || have.Replicas != want.Replicas {
		return false
	}
	for _, f := range [][2]int64{
		{int64(have.MaxAge), int64(want.MaxAge)},
		{int64(have.Duplicates), int64(want.Duplicates)},
		{have.MaxMsgsPerSubject, want.MaxMsgsPerSubject},
		{int64(have.SubjectDeleteMarkerTTL), int64(want.SubjectDeleteMarkerTTL)},
	} {
		if f[1] != 0 && f[0] != f[1] {
			return false
		}
	}
	return !want.AllowMsgTTL || have.AllowMsgTTL
}

// Stores are the Key-Value buckets.
type Stores struct {
	Hosts, Placements, Sessions, SessionSecrets, Leases, Processed, Migrations, Maintenance jetstream.KeyValue
}

// OpenStores binds every bucket (Bootstrap must have run).
func OpenStores(ctx context.Context, js jetstream.JetStream) (*Stores, error) {
	s := &Stores{}
	for _, b := range []struct {
		name string
		dst  *jetstream.KeyValue
	}{
		{BucketHosts, &s.Hosts}, {BucketPlacements, &s.Placements}, {BucketSessions, &s.Sessions}, {BucketSessionSecrets, &s.SessionSecrets},
		{BucketLeases, &s.Leases}, {BucketProcessed, &s.Processed}, {BucketMigrations, &s.Migrations},
		{BucketMaintenance, &s.Maintenance},
	} {
		kv, err := js.KeyValue(ctx, b.name)
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", b.name, err)
		}
		*b.dst = kv
	}
	return s, nil
}
