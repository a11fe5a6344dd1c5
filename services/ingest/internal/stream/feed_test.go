package stream

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/media"
	"github.com/ferrystream/ferry/libs/testutil"
	"github.com/ferrystream/ferry/services/ingest/internal/tasks"
)

// life records what happens to a stream's feeds: OnRetire calls, switches
// and the input sequence numbers written to the readers.
type life struct {
	mu       sync.Mutex
	retired  map[string][]string // feed id -> reasons OnRetire got
	switches []string            // "from>to"
	out      []uint16
}

func (l *life) onRetire(id *string) func(string) {
	return func(reason string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.retired[*id] = append(l.retired[*id], reason)
	}
}

func (l *life) reasons(id string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.retired[id])
}

// waitRetired waits until OnRetire of feed id ran with reason.
func (l *life) waitRetired(t *testing.T, id, reason string) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if r := l.reasons(id); !slices.Equal(r, []string{reason}) {
			return fmt.Errorf("OnRetire of %s got %q, want [%q]", id, r, reason)
		}
		return nil
	})
}

// lifeStream returns a stream of one H.264 media on a started server, with
// its feeds' OnRetire callbacks tracked by a group the test closes.
func lifeStream(t *testing.T) (*Stream, *life) {
	t.Helper()
	srv := &gortsplib.Server{RTSPAddress: "127.0.0.1:0"}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	l := &life{retired: map[string][]string{}}
	g := &tasks.Group{}
	t.Cleanup(g.Close)
	s, err := New(srv, "cam-1", desc(&format.H264{PayloadTyp: 96, PacketizationMode: 1}), Options{
		Log: zerolog.Nop(), Tasks: g,
		OnSwitch: func(_ *Stream, info media.SwitchInfo, _, _ *Feed) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.switches = append(l.switches, info.From+">"+info.To)
		},
		OnOutput: func(_ *Stream, _ int, pkt *rtp.Packet, _ time.Time) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.out = append(l.out, uint16(pkt.Payload[2])<<8|uint16(pkt.Payload[3]))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, l
}

// add adds a feed whose OnRetire the life records.
func (l *life) add(t *testing.T, s *Stream, kind Kind, space string) *Feed {
	t.Helper()
	id := new(string)
	f, err := s.AddFeed(FeedSpec{Kind: kind, Space: space, Host: "h", OnRetire: l.onRetire(id)})
	if err != nil {
		t.Fatal(err)
	}
	*id = f.ID
	return f
}

// write writes one H.264 IDR packet per sequence number (its payload carries
// the number, so the output shows which input it was).
func write(t *testing.T, f *Feed, seqs ...uint16) {
	t.Helper()
	for _, seq := range seqs {
		pkt := &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 9, Marker: true},
			Payload: []byte{0x65, 0x88, byte(seq >> 8), byte(seq)},
		}
		if err := f.Write(0, pkt); err != nil {
			t.Fatalf("write %d to %s: %v", seq, f.ID, err)
		}
	}
}

func isReady(f *Feed) bool {
	select {
	case <-f.Ready():
		return true
	default:
		return false
	}
}

func ids(fs []*Feed) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.ID)
	}
	sort.Strings(out)
	return out
}

