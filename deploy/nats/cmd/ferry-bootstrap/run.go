package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/obs"
)

// ErrNotReplicated is returned when a stream lacks a leader or a replica.
var ErrNotReplicated = errors.New("stream not fully replicated")

// Summary is the JSON line printed on success.
type Summary struct {
	Replicas int `json:"replicas"`
	// Streams maps each stream (buckets as KV_<bucket>) to its leader.
	Streams map[string]string `json:"streams"`
	// Peers are the servers holding the streams.
	Peers   []string `json:"peers"`
	TookMS  int64    `json:"took_ms"`
	Retries int      `json:"retries"`
}

// Run bootstraps the layout and prints a Summary as one JSON line.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ferry-bootstrap", flag.ContinueOnError)
	fs.SetOutput(stdout)
	cfg := bus.ConfigFromEnv(getenv, bus.Config{Name: "ferry-bootstrap"})
	fs.StringVar(&cfg.URL, "nats", cfg.URL, "NATS URL(s), comma-separated (FERRY_NATS_URL)")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "stream and bucket replicas (FERRY_NATS_REPLICAS)")
	wait := fs.Duration("timeout", envDuration(getenv, "FERRY_BOOTSTRAP_TIMEOUT", 90*time.Second),
		"how long to keep trying while the cluster forms (FERRY_BOOTSTRAP_TIMEOUT)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := obs.NewLogger(os.Stderr, getenv, "bootstrap")
	opts, err := cfg.Options(log)
	if err != nil {
		return err
	}
	if p := getenv("FERRY_NATS_INBOX_PREFIX"); p != "" {
		opts = append(opts, nats.CustomInboxPrefix(p))
	}
	opts = append(opts, nats.RetryOnFailedConnect(true), nats.Timeout(3*time.Second))
	ctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	start := time.Now()
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("%w at %s: %v", bus.ErrUnreachable, cfg.URL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	sum := Summary{Replicas: cfg.Replicas, Streams: map[string]string{}}
	for {
		err = attempt(ctx, js, cfg.Replicas, &sum)
		if err == nil {
			break
		}
		log.Info().Err(err).Int("retry", sum.Retries).Msg("cluster not ready yet")
		sum.Retries++
		select {
		case <-ctx.Done():
			return fmt.Errorf("bootstrap with %d replicas: %w (last error: %v)", cfg.Replicas, ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
	sum.TookMS = time.Since(start).Milliseconds()
	return json.NewEncoder(stdout).Encode(sum)
}

func attempt(ctx context.Context, js jetstream.JetStream, replicas int, sum *Summary) error {
	actx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := bus.Bootstrap(actx, js, replicas); err != nil {
		return err
	}
	names := []string{}
	for _, s := range bus.Streams(replicas) {
		names = append(names, s.Name)
	}
	for _, b := range bus.Buckets(replicas) {
		names = append(names, "KV_"+b.Bucket)
	}
	peers := map[string]bool{}
	for _, n := range names {
		st, err := js.Stream(actx, n)
		if err != nil {
			return fmt.Errorf("stream %s: %w", n, err)
		}
		ci := st.CachedInfo().Cluster
		if replicas == 1 {
			sum.Streams[n] = "single"
			if ci != nil && ci.Leader != "" {
				sum.Streams[n] = ci.Leader
			}
			continue
		}
		if ci == nil || ci.Leader == "" {
			return fmt.Errorf("%w: %s has no leader", ErrNotReplicated, n)
		}
		current := 1
		peers[ci.Leader] = true
		for _, r := range ci.Replicas {
			if r.Current && !r.Offline {
				current++
				peers[r.Name] = true
			}
		}
		if current < replicas {
			return fmt.Errorf("%w: %s has %d of %d replicas current", ErrNotReplicated, n, current, replicas)
		}
		sum.Streams[n] = ci.Leader
	}
	sum.Peers = sum.Peers[:0]
	for p := range peers {
		sum.Peers = append(sum.Peers, p)
	}
	return nil
}

func envDuration(getenv func(string) string, key string, def time.Duration) time.Duration {
	if v := getenv(key); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}
