// Package media is Ferry's RTP toolkit, shared by the ingest (origin and edge), the
// publisher agent and the viewer probe. It builds on gortsplib v5 (v5.6.4) and is
// pure Go.
//
// # Keyframes
//
// IsKeyframeH264 and IsKeyframeH265 look at one RTP payload (single NAL unit,
// aggregation or fragmentation start). KeyframeFunc picks the detector for a
// format and returns nil for codecs without keyframes.
//
// # Synthetic sources
//
// FakeH264 and FakeH265 emit access units whose NAL units carry a magic and an
// 8-byte frame counter instead of pictures (keyframe every GOP frames), FakeG711
// emits 20 ms PCMU packets carrying a counter, CameraSource combines H.264 video and
// PCMU audio on one clock, and MJPEGSource emits real, decodable JPEG frames for
// players and ffprobe. Every source keeps one sequence/timestamp space for its
// lifetime, so its packets can be written to two connections at once during a
// make-before-break move. FrameCounter reads the counter back; Run paces a Source
// in real time.
//
// # Continuity splicer
//
// A Splicer turns packets from one or more feeds (upstream sources of one stream: a
// publisher session, a relay pull) into one continuous output per media: one
// sequence space without gaps or repeats at a switch, monotonic timestamps, and
// NTP times from one wall clock. Medias are matched by index. The rules (docs/design.md §4):
//
//   - The first feed passes through unchanged.
//   - A SameSeqSpace feed (Ferry's agent on its new connection, a relay of the same
//     stream) overlapping the active one: each sequence number is written once, from
//     whichever feed brings it first (16-bit wrap-aware), the other copy is dropped.
//     Once the new feed has been first for SplicerOptions.RetireAfter consecutive
//     packets, the old one is retired (SwitchInfo.Mode "sequence"). Nothing waits
//     for a keyframe.
//   - An IndependentSeqSpace feed (another encoder) is spliced in per media: the lead
//     media (the first H.264/H.265 one) at its first keyframe, other video medias at
//     their next keyframe, every other media at its first packet whose timestamp,
//     mapped to wall time, is at or after the lead's splice point. The first spliced
//     packet continues the output (sequence last+1, timestamp last + the elapsed
//     wall time in the media clock, at least +1); when the feed's description
//     carries H.264/H.265 parameter sets that differ from the output's, they are
//     written right before the keyframe with its timestamp. The old feed keeps
//     feeding the medias not spliced yet, then is retired (Mode "keyframe").
//   - When the active feed is removed or stays silent for SplicerOptions.FeedTimeout
//     while another feed writes, a SameSeqSpace feed already writing takes over by
//     sequence; otherwise the stream waits with no active feed and the next feed is
//     spliced at its first keyframe (Break set, Gap is the outage).
//
// A SameSeqSpace feed whose first packets lie more than 2048 sequence numbers away
// from the output is not in the same space after all (a restarted publisher): it
// is spliced at a keyframe like an IndependentSeqSpace feed.
//
// Packets are never written out of order: a copy behind the output is dropped as a
// duplicate (already written) or late (skipped). A switch may cut the old feed's
// frame in progress; the new feed's keyframe follows it.
//
// # Analyzer
//
// An Analyzer is what a reader or probe feeds with every packet it receives; its
// Report counts packets, frames, missing and duplicate frames (by counter), SSRC
// changes, sequence gaps, timestamps going backwards, the largest timestamp step and
// the longest wall-clock silence, per media.
//
// # Example
//
// An ingest path relaying publishers to readers through a gortsplib ServerStream:
//
//	sp := media.NewSplicer(stream.Desc, func(i int, pkt *rtp.Packet, ntp time.Time) {
//		stream.WritePacketRTPWithNTP(stream.Desc.Medias[i], pkt, ntp)
//	}, media.SplicerOptions{OnSwitch: func(si media.SwitchInfo) {
//		closeSession(si.From) // the old publisher may go now
//	}})
//
//	// in OnRecord, for each publisher session (id = its session id):
//	if err := sp.AddFeed(id, media.SameSeqSpace, ctx.Session.AnnouncedDescription()); err != nil {
//		return &base.Response{StatusCode: base.StatusBadRequest}, err
//	}
//	for i, medi := range ctx.Session.AnnouncedDescription().Medias {
//		ctx.Session.OnPacketRTP(medi, medi.Formats[0], func(pkt *rtp.Packet) {
//			if errors.Is(sp.Write(id, i, pkt), media.ErrFeedRetired) {
//				ctx.Session.Close()
//			}
//		})
//	}
//
//	// in OnSessionClose:
//	sp.RemoveFeed(id)
//
// A test publisher with countable frames:
//
//	src, _ := media.NewFakeH264(media.FakeConfig{FPS: 25, GOP: 25})
//	c := gortsplib.Client{}
//	_ = c.StartRecording(url, src.Description())
//	_ = media.Run(ctx, src, c.WritePacketRTP)
//
// Writing one source to two connections (make-before-break), give each Client its
// own CloneDescription(src.Description()) and map medias by index:
//
//	i := slices.Index(src.Description().Medias, medi)
//	_ = c2.WritePacketRTP(desc2.Medias[i], pkt)
//
// A reader counting what it gets:
//
//	an := media.NewAnalyzer(desc)
//	reader.OnPacketRTPAny(func(medi *description.Media, _ format.Format, pkt *rtp.Packet) {
//		an.Add(slices.Index(desc.Medias, medi), pkt, time.Now())
//	})
//	...
//	json.NewEncoder(os.Stdout).Encode(an.Report())
package media
