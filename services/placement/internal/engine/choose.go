package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/obs"
	"github.com/ferrystream/ferry/libs/token"
	"github.com/ferrystream/ferry/services/placement/client"
	"github.com/ferrystream/ferry/services/placement/internal/fleet"
	"github.com/ferrystream/ferry/services/placement/internal/migration"
)

// ErrBadRequest marks a request error (code 400); its message names the field.
var ErrBadRequest = errors.New("bad request")

func badRequest(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, a...))
}

var sessionPattern = regexp.MustCompile(`^s-[0-9a-f]{16}$`)

// chooseWire is ChooseRequest with capabilities kept raw so that unknown
// capability fields can be refused by name.
type chooseWire struct {
	Stream       string          `json:"stream"`
	ClientID     string          `json:"client_id"`
	SessionID    string          `json:"session_id"`
	Capabilities json.RawMessage `json:"capabilities"`
	Mode         string          `json:"mode"`
	SourceURL    string          `json:"source_url"`
}

// ParseChoose decodes and validates a choose request; errors wrap
// ErrBadRequest and start with the offending field.
func ParseChoose(body []byte) (client.ChooseRequest, error) {
	var w chooseWire
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return client.ChooseRequest{}, badRequest("%s: unknown field", strings.Trim(f, `"`))
		}
		return client.ChooseRequest{}, badRequest("body: not a JSON choose request: %v", err)
	}
	req := client.ChooseRequest{Stream: w.Stream, ClientID: w.ClientID, SessionID: w.SessionID, Mode: w.Mode, SourceURL: w.SourceURL}
	if len(w.Capabilities) > 0 && string(w.Capabilities) != "null" {
		cd := json.NewDecoder(bytes.NewReader(w.Capabilities))
		cd.DisallowUnknownFields()
		if err := cd.Decode(&req.Capabilities); err != nil {
			if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				return req, badRequest("capabilities.%s: unknown capability", strings.Trim(f, `"`))
			}
			return req, badRequest("capabilities: %v", err)
		}
	}
	return req, ValidateChoose(&req)
}

// ValidateChoose checks a choose request and fills the default mode.
func ValidateChoose(r *client.ChooseRequest) error {
	var errs []error
	if r.Stream == "" {
		errs = append(errs, badRequest("stream: required"))
	} else if !fleet.NamePattern.MatchString(r.Stream) {
		errs = append(errs, badRequest("stream: %q must match %s", r.Stream, fleet.NamePattern))
	}
	if r.ClientID == "" {
		errs = append(errs, badRequest("client_id: required"))
	} else if !fleet.NamePattern.MatchString(r.ClientID) {
		errs = append(errs, badRequest("client_id: %q must match %s", r.ClientID, fleet.NamePattern))
	}
	if r.SessionID != "" && !sessionPattern.MatchString(r.SessionID) {
		errs = append(errs, badRequest("session_id: %q must match %s", r.SessionID, sessionPattern))
	}
	if r.Mode == "" {
		r.Mode = client.ModePush
	}
	switch r.Mode {
	case client.ModePush:
		if r.SourceURL != "" {
			errs = append(errs, badRequest("source_url: only for mode pull"))
		}
	case client.ModePull:
		u, err := url.Parse(r.SourceURL)
		if r.SourceURL == "" {
			errs = append(errs, badRequest("source_url: required for mode pull"))
		} else if err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" || strings.ContainsAny(r.SourceURL, " \t\n") {
			errs = append(errs, badRequest("source_url: %q must be an rtsp:// URL", r.SourceURL))
		}
	default:
		errs = append(errs, badRequest("mode: %q must be push or pull", r.Mode))
	}
	c := r.Capabilities
	seen := map[string]bool{}
	for _, ch := range c.Channels {
		switch ch {
		case client.ChannelNATS, client.ChannelWebhook, client.ChannelSSE:
		default:
			errs = append(errs, badRequest("capabilities.channels: unknown channel %q (nats, webhook, sse)", ch))
		}
		if seen[ch] {
			errs = append(errs, badRequest("capabilities.channels: %q listed twice", ch))
		}
		seen[ch] = true
	}
	if seen[client.ChannelWebhook] {
		u, err := url.Parse(c.WebhookURL)
		if c.WebhookURL == "" {
			errs = append(errs, badRequest("capabilities.webhook_url: required with the webhook channel"))
		} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, badRequest("capabilities.webhook_url: %q must be an http(s) URL", c.WebhookURL))
		}
	} else if c.WebhookURL != "" {
		errs = append(errs, badRequest("capabilities.webhook_url: set without the webhook channel"))
	}
	if c.CanMove && len(c.Channels) == 0 && r.Mode == client.ModePush {
		errs = append(errs, badRequest("capabilities.channels: can_move needs at least one notice channel"))
	}
	return errors.Join(errs...)
}

