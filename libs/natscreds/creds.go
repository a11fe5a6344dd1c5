// Package natscreds mints the NATS credentials of a Ferry fleet with NATS's
// decentralized JWT authentication: one operator, a system account, one
// account (FERRY) with JetStream, a scoped signing key per role whose
// permission template names the user ("{{name()}}"), and one user per
// service, per ingest host and per publisher agent.
//
// A fleet lives in a directory:
//
//	keys/     the seeds (operator, accounts, role signing keys), 0600: keep offline
//	users/    <name>.creds, one per user (JWT + seed), 0600 unless asked otherwise
//	nats/     operator.conf, to include in every nats-server's configuration
//	fleet.json  who is who (public keys only), and who is revoked
//
// Adding a host mints one user with the ingest key; revoking one adds its
// public key to the account's revocations and rewrites operator.conf, which
// every server picks up on a configuration reload.
package natscreds

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// ErrExists is returned by Init when the directory already holds a fleet.
var ErrExists = errors.New("credentials already exist")

// validName is what a host id or a client id may be: it becomes a subject
// token and part of consumer names.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// User is one credential of the fleet.
type User struct {
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	PublicKey string    `json:"public_key"`
	IssuedAt  time.Time `json:"issued_at"`
	Revoked   bool      `json:"revoked,omitempty"`
}

// Fleet is the public part of a fleet's credentials (fleet.json).
type Fleet struct {
	Operator string          `json:"operator"`
	System   string          `json:"system_account"`
	Account  string          `json:"account"`
	Roles    map[Role]string `json:"role_signing_keys"`
	Users    []User          `json:"users"`
	// Revoked maps a revoked user's public key to when it was revoked.
	Revoked map[string]int64 `json:"revoked,omitempty"`
}

// Dir is a fleet's credentials directory, loaded.
type Dir struct {
	Path  string
	Fleet Fleet
	// OutputMode is the mode of the .creds files written (0600 by default;
	// 0644 when the files are mounted into containers running as another uid).
	OutputMode os.FileMode
	keys       map[string]nkeys.KeyPair // "operator", "system", "account", "role-<r>"
}

