package media

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/g711"
	"github.com/pion/rtp"
)

// Source is a synthetic stream that Run can pace: Next returns the next packets in
// time order, each batch with the offset from the source's start at which it is due
// and the index of its media in Description().Medias.
type Source interface {
	Description() *description.Session
	Next() (due time.Duration, mediaIndex int, pkts []*rtp.Packet)
}

var (
	_ Source = (*FakeH264)(nil)
	_ Source = (*FakeH265)(nil)
	_ Source = (*FakeG711)(nil)
	_ Source = (*CameraSource)(nil)
	_ Source = (*MJPEGSource)(nil)
)

// FakeConfig configures the synthetic sources. Zero values take the defaults.
type FakeConfig struct {
	// FPS is the video frame rate (default 25).
	FPS int
	// GOP is the keyframe interval in frames (default 25).
	GOP int
	// Bitrate pads every video frame to about Bitrate/8/FPS bytes (0: no padding).
	Bitrate int
	// PayloadType of the packets (default 96 for video; G711 always uses 0, PCMU).
	PayloadType uint8
	// InitialSeq is the first RTP sequence number (default random).
	InitialSeq *uint16
	// InitialTS is the first RTP timestamp (default random).
	InitialTS *uint32
	// SSRC of the packets (default random).
	SSRC *uint32
	// FirstFrame is the counter carried by the first frame (default 0).
	FirstFrame uint64
	// PayloadMaxSize is the largest RTP payload (default 1450, gortsplib's).
	PayloadMaxSize int
}

func (c FakeConfig) withDefaults() FakeConfig {
	if c.FPS <= 0 {
		c.FPS = 25
	}
	if c.GOP <= 0 {
		c.GOP = 25
	}
	if c.PayloadType == 0 {
		c.PayloadType = 96
	}
	if c.InitialSeq == nil {
		v := uint16(rand.Uint32())
		c.InitialSeq = &v
	}
	if c.InitialTS == nil {
		v := rand.Uint32()
		c.InitialTS = &v
	}
	if c.SSRC == nil {
		v := rand.Uint32()
		c.SSRC = &v
	}
	return c
}

// ErrBadConfig is returned by the source constructors for an invalid configuration.
var ErrBadConfig = errors.New("media: bad source config")

// fakeVideo is the codec-independent part of FakeH264 and FakeH265.
type fakeVideo struct {
	cfg     FakeConfig
	desc    *description.Session
	encode  func([][]byte) ([]*rtp.Packet, error)
	nalHdr  int                  // NAL header size: 1 (H264) or 2 (H265)
	mkNAL   func(typ int) []byte // a NAL header for a type
	keyNALs []int                // NAL types of a keyframe access unit, the slice last
	pNAL    int                  // NAL type of a non-keyframe slice
	idx     uint64               // index of the next frame since the start
	padTo   int                  // slice NAL size target
}

func (v *fakeVideo) nextFrame() (uint64, []*rtp.Packet, bool) {
	frame := v.cfg.FirstFrame + v.idx
	key := v.idx%uint64(v.cfg.GOP) == 0
	types := []int{v.pNAL}
	if key {
		types = v.keyNALs
	}
	au := make([][]byte, len(types))
	for i, typ := range types {
		size := v.nalHdr + counterLen
		if i == len(types)-1 && v.padTo > size {
			size = v.padTo
		}
		nal := make([]byte, size)
		copy(nal, v.mkNAL(typ))
		putCounter(nal[v.nalHdr:], frame)
		au[i] = nal
	}
	pkts, err := v.encode(au)
	if err != nil { // the encoders only fail on empty NAL units, which we never build
		return frame, nil, key
	}
	ts := *v.cfg.InitialTS + uint32(v.idx*90000/uint64(v.cfg.FPS))
	for _, p := range pkts {
		p.Timestamp = ts
	}
	v.idx++
	return frame, pkts, key
}

func (v *fakeVideo) due() time.Duration {
	return time.Duration(v.idx) * time.Second / time.Duration(v.cfg.FPS)
}

