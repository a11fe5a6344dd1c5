package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/ferrystream/ferry/libs/events"
	"github.com/ferrystream/ferry/libs/media"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/libs/token"
	"github.com/ferrystream/ferry/services/ingest/internal/rtsptest"
)

func fakeH264(t *testing.T) *media.FakeH264 {
	t.Helper()
	src, err := media.NewFakeH264(media.FakeConfig{FPS: 25, GOP: 25})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// runAgent paces an agent until the test ends.
func runAgent(t *testing.T, ag *rtsptest.Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = ag.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; ag.Close() })
}

// TestPublishAndRead: a publisher with a token, readers over TCP and UDP, the
// lifecycle events, and the stream kept for its readers when the publisher
// vanishes mid-stream and comes back.
func TestPublishAndRead(t *testing.T) {
	h := newHarness(t)
	a := h.node("ingest-1", withUDP(t))
	h.place("cam-1", a, "s-1", "", "", time.Time{})
	sess, _ := json.Marshal(events.Session{SessionID: "s-1", Stream: "cam-1", ClientID: "agent-7",
		Capabilities: events.Capabilities{CanMove: true, Channels: []string{"nats"}}, CreatedAt: time.Now()})
	if _, err := h.env.Stores.Sessions.Put(context.Background(), "s-1", sess); err != nil {
		t.Fatal(err)
	}

	ag := rtsptest.NewAgent(fakeH264(t))
	conn, err := ag.Connect(publishURL(a, "cam-1", h.token("cam-1", "ingest-1", "s-1", "", time.Minute)), gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	runAgent(t, ag)
	attached := waitEvent(h, events.TypePublisherAttached, 5*time.Second, func(e events.PublisherAttached) bool { return e.Stream == "cam-1" })
	if attached.Host != "ingest-1" || attached.SessionID != "s-1" || attached.Mode != "push" ||
		attached.ClientID != "agent-7" || !attached.Capabilities.CanMove || len(attached.Capabilities.Channels) != 1 {
		t.Fatalf("publisher_attached = %+v", attached)
	}

	readers := map[string]*rtsptest.Reader{}
	for _, tr := range []gortsplib.Protocol{gortsplib.ProtocolTCP, gortsplib.ProtocolUDP} {
		readers[transportName(tr)] = read(t, a.PublicURL()+"/cam-1", tr)
	}
	for name, r := range readers {
		waitPackets(t, r, 50)
		if err := rtsptest.Continuity(r.A.Report()); err != nil {
			t.Errorf("%s reader: %v", name, err)
		}
	}

	// the publisher vanishes mid-stream (connection reset, no TEARDOWN):
	// readers stay attached, the stream waits for a source
	conn.Vanish()
	det := waitEvent(h, events.TypePublisherDetached, 5*time.Second, func(e events.PublisherDetached) bool { return e.Stream == "cam-1" })
	t.Logf("publisher_detached: %+v", det)
	if s := a.Node().Table().Get("cam-1"); s == nil {
		t.Fatal("stream removed while readers are attached")
	}
	// a new publisher (another encoder) takes over; readers see one continuous stream
	ag2 := rtsptest.NewAgent(fakeH264(t))
	if _, err := ag2.Connect(publishURL(a, "cam-1", h.token("cam-1", "ingest-1", "s-2", "", time.Minute)), gortsplib.ProtocolUDP); err != nil {
		t.Fatal(err)
	}
	runAgent(t, ag2)
	for name, r := range readers {
		waitPackets(t, r, 100)
		select {
		case <-r.Done():
			t.Fatalf("%s reader disconnected: %v", name, r.Err())
		default:
		}
		rep := r.A.Report().Medias[0]
		if rep.SSRCChanges != 0 || rep.SeqGaps != 0 || rep.SeqBackwards != 0 || rep.TSBackwards != 0 {
			t.Errorf("%s reader across a publisher restart: %+v", name, rep)
		}
	}
}

// TestPublishRefused: missing, forged, expired and misdirected tokens, a
// stream not placed here, and a codec that differs from the stream's are
// refused with a clear status, and nothing else changes.
func TestPublishRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.node("ingest-1")
	other := h.node("ingest-2")
	h.place("cam-1", a, "s-1", "", "", time.Time{})
	h.place("cam-9", other, "s-9", "", "", time.Time{})

	forged, _ := token.Sign([]byte("another-secret"), token.Claims{Stream: "cam-1", Host: "ingest-1", Session: "s-1", Expires: time.Now().Add(time.Minute)})
	for _, tc := range []struct {
		name   string
		stream string
		tok    string
		status base.StatusCode
	}{
		{"no token", "cam-1", "", base.StatusUnauthorized},
		{"malformed", "cam-1", "garbage", base.StatusUnauthorized},
		{"forged", "cam-1", forged, base.StatusUnauthorized},
		{"expired", "cam-1", h.token("cam-1", "ingest-1", "s-1", "", -time.Second), base.StatusUnauthorized},
		{"other host", "cam-1", h.token("cam-1", "ingest-2", "s-1", "", time.Minute), base.StatusForbidden},
		{"other stream", "cam-1", h.token("cam-2", "ingest-1", "s-1", "", time.Minute), base.StatusForbidden},
		{"placed elsewhere", "cam-9", h.token("cam-9", "ingest-1", "s-9", "", time.Minute), base.StatusForbidden},
		{"not placed", "cam-7", h.token("cam-7", "ingest-1", "s-7", "", time.Minute), base.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := a.PublicURL() + "/" + tc.stream
			if tc.tok != "" {
				u += "?token=" + tc.tok
			}
			_, err := rtsptest.NewAgent(fakeH264(t)).Connect(u, gortsplib.ProtocolTCP)
			var bs liberrors.ErrClientBadStatusCode
			if !errors.As(err, &bs) || bs.Code != tc.status {
				t.Fatalf("err = %v, want status %d", err, tc.status)
			}
			t.Logf("refused: %d %s", bs.Code, bs.Message)
			if a.Node().Table().Get(tc.stream) != nil {
				t.Fatal("a refused publisher created a stream")
			}
		})
	}
	if n := h.countEvents(events.TypePublisherAttached); n != 0 {
		t.Fatalf("%d publisher_attached events after refusals", n)
	}

	t.Run("codec mismatch on takeover", func(t *testing.T) {
		ag := rtsptest.NewAgent(fakeH264(t))
		if _, err := ag.Connect(publishURL(a, "cam-1", h.token("cam-1", "ingest-1", "s-1", "", time.Minute)), gortsplib.ProtocolTCP); err != nil {
			t.Fatal(err)
		}
		runAgent(t, ag)
		h265, _ := media.NewFakeH265(media.FakeConfig{})
		_, err := rtsptest.NewAgent(h265).Connect(publishURL(a, "cam-1", h.token("cam-1", "ingest-1", "s-2", "", time.Minute)), gortsplib.ProtocolTCP)
		var bs liberrors.ErrClientBadStatusCode
		if !errors.As(err, &bs) || bs.Code != base.StatusUnsupportedMediaType {
			t.Fatalf("err = %v, want 415", err)
		}
		t.Logf("refused: %d %s", bs.Code, bs.Message)
		if ag.Conns() != 1 {
			t.Fatal("the stream's publisher was disturbed")
		}
	})
}

