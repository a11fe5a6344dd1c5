package placement

import (
	"os"
	"regexp"
	"testing"
	"time"
)

// TestDocsTokenLifetime checks that the `ferryctl place` example in
// docs/ferryctl.md shows the publish token lifetime placement really gives
// (PLACEMENT_TOKEN_TTL's default), so the docs and the output agree.
func TestDocsTokenLifetime(t *testing.T) {
	b, err := os.ReadFile("../../docs/ferryctl.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\nexpires  [0-9: -]+ \(in (\d+m\d\ds)[;)]`).FindSubmatch(b)
	if m == nil {
		t.Fatal("docs/ferryctl.md: no expires line in the place example")
	}
	d, err := time.ParseDuration(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	ttl := DefaultConfig().TokenTTL
	if d > ttl || d < ttl-time.Minute {
		t.Errorf("docs/ferryctl.md shows a token expiring in %v; placement's lifetime is %v", d, ttl)
	}
}
