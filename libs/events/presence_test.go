package events

import (
	"testing"
	"time"
)

func TestPresence(t *testing.T) {
	placed, moved := at(-time.Hour), at(-10*time.Minute)
	alive := func(h string) bool { return h != "ingest-dead" }
	att := func(host, sess string, d time.Duration) PublisherAttached {
		return PublisherAttached{Stream: "cam-1", Host: host, SessionID: sess, Mode: "push", At: at(d)}
	}
	det := func(host, sess string, d time.Duration) PublisherDetached {
		return PublisherDetached{Stream: "cam-1", Host: host, SessionID: sess, Reason: "closed", At: at(d)}
	}
	for _, tc := range []struct {
		name string
		feed func(p *Presence)
		want PublisherState
	}{
		{name: "never published: idle since placed", feed: func(*Presence) {},
			want: PublisherState{IdleSince: placed}},
		{name: "attached", feed: func(p *Presence) { p.Attached(att("ingest-1", "s1", -time.Minute)) },
			want: PublisherState{Attached: true, Host: "ingest-1"}},
		{name: "detached: idle since the detach", feed: func(p *Presence) {
			p.Attached(att("ingest-1", "s1", -30*time.Minute))
			p.Detached(det("ingest-1", "s1", -20*time.Minute))
		}, want: PublisherState{IdleSince: at(-20 * time.Minute)}},
		{name: "reattached with the same session after a detach", feed: func(p *Presence) {
			p.Detached(det("ingest-1", "s1", -20*time.Minute))
			p.Attached(att("ingest-1", "s1", -5*time.Minute))
		}, want: PublisherState{Attached: true, Host: "ingest-1"}},
		{name: "an older session's detach after a takeover", feed: func(p *Presence) {
			p.Attached(att("ingest-1", "s2", -5*time.Minute))
			p.Detached(det("ingest-1", "s1", -4*time.Minute))
		}, want: PublisherState{Attached: true, Host: "ingest-1"}},
		{name: "moved: detached from the old host, attached on the new", feed: func(p *Presence) {
			p.Attached(att("ingest-1", "s1", -30*time.Minute))
			p.Attached(att("ingest-2", "s1", -10*time.Minute))
			p.Detached(det("ingest-1", "s1", -10*time.Minute))
		}, want: PublisherState{Attached: true, Host: "ingest-2"}},
		{name: "attached on a host that died: idle since the stream moved", feed: func(p *Presence) {
			p.Attached(att("ingest-dead", "s1", -50*time.Minute))
		}, want: PublisherState{IdleSince: moved}},
		{name: "an older event does not replace a newer one", feed: func(p *Presence) {
			p.Attached(att("ingest-1", "s1", -30*time.Minute))
			p.Detached(det("ingest-1", "s1", -20*time.Minute))
			p.Attached(att("ingest-1", "s1", -40*time.Minute))
		}, want: PublisherState{IdleSince: at(-20 * time.Minute)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPresence()
			tc.feed(p)
			if got := p.Publisher("cam-1", alive, placed, moved); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	p := NewPresence()
	env, _, err := Marshal("test", PublisherAttached{Stream: "cam-2", Host: "ingest-1", SessionID: "s", Mode: "push", At: at(0)})
	if err != nil || !p.Apply(env) || !p.Publisher("cam-2", alive, placed, moved).Attached {
		t.Fatalf("Apply of a publisher_attached envelope: %v", err)
	}
	p.Forget("cam-2")
	if p.Publisher("cam-2", alive, placed, moved).Attached {
		t.Fatal("attached after Forget")
	}
}
