package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Move-notice wire contract shared by the notifier (sender) and the publisher
// agent (receiver): the webhook signature, the headers, and the explicit ack an
// agent sends for a notice whatever channel brought it.

// HTTP headers of the notice channels.
const (
	// HeaderSignature carries a webhook notice's signature:
	// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>".
	HeaderSignature = "Ferry-Signature"
	// HeaderNoticeID carries the notice id on a webhook POST (informational;
	// the signed body is authoritative).
	HeaderNoticeID = "Ferry-Notice-Id"
	// HeaderSession names the session whose notice secret a bearer token is
	// (server-sent-events stream and HTTP acks).
	HeaderSession = "Ferry-Session"
)

// Signature errors returned by VerifyNoticeSignature.
var (
	// ErrSignatureMissing means the request carried no signature header.
	ErrSignatureMissing = errors.New("notice signature missing")
	// ErrSignatureMalformed means the header is not "t=<unix>,v1=<hex>".
	ErrSignatureMalformed = errors.New("notice signature malformed")
	// ErrSignatureMismatch means the HMAC does not match (forged or altered body).
	ErrSignatureMismatch = errors.New("notice signature does not match")
	// ErrSignatureExpired means the signature's timestamp is too old (or too far
	// in the future), so it may be a replay.
	ErrSignatureExpired = errors.New("notice signature timestamp outside the allowed window")
)

// SignatureMaxAge is how old a webhook signature may be before a receiver
// rejects it; receivers also remember signatures seen within it (replays).
const SignatureMaxAge = 5 * time.Minute

// signatureMaxSkew is how far in the future a signature's timestamp may be.
const signatureMaxSkew = time.Minute

// SignNotice returns the HeaderSignature value for body signed at t.
func SignNotice(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(noticeMAC(secret, ts, body))
}

func noticeMAC(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte("."))
	h.Write(body)
	return h.Sum(nil)
}

// VerifyNoticeSignature checks a HeaderSignature value against body and
// secret at now: the HMAC must match and the timestamp must be no older than
// maxAge (SignatureMaxAge when 0) and no more than a minute ahead. It returns
// the signed timestamp. Replay detection (a valid signature seen before) is the
// receiver's job: remember (timestamp, signature) pairs for maxAge.
func VerifyNoticeSignature(secret []byte, header string, body []byte, now time.Time, maxAge time.Duration) (time.Time, error) {
	if maxAge <= 0 {
		maxAge = SignatureMaxAge
	}
	if header == "" {
		return time.Time{}, ErrSignatureMissing
	}
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return time.Time{}, ErrSignatureMalformed
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return time.Time{}, ErrSignatureMalformed
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return time.Time{}, ErrSignatureMalformed
	}
	if !hmac.Equal(got, noticeMAC(secret, ts, body)) {
		return time.Time{}, ErrSignatureMismatch
	}
	at := time.Unix(unix, 0)
	if now.Sub(at) > maxAge || at.Sub(now) > signatureMaxSkew {
		return at, fmt.Errorf("%w (signed %s, now %s)", ErrSignatureExpired,
			at.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return at, nil
}

// NoticeAck is an agent's acknowledgement of a move notice, whatever channel
// brought it: a core-NATS request on subject.NoticeAck(client), or an HTTP POST
// to the notifier's /v1/clients/<client>/acks with the session's notice secret
// as bearer token. The notifier emits `acked` once per notice.
type NoticeAck struct {
	NoticeID  string `json:"notice_id"`
	ClientID  string `json:"client_id"`
	SessionID string `json:"session_id,omitempty"`
	// Channel is the channel the notice arrived on first ("nats", "webhook", "sse").
	Channel string `json:"channel,omitempty"`
}

// NoticeAckReply is the notifier's answer to a NoticeAck.
type NoticeAckReply struct {
	// OK is true when the notice is (now) acknowledged.
	OK bool `json:"ok"`
	// State is the notice's state after the ack: "acked", or "failed" when it
	// arrived after the notice had failed (deadline).
	State string `json:"state,omitempty"`
	// Error says why the ack was refused.
	Error string `json:"error,omitempty"`
}
