// Package webhook POSTs move notices to the URL a client declared, signed with
// the client's notice secret (events.HeaderSignature) so that the client can
// reject forged and replayed requests.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ferrystream/ferry/libs/events"
)

// ErrStatus is returned when the client answered with a non-2xx status.
var ErrStatus = errors.New("webhook: unexpected status")

// Sender posts signed notices.
type Sender struct {
	// Client is the HTTP client (its Timeout bounds one POST).
	Client *http.Client
	// Now returns the signing time (default time.Now).
	Now func() time.Time
}

// New returns a Sender whose POSTs time out after timeout.
func New(timeout time.Duration) *Sender {
	return &Sender{Client: &http.Client{Timeout: timeout}, Now: time.Now}
}

// Send POSTs body (a CloudEvents envelope of a move notice) to url, signed
// with secret at the current time. A 2xx answer is a delivery.
func (s *Sender) Send(ctx context.Context, url, noticeID string, secret, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set(events.HeaderNoticeID, noticeID)
	req.Header.Set(events.HeaderSignature, events.SignNotice(secret, s.Now(), body))
	res, err := s.Client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", url, err)
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%w %d from %s: %s", ErrStatus, res.StatusCode, url, bytes.TrimSpace(msg))
	}
	return nil
}
