package media

import "testing"

func TestFrameCounter(t *testing.T) {
	blob := func(v uint64) []byte {
		b := make([]byte, counterLen)
		putCounter(b, v)
		return b
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	be16 := func(n int) []byte { return []byte{byte(n >> 8), byte(n)} }
	for _, tc := range []struct {
		name    string
		payload []byte
		want    uint64
		ok      bool
	}{
		{"audio", cat(blob(42), make([]byte, 148)), 42, true},
		{"h264 single", cat([]byte{0x41}, blob(7), []byte{0, 0}), 7, true},
		{"h264 stap-a", cat([]byte{24}, be16(1+counterLen), []byte{0x67}, blob(9), be16(1+counterLen), []byte{0x68}, blob(9)), 9, true},
		{"h264 stap-a second carries it", cat([]byte{24}, be16(2), []byte{0x06, 0}, be16(1+counterLen), []byte{0x65}, blob(11)), 11, true},
		{"h264 fu-a start", cat([]byte{0x7c, 0x85}, blob(13), make([]byte, 100)), 13, true},
		{"h264 fu-a middle", cat([]byte{0x7c, 0x05}, make([]byte, 100)), 0, false},
		{"h265 single", cat([]byte{1 << 1, 1}, blob(15)), 15, true},
		{"h265 ap", cat([]byte{48 << 1, 1}, be16(2+counterLen), []byte{32 << 1, 1}, blob(17)), 17, true},
		{"h265 fu start", cat([]byte{49 << 1, 1, 0x80 | 19}, blob(19), make([]byte, 50)), 19, true},
		{"h265 fu middle", cat([]byte{49 << 1, 1, 19}, make([]byte, 50)), 0, false},
		{"foreign payload", make([]byte, 200), 0, false},
		{"too short", []byte{0x65, 1, 2}, 0, false},
		{"stap-a bad size", cat([]byte{24}, be16(500), []byte{0x65}, blob(1)), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := FrameCounter(tc.payload)
			if got != tc.want || ok != tc.ok {
				t.Errorf("FrameCounter = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
