package origin

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"

	"github.com/ferrystream/ferry/services/ingest/internal/config"
)

// maxPathLen bounds a request path before anything else looks at it.
const maxPathLen = 256

// checkPath validates the path of a request that names a stream (DESCRIBE,
// a reader's first SETUP, ANNOUNCE): every method goes through here, once.
// It returns the stream name, or a refusal reason (a metrics label) and a
// message for the 400.
func checkPath(path string) (name, reason, msg string) {
	if len(path) > maxPathLen {
		return "", "path_too_long", fmt.Sprintf("path is longer than %d bytes", maxPathLen)
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < 0x20 || c == 0x7f {
			return "", "path_control_byte", fmt.Sprintf("path has a control byte (0x%02x)", c)
		}
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == ".." || seg == "." {
			return "", "path_dot_segment", "path has a dot segment"
		}
	}
	name = strings.TrimSuffix(strings.TrimPrefix(path, "/"), "/")
	if !config.NamePattern.MatchString(name) {
		return "", "bad_path", "invalid stream name"
	}
	return name, "", ""
}

// safePath is a path as it may go into a log line: quoted, bounded.
func safePath(path string) string {
	if len(path) > 80 {
		path = path[:80] + "..."
	}
	return strconv.Quote(path)
}

// checkTransport returns why the transport gortsplib picked for a SETUP
// cannot work, or "". gortsplib parses ports and channels as 31-bit numbers
// and passes on interleaved=300-301 or client_port=0-1; Ferry refuses them
// (461) before a session writes to a channel or a port that does not exist.
func checkTransport(req *base.Request, picked *gortsplib.SessionTransport) string {
	if req == nil || picked == nil {
		return ""
	}
	var ths headers.Transports
	if err := ths.Unmarshal(req.Header["Transport"]); err != nil {
		return "" // gortsplib already answered 400 to these
	}
	for _, th := range ths {
		if th.Profile != picked.Profile {
			continue
		}
		switch {
		case picked.Protocol == gortsplib.ProtocolTCP && th.Protocol == headers.TransportProtocolTCP:
			if ids := th.InterleavedIDs; ids != nil && (ids[0] < 0 || ids[0] > 255 || ids[1] < 0 || ids[1] > 255) {
				return fmt.Sprintf("interleaved channels %d-%d outside 0-255", ids[0], ids[1])
			}
			return ""
		case picked.Protocol == gortsplib.ProtocolUDP && th.Protocol == headers.TransportProtocolUDP &&
			(th.Delivery == nil || *th.Delivery == headers.TransportDeliveryUnicast):
			p := th.ClientPorts
			if p == nil {
				return ""
			}
			if p[0] < 1 || p[0] > 65535 || p[1] < 1 || p[1] > 65535 {
				return fmt.Sprintf("client ports %d-%d outside 1-65535", p[0], p[1])
			}
			if p[0]%2 != 0 || p[1] != p[0]+1 {
				return fmt.Sprintf("client ports %d-%d: RTP needs an even port and RTCP the next one", p[0], p[1])
			}
			return ""
		}
	}
	return ""
}
