package emit

import (
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/events"
)

func TestDetachMigration(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	later, earlier := now.Add(time.Minute), now.Add(-time.Minute)
	for _, tc := range []struct {
		name    string
		pl      events.Placement
		ok      bool
		arrived string
		want    string
	}{
		{"moving away, arrived with an earlier move", events.Placement{Host: "b", FromHost: "a", MigrationID: "m-3", Deadline: later}, true, "m-2", "m-3"},
		{"moving away, arrived with none", events.Placement{Host: "b", FromHost: "a", MigrationID: "m-3", Deadline: later}, true, "", "m-3"},
		{"moving away, deadline passed", events.Placement{Host: "b", FromHost: "a", MigrationID: "m-3", Deadline: earlier}, true, "m-2", "m-3"},
		{"left during its own move", events.Placement{Host: "a", FromHost: "c", MigrationID: "m-2", Deadline: later}, true, "m-2", "m-2"},
		{"left after its move ended", events.Placement{Host: "a", FromHost: "c", MigrationID: "m-2", Deadline: earlier}, true, "m-2", ""},
		{"left, never moved", events.Placement{Host: "a"}, true, "", ""},
		{"placement moved on without self", events.Placement{Host: "c", FromHost: "b", MigrationID: "m-4", Deadline: later}, true, "m-2", ""},
		{"placement gone", events.Placement{}, true, "m-2", ""},
		{"placement unreadable", events.Placement{}, false, "m-2", "m-2"},
	} {
		if got := DetachMigration(tc.pl, tc.ok, "a", tc.arrived, now); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
