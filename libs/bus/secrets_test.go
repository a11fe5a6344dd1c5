package bus_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/testutil"
)

func TestNoticeSecret(t *testing.T) {
	env := testutil.NATS(t)
	ctx := testutil.Context(t)
	put := func(kvName string, key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		kv := env.Stores.Sessions
		if kvName == bus.BucketSessionSecrets {
			kv = env.Stores.SessionSecrets
		}
		if _, err := kv.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	put(bus.BucketSessions, "s-new", events.Session{SessionID: "s-new", Stream: "cam-1", ClientID: "a", CreatedAt: now})
	put(bus.BucketSessionSecrets, "s-new", events.SessionSecret{SessionID: "s-new", NoticeSecret: "fresh", CreatedAt: now})
	put(bus.BucketSessions, "s-old", events.Session{SessionID: "s-old", Stream: "cam-2", ClientID: "a", NoticeSecret: "legacy", CreatedAt: now})
	put(bus.BucketSessions, "s-none", events.Session{SessionID: "s-none", Stream: "cam-3", ClientID: "a", CreatedAt: now})
	put(bus.BucketSessionSecrets, "s-empty", events.SessionSecret{SessionID: "s-empty"})
	for _, tc := range []struct {
		id, want string
		err      error
	}{
		{"s-new", "fresh", nil},
		{"s-old", "legacy", nil}, // written before the secrets moved
		{"s-none", "", bus.ErrNoSecret},
		{"s-empty", "", bus.ErrNoSecret},
		{"s-unknown", "", bus.ErrNoSecret},
	} {
		got, err := bus.NoticeSecret(ctx, env.Stores.SessionSecrets, env.Stores.Sessions, tc.id)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%s: %q, %v; want %q, %v", tc.id, got, err, tc.want, tc.err)
		}
	}
}
