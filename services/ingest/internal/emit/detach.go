package emit

import (
	"time"

	"github.com/ferrystream/ferry/libs/events"
)

// DetachMigration is the migration a publisher's detach from host self
// belongs to, judged from the stream's placement as it is now (ok false: it
// could not be read):
//   - the move taking the stream away from self, whatever migration the
//     publisher arrived with (it arrived with an earlier one, or none);
//   - the migration the publisher arrived with, while that migration still
//     places the stream on self and its deadline has not passed (the
//     publisher left during its own move);
//   - none otherwise: a publisher that leaves on its own after its move ended
//     belongs to no migration, and naming the old one would put a stray step
//     in that migration's trace.
//
// When the placement cannot be read the arrival migration is kept (the
// detach is still attributed, perhaps to a finished migration).
func DetachMigration(pl events.Placement, ok bool, self, arrived string, now time.Time) string {
	if !ok {
		return arrived
	}
	if pl.MigrationID != "" && pl.Host != self && pl.FromHost == self {
		return pl.MigrationID
	}
	if arrived != "" && pl.MigrationID == arrived && pl.Host == self &&
		(pl.Deadline.IsZero() || now.Before(pl.Deadline)) {
		return arrived
	}
	return ""
}
