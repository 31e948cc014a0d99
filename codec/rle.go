package codec

import "encoding/binary"

// rleHeaderSize is the RLE Header: the number of segments and 15 segment offsets, all uint32 (PS3.5 G.5).
const rleHeaderSize = 64

// decodeRLE decodes one RLE Lossless frame (PS3.5 Annex G). Each sample has BitsAllocated/8 segments, most
// significant byte first, and the segments of sample 0 come before those of sample 1 (G.2); each segment is a
// PackBits byte stream (G.3.1) of Rows×Columns bytes. The Photometric Interpretation is kept.
func decodeRLE(frame []byte, l layout) (Decoded, error) {
	if len(frame) < rleHeaderSize {
		return Decoded{}, corrupt("frame of %d bytes is shorter than the %d-byte RLE Header (PS3.5 G.5)", len(frame), rleHeaderSize)
	}
	n := int(binary.LittleEndian.Uint32(frame))
	want := l.spp * l.bytesPerSample
	if n != want {
		return Decoded{}, corrupt("RLE Header has %d segments, want %d for %d samples of %d bits (PS3.5 G.2)",
			n, want, l.spp, 8*l.bytesPerSample)
	}
	if want > 15 {
		return Decoded{}, unsupported("%d segments needed, RLE allows 15 (PS3.5 G.5)", want)
	}
	pixels := l.rows * l.cols
	// PackBits expands two bytes into at most 128: a shorter frame cannot hold the image.
	if int64(len(frame)-rleHeaderSize)*64 < int64(pixels)*int64(n) {
		return Decoded{}, corrupt("frame of %d bytes is too short for %d segments of %d bytes", len(frame), n, pixels)
	}
	offsets := make([]int, n+1)
	for i := 0; i < n; i++ {
		offsets[i] = int(binary.LittleEndian.Uint32(frame[4+4*i:]))
	}
	offsets[n] = len(frame)
	if offsets[0] != rleHeaderSize {
		return Decoded{}, corrupt("first RLE segment at offset %d, want %d (PS3.5 G.5)", offsets[0], rleHeaderSize)
	}
	out := make([]byte, l.size)
	seg := make([]byte, pixels)
	bps := l.bytesPerSample
	stride := l.spp * bps
	for s := 0; s < n; s++ {
		if offsets[s+1] < offsets[s] || offsets[s+1] > len(frame) {
			return Decoded{}, corrupt("RLE segment %d ends at %d, before its start %d or past the frame (%d bytes)",
				s+1, offsets[s+1], offsets[s], len(frame))
		}
		if got := unpackBits(seg, frame[offsets[s]:offsets[s+1]]); got != pixels {
			return Decoded{}, corrupt("RLE segment %d decodes to %d bytes, want %d (PS3.5 G.3.1)", s+1, got, pixels)
		}
		sample, byteIndex := s/bps, bps-1-s%bps // segments are most significant byte first (PS3.5 G.2)
		pos := sample*bps + byteIndex
		for p := 0; p < pixels; p++ {
			out[pos] = seg[p]
			pos += stride
		}
	}
	if l.signed && l.stored < 8*bps {
		signExtend(out, l)
	}
	return Decoded{Pixels: out, PhotometricInterpretation: l.img.PhotometricInterpretation}, nil
}

// unpackBits decodes a PackBits stream into dst and returns how many bytes it wrote; it stops when dst is full,
// so segment padding and over-long runs are ignored (PS3.5 G.3.2).
func unpackBits(dst, src []byte) int {
	o := 0
	for i := 0; i < len(src) && o < len(dst); {
		h := int(int8(src[i]))
		i++
		switch {
		case h >= 0: // literal run of h+1 bytes
			n := min(h+1, len(src)-i, len(dst)-o)
			copy(dst[o:], src[i:i+n])
			o += n
			i += h + 1
		case h > -128: // replicate the next byte 1-h times
			if i >= len(src) {
				return o
			}
			n := min(1-h, len(dst)-o)
			b := src[i]
			for k := range n {
				dst[o+k] = b
			}
			o += n
			i++
		}
		// h == -128 is a no-op (PS3.5 G.3.1).
	}
	return o
}

// signExtend rewrites little-endian samples so that bits above BitsStored copy the sign bit.
func signExtend(pix []byte, l layout) {
	bps := l.bytesPerSample
	for i := 0; i+bps <= len(pix); i += bps {
		var v int32
		for b := bps - 1; b >= 0; b-- {
			v = v<<8 | int32(pix[i+b])
		}
		l.put(pix, i/bps, v)
	}
}
