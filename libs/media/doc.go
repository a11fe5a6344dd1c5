// Package media is Ferry's RTP toolkit: keyframe detection, synthetic sources with
// frame counters, the continuity splicer and the stream analyzer.
package media
