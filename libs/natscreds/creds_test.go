package natscreds

import (
	"os"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/testutil"
)

// TestRevokeKeepsTheOperator: a revocation (or an update) rewrites the
// accounts in operator.conf but leaves the operator JWT byte for byte, even
// a second or more later (a JWT carries its issue time): nats-server cannot
// reload a changed operator, so a changed one made the reload that applies
// the revocation fail.
func TestRevokeKeepsTheOperator(t *testing.T) {
	d, err := Init(t.TempDir(), []string{"ingest-1", "ingest-2"}, []string{"agent-1"}, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	operator := func() string {
		t.Helper()
		b, err := os.ReadFile(d.ConfPath())
		if err != nil {
			t.Fatal(err)
		}
		m := operatorLine.FindSubmatch(b)
		if m == nil {
			t.Fatalf("no operator line in %s:\n%s", d.ConfPath(), b)
		}
		return string(m[1])
	}
	before, conf := operator(), readFile(t, d.ConfPath())
	// Wait for the clock's second to change, so a re-signed JWT would differ.
	start := time.Now().Unix()
	testutil.CheckFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		if time.Now().Unix() == start {
			return os.ErrDeadlineExceeded
		}
		return nil
	})
	if err := d.Revoke("ingest-2"); err != nil {
		t.Fatal(err)
	}
	if after := operator(); after != before {
		t.Fatalf("operator JWT re-signed by revoke:\nbefore %s\nafter  %s", before, after)
	}
	if readFile(t, d.ConfPath()) == conf {
		t.Fatal("operator.conf unchanged by a revocation: the account's revocation list is missing")
	}
	if err := d.Update(); err != nil {
		t.Fatal(err)
	}
	if after := operator(); after != before {
		t.Fatal("operator JWT re-signed by update")
	}
	// A reloaded directory keeps it too.
	l, err := Load(d.Path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Add("ingest-3", RoleIngest); err != nil {
		t.Fatal(err)
	}
	if after := operator(); after != before {
		t.Fatal("operator JWT re-signed by add after load")
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