// handleChoose answers placement.v1.choose. It runs on the endpoint's
// subscription goroutine (micro handlers must respond before returning:
// its stats read the request afterwards), so one replica answers one choose
// at a time; more replicas answer more.
func (s *Service) handleChoose(r micro.Request) {
	start := time.Now()
	defer func() { s.met.chooseTime.Observe(time.Since(start).Seconds()) }()
	req, err := ParseChoose(r.Data())
	if err == nil {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		defer cancel()
		var resp client.ChooseResponse
		resp, err = s.Choose(ctx, req)
		if err == nil {
			s.met.chooseCodes.WithLabelValues("200").Inc()
			_ = r.RespondJSON(resp)
			return
		}
	}
	code := client.CodeInternal
	switch {
	case errors.Is(err, ErrBadRequest):
		code = client.CodeBadRequest
	case errors.Is(err, fleet.ErrNoCapacity):
		code = client.CodeNoCapacity
	}
	s.met.chooseCodes.WithLabelValues(code).Inc()
	desc := strings.ReplaceAll(err.Error(), ErrBadRequest.Error()+": ", "")
	desc = strings.ReplaceAll(desc, "\n", "; ")
	ev := s.log.Warn()
	if code == client.CodeInternal {
		ev = s.log.Error()
	}
	ev.Str(obs.FieldStream, req.Stream).Str(obs.FieldClient, req.ClientID).Str("code", code).Str("error", desc).Msg("choose refused")
	_ = r.Error(code, truncate(desc, 1024), nil)
}

