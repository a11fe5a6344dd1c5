// Package testutil holds helpers shared by Ferry's tests: polling for a
// condition, and an embedded NATS server with Ferry's streams and buckets.
package testutil

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/natsembed"
)

// CheckFor calls f every `every` until it returns nil or `wait` passes, then
// fails the test with f's last error.
func CheckFor(t testing.TB, wait, every time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", wait, err)
		}
		time.Sleep(every)
	}
}

// Env is an embedded NATS server, a connection, its JetStream context and the
// bootstrapped Ferry stores.
type Env struct {
	Server *server.Server
	URL    string
	NC     *nats.Conn
	JS     jetstream.JetStream
	Stores *bus.Stores
}

// NATS starts an embedded NATS server on 127.0.0.1 with a random port, runs
// bus.Bootstrap, and cleans up when the test ends.
func NATS(t testing.TB) *Env {
	t.Helper()
	s, err := natsembed.Run(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.Bootstrap(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	st, err := bus.OpenStores(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Server: s, URL: s.ClientURL(), NC: nc, JS: js, Stores: st}
}

// Logger returns a logger for tests: silent unless FERRY_TEST_LOG is set.
func Logger(t testing.TB) zerolog.Logger {
	t.Helper()
	if os.Getenv("FERRY_TEST_LOG") != "" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Str("test", t.Name()).Logger()
	}
	return zerolog.New(io.Discard)
}

// Context returns a context cancelled when the test ends.
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago, for a
// server that must be given its address up front (a child process, a server
// restarted at the same address).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Buffer is a bytes.Buffer safe for concurrent use: a writer (a service's
// logs, a child's output) and a test polling String.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
