package publisher

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/pion/rtp"

	"github.com/ferrystream/ferry/libs/token"
)

// uplink is one recording connection to an ingest host.
type uplink struct {
	id      int
	host    string
	url     string
	client  *gortsplib.Client
	desc    *description.Session // this connection's copy (gortsplib writes into it)
	since   time.Time
	closing atomic.Bool // the agent closed it on purpose
	err     error       // why it ended, set before done is closed
	done    chan struct{}
	writeEr atomic.Uint64
}

// cloneDesc copies a description's session and media structs (gortsplib's
// ANNOUNCE writes Control into them), sharing the formats.
func cloneDesc(d *description.Session) *description.Session {
	c := *d
	c.Medias = make([]*description.Media, len(d.Medias))
	for i, m := range d.Medias {
		mm := *m
		c.Medias[i] = &mm
	}
	return &c
}

// dial opens a recording session at rawURL (TCP). onRequest receives server
// requests (REDIRECT); it may block, which keeps the connection open.
func dial(ctx context.Context, id int, rawURL, host string, desc *description.Session,
	onRequest func(u *uplink, req *base.Request)) (*uplink, error) {
	u := &uplink{id: id, host: host, url: rawURL, desc: cloneDesc(desc), done: make(chan struct{})}
	tcp := gortsplib.ProtocolTCP
	u.client = &gortsplib.Client{
		Protocol:       &tcp,
		ReadTimeout:    5 * time.Second,
		WriteTimeout:   5 * time.Second,
		WriteQueueSize: 1024,
		OnServerRequest: func(req *base.Request) {
			if onRequest != nil {
				onRequest(u, req)
			}
		},
	}
	started := make(chan error, 1)
	go func() { started <- u.client.StartRecording(rawURL, u.desc) }()
	select {
	case err := <-started:
		if err != nil {
			return nil, fmt.Errorf("record %s on %s: %w", redact(rawURL), host, err)
		}
	case <-ctx.Done():
		go func() {
			if <-started == nil {
				u.client.Close()
			}
		}()
		return nil, ctx.Err()
	}
	u.since = time.Now()
	go func() {
		u.err = u.client.Wait()
		close(u.done)
	}()
	return u, nil
}

// close ends the connection on purpose.
func (u *uplink) close() {
	u.closing.Store(true)
	u.client.Close()
}

// hostFromURL returns the host named by a publish URL's token (informational;
// the agent cannot verify it), or "" when it has none.
func claimsFromURL(raw string) token.Claims {
	u, err := url.Parse(raw)
	if err != nil {
		return token.Claims{}
	}
	parts := strings.Split(u.Query().Get(token.QueryParam), ".")
	if len(parts) != 3 {
		return token.Claims{}
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return token.Claims{}
	}
	var c token.Claims
	_ = json.Unmarshal(b, &c)
	return c
}

// fanout writes every packet of the source to every live uplink: during a
// move the same packets (one sequence/timestamp space) go to the old and the
// new host. Packets are marshalled by gortsplib before they are queued, so
// writing one *rtp.Packet to two clients one after the other is safe. mu
// guards ups; the counters are atomic.
type fanout struct {
	mu   sync.RWMutex
	ups  []*uplink
	lead int // media whose marker bit ends a frame (the first video media)

	live       atomic.Bool // set once the first uplink was added: drops count from then
	packets    atomic.Uint64
	frames     atomic.Uint64
	dropped    atomic.Uint64
	frameFails bool // the frame in progress could not be written anywhere (source goroutine only)
}

func newFanout(desc *description.Session) *fanout {
	f := &fanout{}
	for i, m := range desc.Medias {
		if m.Type == description.MediaTypeVideo {
			f.lead = i
			break
		}
	}
	return f
}

func (f *fanout) add(u *uplink) {
	f.mu.Lock()
	f.ups = append(append([]*uplink(nil), f.ups...), u)
	f.mu.Unlock()
	f.live.Store(true)
}

func (f *fanout) remove(u *uplink) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*uplink, 0, len(f.ups))
	for _, x := range f.ups {
		if x != u {
			out = append(out, x)
		}
	}
	f.ups = out
}

func (f *fanout) count() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.ups)
}

// write is the source's emit function.
func (f *fanout) write(mi int, pkt *rtp.Packet) {
	f.mu.RLock()
	ups := f.ups
	f.mu.RUnlock()
	ok := 0
	for _, u := range ups {
		if mi >= len(u.desc.Medias) {
			continue
		}
		if err := u.client.WritePacketRTP(u.desc.Medias[mi], pkt); err != nil {
			u.writeEr.Add(1)
			continue
		}
		ok++
	}
	if ok > 0 {
		f.packets.Add(1)
	}
	if mi != f.lead {
		return
	}
	if ok == 0 {
		f.frameFails = true
	}
	if pkt.Marker {
		switch {
		case f.frameFails && f.live.Load():
			f.dropped.Add(1)
		case !f.frameFails:
			f.frames.Add(1)
		}
		f.frameFails = false
	}
}
