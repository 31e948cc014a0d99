package codec

import (
	"encoding/binary"
	"slices"
)

// JPEG markers, ITU T.81 Table B.1.
const (
	mSOF0 = 0xC0 // baseline DCT
	mSOF1 = 0xC1 // extended sequential DCT, Huffman
	mSOF2 = 0xC2 // progressive DCT, Huffman
	mSOF3 = 0xC3 // lossless (sequential), Huffman
	mDHT  = 0xC4
	mRST0 = 0xD0
	mSOI  = 0xD8
	mEOI  = 0xD9
	mSOS  = 0xDA
	mDQT  = 0xDB
	mDNL  = 0xDC
	mDRI  = 0xDD
	mTEM  = 0x01
)

// decodeJPEG decodes a frame of any of the JPEG (ITU T.81) transfer syntaxes. It dispatches on the frame's SOF
// marker rather than on the transfer syntax, because mislabelled objects (lossless data under a lossy UID and the
// reverse) are common and the marker is what the data are.
func decodeJPEG(data []byte, l layout) (Decoded, error) {
	sof, precision, err := findSOF(data)
	if err != nil {
		return Decoded{}, err
	}
	switch {
	case sof == mSOF3:
		return decodeJPEGLossless(data, l)
	case (sof == mSOF0 || sof == mSOF1 || sof == mSOF2) && precision == 8:
		return decodeJPEGBaseline(data, l)
	case (sof == mSOF1 || sof == mSOF0) && precision == 12:
		return decodeJPEGExtended(data, l)
	}
	return Decoded{}, unsupported("JPEG process with SOF marker 0x%02X and %d-bit precision (T.81 Table B.1)", sof, precision)
}

// findSOF returns the first SOF marker of a JPEG stream and its sample precision.
func findSOF(data []byte) (byte, int, error) {
	if len(data) < 4 || data[0] != 0xFF || data[1] != mSOI {
		return 0, 0, corrupt("JPEG frame does not start with SOI (T.81 B.2.1)")
	}
	pos := 2
	for {
		m, seg, next, err := nextSegment(data, pos)
		if err != nil {
			return 0, 0, err
		}
		if isSOF(m) {
			if len(seg) < 6 {
				return 0, 0, corrupt("SOF segment of %d bytes is too short (T.81 B.2.2)", len(seg))
			}
			return m, int(seg[0]), nil
		}
		if m == mSOS || m == mEOI {
			return 0, 0, corrupt("JPEG stream has no SOF before marker 0x%02X (T.81 B.2)", m)
		}
		pos = next
	}
}

func isSOF(m byte) bool {
	return m >= 0xC0 && m <= 0xCF && m != mDHT && m != 0xC8 && m != 0xCC
}

// nextSegment reads the marker at pos (after any fill bytes, T.81 B.1.1.2) and, for markers with a length, the
// segment's parameters. It returns the marker, the parameters, and the position after the segment.
func nextSegment(data []byte, pos int) (marker byte, seg []byte, next int, err error) {
	if pos >= len(data) || data[pos] != 0xFF {
		return 0, nil, 0, corrupt("no JPEG marker at byte %d", pos)
	}
	for pos < len(data) && data[pos] == 0xFF {
		pos++
	}
	if pos >= len(data) {
		return 0, nil, 0, corrupt("JPEG stream ends in fill bytes")
	}
	marker = data[pos]
	pos++
	if marker == mSOI || marker == mEOI || marker == mTEM || (marker >= mRST0 && marker <= mRST0+7) {
		return marker, nil, pos, nil
	}
	if pos+2 > len(data) {
		return 0, nil, 0, corrupt("JPEG segment 0x%02X has no length", marker)
	}
	n := int(binary.BigEndian.Uint16(data[pos:]))
	if n < 2 || pos+n > len(data) {
		return 0, nil, 0, corrupt("JPEG segment 0x%02X of length %d runs past the %d-byte frame", marker, n, len(data))
	}
	return marker, data[pos+2 : pos+n], pos + n, nil
}

// jpegDecoder walks the markers of one JPEG frame (T.81 Annex B) and hands each scan to a process-specific
// scan decoder. It serves the lossless process (Annex H) and the 12-bit extended DCT process (Annex F).
type jpegDecoder struct {
	data    []byte
	l       layout
	frame   *jpegFrame
	dc, ac  [4]huffman
	qt      [4][64]int32
	qtSet   [4]bool
	restart int  // restart interval in MCUs, 0 for none (T.81 B.2.4.4)
	jfif    bool // APP0 JFIF seen
	adobe   int  // APP14 Adobe transform flag, -1 if absent

	scan func(*jpegScan, *bitReader) error
}