// TestOpenPublish: the dev flag lets a publisher in without a token.
func TestOpenPublish(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.node("ingest-1", withEnv("INGEST_ALLOW_OPEN_PUBLISH", "true"))
	ag := rtsptest.NewAgent(fakeH264(t))
	if _, err := ag.Connect(a.PublicURL()+"/dev-1", gortsplib.ProtocolTCP); err != nil {
		t.Fatal(err)
	}
	runAgent(t, ag)
	r := read(t, a.PublicURL()+"/dev-1", gortsplib.ProtocolTCP)
	waitPackets(t, r, 20)
}

// TestTakeoverSameHost: a second publisher on the same path is pending and
// switched in: at sequence continuity when it continues the same session's
// space (the agent), at a keyframe with rewrite when it is another encoder.
func TestTakeoverSameHost(t *testing.T) {
	for _, tc := range []struct {
		name     string
		session2 string
		same     bool
	}{
		{"same space", "s-1", true},
		{"independent", "s-2", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			a := h.node("ingest-1")
			h.place("cam-1", a, "s-1", "", "", time.Time{})
			ag := rtsptest.NewAgent(fakeH264(t))
			first, err := ag.Connect(publishURL(a, "cam-1", h.token("cam-1", "ingest-1", "s-1", "", time.Minute)), gortsplib.ProtocolTCP)
			if err != nil {
				t.Fatal(err)
			}
			runAgent(t, ag)
			r := read(t, a.PublicURL()+"/cam-1", gortsplib.ProtocolTCP)
			waitPackets(t, r, 30)

			ag2 := ag
			if !tc.same {
				ag2 = rtsptest.NewAgent(fakeH264(t))
				runAgent(t, ag2)
			}
			if _, err := ag2.Connect(publishURL(a, "cam-1", h.token("cam-1", "ingest-1", tc.session2, "", time.Minute)), gortsplib.ProtocolTCP); err != nil {
				t.Fatal(err)
			}
			select {
			case <-first.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the first publisher was not closed after the switch")
			}
			waitPackets(t, r, 60)
			rep := r.A.Report()
			if tc.same {
				if err := rtsptest.Continuity(rep); err != nil {
					t.Fatal(err)
				}
			} else {
				m := rep.Medias[0]
				if m.SSRCChanges != 0 || m.SeqGaps != 0 || m.SeqBackwards != 0 || m.TSBackwards != 0 {
					t.Fatalf("independent takeover: %+v", m)
				}
			}
			st := a.Node().Table().Get("cam-1").SplicerStats()
			want := media.SwitchSequence
			if !tc.same {
				want = media.SwitchKeyframe
			}
			if st.Switches != 1 || st.Recent[0].Mode != want {
				t.Fatalf("splicer switches %d %+v, want one %s switch", st.Switches, st.Recent, want)
			}
		})
	}
}

