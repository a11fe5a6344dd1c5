package predict

import (
	"fmt"
	"time"
)

// Kind is what a Decision does.
type Kind int

// Decision kinds.
const (
	// Open raises a new prediction (revision 0).
	Open Kind = iota + 1
	// Update revises an open prediction (a higher revision, same id).
	Update
	// Clear withdraws a prediction: its cause went away.
	Clear
	// Down reports an unpredicted loss: the host's heartbeats went silent.
	Down
)

func (k Kind) String() string {
	switch k {
	case Open:
		return "open"
	case Update:
		return "update"
	case Clear:
		return "clear"
	case Down:
		return "down"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Prediction is an outage prediction as published.
type Prediction struct {
	// ID is stable for the life of the prediction and derived from its
	// inputs: <host>.<cause>.<unix ms of opening> for telemetry causes,
	// <host>.maintenance.<maintenance id>, <host>.drain.<unix ms of deadline>.
	ID                string
	Host              string
	Cause             string
	ExpectedOfflineAt time.Time
	Confidence        float64
	Evidence          map[string]any
	Labels            map[string]string
	Revision          int
}

// HostDown is an unpredicted loss of a host.
type HostDown struct {
	Host string
	// LastSeen is the time of the last heartbeat seen, or DetectedAt when none was.
	LastSeen time.Time
	// DetectedAt is when the silence was established (the marker's time).
	DetectedAt time.Time
	Reason     string
}

// Decision is one thing to publish.
type Decision struct {
	Kind Kind
	// At is the event time the decision was made at (the triggering input's time).
	At time.Time
	// Prediction is set for Open, Update and Clear (for Clear: the last
	// revision, whose id and revision the clear refers to).
	Prediction Prediction
	// Reason says why a prediction is cleared.
	Reason string
	// Down is set for Down.
	Down HostDown
}
