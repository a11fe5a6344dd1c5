// Package token issues and verifies publish tokens: signed (HMAC-SHA256),
// expiring, and bound to one stream, one host and one publisher session.
//
// A token is "v1.<base64url(claims JSON)>.<base64url(signature)>" and travels
// in the publish URL's query (?token=...).
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors returned by Verify and Claims.Check.
var (
	// ErrMissing means no token was presented.
	ErrMissing = errors.New("no publish token")
	// ErrMalformed means the token is not of the v1 form.
	ErrMalformed = errors.New("malformed publish token")
	// ErrBadSignature means the token was not signed with our secret (forged or altered).
	ErrBadSignature = errors.New("publish token signature does not match")
	// ErrExpired means the token's expiry has passed.
	ErrExpired = errors.New("publish token expired")
	// ErrWrongStream means the token was issued for another stream.
	ErrWrongStream = errors.New("publish token is for another stream")
	// ErrWrongHost means the token was issued for another host.
	ErrWrongHost = errors.New("publish token is for another host")
)

// QueryParam is the URL query parameter that carries a token.
const QueryParam = "token"

// Claims is what a token asserts.
type Claims struct {
	Stream   string    `json:"s"`
	Host     string    `json:"h"`
	Session  string    `json:"sid"`
	ClientID string    `json:"cid,omitempty"`
	Expires  time.Time `json:"exp"`
	// MigrationID is set on tokens minted for a move.
	MigrationID string `json:"mid,omitempty"`
}

var b64 = base64.RawURLEncoding

// Sign returns a token for c signed with secret.
func Sign(secret []byte, c Claims) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("sign token: empty secret")
	}
	body, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	payload := "v1." + b64.EncodeToString(body)
	return payload + "." + b64.EncodeToString(mac(secret, payload)), nil
}

func mac(secret []byte, payload string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(payload))
	return h.Sum(nil)
}

// Verify checks tok's signature and expiry at now and returns its claims.
func Verify(secret []byte, tok string, now time.Time) (Claims, error) {
	if tok == "" {
		return Claims{}, ErrMissing
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != "v1" {
		return Claims{}, ErrMalformed
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(sig, mac(secret, parts[0]+"."+parts[1])) {
		return Claims{}, ErrBadSignature
	}
	body, err := b64.DecodeString(parts[1])
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil {
		return Claims{}, ErrMalformed
	}
	if !now.Before(c.Expires) {
		return c, ErrExpired
	}
	return c, nil
}

// Check verifies that c was issued for stream on host.
func (c Claims) Check(stream, host string) error {
	if c.Stream != stream {
		return fmt.Errorf("%w (token %q, path %q)", ErrWrongStream, c.Stream, stream)
	}
	if c.Host != host {
		return fmt.Errorf("%w (token %q, this host %q)", ErrWrongHost, c.Host, host)
	}
	return nil
}
