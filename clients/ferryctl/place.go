package ferryctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferrystream/ferry/libs/bus"
	"github.com/ferrystream/ferry/libs/events"
	placement "github.com/ferrystream/ferry/services/placement/client"
)

func cmdPlace(e *env) error {
	fs := e.newFlags("place", "ferryctl place <stream> [--client ID] [--no-move] [--session ID] [--pull CAMERA-URL] [--transport tcp|udp] [--json]",
		`Asks placement (placement.v1.choose) where a stream should publish, and prints
the publish URL with its token and an ffmpeg command line using it: how to point
a plain ffmpeg, or a camera that pushes RTSP, at Ferry.

Plain ffmpeg and cameras cannot move make-before-break: declare them with
--no-move. When their host goes away, the host closes them at its deadline and
they must run 'ferryctl place' (or ask placement) again. Without --no-move the
client declares it moves on notices sent to it over NATS (as ferry-publish does
with the same --client id).

With --pull the ingest host pulls the camera itself (pull mode) and a move is
done by the hosts, with nothing to run next to the camera.

Examples:
  ferryctl place cam-7 --no-move
  ferryctl place cam-7 --client agent-7
  ferryctl place cam-8 --pull rtsp://user:pass@10.0.0.8/stream1`, true)
	client := fs.String("client", "ferryctl", "client id of the publisher (notices go to it)")
	noMove := fs.Bool("no-move", false, "the publisher cannot move mid-stream (plain ffmpeg, a camera)")
	session := fs.String("session", "", "session id of a reconnecting publisher (s-<16 hex>)")
	pull := fs.String("pull", "", "pull mode: the ingest host pulls this rtsp:// camera URL")
	transport := fs.String("transport", "tcp", "RTSP transport in the printed ffmpeg command (tcp or udp)")
	asJSON := fs.Bool("json", false, "print placement's reply as JSON")
	stream, err := oneArg(fs, e.args, "stream (ferryctl place <stream>)", "stream", checkName)
	if err != nil {
		return err
	}
	if err := checkName("client", *client); err != nil {
		return err
	}
	if *transport != "tcp" && *transport != "udp" {
		return usageErr("--transport %q: must be tcp or udp", *transport)
	}
	req := placement.ChooseRequest{
		Stream:       stream,
		ClientID:     *client,
		SessionID:    *session,
		Capabilities: events.Capabilities{CanMove: !*noMove},
		Mode:         placement.ModePush,
	}
	if !*noMove {
		req.Capabilities.Channels = []string{placement.ChannelNATS}
	}
	if *pull != "" {
		u, err := url.Parse(*pull)
		if err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
			return usageErr("--pull %q: must be an rtsp:// or rtsps:// URL", *pull)
		}
		req.Mode, req.SourceURL = placement.ModePull, *pull
		req.Capabilities = events.Capabilities{CanMove: false}
	}

	ctx, cancel := e.oneShot()
	defer cancel()
	c, err := e.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := placement.New(c.nc).Choose(ctx, req)
	if err != nil {
		return placeError(err)
	}
	if !req.Capabilities.CanMove {
		// notices (and their secret) are for clients that move; a plain
		// ffmpeg, a camera or a pulled source never receives one
		resp.NoticeSecret = ""
	}
	if *asJSON {
		return writeJSON(e.stdout, resp)
	}
	viewers := viewerURLs(ctx, c, stream)
	w := e.stdout
	fmt.Fprintf(w, "stream   %s\nhost     %s\nsession  %s\nepoch    %d\n", resp.Stream, resp.Host, resp.SessionID, resp.Epoch)
	if !resp.ExpiresAt.IsZero() {
		now := time.Now()
		fmt.Fprintf(w, "expires  %s (%s; the token is checked when the publisher connects)\n", stamp(resp.ExpiresAt), relative(now, resp.ExpiresAt))
	}
	if resp.NoticeSecret != "" {
		fmt.Fprintf(w, "notice secret (for webhook/SSE notices, shown once): %s\n", resp.NoticeSecret)
	}
	if req.Mode == placement.ModePull {
		fmt.Fprintf(w, "\n%s now pulls %s.\n", resp.Host, redact(*pull))
		printViewers(w, viewers)
		return nil
	}
	q := shellQuote(resp.URL)
	fmt.Fprintf(w, "\nPublish URL:\n  %s\n", resp.URL)
	fmt.Fprintf(w, "\nPublish a test pattern with ffmpeg (H.264 4:2:0, a keyframe every 25 frames = 1 s):\n  ffmpeg -re -f lavfi -i testsrc=size=1280x720:rate=25 %s -f rtsp -rtsp_transport %s %s\n", ffmpegH264, *transport, q)
	fmt.Fprintf(w, "\nRepublish a camera with ffmpeg (no transcoding):\n  ffmpeg -rtsp_transport tcp -i 'rtsp://CAMERA/stream' -c copy -f rtsp -rtsp_transport %s %s\n", *transport, q)
	fmt.Fprintln(w)
	printViewers(w, viewers)
	if *noMove {
		fmt.Fprintln(w, "\nThis publisher cannot move: when its host goes away it is closed at the host's deadline;\nrun `ferryctl place` again (or supervise ffmpeg with a loop that does) to reconnect elsewhere.")
	} else {
		fmt.Fprintf(w, "\nDeclared can_move: move notices go to client %s over NATS; a plain ffmpeg cannot act on them\n(use --no-move for it, or run ferry-publish --client-id %s next to the camera).\n", *client, *client)
	}
	return nil
}

