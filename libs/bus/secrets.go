package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/events"
)

// ErrNoSecret is returned by NoticeSecret for a session without a secret.
var ErrNoSecret = errors.New("session has no notice secret")

// NoticeSecret returns the notice secret of a session from the
// session_secrets bucket; for a session written before the secrets moved
// there, from the session record itself (sessions may be nil to skip that).
func NoticeSecret(ctx context.Context, secrets, sessions jetstream.KeyValue, sessionID string) (string, error) {
	e, err := secrets.Get(ctx, sessionID)
	switch {
	case err == nil:
		var s events.SessionSecret
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			return "", fmt.Errorf("read session secret %s: %w", sessionID, err)
		}
		if s.NoticeSecret == "" {
			return "", fmt.Errorf("session %s: %w", sessionID, ErrNoSecret)
		}
		return s.NoticeSecret, nil
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return "", fmt.Errorf("read session secret %s: %w", sessionID, err)
	}
	if sessions != nil {
		if e, err := sessions.Get(ctx, sessionID); err == nil {
			var s events.Session
			if json.Unmarshal(e.Value(), &s) == nil && s.NoticeSecret != "" {
				return s.NoticeSecret, nil
			}
		}
	}
	return "", fmt.Errorf("session %s: %w", sessionID, ErrNoSecret)
}
