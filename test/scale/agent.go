package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/subject"
	"github.com/ferrystream/ferry/services/placement/client"
)

// agentCaps is what every simulated agent declares, as ferry-publish does
// with its default channel: it can move, notices over NATS.
var agentCaps = events.Capabilities{CanMove: true, Channels: []string{client.ChannelNATS}}

// Backoff of a publisher's republish and of a move's dial (ferry-publish
// defaults PUBLISH_RETRY_MIN, PUBLISH_RETRY_MAX).
const (
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
)

// Agent notice verdicts, as ferry-publish answers them.
var (
	errNotOurs = errors.New("notice is for a session this agent does not own")
	errExpired = errors.New("notice arrived after its deadline")
)

// agent is one simulated ferry-publish: it asks placement where to publish
// (placement.v1.choose over NATS), "publishes" there (an attach on the
// simulated host), takes move notices from NATS with the real acks, and
// moves make-before-break; when its host vanishes it asks placement again.
// mu guards the mutable fields.
type agent struct {
	s              *sim
	i              int
	stream, client string
	place          *client.Client
	nc             *nats.Conn

	mu           sync.Mutex
	session      string
	host         string // the host it publishes to ("" while it has none)
	moving       string // migration id of the move in progress
	republishing bool
	seen         map[string]struct{}
}

func newAgent(s *sim, i int, nc *nats.Conn) *agent {
	return &agent{s: s, i: i, stream: fmt.Sprintf("cam-%06d", i), client: fmt.Sprintf("agent-%06d", i),
		place: client.New(nc), nc: nc}
}

func (a *agent) currentHost() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.host
}

// choose asks placement for the stream's home, declaring the agent can move.
func (a *agent) choose(ctx context.Context) (client.ChooseResponse, error) {
	a.mu.Lock()
	sid := a.session
	a.mu.Unlock()
	start := time.Now()
	resp, err := a.place.Choose(ctx, client.ChooseRequest{Stream: a.stream, ClientID: a.client, SessionID: sid,
		Capabilities: agentCaps, Mode: client.ModePush})
	a.s.chooseLat.add(time.Since(start))
	if err != nil {
		return resp, err
	}
	a.mu.Lock()
	a.session = resp.SessionID
	a.mu.Unlock()
	return resp, nil
}

// publish places and attaches the stream, retrying with backoff; it returns
// once the agent publishes somewhere (or ctx ends).
func (a *agent) publish(ctx context.Context) error {
	wait := retryMin
	for ctx.Err() == nil {
		if a.currentHost() != "" {
			return nil // a move notice put it somewhere meanwhile
		}
		resp, err := a.choose(ctx)
		if err == nil {
			if h := a.s.hostByID(resp.Host); h == nil {
				err = fmt.Errorf("placement chose unknown host %s", resp.Host)
			} else if err = h.attach(a, resp.URL, resp.SessionID); err == nil {
				a.mu.Lock()
				if a.host == "" {
					a.host = resp.Host
				}
				a.mu.Unlock()
				return nil
			}
		}
		a.s.count("publish_retries")
		if !bus.Sleep(ctx, wait) {
			break
		}
		wait = min(2*wait, retryMax)
	}
	return ctx.Err()
}

// uplinkEnded is the agent's connection to host ending: the old host ceased
// after a move (nothing to do), or the host vanished (publish again).
func (a *agent) uplinkEnded(host string) {
	a.mu.Lock()
	if a.host != host {
		a.mu.Unlock()
		return
	}
	a.host = ""
	if a.republishing {
		a.mu.Unlock()
		return
	}
	a.republishing = true
	a.mu.Unlock()
	a.s.count("agent_lost_host")
	_ = a.publish(a.s.ctx)
	a.mu.Lock()
	a.republishing = false
	a.mu.Unlock()
}

// onNotice takes a move notice, as ferry-publish's loop does.
func (a *agent) onNotice(n events.MoveNotice) error {
	a.mu.Lock()
	if n.Stream != a.stream || n.SessionID != a.session {
		a.mu.Unlock()
		return errNotOurs
	}
	if _, dup := a.seen[n.NoticeID]; dup {
		a.mu.Unlock()
		a.s.count("notice_duplicate_received")
		return nil
	}
	if !time.Now().Before(n.OfflineAt) {
		a.mu.Unlock()
		return errExpired
	}
	if a.seen == nil {
		a.seen = map[string]struct{}{}
	}
	a.seen[n.NoticeID] = struct{}{}
	already := a.host == n.ToHost
	moving := a.moving == n.MigrationID
	if !already && !moving {
		a.moving = n.MigrationID
	}
	a.mu.Unlock()
	go a.ack(n)
	if !already && !moving {
		go a.move(n)
	}
	return nil
}

