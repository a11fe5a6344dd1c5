// Package obs sets up what every Ferry process shows to operators: zerolog
// logs (JSON by default, console for humans), a Prometheus registry, and an
// HTTP server for /metrics, /healthz and /readyz.
package obs

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Log field names used across services.
const (
	FieldComponent   = "component"
	FieldHost        = "host"
	FieldStream      = "stream"
	FieldSession     = "session_id"
	FieldMigration   = "migration_id"
	FieldClient      = "client_id"
	FieldSubject     = "subject"
	FieldEventID     = "event_id"
	FieldEventType   = "event_type"
	FieldService     = "service"
	FieldSchemaPath  = "schema_path"
	FieldDeliveryNum = "delivery"
)

// timeFormatOnce sets zerolog's global time format once, so that several
// services in one process (tests) do not race on it.
var timeFormatOnce sync.Once

// NewLogger returns a logger writing to w. FERRY_LOG_FORMAT=console gives
// human-readable lines (default json); FERRY_LOG_LEVEL sets the level (default info).
func NewLogger(w io.Writer, getenv func(string) string, service string) zerolog.Logger {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if strings.EqualFold(getenv("FERRY_LOG_FORMAT"), "console") {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	lvl, err := zerolog.ParseLevel(strings.ToLower(getenv("FERRY_LOG_LEVEL")))
	if err != nil || getenv("FERRY_LOG_LEVEL") == "" {
		lvl = zerolog.InfoLevel
	}
	timeFormatOnce.Do(func() { zerolog.TimeFieldFormat = time.RFC3339Nano })
	return zerolog.New(w).Level(lvl).With().Timestamp().Str(FieldService, service).Logger()
}

// NewRegistry returns a Prometheus registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Server serves /metrics, /healthz (process alive) and /readyz (Ready returns nil).
type Server struct {
	// Addr is host:port to listen on ("" disables the server; port 0 picks one).
	Addr     string
	Registry *prometheus.Registry
	// Ready reports readiness; nil means always ready.
	Ready func() error
	// Mux, if set, is served for every other path (service-specific handlers).
	Mux http.Handler
	// Pprof serves Go's profiles under /debug/pprof/ (PprofEnabled: the
	// FERRY_PPROF environment variable). Off by default: a profile costs
	// CPU and shows internals, so operators turn it on for an investigation.
	Pprof bool
	Log   zerolog.Logger

	ln net.Listener
}

// Listen binds the server's address so callers know the port before Run.
func (s *Server) Listen() (net.Addr, error) {
	if s.Addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	return ln.Addr(), nil
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	reg := s.Registry
	if reg == nil {
		reg = NewRegistry()
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.Ready != nil {
			if err := s.Ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	if s.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if s.Mux != nil {
		mux.Handle("/", s.Mux)
	}
	return mux
}

// PprofEnabled reports whether FERRY_PPROF asks for /debug/pprof/ on the
// metrics server ("1" or "true").
func PprofEnabled(getenv func(string) string) bool {
	v := strings.ToLower(strings.TrimSpace(getenv("FERRY_PPROF")))
	return v == "1" || v == "true"
}

// Run serves until ctx ends. It calls Listen if it has not been called.
func (s *Server) Run(ctx context.Context) error {
	if s.Addr == "" {
		<-ctx.Done()
		return nil
	}
	if s.ln == nil {
		if _, err := s.Listen(); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
