package media

import (
	"errors"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/pion/rtp"
)

// TestSplicerContinuity: the Splicer is the one judge of "same sequence
// space" for a feed declared SameSeqSpace: near the output in sequence and
// timestamp it stays same and is caught up once it delivers a packet at,
// behind or right after the output; far from it in either, it is spliced at a
// keyframe instead.
func TestSplicerContinuity(t *testing.T) {
	t.Parallel()
	const clock = 90000
	for _, tc := range []struct {
		name       string
		mode       Mode
		dSeq       int // B's first packet relative to the output's last sequence number
		dTS        int64
		wantSame   bool
		wantCaught bool
	}{
		{"behind", SameSeqSpace, -3, -3 * 3600, true, true},
		{"next", SameSeqSpace, 1, 3600, true, true},
		{"ahead: not caught up yet", SameSeqSpace, 5, 5 * 3600, true, false},
		{"just inside the sequence window", SameSeqSpace, -maxSameSeqJump, 0, true, true},
		{"sequence beyond the window", SameSeqSpace, maxSameSeqJump + 1, 0, false, false},
		{"sequence far behind", SameSeqSpace, -3000, 0, false, false},
		{"timestamp 11 s ahead", SameSeqSpace, 1, 11 * clock, false, false},
		{"timestamp 11 s behind", SameSeqSpace, -1, -11 * clock, false, false},
		{"independent feed", IndependentSeqSpace, 1, 3600, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := mustH264(t, 1000)
			var lastSeq uint16
			var lastTS uint32
			sp := NewSplicer(src.Description(), func(_ int, p *rtp.Packet, _ time.Time) {
				lastSeq, lastTS = p.SequenceNumber, p.Timestamp
			}, SplicerOptions{})
			if err := sp.AddFeed("A", SameSeqSpace, nil); err != nil {
				t.Fatal(err)
			}
			var pframe *rtp.Packet
			for range 10 {
				_, pkts, key := src.NextFrame()
				for _, p := range pkts {
					if err := sp.Write("A", 0, p); err != nil {
						t.Fatal(err)
					}
				}
				if !key {
					pframe = pkts[len(pkts)-1]
				}
			}
			if err := sp.AddFeed("B", tc.mode, nil); err != nil {
				t.Fatal(err)
			}
			if same, caught, err := sp.Continuity("B"); err != nil || same != (tc.mode == SameSeqSpace) || caught {
				t.Fatalf("before any packet: same %v caught %v err %v", same, caught, err)
			}
			p := *pframe
			p.SequenceNumber = uint16(int(lastSeq) + tc.dSeq)
			p.Timestamp = uint32(int64(lastTS) + tc.dTS)
			if err := sp.Write("B", 0, &p); err != nil {
				t.Fatal(err)
			}
			same, caught, err := sp.Continuity("B")
			if err != nil || same != tc.wantSame || caught != tc.wantCaught {
				t.Fatalf("Continuity = same %v caught %v err %v, want same %v caught %v", same, caught, err, tc.wantSame, tc.wantCaught)
			}
			if _, _, err := sp.Continuity("nope"); !errors.Is(err, ErrUnknownFeed) {
				t.Fatalf("unknown feed: %v", err)
			}
		})
	}
}

func TestCompatibleNoMedias(t *testing.T) {
	t.Parallel()
	src := mustH264(t, 1)
	for _, d := range []*description.Session{nil, {}} {
		if err := Compatible(src.Description(), d); !errors.Is(err, ErrIncompatible) {
			t.Fatalf("Compatible(%v) = %v, want ErrIncompatible", d, err)
		}
	}
	if err := Compatible(src.Description(), src.Description()); err != nil {
		t.Fatal(err)
	}
}
