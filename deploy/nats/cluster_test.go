package nats_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
)

// TestClusterConf runs three nodes from cluster.conf (as the compose stack
// does, with the node name from the environment), on loopback ports instead
// of the compose hostnames, then bootstraps the layout with 3 replicas as
// ops and keeps writing placements with one node down.
func TestClusterConf(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster: skipped with -short")
	}
	ports := []int{testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)}
	var servers []*server.Server
	for i := range 3 {
		name := fmt.Sprintf("nats-%d", i+1)
		t.Setenv("FERRY_NATS_SERVER_NAME", name)
		opts := loadConfig(t, "cluster.conf")
		// What the file says.
		if opts.ServerName != name || opts.Cluster.Name != "ferry" || !opts.Cluster.NoAdvertise {
			t.Fatalf("%s: server %q cluster %q no_advertise %v", name, opts.ServerName, opts.Cluster.Name, opts.Cluster.NoAdvertise)
		}
		if opts.Cluster.Username != "route" || opts.Cluster.Password != os.Getenv("FERRY_NATS_ROUTE_PASSWORD") {
			t.Fatalf("%s: routes are not authenticated (user %q)", name, opts.Cluster.Username)
		}
		if len(opts.Routes) != 3 {
			t.Fatalf("%s: %d routes, want 3", name, len(opts.Routes))
		}
		// Loopback instead of the compose hostnames, same credentials.
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", ports[i]
		for j, r := range opts.Routes {
			if want := fmt.Sprintf("nats-%d:6222", j+1); r.Host != want {
				t.Fatalf("%s: route %d is %s, want %s", name, j, r.Host, want)
			}
			opts.Routes[j] = &url.URL{Scheme: r.Scheme, User: r.User, Host: fmt.Sprintf("127.0.0.1:%d", ports[j])}
		}
		servers = append(servers, start(t, opts))
	}
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, s := range servers {
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == 3 {
				return nil
			}
		}
		return errors.New("no meta leader with 3 peers")
	})
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	all := strings.Join(urls, ",")

	ops := dial(t, all, "ops")
	testutil.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return bus.Bootstrap(ctx, ops.js, 3)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range []string{bus.StreamEvents, bus.StreamCommands, "KV_" + bus.BucketPlacements} {
		st, err := ops.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if st.CachedInfo().Config.Replicas != 3 {
			t.Fatalf("%s has %d replicas", name, st.CachedInfo().Config.Replicas)
		}
	}

	// placement writes through node 1. Stop the placements bucket's leader
	// (unless it is node 1, then node 2): two of three replicas remain.
	placement := dial(t, urls[0], "placement")
	placements := kv(t, placement, bus.BucketPlacements)
	rev, err := placements.Create(ctx, events.PlacementKey("cam-1"), placementRecord("cam-1", "ingest-1"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := ops.js.Stream(ctx, "KV_"+bus.BucketPlacements)
	if err != nil {
		t.Fatal(err)
	}
	leader := st.CachedInfo().Cluster.Leader
	victim := 1
	if leader == "nats-3" {
		victim = 2
	}
	stopped := time.Now()
	servers[victim].Shutdown()
	servers[victim].WaitForShutdown()
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		defer wcancel()
		r, err := placements.Update(wctx, events.PlacementKey("cam-1"), placementRecord("cam-1", "ingest-2"), rev)
		if err != nil {
			return err
		}
		rev = r
		return nil
	})
	t.Logf("placements leader %s; stopped nats-%d; compare-and-set write accepted %v later",
		leader, victim+1, time.Since(stopped).Round(time.Millisecond))
	e, err := placements.Get(ctx, events.PlacementKey("cam-1"))
	if err != nil || e.Revision() != rev {
		t.Fatalf("read back: %v at %v, want revision %d", err, e, rev)
	}
	if _, err := placements.Update(ctx, events.PlacementKey("cam-1"), placementRecord("cam-1", "ingest-3"), rev-1); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("stale compare-and-set: %v, want ErrKeyExists", err)
	}
}
