package media

import (
	"bytes"
	"errors"
	"image/jpeg"
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
)

func TestMJPEGSourceDecodes(t *testing.T) {
	src, err := NewMJPEGSource(FakeConfig{FPS: 10, InitialSeq: u16(65534), InitialTS: u32(0), FirstFrame: 0xABCD - 2}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	forma := src.Description().Medias[0].Formats[0].(*format.MJPEG)
	dec, err := forma.CreateDecoder()
	if err != nil {
		t.Fatal(err)
	}
	wantSeq := uint16(65534)
	for i := range uint64(4) {
		frame, pkts, err := src.NextFrame()
		if err != nil {
			t.Fatal(err)
		}
		if frame != 0xABCD-2+i {
			t.Fatalf("frame %d: counter %d", i, frame)
		}
		var img []byte
		for j, p := range pkts {
			if p.SequenceNumber != wantSeq || p.Timestamp != uint32(i*9000) || p.PayloadType != 26 {
				t.Fatalf("frame %d pkt %d: seq %d ts %d pt %d", i, j, p.SequenceNumber, p.Timestamp, p.PayloadType)
			}
			wantSeq++
			out, err := dec.Decode(p)
			if err == nil {
				img = out
			}
		}
		if img == nil {
			t.Fatalf("frame %d: the RTP/JPEG decoder produced no image from %d packets", i, len(pkts))
		}
		pic, err := jpeg.Decode(bytes.NewReader(img))
		if err != nil {
			t.Fatalf("frame %d: jpeg decode: %v", i, err)
		}
		if b := pic.Bounds(); b.Dx() != 320 || b.Dy() != 240 {
			t.Fatalf("frame %d: size %v", i, b)
		}
		if got := MJPEGFrameNumber(pic); got != uint16(frame) {
			t.Errorf("frame %d: picture shows %#x, want %#x", i, got, uint16(frame))
		}
	}
}

func TestMJPEGSourceConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		w, h int
		ok   bool
	}{
		{"default", 0, 0, true},
		{"640x480", 640, 480, true},
		{"not multiple of 16", 328, 240, false},
		{"too narrow for the counter", 128, 96, false},
		{"too large", 4096, 240, false},
		{"negative", -16, 240, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewMJPEGSource(FakeConfig{}, tc.w, tc.h)
			if tc.ok && err != nil {
				t.Errorf("unexpected error %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrBadConfig) {
				t.Errorf("err %v, want ErrBadConfig", err)
			}
		})
	}
}
