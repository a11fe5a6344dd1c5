package ferryctl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferrystream/ferry/libs/events"
	placement "github.com/ferrystream/ferry/services/placement/client"
)

func cmdPlace(e *env) error {
	fs := e.newFlags("place", "ferryctl place <stream> [--client ID] [--no-move] [--session ID] [--pull CAMERA-URL] [--json]",
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
	pos, err := parse(fs, e.args)
	if err != nil {
		return err
	}
	if err := positional(pos, 1, "stream (ferryctl place <stream>)"); err != nil {
		return err
	}
	stream := pos[0]
	if err := checkName("stream", stream); err != nil {
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
	if *asJSON {
		return writeJSON(e.stdout, resp)
	}
	w := e.stdout
	fmt.Fprintf(w, "stream   %s\nhost     %s\nsession  %s\nepoch    %d\n", resp.Stream, resp.Host, resp.SessionID, resp.Epoch)
	if !resp.ExpiresAt.IsZero() {
		fmt.Fprintf(w, "expires  %s (%s)\n", stamp(resp.ExpiresAt), relative(time.Now(), resp.ExpiresAt))
	}
	if resp.NoticeSecret != "" {
		fmt.Fprintf(w, "notice secret (for webhook/SSE notices, shown once): %s\n", resp.NoticeSecret)
	}
	if req.Mode == placement.ModePull {
		fmt.Fprintf(w, "\n%s now pulls %s.\nViewers read rtsp://<edge or host>/%s\n", resp.Host, redact(*pull), stream)
		return nil
	}
	q := shellQuote(resp.URL)
	fmt.Fprintf(w, "\nPublish URL:\n  %s\n", resp.URL)
	fmt.Fprintf(w, "\nPublish a test pattern with ffmpeg:\n  ffmpeg -re -f lavfi -i testsrc=size=1280x720:rate=25 -c:v libx264 -preset veryfast -tune zerolatency -g 25 -f rtsp -rtsp_transport %s %s\n", *transport, q)
	fmt.Fprintf(w, "\nRepublish a camera with ffmpeg (no transcoding):\n  ffmpeg -rtsp_transport tcp -i 'rtsp://CAMERA/stream' -c copy -f rtsp -rtsp_transport %s %s\n", *transport, q)
	if *noMove {
		fmt.Fprintln(w, "\nThis publisher cannot move: when its host goes away it is closed at the host's deadline;\nrun `ferryctl place` again (or supervise ffmpeg with a loop that does) to reconnect elsewhere.")
	} else {
		fmt.Fprintf(w, "\nDeclared can_move: move notices go to client %s over NATS; a plain ffmpeg cannot act on them\n(use --no-move for it, or run ferry-publish --client-id %s next to the camera).\n", *client, *client)
	}
	return nil
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