func (s *Service) handleGet(r micro.Request) {
	var req client.GetRequest
	dec := json.NewDecoder(bytes.NewReader(r.Data()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		_ = r.Error(client.CodeBadRequest, "body: not a JSON get request: "+err.Error(), nil)
		return
	}
	if !fleet.NamePattern.MatchString(req.Stream) {
		_ = r.Error(client.CodeBadRequest, fmt.Sprintf("stream: %q must match %s", req.Stream, fleet.NamePattern), nil)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	e, err := s.st.Placements.Get(ctx, events.PlacementKey(req.Stream))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_ = r.Error(client.CodeNotFound, "stream "+req.Stream+" has no placement", nil)
	case err != nil:
		_ = r.Error(client.CodeInternal, "read placement: "+err.Error(), nil)
	default:
		_ = r.Respond(e.Value())
	}
}

// session returns the session for req: the stored one when the client
// reconnects with its id, otherwise a new one (not yet stored). A
// reconnecting client whose session is unknown (expired) gets it back
// under the same id with a new notice secret.
func (s *Service) session(ctx context.Context, req client.ChooseRequest) (sess events.Session, rev uint64, isNew bool, err error) {
	now := s.now().UTC()
	if req.SessionID != "" {
		e, err := s.st.Sessions.Get(ctx, req.SessionID)
		switch {
		case err == nil:
			if err := json.Unmarshal(e.Value(), &sess); err != nil {
				return sess, 0, false, fmt.Errorf("read session %s: %w", req.SessionID, err)
			}
			if sess.Stream != req.Stream {
				return sess, 0, false, badRequest("session_id: %s belongs to stream %s", req.SessionID, sess.Stream)
			}
			if sess.ClientID != req.ClientID {
				return sess, 0, false, badRequest("session_id: %s belongs to client %s", req.SessionID, sess.ClientID)
			}
			return sess, e.Revision(), false, nil
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return sess, 0, false, fmt.Errorf("read session %s: %w", req.SessionID, err)
		}
	}
	id := req.SessionID
	if id == "" {
		id = "s-" + randomHex(8)
	}
	return events.Session{SessionID: id, Stream: req.Stream, ClientID: req.ClientID, Capabilities: req.Capabilities,
		CreatedAt: now}, 0, true, nil
}

func sameCaps(a, b events.Capabilities) bool {
	return a.CanMove == b.CanMove && a.WebhookURL == b.WebhookURL && slices.Equal(a.Channels, b.Channels)
}

// saveSession stores a new session with its notice secret (the secret first,
// in its own bucket, so a session never exists without one), or the changed
// capabilities of a known one.
func (s *Service) saveSession(ctx context.Context, sess events.Session, rev uint64, isNew bool, caps events.Capabilities, secret string) error {
	if !isNew && sameCaps(sess.Capabilities, caps) {
		return nil
	}
	sess.Capabilities = caps
	b, _ := json.Marshal(sess)
	var err error
	if isNew {
		sb, _ := json.Marshal(events.SessionSecret{SessionID: sess.SessionID, NoticeSecret: secret, CreatedAt: sess.CreatedAt})
		if _, err := s.st.SessionSecrets.Put(ctx, sess.SessionID, sb); err != nil {
			return fmt.Errorf("write session secret %s: %w", sess.SessionID, err)
		}
		_, err = s.st.Sessions.Create(ctx, sess.SessionID, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return badRequest("session_id: %s was created concurrently; ask again", sess.SessionID)
		}
	} else {
		_, err = s.st.Sessions.Update(ctx, sess.SessionID, b, rev)
	}
	if err != nil {
		return fmt.Errorf("write session %s: %w", sess.SessionID, err)
	}
	return nil
}

// Choose places req's stream (or returns its current home) and signs a
// publish token. Nothing is written when it fails.
func (s *Service) Choose(ctx context.Context, req client.ChooseRequest) (client.ChooseResponse, error) {
	if err := ValidateChoose(&req); err != nil {
		return client.ChooseResponse{}, err
	}
	sess, srev, isNew, err := s.session(ctx, req)
	if err != nil {
		return client.ChooseResponse{}, err
	}
	p, err := s.home(ctx, req, sess.SessionID)
	if err != nil {
		return client.ChooseResponse{}, err
	}
	var secret string
	if isNew {
		secret = randomHex(16)
	}
	if err := s.saveSession(ctx, sess, srev, isNew, req.Capabilities, secret); err != nil {
		return client.ChooseResponse{}, err
	}
	now := s.now().UTC()
	exp := now.Add(s.cfg.TokenTTL)
	tok, err := token.Sign(s.cfg.TokenSecret, token.Claims{Stream: p.Stream, Host: p.Host, Session: sess.SessionID,
		ClientID: req.ClientID, Expires: exp})
	if err != nil {
		return client.ChooseResponse{}, err
	}
	base := s.view.URL(p.Host)
	if base == "" {
		base = p.RTSPURL
	}
	resp := client.ChooseResponse{Stream: p.Stream, Host: p.Host, SessionID: sess.SessionID, Epoch: p.Epoch, ExpiresAt: exp,
		URL: strings.TrimRight(base, "/") + "/" + p.Stream + "?" + token.QueryParam + "=" + url.QueryEscape(tok)}
	if isNew {
		resp.NoticeSecret = secret
	}
	return resp, nil
}

// home returns the stream's placement after this choose: the current home
// when it is usable (recording a new session, client or source on it),
// otherwise a new one chosen and written with compare-and-set.
func (s *Service) home(ctx context.Context, req client.ChooseRequest, sessionID string) (events.Placement, error) {
	key := events.PlacementKey(req.Stream)
	log := s.log.With().Str(obs.FieldStream, req.Stream).Str(obs.FieldClient, req.ClientID).Str(obs.FieldSession, sessionID).Logger()
	for attempt := 0; attempt < 8; attempt++ {
		e, err := s.st.Placements.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			c, res, err := s.ix.pick(req.Stream, req.ClientID, "", s.cfg.StreamBitrate)
			if err != nil {
				s.met.noCapacity.Inc()
				return events.Placement{}, err
			}
			p := events.Placement{Stream: req.Stream, Host: c.Host, RTSPURL: c.RTSPURL, Epoch: 1, SessionID: sessionID,
				ClientID: req.ClientID, Mode: req.Mode, SourceURL: req.SourceURL, UpdatedAt: s.now().UTC()}
			p.PlacedAt = p.UpdatedAt
			b, _ := json.Marshal(p)
			rev, err := s.st.Placements.Create(ctx, key, b)
			if err == nil {
				s.ix.commit(req.Stream, &p, rev, res)
				s.notify(p, rev)
			}
			s.ix.release(res)
			if errors.Is(err, jetstream.ErrKeyExists) {
				s.met.conflicts.Inc()
				continue
			}
			if err != nil {
				return events.Placement{}, fmt.Errorf("create placement %s: %w", req.Stream, err)
			}
			s.met.decisions.WithLabelValues("initial").Inc()
			log.Info().Str(obs.FieldHost, c.Host).Str("zone", c.Zone).Msg("stream placed")
			if p.Mode == client.ModePull {
				if err := s.sendPull(ctx, p, ""); err != nil {
					return events.Placement{}, err
				}
			}
			return p, nil
		}
		if err != nil {
			return events.Placement{}, fmt.Errorf("read placement %s: %w", req.Stream, err)
		}
		var cur events.Placement
		if err := json.Unmarshal(e.Value(), &cur); err != nil {
			return events.Placement{}, fmt.Errorf("placement %s is not JSON: %w", req.Stream, err)
		}
		base := cur
		base.SessionID, base.ClientID, base.Mode, base.SourceURL = sessionID, req.ClientID, req.Mode, req.SourceURL
		st := s.view.Status(cur.Host)
		keep, why := s.keepHome(st)
		if keep {
			if base == cur {
				return cur, nil
			}
			base.UpdatedAt = s.now().UTC()
			b, _ := json.Marshal(base)
			rev, err := s.st.Placements.Update(ctx, key, b, e.Revision())
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				s.met.conflicts.Inc()
				continue
			}
			if err != nil {
				return events.Placement{}, fmt.Errorf("update placement %s: %w", req.Stream, err)
			}
			s.ix.apply(req.Stream, &base, rev)
			s.notify(base, rev)
			log.Info().Str(obs.FieldHost, cur.Host).Msg("placement's publisher updated")
			if base.Mode == client.ModePull && (cur.Mode != base.Mode || cur.SourceURL != base.SourceURL) {
				if err := s.sendPull(ctx, base, ""); err != nil {
					return events.Placement{}, err
				}
			}
			return base, nil
		}
		// The current home cannot take the publisher back (or is about to
		// be evacuated anyway): move the stream.
		st.Reason = why
		c, res, err := s.ix.pick(req.Stream, req.ClientID, cur.Host, s.cfg.StreamBitrate)
		if err != nil {
			s.met.noCapacity.Inc()
			return events.Placement{}, fmt.Errorf("current home %s unusable (%s): %w", cur.Host, st.Reason, err)
		}
		deadline := s.now().UTC()
		if ev, ok := s.view.EvacuationOf(cur.Host); ok && !ev.Immediate && ev.Deadline.After(deadline) {
			deadline = ev.Deadline
		}
		np, err := s.move(ctx, entry{P: cur, Rev: e.Revision()}, base, c, res, moveSpec{Kind: migration.KindReconnect,
			Reason: "reconnect: home " + cur.Host + " unusable: " + st.Reason, Deadline: deadline, Fallback: "publisher reconnected through choose",
			OldAlive: st.Heartbeating && !st.Down})
		s.ix.release(res)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil && np.Host == "" {
			return events.Placement{}, err
		}
		return np, nil
	}
	return events.Placement{}, fmt.Errorf("place %s: %w after 8 attempts", req.Stream, ErrConflict)
}

