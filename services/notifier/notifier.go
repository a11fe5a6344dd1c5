// Package notifier is Ferry's notifier service: it consumes `reassigned`,
// tells the stream's publisher to move over every channel the publisher
// declared at placement (a JetStream command on ferry.cmd.client.<client>.notice,
// a signed webhook POST, a server-sent-events stream), retries until the
// publisher acks or the deadline passes, and emits `delivered`, `acked` or
// `failed`. A publisher that never declared it can move gets `failed` with
// reason "not-capable" at once, which starts placement's fallback.
//
// Configuration: defaults, then NOTIFIER_* and FERRY_* environment variables,
// then flags (see Load). Run is what cmd/ferry-notifier calls.
package notifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/group"
	"github.com/ferrystream/ferry/libs/obs"
	"github.com/ferrystream/ferry/services/notifier/internal/delivery"
	"github.com/ferrystream/ferry/services/notifier/internal/httpapi"
	"github.com/ferrystream/ferry/services/notifier/internal/metrics"
	"github.com/ferrystream/ferry/services/notifier/internal/webhook"
)

// Run loads the configuration from args and getenv and runs the notifier
// until ctx ends. Logs go to stderr (JSON lines, FERRY_LOG_* as in libs/obs);
// stdout gets the usage text of -h.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := Load(args, getenv, stdout)
	if errors.Is(err, ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := obs.NewLogger(os.Stderr, getenv, "notifier")
	nc, js, err := bus.Connect(ctx, cfg.NATS, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	s, err := New(cfg, nc, js, log)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Service is a running notifier replica.
type Service struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	log      zerolog.Logger
	reg      *prometheus.Registry
	metrics  *metrics.Metrics
	httpLn   net.Listener
	metricsS *obs.Server
	eng      atomic.Pointer[delivery.Engine]
}

// New prepares a notifier replica on an open NATS connection: it binds the
// HTTP listener (so HTTPAddr's port is known before Run) and the metrics server.
func New(cfg Config, nc *nats.Conn, js jetstream.JetStream, log zerolog.Logger) (*Service, error) {
	reg := obs.NewRegistry()
	s := &Service{cfg: cfg, nc: nc, js: js, log: log, reg: reg, metrics: metrics.New(reg)}
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("NOTIFIER_HTTP_ADDR: %w", err)
		}
		s.httpLn = ln
	}
	s.metricsS = &obs.Server{Addr: cfg.MetricsAddr, Registry: reg, Log: log, Pprof: cfg.Pprof, Ready: s.Ready}
	if _, err := s.metricsS.Listen(); err != nil {
		if s.httpLn != nil {
			_ = s.httpLn.Close()
		}
		return nil, fmt.Errorf("NOTIFIER_METRICS_ADDR: %w", err)
	}
	return s, nil
}

// HTTPAddr returns the address the SSE/ack API listens on ("" when disabled).
func (s *Service) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Ready reports whether the replica is connected and delivering (what
// /readyz serves).
func (s *Service) Ready() error {
	if !s.nc.IsConnected() {
		return errors.New("NATS not connected")
	}
	eng := s.eng.Load()
	if eng == nil {
		return errors.New("not started")
	}
	return eng.Ready()
}

// Run bootstraps streams and buckets, then delivers notices and serves the
// HTTP API until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := bus.Bootstrap(bctx, s.js, s.cfg.NATS.Replicas)
	cancel()
	if err != nil {
		s.closeListeners()
		return fmt.Errorf("bootstrap: %w", err)
	}
	kv := func(name string) (jetstream.KeyValue, error) {
		b, err := s.js.KeyValue(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", name, err)
		}
		return b, nil
	}
	sessions, err := kv(bus.BucketSessions)
	if err != nil {
		s.closeListeners()
		return err
	}
	secrets, err := kv(bus.BucketSessionSecrets)
	if err != nil {
		s.closeListeners()
		return err
	}
	notices, err := kv(bus.BucketNotices)
	if err != nil {
		s.closeListeners()
		return err
	}
	processed, err := kv(bus.BucketProcessed)
	if err != nil {
		s.closeListeners()
		return err
	}

	var hub *httpapi.Hub
	wh := webhook.New(s.cfg.WebhookTimeout)
	deps := delivery.Deps{
		NC: s.nc, JS: s.js, Sessions: sessions, Secrets: secrets, Notices: notices, Processed: processed,
		Webhook: wh.Send, Metrics: s.metrics, Log: s.log,
	}
	// SSE notices fan out over NATS to whichever replica holds the stream, so
	// a replica without an HTTP listener still delivers them.
	var eng *delivery.Engine
	hub = httpapi.New(s.nc, sessions, secrets, func(ctx context.Context, a events.NoticeAck) events.NoticeAckReply {
		return eng.Ack(ctx, a)
	}, s.metrics, s.log, 0)
	deps.SSE = hub.Send
	eng, err = delivery.New(delivery.Config{
		Instance:     s.cfg.Instance,
		TokenSecret:  []byte(s.cfg.TokenSecret),
		TokenGrace:   s.cfg.TokenGrace,
		RetryMin:     s.cfg.RetryMin,
		RetryMax:     s.cfg.RetryMax,
		Lease:        s.cfg.Lease,
		Lookback:     s.cfg.Lookback,
		UrgentWindow: s.cfg.UrgentWindow,
	}, deps)
	if err != nil {
		s.closeListeners()
		return err
	}

	tasks := []group.Task{
		{Name: "dead letters", Run: func(ctx context.Context) error { return bus.RunDeadLetters(ctx, s.js, s.log, bus.DeadLetters) }},
		// FERRY_COMMANDS' dead letters: only the notifier reads that stream
		// by sequence (it holds the clients' move notices).
		{Name: "command dead letters", Run: func(ctx context.Context) error {
			return bus.RunDeadLetters(ctx, s.js, s.log, bus.CommandDeadLetters)
		}},
		{Name: "delivery", Run: eng.Run},
		{Name: "metrics", Run: s.metricsS.Run},
	}
	if s.httpLn != nil {
		srv := &http.Server{Handler: hub.Handler(), ReadHeaderTimeout: 5 * time.Second}
		tasks = append(tasks, group.Task{Name: "http", Run: func(ctx context.Context) error {
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
				_ = srv.Close()
			}()
			if err := srv.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}})
		s.log.Info().Str("addr", s.HTTPAddr()).Msg("notice API listening (SSE, acks)")
	}
	s.eng.Store(eng)
	err = group.Run(ctx, tasks...)
	_ = s.nc.Drain()
	return err
}

func (s *Service) closeListeners() {
	if s.httpLn != nil {
		_ = s.httpLn.Close()
	}
	_ = s.metricsS.Run(canceledCtx())
}

func canceledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