// ffmpegH264 is the encoder part of the printed ffmpeg line: 4:2:0 (without
// -pix_fmt, libx264 keeps testsrc's 4:4:4 and encodes High 4:4:4, which many
// players and hardware decoders refuse), low latency, and a fixed keyframe
// interval of one GOP (25 frames at 25 fps), with no scene-cut keyframes.
const ffmpegH264 = "-c:v libx264 -preset veryfast -tune zerolatency -pix_fmt yuv420p -g 25 -keyint_min 25 -sc_threshold 0"

// viewerURLs returns rtsp://<edge>/<stream> for every registered host that
// serves viewers (role edge or both), sorted by host.
func viewerURLs(ctx context.Context, c *conn, stream string) []string {
	kv, err := c.js.KeyValue(ctx, bus.BucketHosts)
	if err != nil {
		return nil
	}
	var urls []string
	hosts := map[string]string{}
	_ = eachKey(ctx, kv, func(key string, value []byte) {
		var h events.HostRecord
		if json.Unmarshal(value, &h) != nil || h.RTSPURL == "" || (h.Role != "edge" && h.Role != "both") {
			return
		}
		hosts[key] = strings.TrimRight(h.RTSPURL, "/") + "/" + stream
	})
	for _, k := range slices.Sorted(maps.Keys(hosts)) {
		urls = append(urls, hosts[k])
	}
	return urls
}

func printViewers(w io.Writer, urls []string) {
	switch len(urls) {
	case 0:
		fmt.Fprintln(w, "Watch it: no edge is registered (viewers read from a host with INGEST_ROLE=edge or both).")
	case 1:
		fmt.Fprintf(w, "Watch it on the edge:\n  ffplay -rtsp_transport tcp %s\n", urls[0])
	default:
		fmt.Fprintf(w, "Watch it on an edge:\n")
		for _, u := range urls {
			fmt.Fprintf(w, "  ffplay -rtsp_transport tcp %s\n", u)
		}
	}
}

// placeError explains placement's errors in operator terms.
func placeError(err error) error {
	switch {
	case errors.Is(err, placement.ErrNoCapacity):
		return fmt.Errorf("placement found no healthy host with capacity: %w", err)
	case errors.Is(err, placement.ErrBadRequest):
		return fmt.Errorf("placement rejected the request: %w", err)
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("placement is not running (no responder on placement.v1.choose): %w", err)
	}
	return err
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// redact hides a URL's password.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}
