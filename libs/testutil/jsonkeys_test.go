package testutil

import (
	"slices"
	"testing"
)

func TestDuplicateKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line string
		want []string
	}{
		{`{"host":"a","x":1}`, nil},
		{`{"host":"a","x":{"host":"b"},"host":"a"}`, []string{"host"}},
		{`{"a":1,"a":2,"a":3}`, []string{"a", "a"}},
	} {
		got, err := DuplicateKeys(tc.line)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.line, got, err, tc.want)
		}
	}
	if _, err := DuplicateKeys(`[1]`); err == nil {
		t.Error("an array is not refused")
	}
}
