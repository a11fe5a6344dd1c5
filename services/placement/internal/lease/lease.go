// Package lease elects one active holder among replicas with a key in a
// JetStream Key-Value bucket whose bucket TTL expires unrenewed keys:
// Create acquires, Update(revision) renews every TTL/3, and a holder whose
// renewal fails stops acting at once (before the key can expire and another
// replica acquire it). Per-key TTLs are not used: they are lost on Update.
package lease

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/obs"
)

// ErrNotHeld is returned by Release when this replica does not hold the lease.
var ErrNotHeld = errors.New("lease not held")

// Config configures a lease.
type Config struct {
	// Key is the lease key (e.g. "placement.leader").
	Key string
	// ID identifies this replica; it is the key's value.
	ID string
	// TTL is the bucket TTL; the holder renews every TTL/3.
	TTL time.Duration
	// Retry is how often a standby tries to acquire (default TTL/12, at least 100ms).
	Retry time.Duration
	// Release deletes the key when Run ends normally so a standby takes
	// over at once; false leaves it to expire (as a crash would).
	Release bool
	// OnChange is called with true when the lease is acquired and false when lost.
	OnChange func(held bool)
}

// Lease campaigns for and holds one key.
type Lease struct {
	kv  jetstream.KeyValue
	cfg Config
	log zerolog.Logger

	held atomic.Bool
}

// New returns a lease on kv.
func New(kv jetstream.KeyValue, cfg Config, log zerolog.Logger) (*Lease, error) {
	if cfg.Key == "" || cfg.ID == "" || cfg.TTL <= 0 {
		return nil, fmt.Errorf("lease: key, id and ttl are required (key %q id %q ttl %v)", cfg.Key, cfg.ID, cfg.TTL)
	}
	if cfg.Retry <= 0 {
		cfg.Retry = max(cfg.TTL/12, 100*time.Millisecond)
	}
	return &Lease{kv: kv, cfg: cfg, log: log.With().Str(obs.FieldComponent, "lease").Str("lease", cfg.Key).Logger()}, nil
}

// Held reports whether this replica holds the lease now.
func (l *Lease) Held() bool { return l.held.Load() }

// Run campaigns until ctx ends. Each time the lease is acquired, lead runs
// with a context that is cancelled as soon as the lease is lost (or ctx
// ends); Run waits for lead to return before campaigning again.
func (l *Lease) Run(ctx context.Context, lead func(ctx context.Context)) error {
	for ctx.Err() == nil {
		rev, err := l.acquire(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, jetstream.ErrKeyExists) {
				l.log.Warn().Err(err).Msg("acquire lease")
			}
			select {
			case <-ctx.Done():
			case <-time.After(l.cfg.Retry):
			}
			continue
		}
		l.hold(ctx, rev, lead)
	}
	return nil
}

func (l *Lease) acquire(ctx context.Context) (uint64, error) {
	actx, cancel := context.WithTimeout(ctx, l.cfg.TTL/3)
	defer cancel()
	rev, err := l.kv.Create(actx, l.cfg.Key, []byte(l.cfg.ID))
	if err == nil {
		return rev, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return 0, err
	}
	// Our own key from before a restart: take it back rather than wait.
	e, gerr := l.kv.Get(actx, l.cfg.Key)
	if gerr != nil || string(e.Value()) != l.cfg.ID {
		return 0, err
	}
	return l.kv.Update(actx, l.cfg.Key, []byte(l.cfg.ID), e.Revision())
}

func (l *Lease) set(v bool) {
	if l.held.Swap(v) != v && l.cfg.OnChange != nil {
		l.cfg.OnChange(v)
	}
}

func (l *Lease) hold(ctx context.Context, rev uint64, lead func(context.Context)) {
	l.log.Info().Str("holder", l.cfg.ID).Uint64("revision", rev).Msg("lease acquired: leading")
	l.set(true)
	lctx, cancel := context.WithCancel(ctx)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		lead(lctx)
	}()
	done := (<-chan struct{})(finished)
	t := time.NewTicker(l.cfg.TTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			cancel()
			<-finished
			l.set(false)
			if l.cfg.Release {
				rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
				err := l.kv.Delete(rctx, l.cfg.Key, jetstream.LastRevision(rev))
				rcancel()
				if err != nil {
					l.log.Warn().Err(err).Msg("release lease")
				} else {
					l.log.Info().Msg("lease released")
				}
			}
			return
		case <-done:
			// lead returned on its own: keep holding until ctx ends so no
			// other replica leads a half-stopped service.
			done = nil
		case <-t.C:
			rctx, rcancel := context.WithTimeout(ctx, l.cfg.TTL/3)
			nrev, err := l.kv.Update(rctx, l.cfg.Key, []byte(l.cfg.ID), rev)
			rcancel()
			if err != nil {
				if ctx.Err() != nil {
					continue // handled by the ctx.Done case
				}
				l.log.Error().Err(err).Msg("lease renewal failed: stopped leading")
				cancel()
				<-finished
				l.set(false)
				return
			}
			rev = nrev
		}
	}
}