// run parses the stream from SOI to EOI; a stream that ends without EOI after its scans is accepted.
func (d *jpegDecoder) run(onFrame func() error) error {
	if len(d.data) < 2 || d.data[0] != 0xFF || d.data[1] != mSOI {
		return corrupt("JPEG frame does not start with SOI (T.81 B.2.1)")
	}
	pos := 2
	for pos < len(d.data) {
		m, seg, next, err := nextSegment(d.data, pos)
		if err != nil {
			return err
		}
		switch {
		case m == mEOI:
			return nil
		case isSOF(m):
			if d.frame != nil {
				return corrupt("JPEG frame has a second SOF marker (T.81 B.2)")
			}
			if d.frame, err = parseSOF(m, seg); err != nil {
				return err
			}
			if err := checkFrame(d.frame, d.l); err != nil {
				return err
			}
			if err := onFrame(); err != nil {
				return err
			}
		case m == mDHT:
			if err := parseDHT(seg, &d.dc, &d.ac); err != nil {
				return err
			}
		case m == mDQT:
			if err := d.parseDQT(seg); err != nil {
				return err
			}
		case m == mDRI:
			if len(seg) != 2 {
				return corrupt("DRI segment of %d bytes, want 2 (T.81 B.2.4.4)", len(seg))
			}
			d.restart = int(binary.BigEndian.Uint16(seg))
		case m == 0xE0 && len(seg) >= 5 && string(seg[:5]) == "JFIF\x00":
			d.jfif = true
		case m == 0xEE && len(seg) >= 12 && string(seg[:5]) == "Adobe":
			d.adobe = int(seg[11])
		case m == mDNL:
			return unsupported("DNL marker (T.81 B.2.5)")
		case m == mSOS:
			sc, err := parseSOS(seg, d.frame)
			if err != nil {
				return err
			}
			br := &bitReader{data: d.data, pos: next}
			if err := d.scan(sc, br); err != nil {
				return err
			}
			next = br.end()
		}
		pos = next
	}
	return nil
}

// parseDQT reads quantization tables (T.81 B.2.4.1).
func (d *jpegDecoder) parseDQT(seg []byte) error {
	for len(seg) > 0 {
		pq, tq := seg[0]>>4, seg[0]&15
		if pq > 1 || tq > 3 {
			return corrupt("DQT precision %d, destination %d (T.81 B.2.4.1)", pq, tq)
		}
		n := 64 * int(1+pq)
		if len(seg) < 1+n {
			return corrupt("DQT segment truncated (T.81 B.2.4.1)")
		}
		for i := 0; i < 64; i++ { // the table is in zig-zag order (T.81 B.2.4.1)
			if pq == 0 {
				d.qt[tq][zigzag[i]] = int32(seg[1+i])
			} else {
				d.qt[tq][zigzag[i]] = int32(binary.BigEndian.Uint16(seg[1+2*i:]))
			}
		}
		d.qtSet[tq] = true
		seg = seg[1+n:]
	}
	return nil
}

// jpegComponent is one component of the frame header (T.81 B.2.2).
type jpegComponent struct {
	id   byte
	h, v int
	tq   int
}

// jpegFrame is the frame header (T.81 B.2.2).
type jpegFrame struct {
	sof           byte
	precision     int
	height, width int
	comps         []jpegComponent
}

func parseSOF(m byte, seg []byte) (*jpegFrame, error) {
	if len(seg) < 6 {
		return nil, corrupt("SOF segment of %d bytes is too short (T.81 B.2.2)", len(seg))
	}
	f := &jpegFrame{sof: m, precision: int(seg[0]), height: int(binary.BigEndian.Uint16(seg[1:])),
		width: int(binary.BigEndian.Uint16(seg[3:]))}
	nf := int(seg[5])
	if nf < 1 || nf > 4 || len(seg) != 6+3*nf {
		return nil, corrupt("SOF declares %d components in a %d-byte segment (T.81 B.2.2)", nf, len(seg))
	}
	for i := 0; i < nf; i++ {
		c := jpegComponent{id: seg[6+3*i], h: int(seg[7+3*i] >> 4), v: int(seg[7+3*i] & 15), tq: int(seg[8+3*i])}
		if c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4 || c.tq > 3 {
			return nil, corrupt("SOF component %d has sampling %dx%d, table %d (T.81 B.2.2)", i+1, c.h, c.v, c.tq)
		}
		if slices.ContainsFunc(f.comps, func(o jpegComponent) bool { return o.id == c.id }) {
			return nil, corrupt("SOF repeats component identifier %d", c.id)
		}
		f.comps = append(f.comps, c)
	}
	return f, nil
}