// keepHome reports whether a stream already placed on st.Host stays there
// when its client asks again: the host must be alive (fresh record, not
// reported down), not draining, and not due for evacuation now. A
// prediction further away than the evacuation lead, or a record refused
// for new streams (absurd capacity), does not move a stream by itself.
func (s *Service) keepHome(st fleet.Status) (bool, string) {
	switch {
	case !st.Known:
		return false, "no registry record"
	case st.Down:
		return false, st.Reason
	case st.Draining:
		return false, "draining"
	case !st.Heartbeating:
		return false, "not heartbeating"
	case st.Edge:
		return false, "edge-only host"
	}
	if ev, ok := s.view.EvacuationOf(st.Host); ok && (ev.Immediate || !s.now().Before(ev.StartAt)) {
		return false, "being evacuated: " + ev.Reason
	}
	return true, ""
}

// moveSpec describes why and how a stream moves.
type moveSpec struct {
	Kind     string
	Reason   string
	Deadline time.Time
	// Fallback, when set, makes the migration break-before-make from the start.
	Fallback string
	// OldAlive: the old host is expected to report stream_ceased.
	OldAlive bool
}

// readsSession reports whether a move of p needs its publisher's session
// read (incapable) to know whether it can move make-before-break.
func readsSession(p events.Placement, spec moveSpec) bool {
	return spec.Fallback == "" && p.Mode != client.ModePull
}

