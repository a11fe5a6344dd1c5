package obs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLoggerJSON(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, func(k string) string {
		if k == "FERRY_LOG_LEVEL" {
			return "debug"
		}
		return ""
	}, "placement")
	log.Debug().Str(FieldMigration, "m1").Msg("hello")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %q", buf.String())
	}
	if m["migration_id"] != "m1" || m["service"] != "placement" || m["level"] != "debug" {
		t.Fatalf("fields: %v", m)
	}
}

func TestServer(t *testing.T) {
	ready := errors.New("nats down")
	s := &Server{Addr: "127.0.0.1:0", Ready: func() error { return ready }}
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	get := func(p string) (int, string) {
		t.Helper()
		r, err := http.Get("http://" + addr.String() + p)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if c, _ := get("/healthz"); c != 200 {
		t.Fatalf("healthz %d", c)
	}
	if c, b := get("/readyz"); c != 503 || !strings.Contains(b, "nats down") {
		t.Fatalf("readyz %d %q", c, b)
	}
	ready = nil
	if c, _ := get("/readyz"); c != 200 {
		t.Fatalf("readyz %d", c)
	}
	if c, b := get("/metrics"); c != 200 || !strings.Contains(b, "go_goroutines") {
		t.Fatalf("metrics %d", c)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPprofOnlyWhenAsked: /debug/pprof/ is served only with Pprof set, which
// FERRY_PPROF=1 (or true) asks for.
func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want int
	}{{"", 404}, {"0", 404}, {"yes", 404}, {"1", 200}, {"TRUE", 200}} {
		s := &Server{Pprof: PprofEnabled(func(k string) string {
			if k == "FERRY_PPROF" {
				return tc.env
			}
			return ""
		})}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		if rec.Code != tc.want {
			t.Errorf("FERRY_PPROF=%q: /debug/pprof/ %d, want %d", tc.env, rec.Code, tc.want)
		}
		if tc.want == 200 && !strings.Contains(rec.Body.String(), "goroutine") {
			t.Errorf("FERRY_PPROF=%q: index without profiles", tc.env)
		}
	}
}
