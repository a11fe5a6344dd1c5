package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRun(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer ok.Close()
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "nats: not connected", http.StatusServiceUnavailable)
	}))
	defer notReady.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		name          string
		args          []string
		wantErr       bool
		wantUnhealthy bool
	}{
		{"ready", []string{ok.URL + "/readyz"}, false, false},
		{"two ready", []string{ok.URL, ok.URL + "/healthz"}, false, false},
		{"503", []string{notReady.URL}, true, true},
		{"one of two fails", []string{ok.URL, notReady.URL}, true, true},
		{"nothing listening", []string{"-timeout", "500ms", closed.URL}, true, true},
		{"no URL", nil, true, false},
		{"not http", []string{"tcp://127.0.0.1:1"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), tc.args, &bytes.Buffer{})
			if (err != nil) != tc.wantErr || errors.Is(err, ErrUnhealthy) != tc.wantUnhealthy {
				t.Fatalf("err %v, want error %v unhealthy %v", err, tc.wantErr, tc.wantUnhealthy)
			}
		})
	}
}
