package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// DeadLetterDurable is the consumer name shared by every forwarder instance,
// so each advisory is forwarded once whichever service runs it.
const DeadLetterDurable = "dlq-forwarder"

type advisory struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
	Reason     string `json:"reason"`
}

// RunDeadLetters forwards the messages that JetStream advisories point at
// (max deliveries reached, terminated) into FERRY_DLQ on ferry.dlq.<stream>.<consumer>,
// with the reason and origin in headers, until ctx ends. Originals in the
// work-queue command stream are deleted once copied. Every service runs it.
func RunDeadLetters(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) error {
	log = log.With().Str("component", "deadletters").Logger()
	cons, err := js.CreateOrUpdateConsumer(ctx, StreamAdvisories, jetstream.ConsumerConfig{
		Durable: DeadLetterDurable, AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 10,
	})
	if err != nil {
		return fmt.Errorf("create dead-letter consumer: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if err := forward(ctx, js, m); err != nil {
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

func forward(ctx context.Context, js jetstream.JetStream, m jetstream.Msg) error {
	var a advisory
	if err := json.Unmarshal(m.Data(), &a); err != nil {
		return nil // not an advisory we understand: drop it
	}
	if a.Stream == "" || a.StreamSeq == 0 || a.Stream == StreamDeadLetter || a.Stream == StreamAdvisories {
		return nil
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
