package ferryctl_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
)

// TestCreds mints a fleet, adds and revokes a host, and checks what the
// files say: each host's user is signed by the ingest role's key and named
// after the host, the revocation is in the account, the seeds stay private.
func TestCreds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "creds")
	r := mustCtl(t, "", "creds", "init", "--dir", dir, "--hosts", "ingest-1,ingest-2,edge-1", "--agents", "cam-1")
	for _, want := range []string{"ingest-1 ingest valid", "edge-1 ingest valid", "cam-1 agent valid", "ops ops valid", "placement placement valid"} {
		if !hasRow(r.stdout, want) {
			t.Errorf("init output lacks the row %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "servers: include "+filepath.Join(dir, "nats", "operator.conf")) {
		t.Errorf("init output does not say what servers include:\n%s", r.stdout)
	}
	claims := func(name string) *jwt.UserClaims {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "users", name+".creds"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.ParseDecoratedJWT(b)
		if err != nil {
			t.Fatal(err)
		}
		uc, err := jwt.DecodeUserClaims(tok)
		if err != nil {
			t.Fatal(err)
		}
		return uc
	}
	h1, h2 := claims("ingest-1"), claims("ingest-2")
	if h1.Name != "ingest-1" || h1.Issuer != h2.Issuer || h1.Issuer == claims("placement").Issuer {
		t.Errorf("ingest-1 %q issued by %s, ingest-2 by %s, placement by %s: want the hosts named and signed by one ingest key that is not placement's",
			h1.Name, h1.Issuer, h2.Issuer, claims("placement").Issuer)
	}
	if fi, err := os.Stat(filepath.Join(dir, "keys", "operator.nk")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("operator seed: %v mode %v, want 0600", err, fi.Mode().Perm())
	}

	mustCtl(t, "", "creds", "add", "--dir", dir, "--host", "ingest-3")
	if claims("ingest-3").Issuer != h1.Issuer {
		t.Error("an added host is not signed by the ingest key")
	}
	r = mustCtl(t, "", "creds", "revoke", "--dir", dir, "ingest-2")
	if !strings.Contains(r.stdout, "revoked ingest-2") {
		t.Errorf("revoke output: %s", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, "users", "ingest-2.creds")); !os.IsNotExist(err) {
		t.Errorf("ingest-2.creds still there after revoke: %v", err)
	}
	conf, err := os.ReadFile(filepath.Join(dir, "nats", "operator.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !hasRow(ctlList(t, dir), "ingest-2 ingest revoked") {
		t.Errorf("list does not show ingest-2 revoked:\n%s", ctlList(t, dir))
	}
	if !revokedIn(t, string(conf), h2.Subject) {
		t.Errorf("operator.conf: the account does not revoke ingest-2's key %s", h2.Subject)
	}

	// update re-signs the account with the current role templates: a stale
	// operator.conf (an older version's roles) is replaced.
	if err := os.WriteFile(filepath.Join(dir, "nats", "operator.conf"), []byte("# stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCtl(t, "", "creds", "update", "--dir", dir)
	conf, err = os.ReadFile(filepath.Join(dir, "nats", "operator.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !revokedIn(t, string(conf), h2.Subject) || !strings.Contains(ingestTemplate(t, string(conf)), "ferry.hb.ingest.{{name()}}") {
		t.Errorf("update did not re-sign the account with the ingest template and the revocation:\n%s", conf)
	}

	if r := mustCtl(t, "", "creds", "-h"); !strings.Contains(r.stdout, "ferryctl creds init|add|revoke|update|list") {
		t.Errorf("creds -h: %q", r.stdout)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"creds"}, "creds: missing subcommand"},
		{[]string{"creds", "rotate", "--dir", dir}, `unknown subcommand "rotate"`},
		{[]string{"creds", "init", "--hosts", "a"}, "--dir is required"},
		{[]string{"creds", "init", "--dir", dir, "--hosts", "a"}, "credentials already exist"},
		{[]string{"creds", "init", "--dir", filepath.Join(t.TempDir(), "x")}, "--hosts is required"},
		{[]string{"creds", "init", "--dir", filepath.Join(t.TempDir(), "y"), "--hosts", "ingest-1,bad.host"}, `add "bad.host": a name is`},
		{[]string{"creds", "add", "--dir", dir}, "exactly one of --host or --agent"},
		{[]string{"creds", "add", "--dir", dir, "--host", "ingest-1"}, "credentials already exist (revoke it first to rotate)"},
		{[]string{"creds", "add", "--dir", dir, "--agent", "ingest-1"}, "already a ingest user"},
		{[]string{"creds", "revoke", "--dir", dir, "nobody"}, "no such user"},
		{[]string{"creds", "list", "--dir", dir, "--mode", "9"}, `--mode: "9" is not a file mode`},
		{[]string{"creds", "list", "--dir", filepath.Join(t.TempDir(), "none")}, "load credentials"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := ctl(t, "", tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want a failure saying %q", r.code, r.stderr, tc.want)
			}
		})
	}
}

func ctlList(t *testing.T, dir string) string {
	t.Helper()
	return mustCtl(t, "", "creds", "list", "--dir", dir).stdout
}

// ingestTemplate returns the publish permissions of the ingest role's
// signing key in the FERRY account of conf, joined by spaces.
func ingestTemplate(t *testing.T, conf string) string {
	t.Helper()
	for _, line := range strings.Split(conf, "\n") {
		_, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok || !strings.HasPrefix(v, `"eyJ`) {
			continue
		}
		ac, err := jwt.DecodeAccountClaims(strings.Trim(v, `"`))
		if err != nil || ac.Name != "FERRY" {
			continue
		}
		for _, k := range ac.SigningKeys.Keys() {
			if sc, ok := ac.SigningKeys.GetScope(k); ok {
				if us, ok := sc.(*jwt.UserScope); ok && us.Role == "ingest" {
					return strings.Join(us.Template.Pub.Allow, " ")
				}
			}
		}
	}
	return ""
}

// revokedIn reports whether the FERRY account JWT preloaded in conf revokes key.
func revokedIn(t *testing.T, conf, key string) bool {
	t.Helper()
	for _, line := range strings.Split(conf, "\n") {
		_, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok || !strings.HasPrefix(v, `"eyJ`) {
			continue
		}
		ac, err := jwt.DecodeAccountClaims(strings.Trim(v, `"`))
		if err != nil || ac.Name != "FERRY" {
			continue
		}
		_, revoked := ac.Revocations[key]
		return revoked
	}
	t.Fatal("no FERRY account in operator.conf")
	return false
}

// hasRow reports whether a line of out starts with the space-separated fields of row.
func hasRow(out, row string) bool {
	want := strings.Fields(row)
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= len(want) && strings.Join(f[:len(want)], " ") == row {
			return true
		}
	}
	return false
}
