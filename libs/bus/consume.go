package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/events"
)

// Msg is one consumed, validated event.
type Msg struct {
	Env events.Envelope
	// Raw is the JetStream message (headers, metadata).
	Raw jetstream.Msg
}

// Handler handles one event. A nil error acks it; an error wrapped with
// Permanent terminates it (it goes to the dead-letter stream); any other
// error naks it for redelivery with backoff until MaxDeliver.
type Handler func(ctx context.Context, m Msg) error

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked Permanent (or is a validation error).
func IsPermanent(err error) bool {
	var p permanentError
	var v *events.ValidationError
	return errors.As(err, &p) || errors.As(err, &v)
}

// ConsumerSpec describes a durable pull consumer.
type ConsumerSpec struct {
	Stream  string
	Durable string
	Filters []string
	// DeliverPolicy defaults to DeliverAllPolicy; use DeliverNewPolicy for
	// consumers that only care about what happens from now on.
	DeliverPolicy jetstream.DeliverPolicy
	// MaxDeliver defaults to 5; BackOff to 200ms, 1s, 5s, 15s.
	MaxDeliver int
	BackOff    []time.Duration
	// AckWait defaults to 30s.
	AckWait       time.Duration
	MaxAckPending int
	// Processed, when set, records each handled event id so a redelivered or
	// re-published event is acknowledged without being handled twice.
	Processed jetstream.KeyValue
	// Check, when set, is an extra semantic validation; its error terminates the message.
	Check func(events.Envelope) error
}

func (s *ConsumerSpec) defaults() {
	if s.MaxDeliver == 0 {
		s.MaxDeliver = 5
	}
	if s.BackOff == nil {
		s.BackOff = []time.Duration{200 * time.Millisecond, time.Second, 5 * time.Second, 15 * time.Second}
	}
	if s.AckWait == 0 {
		s.AckWait = 30 * time.Second
	}
	if s.MaxAckPending == 0 {
		s.MaxAckPending = 256
	}
}

// Config returns the JetStream consumer configuration.
func (s ConsumerSpec) Config() jetstream.ConsumerConfig {
	s.defaults()
	c := jetstream.ConsumerConfig{
		Durable:       s.Durable,
		DeliverPolicy: s.DeliverPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.AckWait,
		MaxDeliver:    s.MaxDeliver,
		MaxAckPending: s.MaxAckPending,
	}
	// One filter goes in FilterSubject: nats.go then puts it in the API
	// subject ($JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>), where NATS
	// permissions can pin it.
	if len(s.Filters) == 1 {
		c.FilterSubject = s.Filters[0]
	} else {
		c.FilterSubjects = s.Filters
	}
	return c
}

// Consume runs a durable consumer until ctx ends, calling h for each valid
// event. Invalid events (not JSON, unknown type, failing their schema or
// Check) are logged with the subject and schema path and terminated with the
// reason, which sends them to the dead-letter stream.
func Consume(ctx context.Context, js jetstream.JetStream, log zerolog.Logger, spec ConsumerSpec, h Handler) error {
	spec.defaults()
	cons, err := js.CreateOrUpdateConsumer(ctx, spec.Stream, spec.Config())
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", spec.Durable, spec.Stream, err)
	}
	log = log.With().Str("consumer", spec.Durable).Logger()
	cc, err := cons.Consume(func(m jetstream.Msg) { handle(ctx, log, spec, h, m) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if ctx.Err() == nil {
				log.Debug().Err(err).Msg("consume")
			}
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", spec.Durable, err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

// backoffFor returns the redelivery delay after delivery n (1-based).
func backoffFor(b []time.Duration, n uint64) time.Duration {
	if len(b) == 0 {
		return time.Second
	}
	i := int(n) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(b) {
		i = len(b) - 1
	}
	return b[i]
}

func handle(ctx context.Context, log zerolog.Logger, spec ConsumerSpec, h Handler, m jetstream.Msg) {
	md, _ := m.Metadata()
	var delivered uint64 = 1
	if md != nil {
		delivered = md.NumDelivered
	}
	env, err := events.Decode(m.Data())
	if err == nil && spec.Check != nil {
		if cerr := spec.Check(env); cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		ev := log.Error().Err(err).Str("subject", m.Subject())
		var ve *events.ValidationError
		if errors.As(err, &ve) {
			ev = ev.Str("event_type", ve.Type).Str("schema_path", ve.Path)
		}
		ev.Msg("invalid event: sent to dead letters")
		_ = m.TermWithReason(truncate("invalid event: "+err.Error(), 200))
		return
	}
	l := log.With().Str("event_id", env.ID).Str("event_type", env.Type).Str("subject", m.Subject()).Logger()
	key := ""
	if spec.Processed != nil {
		key = spec.Durable + "." + env.ID
		if _, err := spec.Processed.Get(ctx, key); err == nil {
			l.Debug().Msg("already processed: acked")
			_ = m.Ack()
			return
		}
	}
	hctx := events.ExtractTrace(ctx, m.Headers())
	if err := h(hctx, Msg{Env: env, Raw: m}); err != nil {
		if IsPermanent(err) {
			l.Error().Err(err).Msg("event rejected: sent to dead letters")
			_ = m.TermWithReason(truncate(err.Error(), 200))
			return
		}
		if ctx.Err() != nil {
			_ = m.Nak()
			return
		}
		l.Warn().Err(err).Uint64("delivery", delivered).Msg("handler failed: will retry")
		_ = m.NakWithDelay(backoffFor(spec.BackOff, delivered))
		return
	}
	if key != "" {
		if _, err := spec.Processed.Create(ctx, key, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil &&
			!errors.Is(err, jetstream.ErrKeyExists) {
			l.Warn().Err(err).Msg("record processed")
		}
	}
	if err := m.Ack(); err != nil {
		l.Warn().Err(err).Msg("ack")
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
