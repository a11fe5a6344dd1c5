package publisher

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
)

// startNoticeReceivers starts the declared channels that the agent pulls
// (NATS, SSE); the webhook receiver runs from the start.
func (a *Agent) startNoticeReceivers(bg *sync.WaitGroup) {
	if slices.Contains(a.cfg.Channels, ChannelNATS) {
		bg.Go(func() { a.runNATSNotices(a.ctx) })
	}
	if slices.Contains(a.cfg.Channels, ChannelSSE) {
		bg.Go(func() { a.runSSE(a.ctx) })
	}
}

// submit hands a notice to the loop and returns its verdict.
func (a *Agent) submit(ctx context.Context, n events.MoveNotice, channel string) error {
	res := make(chan error, 1)
	select {
	case a.inbox <- noticeReq{n: n, channel: channel, res: res}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NoticeDurable is the durable name of a client's notice consumer.
func NoticeDurable(client string) string { return "client-" + client }

// runNATSNotices consumes ferry.cmd.client.<client>.notice from the command
// stream with the durable consumer client-<client>, and acks each notice
// (the JetStream ack) once the agent took it.
func (a *Agent) runNATSNotices(ctx context.Context) {
	wait := a.cfg.RetryMin
	for ctx.Err() == nil {
		cons, err := a.js.CreateOrUpdateConsumer(ctx, bus.StreamCommands, jetstream.ConsumerConfig{
			Durable:       NoticeDurable(a.cfg.ClientID),
			FilterSubject: subject.ClientNotice(a.cfg.ClientID),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       30 * time.Second,
			MaxDeliver:    10,
		})
		if err == nil {
			var cc jetstream.ConsumeContext
			cc, err = cons.Consume(func(m jetstream.Msg) { a.onNATSNotice(ctx, m) },
				jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
					if ctx.Err() == nil {
						a.log.Debug().Err(err).Msg("notice consumer")
					}
				}))
			if err == nil {
				a.log.Info().Str("consumer", NoticeDurable(a.cfg.ClientID)).Msg("listening for notices on NATS")
				<-ctx.Done()
				cc.Stop()
				return
			}
		}
		a.log.Warn().Err(err).Dur("retry_in", wait).Msg("notice consumer")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, a.cfg.RetryMax)
	}
}

func (a *Agent) onNATSNotice(ctx context.Context, m jetstream.Msg) {
	_, n, err := events.DecodeAs[events.MoveNotice](m.Data())
	if err != nil {
		a.log.Error().Err(err).Msg("invalid notice on NATS: terminated")
		_ = m.TermWithReason("invalid notice: " + truncate(err.Error(), 180))
		return
	}
	err = a.submit(ctx, n, ChannelNATS)
	switch {
	case err == nil, errors.Is(err, ErrNoticeExpired):
		_ = m.Ack()
	case errors.Is(err, ErrNoticeNotOurs):
		// another process of the same client may own it: let it come around
		if md, _ := m.Metadata(); md != nil && md.NumDelivered >= 3 {
			_ = m.TermWithReason("notice for a session no agent of this client owns")
			return
		}
		_ = m.NakWithDelay(time.Second)
	default:
		_ = m.Nak()
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// replayCache remembers the webhook signatures seen within their validity,
// so a captured request replayed within five minutes is refused. mu guards seen.
type replayCache struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// check records sig (signed at t) and reports whether it was new.
func (c *replayCache) check(sig string, t, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]time.Time{}
	}
	for k, at := range c.seen {
		if now.Sub(at) > events.SignatureMaxAge+time.Minute {
			delete(c.seen, k)
		}
	}
	if _, dup := c.seen[sig]; dup {
		return false
	}
	c.seen[sig] = t
	return true
}

// webhookHandler receives signed notices: POST /v1/notices (any path is
// accepted, the declared URL is what the notifier uses).
func (a *Agent) webhookHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		s := a.sess.Load()
		if s == nil || s.secret == "" {
			http.Error(w, "no session yet", http.StatusServiceUnavailable)
			return
		}
		sig := r.Header.Get(events.HeaderSignature)
		t, err := events.VerifyNoticeSignature([]byte(s.secret), sig, body, a.now(), 0)
		if err != nil {
			a.m.notices.WithLabelValues(ChannelWebhook, "rejected").Inc()
			a.out.say("webhook_rejected", map[string]any{"stream": a.cfg.Stream, "remote": r.RemoteAddr, "error": err.Error()},
				"rejected a webhook notice from %s: %v", r.RemoteAddr, err)
			http.Error(w, "bad signature: "+err.Error(), http.StatusUnauthorized)
			return
		}
		if !a.replays.check(sig, t, a.now()) {
			a.m.notices.WithLabelValues(ChannelWebhook, "rejected").Inc()
			a.out.say("webhook_rejected", map[string]any{"stream": a.cfg.Stream, "remote": r.RemoteAddr, "error": "replayed"},
				"rejected a webhook notice from %s: replayed signature", r.RemoteAddr)
			http.Error(w, "replayed signature", http.StatusUnauthorized)
			return
		}
		_, n, err := events.DecodeAs[events.MoveNotice](body)
		if err != nil {
			http.Error(w, "not a move notice: "+err.Error(), http.StatusBadRequest)
			return
		}
		err = a.submit(r.Context(), n, ChannelWebhook)
		switch {
		case err == nil:
			w.WriteHeader(http.StatusOK)
		case errors.Is(err, ErrNoticeNotOurs):
			http.Error(w, err.Error(), http.StatusConflict)
		case errors.Is(err, ErrNoticeExpired):
			http.Error(w, err.Error(), http.StatusGone)
		default:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
}