// move writes cur's stream onto host to (epoch+1, a migration id) with
// compare-and-set on cur.Rev, then records the migration and emits
// reassigned (and a pull command for pull-mode streams). base carries the
// non-home fields to keep; res (from pick) is committed with the write.
// ErrConflict means another writer got there first.
// A non-nil error with a non-empty placement means the move was written but
// its follow-up failed (the leader's recovery completes it).
func (s *Service) move(ctx context.Context, cur entry, base events.Placement, to fleet.Candidate, res *reservation, spec moveSpec) (events.Placement, error) {
	stream := cur.P.Stream
	id := MigrationID(stream, cur.Rev, "")
	np := base
	np.Host, np.RTSPURL, np.Epoch = to.Host, to.RTSPURL, cur.P.Epoch+1
	np.MigrationID, np.FromHost, np.Deadline, np.UpdatedAt = id, cur.P.Host, spec.Deadline.UTC(), s.now().UTC()
	b, _ := json.Marshal(np)
	// Whether the publisher can move make-before-break (a read of its
	// session) does not depend on the write: read it meanwhile, joined on
	// every path, so a move waits for one round trip less.
	var capable chan string
	if readsSession(np, spec) {
		capable = make(chan string, 1)
		go func() { capable <- s.incapable(ctx, np.SessionID) }()
	}
	rev, err := s.st.Placements.Update(ctx, events.PlacementKey(stream), b, cur.Rev)
	if capable != nil {
		spec.Fallback = <-capable
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		s.met.conflicts.Inc()
		return events.Placement{}, fmt.Errorf("move %s: %w", stream, ErrConflict)
	}
	if err != nil {
		return events.Placement{}, fmt.Errorf("write placement %s: %w", stream, err)
	}
	s.ix.commit(stream, &np, rev, res)
	s.notify(np, rev)
	s.met.decisions.WithLabelValues(spec.Kind).Inc()
	s.log.Info().Str(obs.FieldMigration, id).Str(obs.FieldStream, stream).Str("from_host", cur.P.Host).Str(obs.FieldHost, to.Host).
		Uint64("epoch", np.Epoch).Time("deadline", np.Deadline).Str("reason", spec.Reason).Msg("stream reassigned")
	return np, s.announceMove(ctx, np, spec)
}

