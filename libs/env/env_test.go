package env

import (
	"testing"
	"time"
)

func TestReader(t *testing.T) {
	vars := map[string]string{"S": "x", "I": "7", "D": "2s", "B": "true", "BAD_I": "seven", "BAD_D": "soon", "BAD_B": "maybe"}
	r := New(func(k string) string { return vars[k] })
	s, i, d, b := "def", 1, time.Second, false
	r.Str(&s, "S")
	r.Int(&i, "I")
	r.Dur(&d, "D")
	r.Bool(&b, "B")
	keep := "keep"
	r.Str(&keep, "UNSET")
	if s != "x" || i != 7 || d != 2*time.Second || !b || keep != "keep" || r.Err() != nil {
		t.Fatalf("got %q %d %v %v %q %v", s, i, d, b, keep, r.Err())
	}
	r.Int(&i, "BAD_I")
	r.Dur(&d, "BAD_D")
	r.Bool(&b, "BAD_B")
	want := "BAD_I: \"seven\" is not an integer\nBAD_D: \"soon\" is not a duration (e.g. 10s)\nBAD_B: \"maybe\" is not a boolean"
	if err := r.Err(); err == nil || err.Error() != want || i != 7 {
		t.Fatalf("err = %v, i = %d", err, i)
	}
}