// errUnauthorized is returned by sseOnce on a 401.
var errUnauthorized = errors.New("notifier refused the credentials (401)")

// runSSE holds the notifier's server-sent-events stream open, reconnecting
// with backoff.
func (a *Agent) runSSE(ctx context.Context) {
	wait := a.cfg.RetryMin
	for ctx.Err() == nil {
		connected := false
		err := a.sseOnce(ctx, func() { connected = true })
		if ctx.Err() != nil {
			return
		}
		if connected {
			wait = a.cfg.RetryMin
		}
		ev := a.log.Warn()
		if errors.Is(err, errUnauthorized) {
			ev = a.log.Error()
			wait = a.cfg.RetryMax
		}
		ev.Err(err).Dur("retry_in", wait).Msg("notice stream closed")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, a.cfg.RetryMax)
	}
}

func (a *Agent) sseOnce(ctx context.Context, connected func()) error {
	s := a.sess.Load()
	if s == nil {
		return errors.New("no session")
	}
	u := strings.TrimRight(a.cfg.NotifierURL, "/") + "/v1/clients/" + a.cfg.ClientID + "/notices"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+s.secret)
	req.Header.Set(events.HeaderSession, s.id)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusUnauthorized:
		return errUnauthorized
	case res.StatusCode != http.StatusOK:
		return fmt.Errorf("notice stream: status %d", res.StatusCode)
	}
	connected()
	a.log.Info().Str("url", u).Msg("notice stream open")
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var event string
	var data bytes.Buffer
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event == "notice" && data.Len() > 0 {
				if _, n, err := events.DecodeAs[events.MoveNotice](data.Bytes()); err != nil {
					a.log.Error().Err(err).Msg("invalid notice on the SSE stream")
				} else if err := a.submit(ctx, n, ChannelSSE); err != nil && ctx.Err() == nil {
					a.log.Debug().Err(err).Str("notice_id", n.NoticeID).Msg("sse notice not taken")
				}
			}
			event = ""
			data.Reset()
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}

// ack tells the notifier the notice was taken: a core-NATS request on
// ferry.ack.client.<client>, or, when NATS does not answer, an HTTP POST to
// the notifier's acks endpoint. It retries a few times.
func (a *Agent) ack(n events.MoveNotice, channel string) {
	body, _ := json.Marshal(events.NoticeAck{NoticeID: n.NoticeID, ClientID: a.cfg.ClientID, SessionID: n.SessionID, Channel: channel})
	wait := a.cfg.RetryMin
	for attempt := 1; attempt <= 6 && a.ctx.Err() == nil; attempt++ {
		reply, err := a.ackNATS(body)
		if err != nil && a.cfg.NotifierURL != "" {
			reply, err = a.ackHTTP(body)
		}
		if err == nil {
			if reply.OK {
				a.log.Info().Str("notice_id", n.NoticeID).Str("channel", channel).Msg("notice acked")
			} else {
				a.log.Warn().Str("notice_id", n.NoticeID).Str("state", reply.State).Str("error", reply.Error).Msg("notifier did not take the ack")
			}
			return
		}
		a.log.Warn().Err(err).Int("attempt", attempt).Msg("ack notice")
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, a.cfg.RetryMax)
	}
}

func (a *Agent) ackNATS(body []byte) (events.NoticeAckReply, error) {
	var r events.NoticeAckReply
	ctx, cancel := context.WithTimeout(a.ctx, 2*time.Second)
	defer cancel()
	m, err := a.nc.RequestWithContext(ctx, subject.NoticeAck(a.cfg.ClientID), body)
	if err != nil {
		return r, fmt.Errorf("ack over NATS: %w", err)
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return r, fmt.Errorf("ack reply: %w", err)
	}
	return r, nil
}

func (a *Agent) ackHTTP(body []byte) (events.NoticeAckReply, error) {
	var r events.NoticeAckReply
	s := a.sess.Load()
	if s == nil || s.secret == "" {
		return r, errors.New("ack over HTTP: no notice secret")
	}
	u := strings.TrimRight(a.cfg.NotifierURL, "/") + "/v1/clients/" + a.cfg.ClientID + "/acks"
	req, err := http.NewRequestWithContext(a.ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return r, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.secret)
	req.Header.Set(events.HeaderSession, s.id)
	res, err := a.http.Do(req)
	if err != nil {
		return r, fmt.Errorf("ack over HTTP: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusUnauthorized {
		return r, errUnauthorized
	}
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return r, fmt.Errorf("ack over HTTP: status %d: %w", res.StatusCode, err)
	}
	return r, nil
}
