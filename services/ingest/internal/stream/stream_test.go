package stream

import (
	"errors"
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
)

func desc(fs ...format.Format) *description.Session {
	d := &description.Session{}
	for _, f := range fs {
		typ := description.MediaTypeVideo
		if _, ok := f.(*format.G711); ok {
			typ = description.MediaTypeAudio
		}
		d.Medias = append(d.Medias, &description.Media{Type: typ, Formats: []format.Format{f}})
	}
	return d
}

func TestCompatible(t *testing.T) {
	t.Parallel()
	h264 := &format.H264{PayloadTyp: 96, PacketizationMode: 1}
	pcmu := &format.G711{PayloadTyp: 0, MULaw: true, SampleRate: 8000, ChannelCount: 1}
	ref := desc(h264, pcmu)
	for _, tc := range []struct {
		name string
		d    *description.Session
		ok   bool
	}{
		{"same", desc(&format.H264{PayloadTyp: 96, PacketizationMode: 1}, pcmu), true},
		{"other codec", desc(&format.H265{PayloadTyp: 96}, pcmu), false},
		{"other payload type", desc(&format.H264{PayloadTyp: 97, PacketizationMode: 1}, pcmu), false},
		{"missing audio", desc(h264), false},
		{"no medias", &description.Session{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Compatible(ref, tc.d)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrIncompatible)) {
				t.Fatalf("Compatible = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
