// Package registry keeps an ingest host visible to the control plane: its
// record in the ingest_hosts bucket (every 2s, with its load and status), a
// heartbeat with a message TTL on ferry.hb.ingest.<host> (every second), and
// a telemetry sample on ferry.telemetry.ingest.<host> (every second).
package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
)

// Intervals and the heartbeat TTL (contract).
const (
	RecordEvery    = 2 * time.Second
	HeartbeatEvery = time.Second
	HeartbeatTTL   = 3 * time.Second
	TelemetryEvery = time.Second
)

// Load is the host's current load, from the RTSP node.
type Load struct {
	Streams, Hosted, Readers, Publishers int64
	BytesIn, BytesOut                    uint64
	RTPLost, WriteErrors, Errors         uint64
	Draining                             bool
	Deadline                             time.Time
}

// Config describes the host.
type Config struct {
	Host, RTSPURL, Zone, Role string
	CapacityStreams           int
	CapacityBitrate           int64
	// MemLimit overrides the memory limit of the sample (0: the cgroup limit, else the machine memory).
	MemLimit int64
}

// Registry publishes the host record, heartbeats and telemetry.
type Registry struct {
	cfg     Config
	kv      jetstream.KeyValue
	js      events.Publisher
	load    func() Load
	log     zerolog.Logger
	started time.Time
	source  string

	// last telemetry sample, for rates
	lastAt           time.Time
	lastCPU          float64
	lastIn, lastOut  uint64
	bitrateIn, hbSeq uint64
	lastBitrateIn    int64
}

// New returns a registry publishing for cfg; load samples the node.
func New(cfg Config, kv jetstream.KeyValue, js events.Publisher, load func() Load, log zerolog.Logger) *Registry {
	return &Registry{cfg: cfg, kv: kv, js: js, load: load, started: time.Now().UTC(),
		source: "ferry/ingest/" + cfg.Host, log: log.With().Str("component", "registry").Logger()}
}

// Record builds the host record for a load.
func (r *Registry) Record(l Load) events.HostRecord {
	status := "ok"
	if l.Draining {
		status = "draining"
	}
	rec := events.HostRecord{
		Host: r.cfg.Host, RTSPURL: r.cfg.RTSPURL, Zone: r.cfg.Zone, Role: r.cfg.Role,
		CapacityStreams: r.cfg.CapacityStreams, CapacityBitrate: r.cfg.CapacityBitrate,
		Streams: int(l.Hosted), Readers: int(l.Readers), BitrateIn: r.lastBitrateIn,
		Status: status, StartedAt: r.started, UpdatedAt: time.Now().UTC(),
	}
	if l.Draining {
		rec.Deadline = l.Deadline.UTC()
	}
	return rec
}

// PutRecord writes the host record now.
func (r *Registry) PutRecord(ctx context.Context) error {
	if r.kv == nil {
		return nil
	}
	b, err := json.Marshal(r.Record(r.load()))
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := r.kv.Put(pctx, r.cfg.Host, b); err != nil {
		return fmt.Errorf("put host record %s: %w", r.cfg.Host, err)
	}
	return nil
}

// StartedAt is when the registry was created (the host's start).
func (r *Registry) StartedAt() time.Time { return r.started }

// Deregister deletes the host record (clean exit).
func (r *Registry) Deregister(ctx context.Context) {
	if r.kv == nil {
		return
	}
	if err := r.kv.Delete(ctx, r.cfg.Host); err != nil {
		r.log.Warn().Err(err).Msg("delete host record")
	}
}

// Telemetry takes one telemetry sample.
func (r *Registry) Telemetry(now time.Time) events.Telemetry {
	p := ReadProc()
	l := r.load()
	t := events.Telemetry{
		Host: r.cfg.Host, At: now.UTC(), CPUSeconds: p.CPUSeconds, MemBytes: p.RSS, MemLimit: p.MemLimit,
		FDs: p.FDs, FDLimit: p.FDLimit, Goroutines: p.Goroutines, Publishers: l.Publishers, Readers: l.Readers,
		Streams: l.Streams, RTPLost: int64(l.RTPLost), WriteErrors: int64(l.WriteErrors), Errors: int64(l.Errors),
	}
	if r.cfg.MemLimit > 0 {
		t.MemLimit = r.cfg.MemLimit
	}
	if !r.lastAt.IsZero() {
		dt := now.Sub(r.lastAt).Seconds()
		if dt > 0 {
			t.CPUPercent = (p.CPUSeconds - r.lastCPU) / dt * 100
			t.BitrateIn = int64(float64(l.BytesIn-r.lastIn) * 8 / dt)
			t.BitrateOut = int64(float64(l.BytesOut-r.lastOut) * 8 / dt)
		}
	}
	r.lastAt, r.lastCPU, r.lastIn, r.lastOut = now, p.CPUSeconds, l.BytesIn, l.BytesOut
	r.lastBitrateIn = t.BitrateIn
	return t
}

// Run publishes until ctx ends.
func (r *Registry) Run(ctx context.Context) {
	if err := r.PutRecord(ctx); err != nil {
		r.log.Warn().Err(err).Msg("register")
	}
	rec := time.NewTicker(RecordEvery)
	hb := time.NewTicker(HeartbeatEvery)
	tel := time.NewTicker(TelemetryEvery)
	defer rec.Stop()
	defer hb.Stop()
	defer tel.Stop()
	r.heartbeat(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-rec.C:
			if err := r.PutRecord(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn().Err(err).Msg("host record")
			}
		case <-hb.C:
			r.heartbeat(ctx)
		case now := <-tel.C:
			t := r.Telemetry(now)
			if r.js == nil {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			if _, err := events.Publish(pctx, r.js, r.source, t); err != nil && ctx.Err() == nil {
				r.log.Warn().Err(err).Msg("telemetry")
			}
			cancel()
		}
	}
}

func (r *Registry) heartbeat(ctx context.Context) {
	if r.js == nil {
		return
	}
	r.hbSeq++
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := events.Publish(pctx, r.js, r.source, events.Heartbeat{Host: r.cfg.Host, Seq: r.hbSeq, At: time.Now().UTC()},
		jetstream.WithMsgTTL(HeartbeatTTL))
	if err != nil && ctx.Err() == nil {
		r.log.Warn().Err(err).Msg("heartbeat")
	}
}
