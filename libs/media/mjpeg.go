package media

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmjpeg"
	"github.com/pion/rtp"
)

// mjpegBlock is the side of one counter block in pixels (two JPEG MCUs wide).
const mjpegBlock = 16

// mjpegBits is how many bits of the frame counter the picture shows.
const mjpegBits = 16

// MJPEGSource is a synthetic, decodable M-JPEG video source for players and
// ffprobe: each frame is a real JPEG (stdlib image/jpeg) showing a moving bar over a
// gradient and, along the top, the low 16 bits of the frame counter as blocks
// (white = 1, most significant bit first; read it back with MJPEGFrameNumber).
// Packets come from one rtpmjpeg encoder for the source's lifetime and timestamps
// from the frame index. Not safe for concurrent use.
type MJPEGSource struct {
	cfg     FakeConfig
	w, h    int
	quality int
	enc     *rtpmjpeg.Encoder
	desc    *description.Session
	img     *image.RGBA
	idx     uint64
}

// NewMJPEGSource returns an MJPEGSource of width x height pixels (0: 320x240; both
// must be multiples of 16, at most 2032). cfg.FPS defaults to 25; GOP, Bitrate and
// PayloadType are ignored (M-JPEG uses payload type 26; every frame is whole).
func NewMJPEGSource(cfg FakeConfig, width, height int) (*MJPEGSource, error) {
	cfg = cfg.withDefaults()
	if width == 0 && height == 0 {
		width, height = 320, 240
	}
	if width <= 0 || height <= 0 || width%16 != 0 || height%16 != 0 || width > 2032 || height > 2032 {
		return nil, fmt.Errorf("%w: size %dx%d: must be multiples of 16, at most 2032", ErrBadConfig, width, height)
	}
	if width < mjpegBits*mjpegBlock {
		return nil, fmt.Errorf("%w: width %d: must be at least %d to show the counter", ErrBadConfig, width, mjpegBits*mjpegBlock)
	}
	forma := &format.MJPEG{}
	enc, err := forma.CreateEncoder()
	if err != nil {
		return nil, fmt.Errorf("mjpeg encoder: %w", err)
	}
	enc.SSRC = cfg.SSRC
	enc.InitialSequenceNumber = cfg.InitialSeq
	if cfg.PayloadMaxSize > 0 {
		enc.PayloadMaxSize = cfg.PayloadMaxSize
	}
	if err := enc.Init(); err != nil {
		return nil, fmt.Errorf("mjpeg encoder: %w", err)
	}
	return &MJPEGSource{
		cfg: cfg, w: width, h: height, quality: 80, enc: enc,
		img: image.NewRGBA(image.Rect(0, 0, width, height)),
		desc: &description.Session{Medias: []*description.Media{{
			Type:    description.MediaTypeVideo,
			Formats: []format.Format{forma},
		}}},
	}, nil
}

// Description returns one video media with an M-JPEG format; the same value on every call.
func (s *MJPEGSource) Description() *description.Session { return s.desc }

// NextFrame returns the next frame's counter and its RTP packets (the caller owns them).
func (s *MJPEGSource) NextFrame() (frame uint64, pkts []*rtp.Packet, err error) {
	frame = s.cfg.FirstFrame + s.idx
	s.draw(frame)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, s.img, &jpeg.Options{Quality: s.quality}); err != nil {
		return frame, nil, fmt.Errorf("jpeg encode frame %d: %w", frame, err)
	}
	pkts, err = s.enc.Encode(buf.Bytes())
	if err != nil {
		return frame, nil, fmt.Errorf("rtp/jpeg encode frame %d: %w", frame, err)
	}
	ts := *s.cfg.InitialTS + uint32(s.idx*90000/uint64(s.cfg.FPS))
	for _, p := range pkts {
		p.Timestamp = ts
	}
	s.idx++
	return frame, pkts, nil
}

// Next implements Source: the next frame, due at index/FPS, on media 0. A frame
// that fails to encode (it cannot, for a valid size) yields no packets.
func (s *MJPEGSource) Next() (time.Duration, int, []*rtp.Packet) {
	due := time.Duration(s.idx) * time.Second / time.Duration(s.cfg.FPS)
	_, pkts, _ := s.NextFrame()
	return due, 0, pkts
}

// draw paints frame n: a gradient, a bar moving 8 px per frame, the counter blocks.
func (s *MJPEGSource) draw(n uint64) {
	barX := int(n*8) % s.w
	for y := range s.h {
		for x := range s.w {
			c := color.RGBA{uint8(x * 255 / s.w), uint8(y * 255 / s.h), 128, 255}
			if x >= barX && x < barX+mjpegBlock {
				c = color.RGBA{255, 64, 0, 255}
			}
			s.img.SetRGBA(x, y, c)
		}
	}
	for bit := range mjpegBits {
		v := uint8(0)
		if n&(1<<(mjpegBits-1-bit)) != 0 {
			v = 255
		}
		for y := range mjpegBlock {
			for x := range mjpegBlock {
				s.img.SetRGBA(bit*mjpegBlock+x, y, color.RGBA{v, v, v, 255})
			}
		}
	}
}

// MJPEGFrameNumber reads the low 16 bits of the frame counter back from a decoded
// MJPEGSource picture (the centre of each block, thresholded).
func MJPEGFrameNumber(img image.Image) uint16 {
	var n uint16
	b := img.Bounds()
	for bit := range mjpegBits {
		r, g, bl, _ := img.At(b.Min.X+bit*mjpegBlock+mjpegBlock/2, b.Min.Y+mjpegBlock/2).RGBA()
		n <<= 1
		if (r+g+bl)/3 > 0x8000 {
			n |= 1
		}
	}
	return n
}