// Init creates a fleet in path with a user per service role, per host and
// per agent.
func Init(path string, hosts, agents []string, mode os.FileMode) (*Dir, error) {
	if _, err := os.Stat(filepath.Join(path, "fleet.json")); err == nil {
		return nil, fmt.Errorf("%s: %w (use add or revoke)", path, ErrExists)
	}
	d := &Dir{Path: path, OutputMode: mode, keys: map[string]nkeys.KeyPair{}}
	mk := func(k string, f func() (nkeys.KeyPair, error)) (string, error) {
		kp, err := f()
		if err != nil {
			return "", err
		}
		d.keys[k] = kp
		return kp.PublicKey()
	}
	var err error
	if d.Fleet.Operator, err = mk("operator", nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if d.Fleet.System, err = mk("system", nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if d.Fleet.Account, err = mk("account", nkeys.CreateAccount); err != nil {
		return nil, err
	}
	d.Fleet.Roles = map[Role]string{}
	for _, r := range Roles {
		if d.Fleet.Roles[r], err = mk("role-"+string(r), nkeys.CreateAccount); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(path, "keys"), 0o700); err != nil {
		return nil, err
	}
	if err := d.writeKeys(); err != nil {
		return nil, err
	}
	for _, r := range serviceRoles {
		if err := d.add(string(r), r); err != nil {
			return nil, err
		}
	}
	for _, h := range hosts {
		if err := d.add(h, RoleIngest); err != nil {
			return nil, err
		}
	}
	for _, a := range agents {
		if err := d.add(a, RoleAgent); err != nil {
			return nil, err
		}
	}
	return d, d.save()
}

// Load reads a fleet from path.
func Load(path string, mode os.FileMode) (*Dir, error) {
	b, err := os.ReadFile(filepath.Join(path, "fleet.json"))
	if err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	d := &Dir{Path: path, OutputMode: mode, keys: map[string]nkeys.KeyPair{}}
	if err := json.Unmarshal(b, &d.Fleet); err != nil {
		return nil, fmt.Errorf("load credentials: %s: %w", filepath.Join(path, "fleet.json"), err)
	}
	names := []string{"operator", "system", "account"}
	for _, r := range Roles {
		names = append(names, "role-"+string(r))
	}
	for _, k := range names {
		seed, err := os.ReadFile(filepath.Join(path, "keys", k+".nk"))
		if err != nil {
			return nil, fmt.Errorf("load credentials: %w", err)
		}
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
		if err != nil {
			return nil, fmt.Errorf("load credentials: keys/%s.nk: %w", k, err)
		}
		d.keys[k] = kp
	}
	return d, nil
}

// Add mints a user for a host (RoleIngest) or an agent (RoleAgent).
func (d *Dir) Add(n string, r Role) error {
	if r != RoleIngest && r != RoleAgent {
		return fmt.Errorf("add %s: only ingest hosts and agents are added; service users exist from init", n)
	}
	if err := d.add(n, r); err != nil {
		return err
	}
	return d.save()
}

// Revoke revokes every credential issued to the user named n: its public
// keys join the account's revocation list (servers refuse them after a
// reload of operator.conf, and drop their connections).
func (d *Dir) Revoke(n string) error {
	found := false
	if d.Fleet.Revoked == nil {
		d.Fleet.Revoked = map[string]int64{}
	}
	for i, u := range d.Fleet.Users {
		if u.Name == n && !u.Revoked {
			d.Fleet.Users[i].Revoked = true
			d.Fleet.Revoked[u.PublicKey] = time.Now().Unix()
			found = true
		}
	}
	if !found {
		return fmt.Errorf("revoke %s: no such user with a valid credential", n)
	}
	if err := os.Remove(d.CredsPath(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return d.save()
}

// Update re-signs the account with this version's role templates and
// rewrites operator.conf: every user's permissions follow (they come from
// the role's signing key, not from the user's JWT), so a new Ferry version
// whose roles changed needs no new user credentials, only a server reload.
func (d *Dir) Update() error { return d.save() }

// CredsPath is the .creds file of the user named n.
func (d *Dir) CredsPath(n string) string { return filepath.Join(d.Path, "users", n+".creds") }

// ConfPath is the server configuration fragment to include.
func (d *Dir) ConfPath() string { return filepath.Join(d.Path, "nats", "operator.conf") }

func (d *Dir) add(n string, r Role) error {
	if !validName.MatchString(n) {
		return fmt.Errorf("add %q: a name is 1-64 letters, digits, '-' or '_', starting with a letter or digit", n)
	}
	for _, u := range d.Fleet.Users {
		if u.Name == n && !u.Revoked {
			if u.Role != r {
				return fmt.Errorf("add %s: already a %s user", n, u.Role)
			}
			return fmt.Errorf("add %s: %w (revoke it first to rotate)", n, ErrExists)
		}
	}
	ukp, err := nkeys.CreateUser()
	if err != nil {
		return err
	}
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = n
	uc.IssuerAccount = d.Fleet.Account
	uc.SetScoped(true)
	tok, err := uc.Encode(d.keys["role-"+string(r)])
	if err != nil {
		return fmt.Errorf("add %s: %w", n, err)
	}
	seed, _ := ukp.Seed()
	cf, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(d.Path, "users"), 0o755); err != nil {
		return err
	}
	mode := d.OutputMode
	if mode == 0 {
		mode = 0o600
	}
	if err := os.WriteFile(d.CredsPath(n), cf, mode); err != nil {
		return err
	}
	if err := os.Chmod(d.CredsPath(n), mode); err != nil {
		return err
	}
	d.Fleet.Users = append(d.Fleet.Users, User{Name: n, Role: r, PublicKey: upub, IssuedAt: time.Now().UTC()})
	return nil
}

func (d *Dir) writeKeys() error {
	for k, kp := range d.keys {
		seed, err := kp.Seed()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d.Path, "keys", k+".nk"), append(seed, '\n'), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// accountJWT signs the FERRY account: JetStream without limits, a scoped
// signing key per role with the role's permission template, revocations.
func (d *Dir) accountJWT() (string, error) {
	ac := jwt.NewAccountClaims(d.Fleet.Account)
	ac.Name = "FERRY"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit,
		Streams: jwt.NoLimit, Consumer: jwt.NoLimit, MaxAckPending: jwt.NoLimit,
		MemoryMaxStreamBytes: jwt.NoLimit, DiskMaxStreamBytes: jwt.NoLimit}
	for _, r := range Roles {
		perms, err := Permissions(r)
		if err != nil {
			return "", err
		}
		s := jwt.NewUserScope()
		s.Key = d.Fleet.Roles[r]
		s.Role = string(r)
		s.Template.Permissions = perms
		ac.SigningKeys.AddScopedSigner(s)
	}
	ac.Revocations = jwt.RevocationList{}
	for pub, at := range d.Fleet.Revoked {
		ac.Revocations.Revoke(pub, time.Unix(at, 0).Add(time.Second))
	}
	return ac.Encode(d.keys["operator"])
}

// operatorLine is the operator JWT's line in operator.conf (written with %q).
var operatorLine = regexp.MustCompile(`(?m)^operator: ("[^"\n]*")$`)

// operatorJWT returns the operator JWT already in operator.conf when it is
// this fleet's (signature, subject and system account checked), else a new
// one. A save must leave it byte for byte: a JWT's issue time is part of it,
// and a running nats-server refuses to reload a changed operator
// ("config reload not supported for TrustedOperators"), so re-signing it on
// every revoke made the reload that applies the revocation fail.
func (d *Dir) operatorJWT() (string, error) {
	if b, err := os.ReadFile(d.ConfPath()); err == nil {
		if m := operatorLine.FindSubmatch(b); m != nil {
			if tok, err := strconv.Unquote(string(m[1])); err == nil {
				if c, err := jwt.DecodeOperatorClaims(tok); err == nil && c.Subject == d.Fleet.Operator &&
					c.SystemAccount == d.Fleet.System {
					return tok, nil
				}
			}
		}
	}
	op := jwt.NewOperatorClaims(d.Fleet.Operator)
	op.Name = "ferry"
	op.SystemAccount = d.Fleet.System
	return op.Encode(d.keys["operator"])
}

func (d *Dir) save() error {
	opJWT, err := d.operatorJWT()
	if err != nil {
		return err
	}
	sys := jwt.NewAccountClaims(d.Fleet.System)
	sys.Name = "SYS"
	sysJWT, err := sys.Encode(d.keys["operator"])
	if err != nil {
		return err
	}
	accJWT, err := d.accountJWT()
	if err != nil {
		return err
	}
	conf := fmt.Sprintf(`# Generated by ferryctl creds: Ferry's operator, accounts and their users'
# signing keys (public parts only). Include it in every nats-server's config;
# after a revocation, copy it to every server and send each SIGHUP (reload).
operator: %q
system_account: %q
resolver: MEMORY
resolver_preload: {
  %s: %q
  %s: %q
}
`, opJWT, d.Fleet.System, d.Fleet.System, sysJWT, d.Fleet.Account, accJWT)
	if err := os.MkdirAll(filepath.Join(d.Path, "nats"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(d.ConfPath(), []byte(conf), 0o644); err != nil {
		return err
	}
	slices.SortStableFunc(d.Fleet.Users, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.MarshalIndent(d.Fleet, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.Path, "fleet.json"), append(b, '\n'), 0o644)
}
