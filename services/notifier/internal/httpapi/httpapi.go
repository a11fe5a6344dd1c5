// Package httpapi is the notifier's HTTP API for publishers:
//
//	GET  /v1/clients/{client}/notices  a server-sent-events stream of move notices
//	POST /v1/clients/{client}/acks     acknowledge a notice (events.NoticeAck JSON)
//
// Both authenticate with the session's notice secret as a bearer token
// ("Authorization: Bearer <notice_secret>") and name the session in the
// Ferry-Session header (or the session_id query parameter); a wrong or missing
// secret, or a session of another client, gets 401.
//
// Notices reach the replica that holds a client's stream over core NATS: while
// a replica has at least one open stream for a client it subscribes to
// subject.NoticeSSE(client), writes each notice to those streams and replies
// once one of them flushed it, which is what the delivery engine counts as
// delivered.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/obs"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/services/notifier/internal/metrics"
)

// ErrNoStream is returned by Send when no replica holds a stream for the client.
var ErrNoStream = errors.New("no open server-sent-events stream for the client")

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// AckFunc records an acknowledgement (delivery.Engine.Ack).
type AckFunc func(ctx context.Context, a events.NoticeAck) events.NoticeAckReply

// Hub holds this replica's server-sent-events streams. mu guards clients.
type Hub struct {
	nc        *nats.Conn
	sessions  jetstream.KeyValue
	secrets   jetstream.KeyValue
	ack       AckFunc
	log       zerolog.Logger
	metrics   *metrics.Metrics
	keepalive time.Duration

	mu      sync.Mutex
	clients map[string]*clientStreams
}

type clientStreams struct {
	sub     *nats.Subscription
	streams map[*stream]struct{}
}

type stream struct {
	out chan push
}

type push struct {
	id   string
	body []byte
	done chan struct{}
}

// New returns a Hub. keepalive is the interval of SSE comment lines (0: 15s).
func New(nc *nats.Conn, sessions, secrets jetstream.KeyValue, ack AckFunc, m *metrics.Metrics, log zerolog.Logger, keepalive time.Duration) *Hub {
	if keepalive <= 0 {
		keepalive = 15 * time.Second
	}
	if m == nil {
		m = metrics.New(nil)
	}
	return &Hub{
		nc: nc, sessions: sessions, secrets: secrets, ack: ack, metrics: m, keepalive: keepalive,
		log:     log.With().Str(obs.FieldComponent, "httpapi").Logger(),
		clients: map[string]*clientStreams{},
	}
}

// Handler returns the API's routes.
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/clients/{client}/notices", h.serveNotices)
	mux.HandleFunc("POST /v1/clients/{client}/acks", h.serveAck)
	return mux
}

// Send hands body (a move notice envelope) to the client's stream, on
// whichever replica holds it, and returns once it was written.
func (h *Hub) Send(ctx context.Context, client string, body []byte) error {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	m, err := h.nc.RequestWithContext(rctx, subject.NoticeSSE(client), body)
	if errors.Is(err, nats.ErrNoResponders) {
		return ErrNoStream
	}
	if err != nil {
		return fmt.Errorf("sse fan-out to %s: %w", client, err)
	}
	if string(m.Data) != "ok" {
		return fmt.Errorf("sse fan-out to %s: %s", client, m.Data)
	}
	return nil
}

// authenticate checks the bearer secret against the named session.
func (h *Hub) authenticate(r *http.Request, client string) (events.Session, string) {
	if !namePattern.MatchString(client) {
		return events.Session{}, "bad-client"
	}
	auth := r.Header.Get("Authorization")
	secret, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || secret == "" {
		return events.Session{}, "missing-token"
	}
	sid := r.Header.Get(events.HeaderSession)
	if sid == "" {
		sid = r.URL.Query().Get("session_id")
	}
	if sid == "" {
		return events.Session{}, "missing-session"
	}
	ent, err := h.sessions.Get(r.Context(), sid)
	if err != nil {
		return events.Session{}, "unknown-session"
	}
	var s events.Session
	if err := json.Unmarshal(ent.Value(), &s); err != nil {
		return events.Session{}, "unknown-session"
	}
	if s.ClientID != client {
		return events.Session{}, "wrong-client"
	}
	want, err := bus.NoticeSecret(r.Context(), h.secrets, h.sessions, sid)
	if err != nil || subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		return events.Session{}, "wrong-token"
	}
	return s, ""
}

