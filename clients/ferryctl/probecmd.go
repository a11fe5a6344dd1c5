package ferryctl

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferrystream/ferry/clients/ferryctl/probe"
	"github.com/ferrystream/ferry/libs/media"
)

// exitDirty is the exit code of `probe --fail-on-loss` when the stream was not clean.
const exitDirty = 3

// dirtyError is a probe that saw loss with --fail-on-loss.
type dirtyError struct{ msg string }

func (d dirtyError) Error() string { return d.msg }
func (d dirtyError) ExitCode() int { return exitDirty }

func cmdProbe(e *env) error {
	fs := e.newFlags("probe", "ferryctl probe <rtsp-url> [--duration 30s] [--transport tcp|udp|auto] [--interval 1s] [--max-gap 1s] [--json] [--fail-on-loss]",
		`Reads an RTSP stream like a viewer and reports what it received: frames, frames
missing and duplicated (when the source carries Ferry's frame counters, as the
synthetic sources of ferry-publish do), SSRC changes, sequence gaps, timestamps
going backwards and the largest timestamp step, the longest silence, packets the
RTP receiver counted lost, and decode errors. It prints a line every --interval
and a final report. Point it at an edge to watch a stream across a migration.

The result is "clean" only when nothing was missing or duplicated, the SSRC,
sequence numbers and timestamps ran on, and the stream never stalled: no
silence longer than --max-gap (default 1s), between two packets or from the
last packet to the end of the probe. --max-gap 0 does not judge stalls.

Exit codes: 0 when the probe ran (whatever the result, unless --fail-on-loss);
3 with --fail-on-loss when the result is not clean (frames missing or
duplicated, a stall, SSRC change, sequence gap, timestamps backwards, nothing
received); 1 when the stream could not be read or the server ended the
session; 2 for a malformed command line.

Examples:
  ferryctl probe rtsp://127.0.0.1:8554/cam-1
  ferryctl probe rtsp://edge-1:8554/cam-1 --duration 2m --transport udp --json`, false)
	dur := fs.Duration("duration", 30*time.Second, "how long to read (0: until Ctrl-C)")
	transport := fs.String("transport", probe.TransportTCP, "tcp, udp or auto (UDP, then TCP)")
	interval := fs.Duration("interval", time.Second, "period of the progress lines (0: none)")
	asJSON := fs.Bool("json", false, "print only the final report, as JSON")
	maxGap := fs.Duration("max-gap", time.Second, "longest silence of a clean stream; longer is a stall (0: stalls are not judged)")
	failOnLoss := fs.Bool("fail-on-loss", false, "exit 3 when the result is not clean: frames missing or duplicated, a stall longer than --max-gap, an SSRC change, sequence gaps, nothing received")
	pos, err := parse(fs, e.args)
	if err != nil {
		return err
	}
	if err := positional(pos, 1, "RTSP URL (ferryctl probe rtsp://host:8554/stream)"); err != nil {
		return err
	}
	cfg := probe.Config{URL: pos[0], Transport: *transport, Duration: *dur, Interval: *interval, MaxGap: *maxGap}
	if *interval < 0 {
		return usageErr("--interval %v: must not be negative", *interval)
	}
	if *maxGap < 0 {
		return usageErr("--max-gap %v: must not be negative", *maxGap)
	}
	if err := cfg.Validate(); err != nil {
		return usageErr("%v", err)
	}
	if *interval == 0 {
		cfg.Interval = time.Hour
	}
	var prev uint64
	var prevAt time.Time
	if !*asJSON && *interval > 0 {
		cfg.OnTick = func(r probe.Report) {
			vi := r.VideoIndex()
			frames := framesOf(r, vi)
			now := time.Now()
			if prevAt.IsZero() {
				prevAt = r.Started
			}
			rate := 0.0
			if dt := now.Sub(prevAt).Seconds(); dt > 0 {
				rate = float64(frames-prev) / dt
			}
			prev, prevAt = frames, now
			fmt.Fprintf(e.stdout, "%s  %s\n", now.Format("15:04:05"), progressLine(r, vi, rate))
		}
	}
	if !*asJSON {
		fmt.Fprintf(e.stdout, "probing %s over %s", redact(cfg.URL), cfg.Transport)
		if *dur > 0 {
			fmt.Fprintf(e.stdout, " for %v", *dur)
		}
		fmt.Fprintln(e.stdout)
	}
	rep, err := probe.Run(e.ctx, cfg)
	if err != nil && !errors.Is(err, probe.ErrDisconnected) {
		return err
	}
	if *asJSON {
		if jerr := writeJSON(e.stdout, rep); jerr != nil {
			return jerr
		}
	} else {
		printProbe(e, rep)
	}
	if err != nil {
		return err
	}
	if *failOnLoss && (!rep.Clean() || allZero(rep.Medias)) {
		return dirtyError{msg: "probe: the stream was not clean (see the report)"}
	}
	return nil
}

