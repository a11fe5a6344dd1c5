package ferryctl_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/clients/ferryctl"
	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
)

// testutil.Buffer is a bytes.Buffer safe for a writer and a reader in parallel.
// result is one ferryctl run.
type result struct {
	stdout, stderr string
	code           int
}

// envFor returns a getenv that points ferryctl at url (and nothing else).
func envFor(url string) func(string) string {
	return func(k string) string {
		switch k {
		case "FERRY_NATS_URL":
			return url
		case "USER":
			return "tester"
		}
		return ""
	}
}

// ctl runs ferryctl with args against the NATS at url.
func ctl(t *testing.T, url string, args ...string) result {
	t.Helper()
	var out, errb testutil.Buffer
	code := ferryctl.Run(testutil.Context(t), args, envFor(url), &out, &errb)
	return result{out.String(), errb.String(), code}
}

// mustCtl runs ferryctl and fails the test unless it exits 0.
func mustCtl(t *testing.T, url string, args ...string) result {
	t.Helper()
	r := ctl(t, url, args...)
	if r.code != 0 {
		t.Fatalf("ferryctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// lines splits output into non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// publishAt publishes d as an event whose envelope time is at (events.Publish
// always stamps now; trace and status tests need chosen times).
func publishAt(t *testing.T, js jetstream.JetStream, at time.Time, d events.Data) uint64 {
	t.Helper()
	env, _, err := events.Marshal("test", d) // validates against the schema
	if err != nil {
		t.Fatal(err)
	}
	env.Time = at.UTC()
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(env.Subject)
	msg.Data = body
	ack, err := js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(env.ID))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// lastEvent returns the last message stored on subj in stream.
func lastEvent(t *testing.T, js jetstream.JetStream, stream, subj string) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), subj)
	if err != nil {
		t.Fatalf("no message on %s in %s: %v", subj, stream, err)
	}
	return m
}

// putJSON stores v under key in bucket.
func putJSON(t *testing.T, js jetstream.JetStream, bucket, key string, v any) {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), key, b); err != nil {
		t.Fatal(err)
	}
}

var _ = bus.StreamEvents
