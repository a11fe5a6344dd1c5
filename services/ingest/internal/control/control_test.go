package control

import (
	"testing"

	"github.com/ferrystream/ferry/libs/events"
)

func TestStreamURL(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pl      events.Placement
		hostURL string
		want    string
	}{
		{"base url", events.Placement{Stream: "cam-1", RTSPURL: "rtsp://10.0.0.1:8554"}, "", "rtsp://10.0.0.1:8554/cam-1"},
		{"trailing slash", events.Placement{Stream: "cam-1", RTSPURL: "rtsp://10.0.0.1:8554/"}, "", "rtsp://10.0.0.1:8554/cam-1"},
		{"already the stream", events.Placement{Stream: "cam-1", RTSPURL: "rtsp://10.0.0.1:8554/cam-1"}, "", "rtsp://10.0.0.1:8554/cam-1"},
		{"registry fallback", events.Placement{Stream: "cam-1"}, "rtsps://h:8322", "rtsps://h:8322/cam-1"},
		{"unknown", events.Placement{Stream: "cam-1"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := StreamURL(tc.pl, tc.hostURL); got != tc.want {
				t.Fatalf("StreamURL = %q, want %q", got, tc.want)
			}
		})
	}
}
