package upstream

import (
	"context"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/pion/rtp"
)

// Source is one pull connection as the edge and the camera pulls use it:
// a *Conn, or a fake in their tests.
type Source interface {
	// Description returns the upstream's description.
	Description() *description.Session
	// Play starts the stream; cb gets every packet by media index.
	Play(cb func(mediaIndex int, pkt *rtp.Packet)) error
	// Wait blocks until the connection ends and returns why.
	Wait() error
	// Close ends the connection.
	Close()
}

// DialFunc opens a pull of url (Dial, as a Source).
type DialFunc func(ctx context.Context, url string, o Options) (Source, error)

var _ Source = (*Conn)(nil)

// Description implements Source.
func (c *Conn) Description() *description.Session { return c.Desc }

// DialSource is Dial returning a Source: the default DialFunc.
func DialSource(ctx context.Context, url string, o Options) (Source, error) {
	c, err := Dial(ctx, url, o)
	if err != nil {
		return nil, err // never a typed nil in the interface
	}
	return c, nil
}
