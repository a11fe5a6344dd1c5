package token

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	secret := []byte("s3cret")
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	good, err := Sign(secret, Claims{Stream: "cam-1", Host: "ingest-1", Session: "s1", Expires: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := Sign(secret, Claims{Stream: "cam-1", Host: "ingest-1", Session: "s1", Expires: now.Add(-time.Second)})
	forged, _ := Sign([]byte("other"), Claims{Stream: "cam-1", Host: "ingest-1", Session: "s1", Expires: now.Add(time.Minute)})
	parts := strings.Split(good, ".")
	altered := parts[0] + "." + parts[1] + "x." + parts[2]
	for _, tc := range []struct {
		name string
		tok  string
		want error
	}{
		{"valid", good, nil},
		{"missing", "", ErrMissing},
		{"garbage", "hello", ErrMalformed},
		{"bad base64 sig", parts[0] + "." + parts[1] + ".!!", ErrMalformed},
		{"forged", forged, ErrBadSignature},
		{"altered claims", altered, ErrBadSignature},
		{"expired", expired, ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Verify(secret, tc.tok, now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want == nil && (c.Stream != "cam-1" || c.Session != "s1") {
				t.Fatalf("claims = %+v", c)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	c := Claims{Stream: "cam-1", Host: "ingest-1"}
	if err := c.Check("cam-1", "ingest-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Check("cam-2", "ingest-1"); !errors.Is(err, ErrWrongStream) {
		t.Fatal(err)
	}
	if err := c.Check("cam-1", "ingest-2"); !errors.Is(err, ErrWrongHost) {
		t.Fatal(err)
	}
	if _, err := Sign(nil, c); err == nil {
		t.Fatal("empty secret accepted")
	}
}
