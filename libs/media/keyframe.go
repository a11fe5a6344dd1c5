package media

import (
	"github.com/bluenviron/gortsplib/v5/pkg/format"
)

// H.264 NAL unit types used by the keyframe and counter parsers (RFC 6184).
const (
	h264NALNonIDR = 1
	h264NALIDR    = 5
	h264NALSPS    = 7
	h264NALPPS    = 8
	h264NALSTAPA  = 24
	h264NALFUA    = 28
)

// H.265 NAL unit types used by the keyframe and counter parsers (RFC 7798).
const (
	h265NALTrailR   = 1
	h265NALIDRWRADL = 19
	h265NALVPS      = 32
	h265NALSPS      = 33
	h265NALPPS      = 34
	h265NALAP       = 48
	h265NALFU       = 49
)

// IsKeyframeH264 reports whether an RTP/H264 payload starts or carries a keyframe:
// a single NAL unit of type 5 (IDR) or 7 (SPS), a STAP-A aggregating a NAL unit of
// type 5 or 7, or the start fragment of an FU-A whose NAL unit type is 5 (or 7).
func IsKeyframeH264(payload []byte) bool {
	if len(payload) == 0 {
		return false
	}
	switch typ := payload[0] & 0x1F; typ {
	case h264NALIDR, h264NALSPS:
		return true
	case h264NALSTAPA:
		p := payload[1:]
		for len(p) >= 3 {
			size := int(p[0])<<8 | int(p[1])
			p = p[2:]
			if size == 0 || size > len(p) {
				return false
			}
			if t := p[0] & 0x1F; t == h264NALIDR || t == h264NALSPS {
				return true
			}
			p = p[size:]
		}
	case h264NALFUA:
		if len(payload) < 2 || payload[1]&0x80 == 0 {
			return false
		}
		t := payload[1] & 0x1F
		return t == h264NALIDR || t == h264NALSPS
	}
	return false
}

// isH265Key reports whether an H.265 NAL unit type is an IRAP picture (16..21)
// or a parameter set (VPS, SPS, PPS: 32..34).
func isH265Key(typ byte) bool {
	return (typ >= 16 && typ <= 21) || (typ >= h265NALVPS && typ <= h265NALPPS)
}

// IsKeyframeH265 reports whether an RTP/H265 payload starts or carries a keyframe:
// a single NAL unit that is an IRAP picture (types 16..21) or a parameter set
// (VPS/SPS/PPS, types 32..34), an aggregation packet (type 48) containing one, or
// the start fragment of a fragmentation unit (type 49) of an IRAP picture.
// Payloads with DONL fields (sprop-max-don-diff > 0) are not supported.
func IsKeyframeH265(payload []byte) bool {
	if len(payload) < 2 {
		return false
	}
	switch typ := (payload[0] >> 1) & 0x3F; {
	case isH265Key(typ):
		return true
	case typ == h265NALAP:
		p := payload[2:]
		for len(p) >= 4 {
			size := int(p[0])<<8 | int(p[1])
			p = p[2:]
			if size < 2 || size > len(p) {
				return false
			}
			if isH265Key((p[0] >> 1) & 0x3F) {
				return true
			}
			p = p[size:]
		}
	case typ == h265NALFU:
		if len(payload) < 3 || payload[2]&0x80 == 0 {
			return false
		}
		t := payload[2] & 0x3F
		return t >= 16 && t <= 21
	}
	return false
}

// KeyframeFunc returns the keyframe detector for a format: IsKeyframeH264 for
// H.264, IsKeyframeH265 for H.265, and nil for every other codec. Codecs without
// a detector have no keyframes to splice at and switch only at sequence continuity
// (or, for independent sources, at the first packet after the video switch point).
func KeyframeFunc(f format.Format) func([]byte) bool {
	switch f.(type) {
	case *format.H264:
		return IsKeyframeH264
	case *format.H265:
		return IsKeyframeH265
	}
	return nil
}
