package events

import (
	"context"

	"github.com/nats-io/nats.go"
)

// Trace context travels in NATS headers under the W3C names, lower case
// ("traceparent", "tracestate"). nats.Header.Get is case-sensitive, so every
// reader and writer uses this one carrier.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

type traceKey struct{}

// Trace is a W3C trace context.
type Trace struct {
	Parent string // 00-<trace-id>-<span-id>-<flags>
	State  string
}

// WithTrace returns ctx carrying t.
func WithTrace(ctx context.Context, t Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// TraceFrom returns the trace carried by ctx, if any.
func TraceFrom(ctx context.Context) (Trace, bool) {
	t, ok := ctx.Value(traceKey{}).(Trace)
	return t, ok && t.Parent != ""
}

// InjectTrace writes ctx's trace into h under lower-case keys.
func InjectTrace(ctx context.Context, h nats.Header) {
	t, ok := TraceFrom(ctx)
	if !ok {
		return
	}
	h[HeaderTraceparent] = []string{t.Parent}
	if t.State != "" {
		h[HeaderTracestate] = []string{t.State}
	}
}

// ExtractTrace reads a trace from h, accepting the canonicalised
// "Traceparent" that other carriers write, and returns ctx carrying it.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	get := func(k, canon string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		if v := h[canon]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	p := get(HeaderTraceparent, "Traceparent")
	if p == "" {
		return ctx
	}
	return WithTrace(ctx, Trace{Parent: p, State: get(HeaderTracestate, "Tracestate")})
}
