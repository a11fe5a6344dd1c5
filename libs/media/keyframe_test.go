package media

import (
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
)

func TestIsKeyframeH264(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
		want    bool
	}{
		{"empty", nil, false},
		{"idr", []byte{0x65, 0x88}, true},
		{"sps", []byte{0x67, 0x42}, true},
		{"pps alone", []byte{0x68, 0xce}, false},
		{"non-idr", []byte{0x41, 0x9a}, false},
		{"sei", []byte{0x06, 0x05}, false},
		{"stap-a sps pps idr", []byte{24, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce, 0, 2, 0x65, 0x88}, true},
		{"stap-a with idr second", []byte{24, 0, 2, 0x06, 0x05, 0, 2, 0x65, 0x88}, true},
		{"stap-a non-idr only", []byte{24, 0, 2, 0x41, 0x9a, 0, 2, 0x41, 0x9b}, false},
		{"stap-a truncated", []byte{24, 0, 9, 0x65}, false},
		{"stap-a zero size", []byte{24, 0, 0, 0x65}, false},
		{"fu-a start idr", []byte{0x7c, 0x85, 0x88}, true},
		{"fu-a middle idr", []byte{0x7c, 0x05, 0x88}, false},
		{"fu-a end idr", []byte{0x7c, 0x45, 0x88}, false},
		{"fu-a start non-idr", []byte{0x5c, 0x81, 0x9a}, false},
		{"fu-a too short", []byte{0x7c}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsKeyframeH264(tc.payload); got != tc.want {
				t.Errorf("IsKeyframeH264(%x) = %v, want %v", tc.payload, got, tc.want)
			}
		})
	}
}

func h265Hdr(typ byte) []byte { return []byte{typ << 1, 1} }

func TestIsKeyframeH265(t *testing.T) {
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		want    bool
	}{
		{"empty", nil, false},
		{"one byte", []byte{19 << 1}, false},
		{"trail_r", cat(h265Hdr(1), []byte{0xaa}), false},
		{"bla_w_lp 16", cat(h265Hdr(16), []byte{0xaa}), true},
		{"idr_w_radl 19", cat(h265Hdr(19), []byte{0xaa}), true},
		{"idr_n_lp 20", cat(h265Hdr(20), []byte{0xaa}), true},
		{"cra 21", cat(h265Hdr(21), []byte{0xaa}), true},
		{"reserved 22", cat(h265Hdr(22), []byte{0xaa}), false},
		{"vps", cat(h265Hdr(32), []byte{0xaa}), true},
		{"sps", cat(h265Hdr(33), []byte{0xaa}), true},
		{"pps", cat(h265Hdr(34), []byte{0xaa}), true},
		{"sei 39", cat(h265Hdr(39), []byte{0xaa}), false},
		{"ap vps sps pps idr", cat(h265Hdr(48), []byte{0, 3}, h265Hdr(32), []byte{1}, []byte{0, 3}, h265Hdr(19), []byte{1}), true},
		{"ap trail only", cat(h265Hdr(48), []byte{0, 3}, h265Hdr(1), []byte{1}, []byte{0, 3}, h265Hdr(1), []byte{2}), false},
		{"ap truncated", cat(h265Hdr(48), []byte{0, 9}, h265Hdr(19)), false},
		{"fu start idr", cat(h265Hdr(49), []byte{0x80 | 19, 0xaa}), true},
		{"fu start cra", cat(h265Hdr(49), []byte{0x80 | 21, 0xaa}), true},
		{"fu middle idr", cat(h265Hdr(49), []byte{19, 0xaa}), false},
		{"fu start trail", cat(h265Hdr(49), []byte{0x80 | 1, 0xaa}), false},
		{"fu too short", h265Hdr(49), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsKeyframeH265(tc.payload); got != tc.want {
				t.Errorf("IsKeyframeH265(%x) = %v, want %v", tc.payload, got, tc.want)
			}
		})
	}
}

func TestKeyframeFunc(t *testing.T) {
	for _, tc := range []struct {
		name  string
		forma format.Format
		key   []byte // a payload that is a keyframe for this codec, if any
		want  bool   // whether a detector exists
	}{
		{"h264", &format.H264{PayloadTyp: 96, PacketizationMode: 1}, []byte{0x65, 0}, true},
		{"h265", &format.H265{PayloadTyp: 96}, append(h265Hdr(19), 0), true},
		{"g711", &format.G711{MULaw: true, SampleRate: 8000, ChannelCount: 1}, nil, false},
		{"mjpeg", &format.MJPEG{}, nil, false},
		{"opus", &format.Opus{PayloadTyp: 111, ChannelCount: 2}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fn := KeyframeFunc(tc.forma)
			if (fn != nil) != tc.want {
				t.Fatalf("KeyframeFunc(%s) != nil is %v, want %v", tc.name, fn != nil, tc.want)
			}
			if fn != nil && !fn(tc.key) {
				t.Errorf("detector for %s rejects %x", tc.name, tc.key)
			}
		})
	}
}