// TestRegistryAndTelemetry: the host record, heartbeats and telemetry.
func TestRegistryAndTelemetry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.node("ingest-1", withEnv("INGEST_ZONE", "zone-b"), withEnv("INGEST_CAPACITY_STREAMS", "7"))
	ctx := context.Background()
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		e, err := h.env.Stores.Hosts.Get(ctx, "ingest-1")
		if err != nil {
			return err
		}
		var rec events.HostRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return err
		}
		if rec.RTSPURL != a.PublicURL() || rec.Zone != "zone-b" || rec.CapacityStreams != 7 || rec.Status != "ok" || rec.Role != "both" {
			return fmt.Errorf("record %+v", rec)
		}
		return nil
	})
	tel := waitEvent(h, events.TypeTelemetry, 5*time.Second, func(e events.Telemetry) bool { return e.Host == "ingest-1" && e.CPUSeconds > 0 })
	if tel.MemBytes <= 0 || tel.FDs <= 0 || tel.FDLimit <= 0 || tel.Goroutines <= 0 {
		t.Fatalf("telemetry %+v", tel)
	}
	// the heartbeat stream keeps the last heartbeat with a TTL
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		st, err := h.env.JS.Stream(ctx, "FERRY_HEARTBEATS")
		if err != nil {
			return err
		}
		m, err := st.GetLastMsgForSubject(ctx, "ferry.hb.ingest.ingest-1")
		if err != nil {
			return err
		}
		if m.Header.Get("Nats-TTL") == "" {
			return fmt.Errorf("heartbeat without TTL: %v", m.Header)
		}
		return nil
	})
}

// TestPublisherGoesSilent: a publisher whose packets stop while its RTSP
// connection stays open (a camera that hangs, a UDP path that breaks) is ended
// after INGEST_READ_TIMEOUT, over TCP and over UDP: publisher_detached is
// reported, the readers stay attached, and the next publisher is spliced in.
func TestPublisherGoesSilent(t *testing.T) {
	for _, tr := range []gortsplib.Protocol{gortsplib.ProtocolTCP, gortsplib.ProtocolUDP} {
		t.Run(transportName(tr), func(t *testing.T) {
			h := newHarness(t)
			// 3 s: under -race on a busy machine a live publisher can stall
			// for a second, and must not be taken for a silent one
			const readTimeout = 3 * time.Second
			a := h.node("ingest-1", withUDP(t), withEnv("INGEST_READ_TIMEOUT", readTimeout.String()))
			h.place("cam-1", a, "s-1", "", "", time.Time{})
			ag := rtsptest.NewAgent(fakeH264(t))
			conn, err := ag.Connect(publishURL(a, "cam-1", h.token("cam-1", "ingest-1", "s-1", "", time.Minute)), tr)
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			sending := make(chan struct{})
			go func() { _ = ag.Run(ctx); close(sending) }()
			t.Cleanup(func() { stop(); <-sending; ag.Close() })
			r := read(t, a.PublicURL()+"/cam-1", gortsplib.ProtocolTCP)
			waitPackets(t, r, 25)

			stop() // the packets stop; the connection stays open
			<-sending
			silent := time.Now()
			select {
			case <-conn.Done():
			case <-time.After(readTimeout + 10*time.Second):
				t.Fatal("the silent publisher's session was not ended")
			}
			took := time.Since(silent)
			t.Logf("silent %s publisher ended after %v (read timeout %v)", transportName(tr), took, readTimeout)
			if took < readTimeout*9/10 {
				t.Errorf("ended after %v, before the read timeout", took)
			}
			waitEvent(h, events.TypePublisherDetached, 5*time.Second, func(e events.PublisherDetached) bool { return e.Stream == "cam-1" })
			select {
			case <-r.Done():
				t.Fatalf("reader disconnected: %v", r.Err())
			default:
			}
			ag2 := rtsptest.NewAgent(fakeH264(t))
			if _, err := ag2.Connect(publishURL(a, "cam-1", h.token("cam-1", "ingest-1", "s-2", "", time.Minute)), tr); err != nil {
				t.Fatal(err)
			}
			runAgent(t, ag2)
			waitPackets(t, r, 25)
			if m := r.A.Report().Medias[0]; m.SSRCChanges != 0 || m.SeqGaps != 0 || m.TSBackwards != 0 {
				t.Errorf("reader across the silent publisher and its successor: %+v", m)
			}
		})
	}
}
