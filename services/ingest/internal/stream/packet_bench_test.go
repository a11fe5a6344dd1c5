package stream

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/pion/rtp"
	"github.com/rs/zerolog"

	"github.com/ferrystream/ferry/libs/media"
)

// BenchmarkPacketPath measures what one published packet costs on its way
// to the readers: "relay" is what a plain gortsplib relay does with it
// (ServerStream.WritePacketRTPWithNTP), "ferry" is Feed.Write, the whole
// path of a publisher's packet in Ferry (feed, Splicer, Stream.write, then
// the same ServerStream write). The difference is Ferry's own per-packet
// cost; one op is one packet of a 2 Mbit/s, 25 fps fake H.264 source.
func BenchmarkPacketPath(b *testing.B) {
	src, err := media.NewFakeH264(media.FakeConfig{FPS: 25, GOP: 50, Bitrate: 2_000_000})
	if err != nil {
		b.Fatal(err)
	}
	var pkts []*rtp.Packet
	for len(pkts) < 4096 {
		_, p, _ := src.NextFrame()
		pkts = append(pkts, p...)
	}
	srv := &gortsplib.Server{RTSPAddress: "127.0.0.1:0"}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	d := src.Description()

	// each pass over pkts moves the sequence numbers and timestamps on, so
	// the Splicer always sees a stream going forward
	next := func(i int) *rtp.Packet {
		p := pkts[i%len(pkts)]
		if i > 0 && i%len(pkts) == 0 {
			for _, q := range pkts {
				q.SequenceNumber += uint16(len(pkts))
				q.Timestamp += 90000 * uint32(len(pkts)) / 100
			}
		}
		return p
	}
	b.Run("relay", func(b *testing.B) {
		ss := &gortsplib.ServerStream{Server: srv, Desc: d}
		if err := ss.Initialize(); err != nil {
			b.Fatal(err)
		}
		defer ss.Close()
		ntp := time.Now()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := ss.WritePacketRTPWithNTP(d.Medias[0], next(i), ntp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ferry", func(b *testing.B) {
		s, err := New(srv, "bench", d, Options{Log: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close("done")
		f, err := s.AddFeed(FeedSpec{Kind: KindPublisher, Space: "pub-1"})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := f.Write(0, next(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkStreamFootprint reports the live heap one published stream holds:
// "relay" a ServerStream (what a plain gortsplib relay keeps per path),
// "ferry" a Stream with its publisher feed (ServerStream, Splicer, feed).
// Readers and the connections' own buffers are the same in both and left
// out. Run with -benchtime 1x: one op builds 200 streams.
func BenchmarkStreamFootprint(b *testing.B) {
	src, err := media.NewFakeH264(media.FakeConfig{FPS: 25, GOP: 50, Bitrate: 2_000_000})
	if err != nil {
		b.Fatal(err)
	}
	srv := &gortsplib.Server{RTSPAddress: "127.0.0.1:0"}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	const n = 200
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for _, tc := range []struct {
		name  string
		build func(i int) (func(), error)
	}{
		{"relay", func(int) (func(), error) {
			ss := &gortsplib.ServerStream{Server: srv, Desc: src.Description()}
			return ss.Close, ss.Initialize()
		}},
		{"ferry", func(i int) (func(), error) {
			s, err := New(srv, fmt.Sprintf("s%d", i), src.Description(), Options{Log: zerolog.Nop()})
			if err != nil {
				return nil, err
			}
			if _, err := s.AddFeed(FeedSpec{Kind: KindPublisher, Space: fmt.Sprintf("pub-%d", i), Label: fmt.Sprintf("s-%d", i)}); err != nil {
				return nil, err
			}
			return func() { s.Close("done") }, nil
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				closers := make([]func(), 0, n)
				before := heap()
				for i := range n {
					c, err := tc.build(i)
					if err != nil {
						b.Fatal(err)
					}
					closers = append(closers, c)
				}
				b.ReportMetric(float64(heap()-before)/n, "B/stream")
				for _, c := range closers {
					c()
				}
			}
		})
	}
}
