package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/micro"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/placement/client"
)

// A stand-in service answering with each code, to check the client's mapping.
func TestErrorsCarryCodes(t *testing.T) {
	env := testutil.NATS(t)
	svc, err := micro.AddService(env.NC, micro.Config{Name: "placement", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Stop() }()
	_ = svc.AddEndpoint("choose", micro.HandlerFunc(func(r micro.Request) {
		var req client.ChooseRequest
		_ = json.Unmarshal(r.Data(), &req)
		switch req.Stream {
		case "bad":
			_ = r.Error(client.CodeBadRequest, "stream: nope", nil)
		case "full":
			_ = r.Error(client.CodeNoCapacity, "no healthy host with headroom", nil)
		case "boom":
			_ = r.Error("418", "teapot", nil)
		default:
			_ = r.RespondJSON(client.ChooseResponse{Stream: req.Stream, Host: "h1", Epoch: 1})
		}
	}), micro.WithEndpointSubject(subject.PlacementChoose))
	_ = svc.AddEndpoint("get", micro.HandlerFunc(func(r micro.Request) {
		_ = r.Error(client.CodeNotFound, "stream x has no placement", nil)
	}), micro.WithEndpointSubject(subject.PlacementGet))
	_ = env.NC.Flush()

	c := client.New(env.NC)
	ctx := context.Background()
	for _, tc := range []struct {
		stream string
		want   error
		code   string
	}{
		{"bad", client.ErrBadRequest, "400"},
		{"full", client.ErrNoCapacity, "503"},
		{"boom", client.ErrInternal, "418"},
	} {
		_, err := c.Choose(ctx, client.ChooseRequest{Stream: tc.stream, ClientID: "a", Capabilities: events.Capabilities{}})
		var ce *client.Error
		if !errors.Is(err, tc.want) || !errors.As(err, &ce) || ce.Code != tc.code || ce.Endpoint != subject.PlacementChoose {
			t.Errorf("%s: err = %v", tc.stream, err)
		}
	}
	r, err := c.Choose(ctx, client.ChooseRequest{Stream: "ok", ClientID: "a"})
	if err != nil || r.Host != "h1" {
		t.Fatalf("ok: %+v %v", r, err)
	}
	if _, err := c.Get(ctx, "x"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get: %v", err)
	}
	_ = svc.Stop()
	if _, err := c.Get(ctx, "x"); err == nil || errors.Is(err, client.ErrNotFound) {
		t.Fatalf("no responders: %v", err)
	}
}