// move connects to the new host (retrying until the old host's offline
// time); the old host lets go once the new one reports the publisher.
func (a *agent) move(n events.MoveNotice) {
	ctx, cancel := context.WithDeadline(a.s.ctx, n.OfflineAt)
	defer cancel()
	wait := retryMin
	for {
		h := a.s.hostByID(n.ToHost)
		err := errRefused
		if h != nil {
			err = h.attach(a, n.NewURL, n.SessionID)
		}
		if err == nil {
			a.mu.Lock()
			if a.moving == n.MigrationID {
				a.moving = ""
			}
			a.host = n.ToHost
			a.mu.Unlock()
			return
		}
		a.s.count("move_dial_retries")
		if !bus.Sleep(ctx, wait) {
			a.mu.Lock()
			if a.moving == n.MigrationID {
				a.moving = ""
			}
			lost := a.host == ""
			a.mu.Unlock()
			a.s.count("moves_failed")
			if lost {
				_ = a.publish(a.s.ctx)
			}
			return
		}
		wait = min(2*wait, retryMax)
	}
}

// ack tells the notifier the notice was taken: a core-NATS request on
// ferry.ack.client.<client>, retried a few times.
func (a *agent) ack(n events.MoveNotice) {
	body, _ := json.Marshal(events.NoticeAck{NoticeID: n.NoticeID, ClientID: a.client, SessionID: n.SessionID, Channel: client.ChannelNATS})
	wait := retryMin
	for attempt := 1; attempt <= 6; attempt++ {
		ctx, cancel := context.WithTimeout(a.s.ctx, 2*time.Second)
		m, err := a.nc.RequestWithContext(ctx, subject.NoticeAck(a.client), body)
		cancel()
		if err == nil {
			var r events.NoticeAckReply
			if json.Unmarshal(m.Data, &r) == nil && r.OK {
				a.s.count("notice_acks_ok")
			} else {
				a.s.count("notice_acks_refused")
			}
			return
		}
		if !bus.Sleep(a.s.ctx, wait) {
			return
		}
		wait = min(2*wait, retryMax)
	}
	a.s.count("notice_acks_lost")
}

// noticeDurable is the one consumer through which every simulated agent
// takes its notices. Each ferry-publish has its own durable consumer
// (client-<client>, filter ferry.cmd.client.<client>.notice); 100,000 of
// them on one stream is a cost of its own (see docs/scale.md), so the
// simulation shares one over the same subjects and acks each message as the
// agent would.
const noticeDurable = "scale-agents"

// consumeNotices delivers every move notice to its agent until ctx ends,
// and checks that no notice is sent twice.
func (s *sim) consumeNotices(ctx context.Context, js jetstream.JetStream) (jetstream.ConsumeContext, error) {
	cons, err := js.CreateOrUpdateConsumer(ctx, bus.StreamCommands, jetstream.ConsumerConfig{
		Durable: noticeDurable, FilterSubject: subject.ClientNoticeAll, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: 10, MaxAckPending: 50000,
	})
	if err != nil {
		return nil, fmt.Errorf("notice consumer: %w", err)
	}
	return cons.Consume(func(m jetstream.Msg) {
		_, n, err := events.DecodeAs[events.MoveNotice](m.Data())
		if err != nil {
			s.violation("invalid move notice: %v", err)
			_ = m.TermWithReason("invalid notice")
			return
		}
		md, _ := m.Metadata()
		var seq uint64
		var delivered uint64 = 1
		if md != nil {
			seq, delivered = md.Sequence.Stream, md.NumDelivered
		}
		s.obs.noticeSeen(n, seq, delivered)
		a := s.agentByClient(n.ClientID)
		if a == nil {
			s.violation("notice %s for unknown client %s", n.NoticeID, n.ClientID)
			_ = m.Term()
			return
		}
		switch err := a.onNotice(n); {
		case err == nil, errors.Is(err, errExpired):
			if err != nil {
				s.count("notices_expired")
			}
			_ = m.Ack()
		case errors.Is(err, errNotOurs):
			s.count("notices_not_ours")
			if delivered >= 3 {
				_ = m.TermWithReason("notice for a session no agent of this client owns")
				return
			}
			_ = m.NakWithDelay(time.Second)
		}
	}, jetstream.PullMaxMessages(2000))
}