// checkFrame checks the frame header against the data set's pixel description.
func checkFrame(f *jpegFrame, l layout) error {
	if f.height == 0 {
		return unsupported("JPEG frame with DNL-defined height (T.81 B.2.5)")
	}
	if f.width != l.cols || f.height != l.rows {
		return corrupt("JPEG frame is %dx%d, the data set says %dx%d", f.width, f.height, l.cols, l.rows)
	}
	if len(f.comps) != l.spp {
		return corrupt("JPEG frame has %d components, the data set says %d samples per pixel", len(f.comps), l.spp)
	}
	if f.precision > 8*l.bytesPerSample {
		return corrupt("JPEG precision %d is more than bits allocated %d", f.precision, 8*l.bytesPerSample)
	}
	return nil
}

// scanComponent is one component of a scan header (T.81 B.2.3).
type scanComponent struct {
	index  int // into jpegFrame.comps
	td, ta int
}

// jpegScan is a scan header (T.81 B.2.3).
type jpegScan struct {
	comps  []scanComponent
	ss, se int
	ah, al int
}

func parseSOS(seg []byte, f *jpegFrame) (*jpegScan, error) {
	if f == nil {
		return nil, corrupt("SOS before SOF (T.81 B.2)")
	}
	if len(seg) < 1 {
		return nil, corrupt("empty SOS segment")
	}
	ns := int(seg[0])
	if ns < 1 || ns > 4 || len(seg) != 4+2*ns {
		return nil, corrupt("SOS declares %d components in a %d-byte segment (T.81 B.2.3)", ns, len(seg))
	}
	s := &jpegScan{}
	for i := 0; i < ns; i++ {
		id := seg[1+2*i]
		idx := slices.IndexFunc(f.comps, func(c jpegComponent) bool { return c.id == id })
		if idx < 0 {
			return nil, corrupt("SOS names component %d that is not in the frame", id)
		}
		if slices.ContainsFunc(s.comps, func(c scanComponent) bool { return c.index == idx }) {
			return nil, corrupt("SOS repeats component %d", id)
		}
		sc := scanComponent{index: idx, td: int(seg[2+2*i] >> 4), ta: int(seg[2+2*i] & 15)}
		if sc.td > 3 || sc.ta > 3 {
			return nil, corrupt("SOS component %d selects Huffman tables %d/%d (T.81 B.2.3)", id, sc.td, sc.ta)
		}
		s.comps = append(s.comps, sc)
	}
	p := 1 + 2*ns
	s.ss, s.se, s.ah, s.al = int(seg[p]), int(seg[p+1]), int(seg[p+2]>>4), int(seg[p+2]&15)
	return s, nil
}

// huffman is a decoding table (T.81 Annex C and F.2.2.3), with a lookup table for codes of up to lookBits bits.
type huffman struct {
	lookup  [1 << lookBits]uint16 // value | length<<8, or 0 for longer codes
	maxcode [17]int32             // largest code of each length, -1 for none
	valptr  [17]int32             // index of the first value of each length, minus that length's first code
	vals    [256]byte
	defined bool
}

const lookBits = 9

// parseDHT reads one or more Huffman tables (T.81 B.2.4.2); class 0 goes to dc, class 1 to ac.
func parseDHT(seg []byte, dc, ac *[4]huffman) error {
	for len(seg) > 0 {
		if len(seg) < 17 {
			return corrupt("DHT segment truncated (T.81 B.2.4.2)")
		}
		tc, th := seg[0]>>4, seg[0]&15
		if tc > 1 || th > 3 {
			return corrupt("DHT table class %d, destination %d (T.81 B.2.4.2)", tc, th)
		}
		var counts [17]int
		total := 0
		for i := 1; i <= 16; i++ {
			counts[i] = int(seg[i])
			total += counts[i]
		}
		if total > 256 || len(seg) < 17+total {
			return corrupt("DHT table with %d codes in %d bytes", total, len(seg))
		}
		t := &dc[th]
		if tc == 1 {
			t = &ac[th]
		}
		*t = huffman{defined: true}
		copy(t.vals[:], seg[17:17+total])
		code, k := 0, 0
		for n := 1; n <= 16; n++ {
			t.valptr[n] = int32(k - code)
			t.maxcode[n] = -1
			for range counts[n] {
				if code >= 1<<n {
					return corrupt("DHT table has more codes of length %d than fit (T.81 C.2)", n)
				}
				if n <= lookBits {
					e := uint16(t.vals[k]) | uint16(n)<<8
					base := code << (lookBits - n)
					for j := range 1 << (lookBits - n) {
						t.lookup[base+j] = e
					}
				}
				code++
				k++
			}
			if counts[n] > 0 {
				t.maxcode[n] = int32(code - 1)
			}
			code <<= 1
		}
		seg = seg[17+total:]
	}
	return nil
}

