package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/subject"
)

// Headers on dead-letter copies.
const (
	HeaderDLQReason     = "Ferry-Dlq-Reason"
	HeaderDLQSubject    = "Ferry-Dlq-Subject"
	HeaderDLQStream     = "Ferry-Dlq-Stream"
	HeaderDLQSeq        = "Ferry-Dlq-Seq"
	HeaderDLQConsumer   = "Ferry-Dlq-Consumer"
	HeaderDLQDeliveries = "Ferry-Dlq-Deliveries"
	HeaderDLQKind       = "Ferry-Dlq-Kind"
)

// DeadLetterSet is one dead-letter forwarder: a durable on the advisories
// stream that takes the advisories of some streams only (filtered by
// stream), so that whoever runs it needs to read by sequence only the
// streams it forwards from.
type DeadLetterSet struct {
	Durable string
	Streams []string
}

// DeadLetterDurable forwards the dead letters of the event, telemetry and
// heartbeat streams. Every control-plane service runs it and the instances
// share it, so each advisory is forwarded once whichever service takes it.
// (Its name predates the split: the durable existed unfiltered and was
// narrowed in place, JetStream lets a durable's filter change, so its ack
// floor carries over.)
const DeadLetterDurable = "dlq-forwarder"

// CommandDeadLetterDurable forwards the dead letters of FERRY_COMMANDS
// (and deletes the originals). Only the notifier runs it: that stream holds
// every client's move notices, which the notifier writes anyway.
const CommandDeadLetterDurable = "dlq-forwarder-commands"

// The forwarder sets.
var (
	DeadLetters        = DeadLetterSet{Durable: DeadLetterDurable, Streams: []string{StreamEvents, StreamTelemetry, StreamHeartbeats}}
	CommandDeadLetters = DeadLetterSet{Durable: CommandDeadLetterDurable, Streams: []string{StreamCommands}}
)

// Config is the set's consumer: one filter per stream
// (subject.AdvisoriesOf); a single one goes in FilterSubject, so that nats.go
// puts it in the API subject where permissions pin it.
func (d DeadLetterSet) Config() jetstream.ConsumerConfig {
	c := jetstream.ConsumerConfig{Durable: d.Durable, AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 10}
	var f []string
	for _, s := range d.Streams {
		f = append(f, subject.AdvisoriesOf(s))
	}
	if len(f) == 1 {
		c.FilterSubject = f[0]
	} else {
		c.FilterSubjects = f
	}
	return c
}

type advisory struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
	Reason     string `json:"reason"`
}

// RunDeadLetters forwards the messages that JetStream advisories point at
// (max deliveries reached, terminated) on the streams of set into FERRY_DLQ
// on ferry.dlq.<stream>.<consumer>, with the reason and origin in headers,
// until ctx ends. Originals in the work-queue command stream are deleted
// once copied. Every control-plane service runs DeadLetters, the notifier
// also CommandDeadLetters.
func RunDeadLetters(ctx context.Context, js jetstream.JetStream, log zerolog.Logger, set DeadLetterSet) error {
	if set.Durable == "" || len(set.Streams) == 0 {
		return errors.New("dead letters: no durable or no stream")
	}
	log = log.With().Str("component", "deadletters").Str("durable", set.Durable).Logger()
	cons, err := js.CreateOrUpdateConsumer(ctx, StreamAdvisories, set.Config())
	if err != nil {
		return fmt.Errorf("create dead-letter consumer %s: %w", set.Durable, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if err := forward(ctx, js, set.Streams, m); err != nil {
			log.Warn().Err(err).Str("subject", m.Subject()).Msg("forward dead letter")
			_ = m.Nak()
			return
		}
		_ = m.Ack()
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

func forward(ctx context.Context, js jetstream.JetStream, streams []string, m jetstream.Msg) error {
	var a advisory
	if err := json.Unmarshal(m.Data(), &a); err != nil {
		return nil // not an advisory we understand: drop it
	}
	if a.StreamSeq == 0 || !slices.Contains(streams, a.Stream) {
		return nil // not a stream this set forwards (its filter keeps them out)
	}
	kind := "terminated"
	if a.Reason == "" && a.Deliveries > 0 {
		kind = "max_deliveries"
		a.Reason = fmt.Sprintf("max deliveries reached (%d)", a.Deliveries)
	}
	st, err := js.Stream(ctx, a.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", a.Stream, err)
	}
	orig, err := st.GetMsg(ctx, a.StreamSeq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil // already gone (aged out): nothing to keep
		}
		return fmt.Errorf("get %s/%d: %w", a.Stream, a.StreamSeq, err)
	}
	out := nats.NewMsg(subject.DeadLetter(a.Stream, a.Consumer))
	out.Data = orig.Data
	for k, v := range orig.Header {
		if k != jetstream.MsgIDHeader {
			out.Header[k] = v
		}
	}
	out.Header.Set(HeaderDLQReason, a.Reason)
	out.Header.Set(HeaderDLQKind, kind)
	out.Header.Set(HeaderDLQSubject, orig.Subject)
	out.Header.Set(HeaderDLQStream, a.Stream)
	out.Header.Set(HeaderDLQSeq, strconv.FormatUint(a.StreamSeq, 10))
	out.Header.Set(HeaderDLQConsumer, a.Consumer)
	out.Header.Set(HeaderDLQDeliveries, strconv.FormatUint(a.Deliveries, 10))
	id := fmt.Sprintf("dlq:%s:%d:%s", a.Stream, a.StreamSeq, a.Consumer)
	if _, err := js.PublishMsg(ctx, out, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	if a.Stream == StreamCommands {
		_ = st.DeleteMsg(ctx, a.StreamSeq)
	}
	return nil
}
