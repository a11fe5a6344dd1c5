package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/events"
)

// Notice states.
const (
	// StatePending: being delivered, not acknowledged yet.
	StatePending = "pending"
	// StateAcked: the client acknowledged the notice (terminal).
	StateAcked = "acked"
	// StateFailed: not sent or not acknowledged in time (terminal).
	StateFailed = "failed"
)

// Failure reasons carried by `failed` outcomes.
const (
	// ReasonNotCapable: the client never declared it can move (or no usable channel).
	ReasonNotCapable = "not-capable"
	// ReasonDeadline: no ack before the old host's expected offline time.
	ReasonDeadline = "deadline"
	// ReasonUnknownSession: the stream's session is not in the sessions bucket.
	ReasonUnknownSession = "unknown-session"
)

// Channels a notice can travel on.
const (
	ChannelNATS    = "nats"
	ChannelWebhook = "webhook"
	ChannelSSE     = "sse"
)

// Record is the delivery state of one notice, the value of notices.<notice id>.
// Every change is a compare-and-set, so replicas never overwrite each other.
type Record struct {
	Notice events.MoveNotice `json:"notice"`
	// Channels are the channels the notice goes out on.
	Channels   []string `json:"channels"`
	WebhookURL string   `json:"webhook_url,omitempty"`
	// State is pending, acked or failed; Reason says why it failed.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Delivered holds, per channel, when the notice was first handed over.
	Delivered map[string]time.Time `json:"delivered,omitempty"`
	// Attempts counts delivery attempts per channel.
	Attempts map[string]int `json:"attempts,omitempty"`
	// AckChannel is the channel the client says brought the notice.
	AckChannel string    `json:"ack_channel,omitempty"`
	AckedAt    time.Time `json:"acked_at,omitzero"`
	// Owner is the replica delivering the notice, until LeaseUntil.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// ReassignedAt is the time of the reassigned event (latency reference).
	ReassignedAt time.Time `json:"reassigned_at"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// Terminal reports whether the notice is acked or failed.
func (r Record) Terminal() bool { return r.State == StateAcked || r.State == StateFailed }

// TotalAttempts sums the attempts over every channel.
func (r Record) TotalAttempts() int {
	n := 0
	for _, a := range r.Attempts {
		n += a
	}
	return n
}

// NoticeID is the deterministic id of the notice for (migration, client), so
// a redelivered reassigned event or a second replica finds the same notice.
func NoticeID(migrationID, clientID string) string {
	sum := sha256.Sum256([]byte(migrationID + "\x00" + clientID))
	return "n-" + hex.EncodeToString(sum[:8])
}

// errNoChange tells update that fn decided to leave the record as it is.
var errNoChange = errors.New("no change")

// ErrUnknownNotice is returned for a notice id with no record.
var ErrUnknownNotice = errors.New("unknown notice")

type store struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

func (s store) get(ctx context.Context, key string) (Record, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, 0, ErrUnknownNotice
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("get notice %s: %w", key, err)
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return Record{}, 0, fmt.Errorf("decode notice %s: %w", key, err)
	}
	return r, e.Revision(), nil
}

// create stores r under key unless a record exists; it returns the stored
// record and whether it was created by this call.
func (s store) create(ctx context.Context, key string, r Record) (Record, bool, error) {
	r.UpdatedAt = s.now()
	b, err := json.Marshal(r)
	if err != nil {
		return Record{}, false, err
	}
	if _, err := s.kv.Create(ctx, key, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			cur, _, gerr := s.get(ctx, key)
			return cur, false, gerr
		}
		return Record{}, false, fmt.Errorf("create notice %s: %w", key, err)
	}
	return r, true, nil
}

// update applies fn to the current record with compare-and-set, retrying on
// conflicts. fn returning errNoChange leaves the record untouched (changed is
// false); any other error is returned as is.
func (s store) update(ctx context.Context, key string, fn func(*Record) error) (rec Record, changed bool, err error) {
	for range 50 {
		r, rev, err := s.get(ctx, key)
		if err != nil {
			return Record{}, false, err
		}
		if err := fn(&r); err != nil {
			if errors.Is(err, errNoChange) {
				return r, false, nil
			}
			return r, false, err
		}
		r.UpdatedAt = s.now()
		b, err := json.Marshal(r)
		if err != nil {
			return Record{}, false, err
		}
		if _, err := s.kv.Update(ctx, key, b, rev); err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) || isWrongRevision(err) {
				continue
			}
			return Record{}, false, fmt.Errorf("update notice %s: %w", key, err)
		}
		return r, true, nil
	}
	return Record{}, false, fmt.Errorf("update notice %s: too many conflicts", key)
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return false
}