func newFakeVideo(cfg FakeConfig) (*fakeVideo, error) {
	cfg = cfg.withDefaults()
	if cfg.PayloadType < 96 || cfg.PayloadType > 127 {
		return nil, fmt.Errorf("%w: PayloadType %d: must be dynamic (96..127)", ErrBadConfig, cfg.PayloadType)
	}
	v := &fakeVideo{cfg: cfg}
	if cfg.Bitrate > 0 {
		v.padTo = cfg.Bitrate / 8 / cfg.FPS
	}
	return v, nil
}

// FakeH264 is a synthetic H.264 source whose NAL units carry frame counters instead
// of pictures: SPS (7), PPS (8) and IDR (5) every GOP frames, a non-IDR slice (1)
// otherwise, each NAL unit holding a magic and the frame number after its header
// (read it back with FrameCounter). Packets come from one rtph264 encoder for the
// source's lifetime and timestamps from the frame index (index*90000/FPS), so the
// source has a single sequence/timestamp space and its packets can be written to two
// connections during a make-before-break move. Not safe for concurrent use.
type FakeH264 struct {
	v *fakeVideo
}

// NewFakeH264 returns a FakeH264 source.
func NewFakeH264(cfg FakeConfig) (*FakeH264, error) {
	v, err := newFakeVideo(cfg)
	if err != nil {
		return nil, err
	}
	forma := &format.H264{PayloadTyp: v.cfg.PayloadType, PacketizationMode: 1}
	enc, err := forma.CreateEncoder()
	if err != nil {
		return nil, fmt.Errorf("h264 encoder: %w", err)
	}
	enc.SSRC = v.cfg.SSRC
	enc.InitialSequenceNumber = v.cfg.InitialSeq
	if v.cfg.PayloadMaxSize > 0 {
		enc.PayloadMaxSize = v.cfg.PayloadMaxSize
	}
	if err := enc.Init(); err != nil {
		return nil, fmt.Errorf("h264 encoder: %w", err)
	}
	v.encode = enc.Encode
	v.nalHdr = 1
	v.mkNAL = func(typ int) []byte { return []byte{0x60 | byte(typ)} } // NRI 3
	v.keyNALs = []int{h264NALSPS, h264NALPPS, h264NALIDR}
	v.pNAL = h264NALNonIDR
	v.desc = &description.Session{Medias: []*description.Media{{
		Type:    description.MediaTypeVideo,
		Formats: []format.Format{forma},
	}}}
	return &FakeH264{v: v}, nil
}

// Description returns the source's session description: one video media with an
// H.264 format (packetization mode 1) and no sprop-parameter-sets, because the
// in-band SPS/PPS are fake. It returns the same value on every call; do not modify it.
func (s *FakeH264) Description() *description.Session { return s.v.desc }

// NextFrame returns the next frame's counter, its RTP packets and whether it is a
// keyframe (SPS+PPS+IDR). The packets are new on every call; the caller owns them.
func (s *FakeH264) NextFrame() (frame uint64, pkts []*rtp.Packet, key bool) {
	return s.v.nextFrame()
}

// Next implements Source: the next frame, due at index/FPS, on media 0.
func (s *FakeH264) Next() (time.Duration, int, []*rtp.Packet) {
	due := s.v.due()
	_, pkts, _ := s.v.nextFrame()
	return due, 0, pkts
}

// FakeH265 is the H.265 counterpart of FakeH264: VPS (32), SPS (33), PPS (34) and
// IDR_W_RADL (19) every GOP frames, TRAIL_R (1) otherwise, packetized with one
// rtph265 encoder for the source's lifetime. Not safe for concurrent use.
type FakeH265 struct {
	v *fakeVideo
}