// TestFeedLife walks feeds through their life on one stream: added,
// promoted (made ready, switched to), retired by the stream's rules, and
// closed with the stream. It checks the stream is the one that decides which
// feeds go, and that each owner is told once.
func TestFeedLife(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s *Stream, l *life)
	}{
		{"first feed carries the stream at once", func(t *testing.T, s *Stream, l *life) {
			a := l.add(t, s, KindPublisher, "sess:1")
			if !isReady(a) || s.Active() != a || a.Mode() != media.IndependentSeqSpace {
				t.Fatalf("ready %v, active %v, mode %s", isReady(a), s.Active() == a, a.Mode())
			}
		}},
		{"same session: ready once caught up, takes over by sequence when the old one goes", func(t *testing.T, s *Stream, l *life) {
			a := l.add(t, s, KindPublisher, "sess:1")
			write(t, a, 1, 2, 3, 4, 5)
			b := l.add(t, s, KindPublisher, "sess:1")
			if b.Mode() != media.SameSeqSpace || isReady(b) {
				t.Fatalf("newcomer mode %s, ready %v; want same-seq, not ready", b.Mode(), isReady(b))
			}
			write(t, b, 5) // a copy of the last output packet: caught up
			if !isReady(b) {
				t.Fatal("newcomer not ready after it caught up")
			}
			s.RemoveFeed(a)
			if s.Active() != b {
				t.Fatalf("active %v, want the newcomer", s.Active())
			}
			write(t, b, 6)
			l.mu.Lock()
			defer l.mu.Unlock()
			if !slices.Equal(l.out, []uint16{1, 2, 3, 4, 5, 6}) || !slices.Equal(l.switches, []string{a.ID + ">" + b.ID}) {
				t.Fatalf("output %v, switches %v", l.out, l.switches)
			}
		}},
		{"other space: switched at its keyframe, the replaced feed is retired", func(t *testing.T, s *Stream, l *life) {
			a := l.add(t, s, KindCamera, "cam:1")
			write(t, a, 1, 2, 3)
			b := l.add(t, s, KindUpstream, "host:b")
			if b.Mode() != media.IndependentSeqSpace {
				t.Fatalf("mode %s", b.Mode())
			}
			write(t, b, 100) // an IDR: the splice point
			l.waitRetired(t, a.ID, "replaced by "+b.ID)
			if !a.Retired() || !isReady(b) || s.Active() != b {
				t.Fatalf("old retired %v, new ready %v, new active %v", a.Retired(), isReady(b), s.Active() == b)
			}
		}},
		{"Supersede: only the older connections of the same session", func(t *testing.T, s *Stream, l *life) {
			old := l.add(t, s, KindPublisher, "sess:1")
			up := l.add(t, s, KindUpstream, "sess:1")
			other := l.add(t, s, KindPublisher, "sess:2")
			by := l.add(t, s, KindPublisher, "sess:1")
			if got := ids(s.Supersede(by)); !slices.Equal(got, []string{old.ID}) {
				t.Fatalf("superseded %v, want [%s]", got, old.ID)
			}
			l.waitRetired(t, old.ID, "superseded by "+by.ID)
			if up.Retired() || other.Retired() || by.Retired() {
				t.Fatal("Supersede retired a feed of another kind or session, or the newcomer")
			}
		}},
		{"ReplaceUpstreams: every pull but the one kept, never a local source", func(t *testing.T, s *Stream, l *life) {
			pub := l.add(t, s, KindPublisher, "sess:1")
			u1 := l.add(t, s, KindUpstream, "sess:1")
			u2 := l.add(t, s, KindUpstream, "sess:1")
			if got := ids(s.ReplaceUpstreams(u2, "replaced")); !slices.Equal(got, []string{u1.ID}) {
				t.Fatalf("replaced %v, want [%s]", got, u1.ID)
			}
			if got := ids(s.ReplaceUpstreams(nil, "published here")); !slices.Equal(got, []string{u2.ID}) {
				t.Fatalf("replaced %v, want [%s]", got, u2.ID)
			}
			l.waitRetired(t, u1.ID, "replaced")
			l.waitRetired(t, u2.ID, "published here")
			if pub.Retired() {
				t.Fatal("a local source was retired")
			}
		}},
		{"Cease: every local source, no pull", func(t *testing.T, s *Stream, l *life) {
			pub := l.add(t, s, KindPublisher, "sess:1")
			cam := l.add(t, s, KindCamera, "cam:1")
			up := l.add(t, s, KindUpstream, "sess:1")
			if got := ids(s.Cease("moved to b")); !slices.Equal(got, ids([]*Feed{pub, cam})) {
				t.Fatalf("ceased %v", got)
			}
			l.waitRetired(t, pub.ID, "moved to b")
			l.waitRetired(t, cam.ID, "moved to b")
			if up.Retired() || len(s.Cease("again")) != 0 {
				t.Fatal("Cease retired a pull, or a feed twice")
			}
		}},
		{"Retire: the owner is told once, writes are refused", func(t *testing.T, s *Stream, l *life) {
			a := l.add(t, s, KindPublisher, "sess:1")
			s.Retire(a, "first")
			a.Retire("second")
			l.waitRetired(t, a.ID, "first")
			if a.Reason() != "first" || !a.Retired() {
				t.Fatalf("reason %q", a.Reason())
			}
			if err := a.Write(0, &rtp.Packet{Payload: []byte{0x65, 0, 0, 1}}); !errors.Is(err, media.ErrFeedRetired) {
				t.Fatalf("write after retire: %v", err)
			}
			other, _ := lifeStream(t)
			b := l.add(t, s, KindPublisher, "sess:1")
			other.Retire(b, "not yours")
			if b.Retired() {
				t.Fatal("a stream retired another stream's feed")
			}
		}},
		{"Close: every feed retired, none added any more", func(t *testing.T, s *Stream, l *life) {
			a := l.add(t, s, KindPublisher, "sess:1")
			u := l.add(t, s, KindUpstream, "sess:1")
			s.Close("bye")
			l.waitRetired(t, a.ID, "stream closed: bye")
			l.waitRetired(t, u.ID, "stream closed: bye")
			if _, err := s.AddFeed(FeedSpec{Kind: KindPublisher}); !errors.Is(err, ErrClosed) || !s.Closed() {
				t.Fatalf("AddFeed after Close: %v, closed %v", err, s.Closed())
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, l := lifeStream(t)
			tc.run(t, s, l)
		})
	}
}
