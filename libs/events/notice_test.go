package events

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerifyNoticeSignature(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"id":"x"}`)
	now := time.Unix(1_800_000_000, 0)
	good := SignNotice(secret, now, body)
	for _, tc := range []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"valid", secret, good, body, now, nil},
		{"valid 4m later", secret, good, body, now.Add(4 * time.Minute), nil},
		{"too old", secret, good, body, now.Add(6 * time.Minute), ErrSignatureExpired},
		{"from the future", secret, SignNotice(secret, now.Add(2*time.Minute), body), body, now, ErrSignatureExpired},
		{"altered body", secret, good, []byte(`{"id":"y"}`), now, ErrSignatureMismatch},
		{"other secret", []byte("other"), good, body, now, ErrSignatureMismatch},
		{"timestamp changed", secret, strings.Replace(good, "t=1800000000", "t=1800000001", 1), body, now, ErrSignatureMismatch},
		{"missing", secret, "", body, now, ErrSignatureMissing},
		{"no v1", secret, "t=1800000000", body, now, ErrSignatureMalformed},
		{"not hex", secret, "t=1800000000,v1=zz", body, now, ErrSignatureMalformed},
		{"garbage", secret, "hello", body, now, ErrSignatureMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyNoticeSignature(tc.secret, tc.header, tc.body, tc.now, 0)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