// framesOf is media i's frame count: by counter when the source carries
// them, else by RTP marker.
func framesOf(r probe.Report, i int) uint64 {
	if r.HasCounters(i) {
		return r.Medias[i].Frames
	}
	if i < len(r.MarkerFrames) {
		return r.MarkerFrames[i]
	}
	return 0
}

func progressLine(r probe.Report, vi int, rate float64) string {
	if vi >= len(r.Medias) {
		return "waiting for packets"
	}
	m := r.Medias[vi]
	s := fmt.Sprintf("frames %d (%.1f/s)", framesOf(r, vi), rate)
	if r.HasCounters(vi) {
		s += fmt.Sprintf("  missing %d  dup %d", m.FramesMissing, m.DuplicateFrames)
	}
	s += fmt.Sprintf("  ssrc-changes %d  seq-gaps %d  ts-back %d  longest-gap %.0fms  lost-pkts %d  decode-errors %d",
		m.SSRCChanges, m.SeqGaps, m.TSBackwards, r.StallMS(vi), r.PacketsLost, r.DecodeErrors)
	return s
}

func printProbe(e *env, r probe.Report) {
	w := e.stdout
	fmt.Fprintf(w, "\nreport: %s over %s, %.1fs\n", redact(r.URL), r.Transport, r.ElapsedS)
	t := newTable(w, "MEDIA", "CODEC", "PACKETS", "FRAMES", "MISSING", "DUP", "SSRC-CHG", "SEQ-GAPS", "GAP-PKTS", "SEQ-BACK", "TS-BACK", "MAX-TS-STEP", "LONGEST-GAP")
	for i, m := range r.Medias {
		missing, dup := "n/a", "n/a"
		if r.HasCounters(i) {
			missing, dup = fmt.Sprint(m.FramesMissing), fmt.Sprint(m.DuplicateFrames)
		}
		t.row(fmt.Sprint(i), m.Codec, fmt.Sprint(m.Packets), fmt.Sprint(framesOf(r, i)), missing, dup,
			fmt.Sprint(m.SSRCChanges), fmt.Sprint(m.SeqGaps), fmt.Sprint(m.SeqGapPackets), fmt.Sprint(m.SeqBackwards),
			fmt.Sprint(m.TSBackwards), fmt.Sprintf("%.1fms", m.MaxTSStepMS), fmt.Sprintf("%.1fms", r.StallMS(i)))
	}
	t.flush()
	fmt.Fprintf(w, "packets lost (RTP receiver): %d, decode errors: %d", r.PacketsLost, r.DecodeErrors)
	if r.LastDecodeError != "" {
		fmt.Fprintf(w, " (last: %s)", r.LastDecodeError)
	}
	fmt.Fprintln(w)
	if !r.HasCounters(r.VideoIndex()) {
		fmt.Fprintln(w, "no Ferry frame counters in this stream: frames are counted by RTP marker, missing/duplicated frames are not measurable")
	}
	switch {
	case r.Disconnected != "":
		fmt.Fprintf(w, "result: the server ended the session: %s\n", r.Disconnected)
	case allZero(r.Medias):
		fmt.Fprintln(w, "result: nothing received")
	case r.Clean():
		fmt.Fprintln(w, "result: clean")
	default:
		fmt.Fprintf(w, "result: NOT clean: %s\n", strings.Join(faults(r), ", "))
	}
}

// faults lists why r is not clean, for the result line.
func faults(r probe.Report) []string {
	var missing, dup, ssrc, gaps, back uint64
	stall, stalled := 0.0, false
	for i, m := range r.Medias {
		missing += m.FramesMissing
		dup += m.DuplicateFrames
		ssrc += m.SSRCChanges
		gaps += m.SeqGaps
		back += m.TSBackwards
		if g := r.StallMS(i); r.MaxGapMS > 0 && g > r.MaxGapMS {
			stall, stalled = max(stall, g), true
		}
	}
	var out []string
	add := func(n uint64, what string) {
		if n > 0 {
			out = append(out, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(missing, "frames missing")
	add(dup, "frames duplicated")
	if stalled {
		out = append(out, fmt.Sprintf("stalled %.1fs (longer than --max-gap %v)", stall/1000,
			time.Duration(r.MaxGapMS*float64(time.Millisecond))))
	}
	add(ssrc, "SSRC changes")
	add(gaps, "sequence gaps")
	add(back, "timestamps backwards")
	return out
}

func allZero(ms []media.MediaReport) bool {
	for _, m := range ms {
		if m.Packets > 0 {
			return false
		}
	}
	return true
}
