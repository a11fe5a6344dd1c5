// Package client is the Go client of Ferry's placement service and the wire
// contract of its two micro endpoints:
//
//	placement.v1.choose  ChooseRequest  -> ChooseResponse
//	placement.v1.get     GetRequest     -> events.Placement
//
// Errors travel as micro error headers (Nats-Service-Error-Code and
// Nats-Service-Error): a NATS request "succeeds" (err == nil) and the reply
// carries the code. This package turns them into *Error values that match
// the sentinels below with errors.Is:
//
//	"400" ErrBadRequest  the request is malformed; the description names the field
//	"404" ErrNotFound    get: the stream has no placement
//	"503" ErrNoCapacity  choose: no healthy host with headroom (retry later)
//	"500" ErrInternal    the service failed (KV or NATS error); retrying is safe
//
// choose is idempotent per stream: asking again returns the stream's current
// home with a fresh token, so clients retry freely.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
)

// Error codes carried in the micro error header.
const (
	CodeBadRequest = "400"
	CodeNotFound   = "404"
	CodeNoCapacity = "503"
	CodeInternal   = "500"
)

// Modes of a stream.
const (
	// ModePush: a publisher (the agent, a camera, ffmpeg) connects and publishes.
	ModePush = "push"
	// ModePull: the ingest host pulls the camera's RTSP URL (SourceURL).
	ModePull = "pull"
)

// Notice channels a client may declare.
const (
	ChannelNATS    = "nats"
	ChannelWebhook = "webhook"
	ChannelSSE     = "sse"
)

// Sentinels matched by *Error through errors.Is.
var (
	// ErrBadRequest is code 400.
	ErrBadRequest = errors.New("placement: bad request")
	// ErrNotFound is code 404.
	ErrNotFound = errors.New("placement: not found")
	// ErrNoCapacity is code 503.
	ErrNoCapacity = errors.New("placement: no healthy host with capacity")
	// ErrInternal is code 500 (and any code this client does not know).
	ErrInternal = errors.New("placement: internal error")
)

// Error is a micro error reply from the placement service.
type Error struct {
	// Code is the micro error code ("400", "404", "503", "500").
	Code string
	// Description says what was wrong; for 400 it starts with the field name.
	Description string
	// Endpoint is the subject that answered.
	Endpoint string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s %s", e.Endpoint, e.Code, e.Description)
}

// Is matches the sentinel of e's code.
func (e *Error) Is(target error) bool { return target == sentinel(e.Code) }

func sentinel(code string) error {
	switch code {
	case CodeBadRequest:
		return ErrBadRequest
	case CodeNotFound:
		return ErrNotFound
	case CodeNoCapacity:
		return ErrNoCapacity
	default:
		return ErrInternal
	}
}

// ChooseRequest asks where a stream should publish.
type ChooseRequest struct {
	// Stream is the stream name (^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$).
	Stream string `json:"stream"`
	// ClientID names the publisher (same pattern); notices go to it.
	ClientID string `json:"client_id"`
	// SessionID is set by a reconnecting client (s-<16 hex>).
	SessionID string `json:"session_id,omitempty"`
	// Capabilities is the client's declaration; CanMove is its confirmation
	// that it reconnects mid-stream (make-before-break) when told to move.
	Capabilities events.Capabilities `json:"capabilities"`
	// Mode is "push" (default) or "pull".
	Mode string `json:"mode,omitempty"`
	// SourceURL is the camera's rtsp:// URL (pull only).
	SourceURL string `json:"source_url,omitempty"`
}

// ChooseResponse is the chosen home.
type ChooseResponse struct {
	Stream string `json:"stream"`
	Host   string `json:"host"`
	// URL is the publish URL with a signed, expiring token.
	URL       string    `json:"url"`
	SessionID string    `json:"session_id"`
	Epoch     uint64    `json:"epoch"`
	ExpiresAt time.Time `json:"expires_at"`
	// NoticeSecret is set only in the response that created the session.
	NoticeSecret string `json:"notice_secret,omitempty"`
}

// GetRequest asks where a stream lives now.
type GetRequest struct {
	Stream string `json:"stream"`
}

// Requester is the part of *nats.Conn the client uses.
type Requester interface {
	RequestWithContext(ctx context.Context, subj string, data []byte) (*nats.Msg, error)
}

var _ Requester = (*nats.Conn)(nil)

// Client calls the placement service over NATS.
type Client struct {
	nc Requester
	// Timeout bounds each request when ctx has no deadline (default 5s).
	Timeout time.Duration
}

// New returns a client using nc.
func New(nc Requester) *Client { return &Client{nc: nc, Timeout: 5 * time.Second} }

// Choose asks for the stream's home (placing it if it has none).
func (c *Client) Choose(ctx context.Context, req ChooseRequest) (ChooseResponse, error) {
	var out ChooseResponse
	err := c.call(ctx, subject.PlacementChoose, req, &out)
	return out, err
}

// Get returns the stream's placement record; ErrNotFound when it has none.
func (c *Client) Get(ctx context.Context, stream string) (events.Placement, error) {
	var out events.Placement
	err := c.call(ctx, subject.PlacementGet, GetRequest{Stream: stream}, &out)
	return out, err
}

func (c *Client) call(ctx context.Context, subj string, req, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: marshal request: %w", subj, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		t := c.Timeout
		if t <= 0 {
			t = 5 * time.Second
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	m, err := c.nc.RequestWithContext(ctx, subj, body)
	if err != nil {
		return fmt.Errorf("%s: %w", subj, err)
	}
	if err := ReplyError(subj, m); err != nil {
		return err
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return fmt.Errorf("%s: decode reply: %w", subj, err)
	}
	return nil
}

// ReplyError returns the *Error carried by a micro reply's headers, or nil.
// Micro errors arrive with err == nil from nc.Request, so every caller that
// does its own requests must check the reply with this.
func ReplyError(endpoint string, m *nats.Msg) error {
	if m == nil || m.Header == nil {
		return nil
	}
	code := m.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return nil
	}
	return &Error{Code: code, Description: m.Header.Get(micro.ErrorHeader), Endpoint: endpoint}
}
