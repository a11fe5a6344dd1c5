package origin

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/ferrystream/ferry/services/ingest/internal/guard"
)

// Reasons a connection without a session ends on an error of its own, as
// logged and counted (ferry_ingest_refused_total{method="CONN"}).
const (
	// reasonBadRequest: gortsplib could not parse a request (a raw control
	// byte in the request line, a bad header) and closed the connection
	// without an answer.
	reasonBadRequest = "bad_request"
	// reasonUnexpectedFrame: an interleaved frame with no session.
	reasonUnexpectedFrame = "unexpected_frame"
	// reasonReadTimeout: gortsplib's own read deadline.
	reasonReadTimeout = "read_timeout"
)

// connErrReason is the reason a session-less connection that ended on err
// is logged and counted with, or "" for an ordinary end: the client closed
// or reset it, the server is shutting down, or the guard closed it (and has
// logged why).
func connErrReason(err error) string {
	var unexpected liberrors.ErrServerUnexpectedFrame
	var terminated liberrors.ErrServerTerminated
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, guard.ErrHTTPTunnel),
		errors.As(err, &terminated):
		return ""
	case errors.As(err, &unexpected):
		return reasonUnexpectedFrame
	case errors.As(err, &ne) && ne.Timeout():
		return reasonReadTimeout
	}
	return reasonBadRequest
}

// connErrLogEvery bounds the log lines of each reason: connections are
// cheap to open, log lines are not.
const connErrLogEvery = time.Second

// connErrLog rate-limits the connection-error log lines, per reason.
type connErrLog struct {
	mu         sync.Mutex // guards the maps
	last       map[string]time.Time
	suppressed map[string]int
}

// allow reports whether a line for reason may be logged now, and how many
// were left out since the last one.
func (l *connErrLog) allow(reason string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.suppressed = map[string]time.Time{}, map[string]int{}
	}
	if now.Sub(l.last[reason]) < connErrLogEvery {
		l.suppressed[reason]++
		return false, 0
	}
	n := l.suppressed[reason]
	l.last[reason], l.suppressed[reason] = now, 0
	return true, n
}

// connClosedOnError logs and counts a connection that never held a session
// and ended on an error of its own (gortsplib answers a request it cannot
// parse with nothing: it closes the connection).
func (n *Node) connClosedOnError(sc *gortsplib.ServerConn, err error) {
	if holdsSession(sc) {
		return
	}
	reason := connErrReason(err)
	if reason == "" {
		return
	}
	n.d.Metrics.Refused.WithLabelValues("CONN", reason).Inc()
	ok, suppressed := n.connErrs.allow(reason, time.Now())
	if !ok {
		return
	}
	n.log.Warn().Str("remote", sc.NetConn().RemoteAddr().String()).Str("reason", reason).Err(err).
		Int("suppressed", suppressed).Msg("connection closed on an error before it held a session")
}