func (h *Hub) refuse(w http.ResponseWriter, r *http.Request, client, reason string) {
	h.metrics.AuthFailures.WithLabelValues(reason).Inc()
	h.log.Warn().Str(obs.FieldClient, client).Str("reason", reason).Str("remote", r.RemoteAddr).
		Str("path", r.URL.Path).Msg("unauthorized")
	w.Header().Set("WWW-Authenticate", `Bearer realm="ferry-notifier"`)
	http.Error(w, "unauthorized: "+reason, http.StatusUnauthorized)
}

func (h *Hub) serveAck(w http.ResponseWriter, r *http.Request) {
	client := r.PathValue("client")
	sess, reason := h.authenticate(r, client)
	if reason != "" {
		h.refuse(w, r, client, reason)
		return
	}
	var a events.NoticeAck
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&a); err != nil {
		http.Error(w, "bad ack: "+err.Error(), http.StatusBadRequest)
		return
	}
	a.ClientID, a.SessionID = client, sess.SessionID
	reply := h.ack(r.Context(), a)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case reply.OK:
	case reply.Error != "":
		w.WriteHeader(http.StatusConflict)
	default:
		w.WriteHeader(http.StatusGone) // the notice failed (deadline) before the ack
	}
	_ = json.NewEncoder(w).Encode(reply)
}

func (h *Hub) serveNotices(w http.ResponseWriter, r *http.Request) {
	client := r.PathValue("client")
	sess, reason := h.authenticate(r, client)
	if reason != "" {
		h.refuse(w, r, client, reason)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	st := &stream{out: make(chan push, 16)}
	if err := h.attach(client, st); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer h.detach(client, st)
	h.metrics.SSEStreams.Inc()
	defer h.metrics.SSEStreams.Dec()
	l := h.log.With().Str(obs.FieldClient, client).Str(obs.FieldSession, sess.SessionID).Logger()
	l.Info().Msg("notice stream opened")
	defer l.Info().Msg("notice stream closed")

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, "retry: 1000\n: ferry notices for "+client+"\n\n"); err != nil {
		return
	}
	fl.Flush()
	ka := time.NewTicker(h.keepalive)
	defer ka.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ka.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case p := <-st.out:
			if _, err := fmt.Fprintf(w, "id: %s\nevent: notice\ndata: %s\n\n", p.id, p.body); err != nil {
				return
			}
			fl.Flush()
			close(p.done)
		}
	}
}

// attach registers a stream, subscribing to the client's fan-out subject for
// the client's first stream on this replica.
func (h *Hub) attach(client string, st *stream) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	cs := h.clients[client]
	if cs == nil {
		cs = &clientStreams{streams: map[*stream]struct{}{}}
		sub, err := h.nc.Subscribe(subject.NoticeSSE(client), func(m *nats.Msg) { h.fanOut(client, m) })
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		// make sure the server knows the subscription before the client is told it is connected
		if err := h.nc.Flush(); err != nil {
			_ = sub.Unsubscribe()
			return fmt.Errorf("subscribe: %w", err)
		}
		cs.sub = sub
		h.clients[client] = cs
	}
	cs.streams[st] = struct{}{}
	return nil
}

func (h *Hub) detach(client string, st *stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cs := h.clients[client]
	if cs == nil {
		return
	}
	delete(cs.streams, st)
	if len(cs.streams) == 0 {
		_ = cs.sub.Unsubscribe()
		delete(h.clients, client)
	}
}

// fanOut writes one notice to the client's streams here and replies "ok"
// once at least one flushed it.
func (h *Hub) fanOut(client string, m *nats.Msg) {
	var head struct {
		Data struct {
			NoticeID string `json:"notice_id"`
		} `json:"data"`
	}
	_ = json.Unmarshal(m.Data, &head)
	h.mu.Lock()
	var targets []*stream
	if cs := h.clients[client]; cs != nil {
		for st := range cs.streams {
			targets = append(targets, st)
		}
	}
	h.mu.Unlock()
	var dones []chan struct{}
	for _, st := range targets {
		p := push{id: head.Data.NoticeID, body: m.Data, done: make(chan struct{})}
		select {
		case st.out <- p:
			dones = append(dones, p.done)
		default: // a stuck stream: skip it
		}
	}
	timeout := time.NewTimer(time.Second)
	defer timeout.Stop()
	written := false
	for _, d := range dones {
		select {
		case <-d:
			written = true
		case <-timeout.C:
		}
		if written {
			break
		}
	}
	if !written {
		return // no reply: the sender times out and retries
	}
	_ = m.Respond([]byte("ok"))
}