// NewFakeH265 returns a FakeH265 source.
func NewFakeH265(cfg FakeConfig) (*FakeH265, error) {
	v, err := newFakeVideo(cfg)
	if err != nil {
		return nil, err
	}
	forma := &format.H265{PayloadTyp: v.cfg.PayloadType}
	enc, err := forma.CreateEncoder()
	if err != nil {
		return nil, fmt.Errorf("h265 encoder: %w", err)
	}
	enc.SSRC = v.cfg.SSRC
	enc.InitialSequenceNumber = v.cfg.InitialSeq
	if v.cfg.PayloadMaxSize > 0 {
		enc.PayloadMaxSize = v.cfg.PayloadMaxSize
	}
	if err := enc.Init(); err != nil {
		return nil, fmt.Errorf("h265 encoder: %w", err)
	}
	v.encode = enc.Encode
	v.nalHdr = 2
	v.mkNAL = func(typ int) []byte { return []byte{byte(typ) << 1, 1} } // layer 0, tid 1
	v.keyNALs = []int{h265NALVPS, h265NALSPS, h265NALPPS, h265NALIDRWRADL}
	v.pNAL = h265NALTrailR
	v.desc = &description.Session{Medias: []*description.Media{{
		Type:    description.MediaTypeVideo,
		Formats: []format.Format{forma},
	}}}
	return &FakeH265{v: v}, nil
}

// Description returns the source's session description: one video media with an
// H.265 format and no sprop-vps/sps/pps. It returns the same value on every call.
func (s *FakeH265) Description() *description.Session { return s.v.desc }

// NextFrame returns the next frame's counter, its RTP packets and whether it is a
// keyframe (VPS+SPS+PPS+IDR). The caller owns the packets.
func (s *FakeH265) NextFrame() (frame uint64, pkts []*rtp.Packet, key bool) {
	return s.v.nextFrame()
}

// Next implements Source: the next frame, due at index/FPS, on media 0.
func (s *FakeH265) Next() (time.Duration, int, []*rtp.Packet) {
	due := s.v.due()
	_, pkts, _ := s.v.nextFrame()
	return due, 0, pkts
}

// G711 packet geometry: PCMU at 8000 Hz, 20 ms per packet.
const (
	g711Rate          = 8000
	g711PacketSamples = 160
	g711Packet        = 20 * time.Millisecond
)

// g711Tone is 20 ms of a 400 Hz tone at a quarter of full scale, mu-law encoded
// (160 samples, 8 whole periods, so consecutive packets join without a click).
var g711Tone = func() []byte {
	lpcm := make([]byte, 2*g711PacketSamples) // 16-bit big-endian samples
	for i := range g711PacketSamples {
		v := int16(8000 * math.Sin(2*math.Pi*400*float64(i)/g711Rate))
		binary.BigEndian.PutUint16(lpcm[2*i:], uint16(v))
	}
	b, err := g711.Mulaw(lpcm).Marshal()
	if err != nil || len(b) != g711PacketSamples { // cannot happen for an even-length input
		return make([]byte, g711PacketSamples)
	}
	return b
}()

// FakeG711 is a synthetic PCMU audio source (payload type 0, 8000 Hz, mono): one
// packet per 20 ms (160 samples) whose payload starts with the same magic + 8-byte
// packet counter as the video sources, followed by a tone. Not safe for concurrent use.
type FakeG711 struct {
	cfg  FakeConfig
	desc *description.Session
	seq  uint16
	idx  uint64
}

// NewFakeG711 returns a FakeG711 source; FPS, GOP, Bitrate and PayloadType are ignored.
func NewFakeG711(cfg FakeConfig) (*FakeG711, error) {
	cfg = cfg.withDefaults()
	forma := &format.G711{PayloadTyp: 0, MULaw: true, SampleRate: g711Rate, ChannelCount: 1}
	return &FakeG711{
		cfg: cfg,
		seq: *cfg.InitialSeq,
		desc: &description.Session{Medias: []*description.Media{{
			Type:    description.MediaTypeAudio,
			Formats: []format.Format{forma},
		}}},
	}, nil
}

// Description returns one audio media with a PCMU format; the same value on every call.
func (s *FakeG711) Description() *description.Session { return s.desc }