// announceMove emits reassigned (and the pull command), then stores the
// migration record: a record therefore implies its events were published,
// and a placement naming a migration without a record is a decision whose
// follow-up was cut short (the leader's recovery calls this again). It is
// idempotent: event ids derive from the migration id, the record is Created.
func (s *Service) announceMove(ctx context.Context, np events.Placement, spec moveSpec) error {
	rec := migration.Record{ID: np.MigrationID, Stream: np.Stream, FromHost: np.FromHost, ToHost: np.Host, Epoch: np.Epoch,
		Mode: np.Mode, SessionID: np.SessionID, ClientID: np.ClientID, Kind: spec.Kind, Reason: spec.Reason,
		NeedCease: spec.OldAlive, Deadline: np.Deadline}
	rec = migration.NewDecided(rec, np.UpdatedAt)
	fallback := spec.Fallback
	if fallback != "" {
		rec = migration.MarkFallback(rec, fallback, np.UpdatedAt)
	}
	mode := np.Mode
	if mode == "" {
		mode = client.ModePush
	}
	ev := events.Reassigned{MigrationID: rec.ID, Stream: np.Stream, FromHost: np.FromHost, ToHost: np.Host,
		ToURL: strings.TrimRight(np.RTSPURL, "/") + "/" + np.Stream, Epoch: np.Epoch, Deadline: np.Deadline,
		Reason: truncate(spec.Reason, 1024), SessionID: np.SessionID, ClientID: np.ClientID, Mode: mode}
	if _, err := events.Publish(ctx, s.js, s.source, ev); err != nil {
		return fmt.Errorf("emit reassigned %s: %w", rec.ID, err)
	}
	if np.Mode == client.ModePull {
		if err := s.sendPull(ctx, np, rec.ID); err != nil {
			return err
		}
	}
	b, _ := json.Marshal(rec)
	if _, err := s.st.Migrations.Create(ctx, rec.ID, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("record migration %s: %w", rec.ID, err)
	}
	return nil
}

// notify tells the hosts concerned that a placement was written at rev
// (bus.NotifyPlacement: the new home, the old one, the stream's followers),
// so that no host has to watch the whole bucket. A lost notice costs a host
// a re-read, not a decision: the bucket is the truth.
func (s *Service) notify(p events.Placement, rev uint64) {
	if err := bus.NotifyPlacement(s.nc, p, rev); err != nil {
		s.log.Warn().Err(err).Str(obs.FieldStream, p.Stream).Msg("placement notice not sent")
	}
}

// incapable returns why the session's client cannot move make-before-break ("" if it can).
func (s *Service) incapable(ctx context.Context, sessionID string) string {
	if sessionID == "" {
		return "no publisher session"
	}
	e, err := s.st.Sessions.Get(ctx, sessionID)
	if err != nil {
		return "publisher session " + sessionID + " unknown"
	}
	var sess events.Session
	if json.Unmarshal(e.Value(), &sess) != nil {
		return "publisher session " + sessionID + " unreadable"
	}
	if !sess.Capabilities.CanMove {
		return "client declared it cannot move (capabilities.can_move false)"
	}
	return ""
}

// sendPull asks p's host to pull its source. The command id derives from
// the placement (stream, host, epoch, source) so a repeated choose is a
// duplicate, not a second command.
func (s *Service) sendPull(ctx context.Context, p events.Placement, migrationID string) error {
	cmd := events.PullCommand{CommandID: "pull-" + MigrationID(p.Stream+"/"+p.Host+"/"+p.SourceURL, p.Epoch, "pull")[2:], Host: p.Host,
		Stream: p.Stream, SourceURL: p.SourceURL, MigrationID: migrationID}
	if migrationID != "" {
		cmd.CommandID = "pull-" + migrationID
	}
	if _, err := events.Publish(ctx, s.js, s.source, cmd); err != nil {
		s.log.Error().Err(err).Str(obs.FieldStream, p.Stream).Str(obs.FieldHost, p.Host).Str(obs.FieldMigration, migrationID).Msg("send pull command")
		return fmt.Errorf("send pull command %s: %w", cmd.CommandID, err)
	}
	return nil
}
