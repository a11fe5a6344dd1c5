package clock

import (
	"testing"
	"time"
)

func TestFake(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		instant bool
		advance time.Duration
		fired   bool
		now     time.Duration // since start, after the wait
	}{
		{"instant fires and moves the time", true, 0, true, time.Second},
		{"not due yet", false, 999 * time.Millisecond, false, 999 * time.Millisecond},
		{"due", false, time.Second, true, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := NewFake(start, tc.instant)
			ch := c.After(time.Second)
			if tc.advance > 0 {
				c.Advance(tc.advance)
			}
			select {
			case <-ch:
				if !tc.fired {
					t.Fatal("fired early")
				}
			default:
				if tc.fired {
					t.Fatal("did not fire")
				}
			}
			if got := c.Now().Sub(start); got != tc.now {
				t.Fatalf("now = start+%s, want +%s", got, tc.now)
			}
			if w := c.Waits(); len(w) != 1 || w[0] != time.Second {
				t.Fatalf("waits = %v", w)
			}
		})
	}
}

func TestOr(t *testing.T) {
	t.Parallel()
	if Or(nil) != Real {
		t.Fatal("Or(nil) is not Real")
	}
	f := NewFake(time.Time{}, true)
	if Or(f) != Clock(f) {
		t.Fatal("Or(f) is not f")
	}
}
