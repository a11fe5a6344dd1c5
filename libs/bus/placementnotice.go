package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
)

// HeaderPlacementRevision carries, on a placement notice, the placements
// bucket revision of the record the notice copies.
const HeaderPlacementRevision = "Ferry-Placement-Revision"

// ErrBadNotice means a message is not a placement notice.
var ErrBadNotice = errors.New("not a placement notice")

// NotifyPlacement publishes, on core NATS, a placement record just written to
// the placements bucket at revision rev: on the subject of its home
// (subject.PlacementHost), of its previous home (p.FromHost, when it differs)
// and of the stream (subject.PlacementStream). A host subscribed to its own
// subject learns that a stream it hosts moved away without watching the
// whole bucket. Notices are not stored: a receiver that may have missed some
// (reconnected, dropped as a slow consumer) reads the bucket again.
func NotifyPlacement(nc *nats.Conn, p events.Placement, rev uint64) error {
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("notify placement %s: %w", p.Stream, err)
	}
	subjects := []string{subject.PlacementHost(p.Host, p.Stream), subject.PlacementStream(p.Stream)}
	if p.FromHost != "" && p.FromHost != p.Host {
		subjects = append(subjects, subject.PlacementHost(p.FromHost, p.Stream))
	}
	var errs []error
	for _, s := range subjects {
		m := nats.NewMsg(s)
		m.Data = body
		m.Header.Set(HeaderPlacementRevision, strconv.FormatUint(rev, 10))
		if err := nc.PublishMsg(m); err != nil {
			errs = append(errs, fmt.Errorf("notify placement %s on %s: %w", p.Stream, s, err))
		}
	}
	return errors.Join(errs...)
}

// PlacementNotice decodes a notice NotifyPlacement sent: the placement and
// its revision in the placements bucket.
func PlacementNotice(m *nats.Msg) (events.Placement, uint64, error) {
	var p events.Placement
	rev, err := strconv.ParseUint(m.Header.Get(HeaderPlacementRevision), 10, 64)
	if err != nil || rev == 0 {
		return p, 0, fmt.Errorf("%w: revision header %q", ErrBadNotice, m.Header.Get(HeaderPlacementRevision))
	}
	if err := json.Unmarshal(m.Data, &p); err != nil || p.Stream == "" {
		return p, 0, fmt.Errorf("%w: body", ErrBadNotice)
	}
	return p, rev, nil
}
