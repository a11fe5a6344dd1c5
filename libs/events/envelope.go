// Package events holds Ferry's event contracts: the CloudEvents 1.0 envelope,
// one Go type per event, every NATS subject, and publishing and decoding that
// validate against the JSON Schemas in the schemas module.
package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/schemas"
)

// SpecVersion is the CloudEvents version of every envelope.
const SpecVersion = "1.0"

// Envelope is a CloudEvents 1.0 event in structured JSON mode.
type Envelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	Source          string          `json:"source"`
	Time            time.Time       `json:"time"`
	Subject         string          `json:"subject,omitempty"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	Data            json.RawMessage `json:"data"`
}

// ID derives an event id from its type and business key: the same key always
// gives the same id, so a retried publish is deduplicated by JetStream.
func ID(d Data) string {
	sum := sha256.Sum256([]byte(d.EventType() + "\x00" + d.EventKey()))
	return hex.EncodeToString(sum[:16])
}

// New wraps d in an envelope from source (e.g. "ferry/placement/ingest-1").
func New(source string, d Data) (Envelope, error) {
	raw, err := json.Marshal(withDefaults(d))
	if err != nil {
		return Envelope{}, fmt.Errorf("marshal %s: %w", d.EventType(), err)
	}
	return Envelope{
		SpecVersion:     SpecVersion,
		ID:              ID(d),
		Type:            d.EventType(),
		Source:          source,
		Time:            time.Now().UTC(),
		Subject:         d.EventSubject(),
		DataContentType: "application/json",
		Data:            raw,
	}, nil
}

// Marshal builds and encodes the envelope of d, validating it against its
// schema so that Ferry never emits an event its own consumers would reject.
func Marshal(source string, d Data) (Envelope, []byte, error) {
	env, err := New(source, d)
	if err != nil {
		return Envelope{}, nil, err
	}
	body, err := json.Marshal(env)
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("marshal envelope %s: %w", env.Type, err)
	}
	if err := validate(env.Type, body); err != nil {
		return Envelope{}, nil, err
	}
	return env, body, nil
}

// Publisher is the part of jetstream.JetStream that Publish needs.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Publish validates d, wraps it, and publishes it on its subject with the
// event id as Nats-Msg-Id. ack.Duplicate reports a deduplicated retry.
// Extra options (e.g. jetstream.WithMsgTTL) are passed through.
func Publish(ctx context.Context, js Publisher, source string, d Data, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	env, body, err := Marshal(source, d)
	if err != nil {
		return nil, err
	}
	msg := nats.NewMsg(env.Subject)
	msg.Data = body
	msg.Header.Set(HeaderType, env.Type)
	InjectTrace(ctx, msg.Header)
	opts = append([]jetstream.PublishOpt{jetstream.WithMsgID(env.ID)}, opts...)
	ack, err := js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		return nil, fmt.Errorf("publish %s on %s: %w", env.Type, env.Subject, err)
	}
	return ack, nil
}

// HeaderType carries the event type in a NATS header, for cheap filtering.
const HeaderType = "Ferry-Type"

// ErrUnknownType is returned for an event type with no schema.
var ErrUnknownType = errors.New("unknown event type")

// ValidationError says why a message is not a valid Ferry event.
type ValidationError struct {
	// Type is the event type, if it could be read.
	Type string
	// Path is the JSON pointer of the offending field ("/data/host"), or "" for the whole message.
	Path string
	// Reason is the validator's message.
	Reason string
	// Err is the underlying error.
	Err error
}

func (e *ValidationError) Error() string {
	t := e.Type
	if t == "" {
		t = "event"
	}
	if e.Path != "" {
		return fmt.Sprintf("invalid %s at %s: %s", t, e.Path, e.Reason)
	}
	return fmt.Sprintf("invalid %s: %s", t, e.Reason)
}

func (e *ValidationError) Unwrap() error { return e.Err }

func validate(typ string, body []byte) error {
	err := schemas.Validate(typ, body)
	if err == nil {
		return nil
	}
	var se *schemas.Error
	if errors.As(err, &se) {
		ve := &ValidationError{Type: typ, Path: se.Path, Reason: se.Reason, Err: err}
		if errors.Is(err, schemas.ErrUnknownType) {
			ve.Err = ErrUnknownType
		}
		return ve
	}
	return &ValidationError{Type: typ, Reason: err.Error(), Err: err}
}

// Decode parses and validates a message body as a Ferry event.
func Decode(body []byte) (Envelope, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return Envelope{}, &ValidationError{Reason: "not JSON: " + err.Error(), Err: err}
	}
	if head.Type == "" {
		return Envelope{}, &ValidationError{Path: "/type", Reason: "missing event type"}
	}
	if err := validate(head.Type, body); err != nil {
		return Envelope{}, err
	}
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Envelope{}, &ValidationError{Type: head.Type, Reason: err.Error(), Err: err}
	}
	return env, nil
}

// DecodeAs decodes and validates body and unmarshals its data into T, checking
// that the event is of T's type.
func DecodeAs[T Data](body []byte) (Envelope, T, error) {
	var zero T
	env, err := Decode(body)
	if err != nil {
		return env, zero, err
	}
	if want := zero.EventType(); env.Type != want && !multiType(zero, env.Type) {
		return env, zero, &ValidationError{Type: env.Type, Path: "/type", Reason: "want " + want}
	}
	var d T
	if err := json.Unmarshal(env.Data, &d); err != nil {
		return env, zero, &ValidationError{Type: env.Type, Path: "/data", Reason: err.Error(), Err: err}
	}
	return env, d, nil
}

// multiType accepts the three outcome types for NoticeOutcome.
func multiType(d Data, typ string) bool {
	if _, ok := d.(NoticeOutcome); ok {
		return typ == TypeNoticeDelivered || typ == TypeNoticeAcked || typ == TypeNoticeFailed
	}
	return false
}

// Types lists every event type Ferry defines, with a zero value of its Go type.
func Types() map[string]Data {
	return map[string]Data{
		TypeMaintenanceScheduled: MaintenanceScheduled{},
		TypeMaintenanceCancelled: MaintenanceCancelled{},
		TypeDraining:             Draining{},
		TypeHostLeft:             HostLeft{},
		TypePublisherAttached:    PublisherAttached{},
		TypePublisherDetached:    PublisherDetached{},
		TypeStreamCeased:         StreamCeased{},
		TypeTelemetry:            Telemetry{},
		TypeHeartbeat:            Heartbeat{},
		TypeEdgeSwitched:         EdgeSwitched{},
		TypeOutagePredicted:      OutagePredicted{},
		TypeOutageCleared:        OutageCleared{},
		TypeHostDown:             HostDown{},
		TypeReassigned:           Reassigned{},
		TypeMigrationCompleted:   MigrationCompleted{},
		TypeMigrationFailed:      MigrationFailed{},
		TypeReleased:             Released{},
		TypeMoveNotice:           MoveNotice{},
		TypeNoticeDelivered:      NoticeOutcome{Outcome: "delivered"},
		TypeNoticeAcked:          NoticeOutcome{Outcome: "acked"},
		TypeNoticeFailed:         NoticeOutcome{Outcome: "failed"},
		TypeDrainCommand:         DrainCommand{},
		TypePullCommand:          PullCommand{},
	}
}

// withDefaults replaces nil slices and maps that the schemas require to be
// arrays and objects (JSON null would be rejected).
func withDefaults(d Data) Data {
	switch e := d.(type) {
	case OutagePredicted:
		if e.Evidence == nil {
			e.Evidence = map[string]any{}
		}
		return e
	case MigrationCompleted:
		if e.Steps == nil {
			e.Steps = []StepTiming{}
		}
		return e
	case MigrationFailed:
		if e.Steps == nil {
			e.Steps = []StepTiming{}
		}
		return e
	}
	return d
}