// NextPacket returns the next 20 ms packet and the counter it carries.
func (s *FakeG711) NextPacket() (frame uint64, pkt *rtp.Packet) {
	frame = s.cfg.FirstFrame + s.idx
	payload := make([]byte, g711PacketSamples)
	copy(payload, g711Tone)
	putCounter(payload, frame)
	pkt = &rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			PayloadType:    0,
			SequenceNumber: s.seq,
			Timestamp:      *s.cfg.InitialTS + uint32(s.idx*g711PacketSamples),
			SSRC:           *s.cfg.SSRC,
		},
		Payload: payload,
	}
	s.seq++
	s.idx++
	return frame, pkt
}

// Next implements Source: the next packet, due at index*20ms, on media 0.
func (s *FakeG711) Next() (time.Duration, int, []*rtp.Packet) {
	due := time.Duration(s.idx) * g711Packet
	_, pkt := s.NextPacket()
	return due, 0, []*rtp.Packet{pkt}
}

// CameraSource is a synthetic camera: H.264 video (media 0, a FakeH264) and PCMU
// audio (media 1, a FakeG711) on one clock: a video frame every 1/FPS and an audio
// packet every 20 ms, both starting at time zero, so video timestamp
// InitialTS+i*90000/FPS and audio timestamp InitialTS+k*160 describe the same
// instant when i/FPS == k/50. Next returns them in time order (video first on ties).
// Not safe for concurrent use.
type CameraSource struct {
	video *FakeH264
	audio *FakeG711
	desc  *description.Session
}

// NewCameraSource returns a CameraSource; video and audio get their own random
// SSRCs, sequence numbers and timestamp bases unless cfg fixes them.
func NewCameraSource(video, audio FakeConfig) (*CameraSource, error) {
	v, err := NewFakeH264(video)
	if err != nil {
		return nil, err
	}
	a, err := NewFakeG711(audio)
	if err != nil {
		return nil, err
	}
	return &CameraSource{
		video: v,
		audio: a,
		desc: &description.Session{Medias: []*description.Media{
			v.Description().Medias[0], a.Description().Medias[0],
		}},
	}, nil
}

// Description returns the video (0) and audio (1) medias; the same value on every call.
func (c *CameraSource) Description() *description.Session { return c.desc }

// Next implements Source: the earlier of the next video frame and the next audio packet.
func (c *CameraSource) Next() (time.Duration, int, []*rtp.Packet) {
	vd := c.video.v.due()
	ad := time.Duration(c.audio.idx) * g711Packet
	if vd <= ad {
		due, _, pkts := c.video.Next()
		return due, 0, pkts
	}
	due, _, pkts := c.audio.Next()
	return due, 1, pkts
}

// Run emits src in real time: it writes each batch of packets when it is due
// (relative to the moment Run starts) with the media they belong to, in order. It
// returns nil when ctx ends and the write error, wrapped, if a write fails. A batch
// that is already late is written at once (no catch-up skipping).
func Run(ctx context.Context, src Source, write func(medi *description.Media, pkt *rtp.Packet) error) error {
	medias := src.Description().Medias
	start := time.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		due, mi, pkts := src.Next()
		if wait := time.Until(start.Add(due)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return nil
		}
		for _, p := range pkts {
			if err := write(medias[mi], p); err != nil {
				return fmt.Errorf("write packet (media %d, seq %d): %w", mi, p.SequenceNumber, err)
			}
		}
	}
}

// CloneDescription returns a copy of d with copies of its medias (the formats are
// shared), for giving each gortsplib Client its own description: StartRecording
// writes each media's Control and Secure fields. Medias keep their order, so an
// index in one copy names the same media in every copy.
func CloneDescription(d *description.Session) *description.Session {
	c := *d
	c.Medias = make([]*description.Media, len(d.Medias))
	for i, m := range d.Medias {
		mc := *m
		mc.Formats = append([]format.Format(nil), m.Formats...)
		c.Medias[i] = &mc
	}
	return &c
}
