package ferryctl

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ferrystream/ferry/libs/natscreds"
)

func cmdCreds(e *env) error {
	if len(e.args) > 0 && (e.args[0] == "-h" || e.args[0] == "--help" || e.args[0] == "-help") {
		fmt.Fprintln(e.stdout, "Usage:\n  ferryctl creds init|add|revoke|update|list --dir DIR ...\n\nMints, adds, revokes and updates the fleet's NATS credentials (JWT, one\nidentity per service, host and agent). ferryctl creds <subcommand> -h for each;\nsee deploy/README.md.")
		return nil
	}
	if len(e.args) == 0 || strings.HasPrefix(e.args[0], "-") {
		return usageErr("creds: missing subcommand (init, add, revoke, update, list); see ferryctl creds -h or ferryctl help creds")
	}
	sub, args := e.args[0], e.args[1:]
	const common = `Mints the NATS credentials of a fleet with decentralized JWT authentication:
an operator, a system account, the FERRY account (JetStream) with a scoped
signing key per role (ops, monitor, ingest, healthpredict, placement, notifier,
agent), and one user per service, per ingest host and per publisher agent. A
host's permissions are a template of its role naming the host, so ingest-1's
credential can publish only ingest-1's heartbeat, telemetry, registry record
and drain, and read only ingest-1's commands.

The directory holds keys/ (seeds: keep them offline), users/<name>.creds (give
each process only its own, with FERRY_NATS_CREDS and
FERRY_NATS_INBOX_PREFIX=_INBOX_<name>), nats/operator.conf (include it in every
nats-server's configuration) and fleet.json (public keys, revocations).
update re-signs the account with this version's role permissions (after an
upgrade whose roles changed; user credentials stay valid). After add, revoke or
update, copy nats/operator.conf to every server and reload it
(send it SIGHUP, e.g. docker kill -s HUP ferry-nats-1): a revoked user's connections
are closed.`
	var (
		fsName, synopsis string
	)
	switch sub {
	case "init":
		fsName, synopsis = "creds init", "ferryctl creds init --dir DIR --hosts H1,H2,... [--agents C1,...] [--mode 0644]"
	case "add":
		fsName, synopsis = "creds add", "ferryctl creds add --dir DIR (--host H | --agent C)"
	case "revoke":
		fsName, synopsis = "creds revoke", "ferryctl creds revoke --dir DIR <name>"
	case "update":
		fsName, synopsis = "creds update", "ferryctl creds update --dir DIR"
	case "list":
		fsName, synopsis = "creds list", "ferryctl creds list --dir DIR"
	default:
		return usageErr("creds: unknown subcommand %q (init, add, revoke, update, list)", sub)
	}
	fs := e.newFlags(fsName, synopsis, common+`

Examples:
  ferryctl creds init --dir ./creds --hosts ingest-1,ingest-2,edge-1 --agents cam-lobby
  ferryctl creds add --dir ./creds --host ingest-4
  ferryctl creds revoke --dir ./creds ingest-2      # then add it again to rotate`, false)
	dir := fs.String("dir", "", "the fleet's credentials directory (required)")
	hosts := fs.String("hosts", "", "init: comma-separated ingest host ids (origins and edges)")
	agents := fs.String("agents", "", "init: comma-separated publisher agent client ids")
	host := fs.String("host", "", "add: an ingest host id")
	agent := fs.String("agent", "", "add: a publisher agent's client id")
	mode := fs.String("mode", "0600", "file mode of the .creds files (0644 when containers read them as another uid)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *dir == "" {
		return usageErr("--dir is required")
	}
	var m os.FileMode
	if _, err := fmt.Sscanf(*mode, "%o", &m); err != nil || m&^0o777 != 0 || m&0o400 == 0 {
		return usageErr("--mode: %q is not a file mode like 0600 or 0644", *mode)
	}
	switch sub {
	case "init":
		if err := positional(pos, 0, ""); err != nil {
			return err
		}
		hs := splitList(*hosts)
		if len(hs) == 0 {
			return usageErr("--hosts is required (comma-separated host ids)")
		}
		d, err := natscreds.Init(*dir, hs, splitList(*agents), m)
		if err != nil {
			return err
		}
		printFleet(e.stdout, d)
		return nil
	case "add":
		if err := positional(pos, 0, ""); err != nil {
			return err
		}
		n, r := *host, natscreds.RoleIngest
		switch {
		case *host != "" && *agent != "", *host == "" && *agent == "":
			return usageErr("add: give exactly one of --host or --agent")
		case *agent != "":
			n, r = *agent, natscreds.RoleAgent
		}
		d, err := natscreds.Load(*dir, m)
		if err != nil {
			return err
		}
		if err := d.Add(n, r); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "added %s (%s): %s\nnext: copy %s to every NATS server and reload it\n", n, r, d.CredsPath(n), d.ConfPath())
		return nil
	case "revoke":
		if err := positional(pos, 1, "user name (ferryctl creds revoke --dir DIR <name>)"); err != nil {
			return err
		}
		d, err := natscreds.Load(*dir, m)
		if err != nil {
			return err
		}
		if err := d.Revoke(pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "revoked %s\nnext: copy %s to every NATS server and reload it (SIGHUP: docker kill -s HUP ferry-nats-N); its connections are closed\n", pos[0], d.ConfPath())
		return nil
	case "update":
		if err := positional(pos, 0, ""); err != nil {
			return err
		}
		d, err := natscreds.Load(*dir, m)
		if err != nil {
			return err
		}
		if err := d.Update(); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "updated %s with this version's role permissions\nnext: copy it to every NATS server and reload it\n", d.ConfPath())
		return nil
	default: // list
		if err := positional(pos, 0, ""); err != nil {
			return err
		}
		d, err := natscreds.Load(*dir, m)
		if err != nil {
			return err
		}
		printFleet(e.stdout, d)
		return nil
	}
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func printFleet(w io.Writer, d *natscreds.Dir) {
	fmt.Fprintf(w, "fleet in %s (operator %s, account %s)\n", d.Path, d.Fleet.Operator, d.Fleet.Account)
	tw := newTable(w, "USER", "ROLE", "STATE", "CREDENTIAL")
	for _, u := range d.Fleet.Users {
		state, path := "valid", d.CredsPath(u.Name)
		if u.Revoked {
			state, path = "revoked", "-"
		}
		tw.row(u.Name, string(u.Role), state, path)
	}
	tw.flush()
	fmt.Fprintf(w, "servers: include %s\n", d.ConfPath())
}