// bitReader reads entropy-coded data MSB first, removing stuffed zero bytes (T.81 F.1.2.3). At a marker or the end
// of data it supplies zero bits and counts them in pad, so that a decoder can tell truncated data (pad > n) from a
// scan that ended cleanly.
type bitReader struct {
	data   []byte
	pos    int
	acc    uint64 // bits, most significant first
	n      uint   // valid bits in acc
	pad    uint   // zero bits appended past the data
	marker bool   // data[pos] is a marker's 0xFF
}

func (b *bitReader) fill() {
	for b.n <= 56 {
		var c byte
		if !b.marker && b.pos < len(b.data) {
			c = b.data[b.pos]
			if c != 0xFF {
				b.pos++
			} else if b.pos+1 < len(b.data) && b.data[b.pos+1] == 0 {
				b.pos += 2
			} else {
				b.marker = true
				c = 0
				b.pad += 8
			}
		} else {
			b.pad += 8
		}
		b.acc |= uint64(c) << (56 - b.n)
		b.n += 8
	}
}

// overrun reports whether bits past the end of the entropy-coded segment were consumed.
func (b *bitReader) overrun() bool { return b.pad > b.n }

func (b *bitReader) bits(k uint) int32 {
	if b.n < k {
		b.fill()
	}
	v := int32(b.acc >> (64 - k))
	b.acc <<= k
	b.n -= k
	return v
}

// receiveExtend reads t additional bits and extends them to a signed difference (T.81 F.2.2.1, Figure F.12).
func (b *bitReader) receiveExtend(t int) int32 {
	if t == 0 {
		return 0
	}
	v := b.bits(uint(t))
	if v < 1<<(t-1) {
		v += -1<<t + 1
	}
	return v
}

// decodeHuffman decodes one value (T.81 F.2.2.3); ok is false for a code that is not in the table.
func (b *bitReader) decodeHuffman(t *huffman) (byte, bool) {
	if b.n < 16 {
		b.fill()
	}
	if e := t.lookup[b.acc>>(64-lookBits)]; e != 0 {
		n := uint(e >> 8)
		b.acc <<= n
		b.n -= n
		return byte(e), true
	}
	code := int32(b.acc >> 48)
	for n := lookBits + 1; n <= 16; n++ {
		c := code >> (16 - n)
		if c <= t.maxcode[n] {
			b.acc <<= uint(n)
			b.n -= uint(n)
			return t.vals[(t.valptr[n]+c)&255], true
		}
	}
	return 0, false
}

// restart discards the rest of the current restart interval and reads the RSTn marker (T.81 F.2.2.5).
func (b *bitReader) restart() error {
	if b.overrun() {
		return corrupt("entropy-coded data end before the restart interval does")
	}
	p := b.pos
	if !b.marker {
		p = nextMarker(b.data, p)
	}
	for p < len(b.data) && b.data[p] == 0xFF {
		p++
	}
	if p >= len(b.data) || b.data[p] < mRST0 || b.data[p] > mRST0+7 {
		return corrupt("restart marker missing after a restart interval (T.81 F.2.2.5)")
	}
	b.pos, b.acc, b.n, b.pad, b.marker = p+1, 0, 0, 0, false
	return nil
}

// end returns the position of the marker after the entropy-coded segment.
func (b *bitReader) end() int {
	if b.marker {
		return b.pos
	}
	return nextMarker(b.data, b.pos)
}

// nextMarker returns the position of the next 0xFF that starts a marker, or len(data).
func nextMarker(data []byte, p int) int {
	for p < len(data) {
		if data[p] == 0xFF && p+1 < len(data) && data[p+1] != 0 && data[p+1] != 0xFF {
			return p
		}
		p++
	}
	return len(data)
}
