package media

import (
	"bytes"
	"encoding/binary"
)

// counterMagic marks the frame counter the synthetic sources embed in every
// NAL unit (after the NAL header) and at the start of every audio payload.
var counterMagic = [4]byte{0xFE, 'F', 'R', 'Y'}

// counterLen is the size of the embedded counter: magic + 8-byte big-endian value.
const counterLen = len(counterMagic) + 8

// putCounter writes magic + counter at the start of b (len(b) >= counterLen).
func putCounter(b []byte, frame uint64) {
	copy(b, counterMagic[:])
	binary.BigEndian.PutUint64(b[len(counterMagic):], frame)
}

// readCounter reads magic + counter at offset off of p.
func readCounter(p []byte, off int) (uint64, bool) {
	if off < 0 || len(p) < off+counterLen || !bytes.Equal(p[off:off+len(counterMagic)], counterMagic[:]) {
		return 0, false
	}
	return binary.BigEndian.Uint64(p[off+len(counterMagic):]), true
}

// FrameCounter reads back the frame counter that FakeH264, FakeH265, FakeG711 and
// CameraSource embed in their payloads. It understands an audio payload (counter
// first), H.264 single NAL units, STAP-A and FU-A start fragments, and H.265 single
// NAL units, aggregation packets and FU start fragments. It returns false for any
// other packet (FU continuation fragments, foreign streams, injected parameter sets).
// Several packets of one frame carry the same counter; readers count a frame at the
// first packet that carries it (see Analyzer).
func FrameCounter(payload []byte) (uint64, bool) {
	if len(payload) < counterLen {
		return 0, false
	}
	// audio: the counter is the first thing in the payload
	if v, ok := readCounter(payload, 0); ok {
		return v, true
	}
	if v, ok := frameCounterH264(payload); ok {
		return v, true
	}
	return frameCounterH265(payload)
}

func frameCounterH264(payload []byte) (uint64, bool) {
	switch typ := payload[0] & 0x1F; {
	case typ >= 1 && typ <= 23:
		return readCounter(payload, 1)
	case typ == h264NALSTAPA:
		p := payload[1:]
		for len(p) >= 3 {
			size := int(p[0])<<8 | int(p[1])
			p = p[2:]
			if size == 0 || size > len(p) {
				return 0, false
			}
			if v, ok := readCounter(p[:size], 1); ok {
				return v, true
			}
			p = p[size:]
		}
	case typ == h264NALFUA:
		if payload[1]&0x80 != 0 {
			return readCounter(payload, 2)
		}
	}
	return 0, false
}

func frameCounterH265(payload []byte) (uint64, bool) {
	switch typ := (payload[0] >> 1) & 0x3F; {
	case typ < h265NALAP:
		return readCounter(payload, 2)
	case typ == h265NALAP:
		p := payload[2:]
		for len(p) >= 4 {
			size := int(p[0])<<8 | int(p[1])
			p = p[2:]
			if size < 2 || size > len(p) {
				return 0, false
			}
			if v, ok := readCounter(p[:size], 2); ok {
				return v, true
			}
			p = p[size:]
		}
	case typ == h265NALFU:
		if payload[2]&0x80 != 0 {
			return readCounter(payload, 3)
		}
	}
	return 0, false
}
