package codec

// The standard library's image/jpeg rejects 12-bit precision, and Debian's libjpeg-turbo 2.1.5 has no 12-bit mode,
// so 12-bit sequential DCT (JPEG Extended, Process 4, PS3.5 A.4.1) is decoded here. The inverse DCT is IJG
// libjpeg's accurate integer "islow" (jidctint.c), the one dcmtk's 12-bit decoder uses, so that greyscale results
// match dcmdjpeg exactly; colour conversion follows jdcolor.c, and subsampled chroma is replicated rather than
// filtered.

// zigzag maps zig-zag order to natural order (T.81 Figure A.6).
var zigzag = [64]uint8{
	0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
}

// dctComponent holds one component's samples, padded to whole MCUs.
type dctComponent struct {
	h, v          int
	stride, lines int
	pix           []uint16
	pred          int32 // DC predictor (T.81 F.2.1.3.1)
	done          bool
}

// decodeJPEGExtended decodes a sequential DCT frame with Huffman coding (T.81 Annex F, SOF0/SOF1) of 8 or 12 bits.
// Progressive (SOF2) and arithmetic-coded frames never reach it (decodeJPEG).
func decodeJPEGExtended(data []byte, l layout) (Decoded, error) {
	// Every 8×8 block costs at least two bits (a DC code and an EOB), so a shorter frame cannot hold the image.
	if int64(l.samples()) > 256*int64(len(data)) {
		return Decoded{}, corrupt("JPEG frame of %d bytes cannot hold %d samples", len(data), l.samples())
	}
	d := &jpegDecoder{data: data, l: l, adobe: -1}
	var (
		comps      []*dctComponent
		hmax, vmax int
		mcusX      int
		mcusY      int
	)
	onFrame := func() error {
		f := d.frame
		if f.precision != 8 && f.precision != 12 {
			return corrupt("JPEG DCT precision %d, want 8 or 12 (T.81 B.2.2)", f.precision)
		}
		for _, c := range f.comps {
			hmax, vmax = max(hmax, c.h), max(vmax, c.v)
		}
		mcusX = (f.width + 8*hmax - 1) / (8 * hmax)
		mcusY = (f.height + 8*vmax - 1) / (8 * vmax)
		for _, c := range f.comps {
			dc := &dctComponent{h: c.h, v: c.v, stride: mcusX * c.h * 8, lines: mcusY * c.v * 8}
			dc.pix = make([]uint16, dc.stride*dc.lines)
			comps = append(comps, dc)
		}
		return nil
	}
	d.scan = func(s *jpegScan, br *bitReader) error {
		// Ss, Se, Ah and Al mean nothing in a sequential frame; IJG libjpeg only warns when they are not 0, 63, 0, 0.
		for _, c := range s.comps {
			fc := d.frame.comps[c.index]
			if !d.dc[c.td].defined || !d.ac[c.ta].defined {
				return corrupt("JPEG scan uses undefined Huffman tables %d/%d", c.td, c.ta)
			}
			if !d.qtSet[fc.tq] {
				return corrupt("JPEG component %d uses undefined quantization table %d", fc.id, fc.tq)
			}
			if comps[c.index].done {
				return corrupt("JPEG component %d is in two scans", fc.id)
			}
		}
		if err := d.dctScan(s, br, comps, hmax, vmax, mcusX, mcusY); err != nil {
			return err
		}
		for _, c := range s.comps {
			comps[c.index].done = true
		}
		return nil
	}
	if err := d.run(onFrame); err != nil {
		return Decoded{}, err
	}
	if d.frame == nil {
		return Decoded{}, corrupt("JPEG stream has no SOF (T.81 B.2)")
	}
	for i, c := range comps {
		if !c.done {
			return Decoded{}, corrupt("JPEG component %d has no scan", d.frame.comps[i].id)
		}
	}
	out := make([]byte, l.size)
	pi := l.img.PhotometricInterpretation
	w, h := l.cols, l.rows
	at := func(c *dctComponent, x, y int) int32 {
		return int32(c.pix[(y*c.v/vmax)*c.stride+x*c.h/hmax])
	}
	if len(comps) == 3 && d.ycc() {
		cc := newYCCTables(d.frame.precision)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				r, g, b := cc.rgb(at(comps[0], x, y), at(comps[1], x, y), at(comps[2], x, y))
				i := 3 * (y*w + x)
				l.put(out, i, r)
				l.put(out, i+1, g)
				l.put(out, i+2, b)
			}
		}
		return Decoded{Pixels: out, PhotometricInterpretation: "RGB"}, nil
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for k, c := range comps {
				l.put(out, (y*w+x)*len(comps)+k, at(c, x, y))
			}
		}
	}
	if len(comps) == 3 {
		pi = "RGB"
	}
	return Decoded{Pixels: out, PhotometricInterpretation: pi}, nil
}

// ycc reports whether a three-component frame holds YCbCr, by IJG libjpeg's rule (jdapimin.c default_decompress_parms):
// JFIF means YCbCr, an Adobe marker's transform flag decides, else component identifiers 'R','G','B' mean RGB.
func (d *jpegDecoder) ycc() bool {
	switch {
	case d.jfif:
		return true
	case d.adobe >= 0:
		return d.adobe != 0
	}
	c := d.frame.comps
	return !(c[0].id == 'R' && c[1].id == 'G' && c[2].id == 'B')
}

// dctScan decodes one sequential scan (T.81 F.2) into the component planes.
func (d *jpegDecoder) dctScan(s *jpegScan, br *bitReader, comps []*dctComponent, hmax, vmax, mcusX, mcusY int) error {
	f := d.frame
	var blk [64]int32
	left := d.restart
	for _, c := range comps {
		c.pred = 0
	}
	next := func() error { // count one MCU against the restart interval (T.81 F.2.2.5)
		if d.restart == 0 {
			return nil
		}
		if left == 0 {
			if err := br.restart(); err != nil {
				return err
			}
			left = d.restart
			for _, c := range s.comps {
				comps[c.index].pred = 0
			}
		}
		left--
		return nil
	}
	block := func(sc scanComponent, bx, by int) error {
		c := comps[sc.index]
		if err := d.decodeBlock(br, &blk, sc, c); err != nil {
			return err
		}
		idctIslow(&blk, &d.qt[f.comps[sc.index].tq], c.pix[by*8*c.stride+bx*8:], c.stride, f.precision)
		return nil
	}
	if len(s.comps) == 1 { // non-interleaved: one block per MCU, over the component's own size (T.81 A.2.2)
		sc := s.comps[0]
		fc := f.comps[sc.index]
		cw := (f.width*fc.h + hmax - 1) / hmax
		ch := (f.height*fc.v + vmax - 1) / vmax
		for by := 0; by < (ch+7)/8; by++ {
			for bx := 0; bx < (cw+7)/8; bx++ {
				if err := next(); err != nil {
					return err
				}
				if err := block(sc, bx, by); err != nil {
					return err
				}
			}
			if br.overrun() {
				return corrupt("JPEG entropy-coded data end in block row %d", by+1)
			}
		}
		return nil
	}
	for my := 0; my < mcusY; my++ { // interleaved (T.81 A.2.3)
		for mx := 0; mx < mcusX; mx++ {
			if err := next(); err != nil {
				return err
			}
			for _, sc := range s.comps {
				fc := f.comps[sc.index]
				for v := 0; v < fc.v; v++ {
					for h := 0; h < fc.h; h++ {
						if err := block(sc, mx*fc.h+h, my*fc.v+v); err != nil {
							return err
						}
					}
				}
			}
		}
		if br.overrun() {
			return corrupt("JPEG entropy-coded data end in MCU row %d of %d", my+1, mcusY)
		}
	}
	return nil
}

// decodeBlock decodes one block's coefficients in natural order (T.81 F.2.2.1, F.2.2.2).
func (d *jpegDecoder) decodeBlock(br *bitReader, blk *[64]int32, sc scanComponent, c *dctComponent) error {
	*blk = [64]int32{}
	t, ok := br.decodeHuffman(&d.dc[sc.td])
	if !ok {
		return corrupt("invalid DC Huffman code (T.81 F.2.2.3)")
	}
	if t > 16 {
		return corrupt("DC difference category %d over 16 (T.81 F.1.2.1)", t)
	}
	c.pred += br.receiveExtend(int(t))
	blk[0] = int32(int16(c.pred)) // IJG keeps coefficients in 16 bits (JCOEF)
	for k := 1; k < 64; k++ {
		rs, ok := br.decodeHuffman(&d.ac[sc.ta])
		if !ok {
			return corrupt("invalid AC Huffman code (T.81 F.2.2.3)")
		}
		r, s := int(rs>>4), int(rs&15)
		if s == 0 {
			if r != 15 {
				break // EOB
			}
			k += 15 // ZRL
			continue
		}
		k += r
		if k > 63 {
			return corrupt("AC coefficients run past the block (T.81 F.2.2.2)")
		}
		blk[zigzag[k]] = int32(int16(br.receiveExtend(s)))
	}
	return nil
}

// IJG jidctint.c constants: FIX(x) = x·2^13 rounded.
const (
	fix0298631336 = 2446
	fix0390180644 = 3196
	fix0541196100 = 4433
	fix0765366865 = 6270
	fix0899976223 = 7373
	fix1175875602 = 9633
	fix1501321110 = 12299
	fix1847759065 = 15137
	fix1961570560 = 16069
	fix2053119869 = 16819
	fix2562915447 = 20995
	fix3072711026 = 25172
	constBits     = 13
)

// idctIslow dequantizes and inverse-transforms one block into dst (8 rows of stride samples), level-shifted and
// range-limited as jidctint.c jpeg_idct_islow does, including its wrap-around range table for corrupt data. IJG's
// INT32 is a C long, 64 bits on the platforms dcmtk runs on, and its workspace is int: hence int64 arithmetic and
// an int32 workspace here.
func idctIslow(blk *[64]int32, q *[64]int32, dst []uint16, stride, precision int) {
	pass1 := 2 // PASS1_BITS: 2 for 8-bit samples, 1 for 12-bit
	if precision > 8 {
		pass1 = 1
	}
	maxSample := int64(1)<<precision - 1
	center := int64(1) << (precision - 1)
	rangeMask := 4*(maxSample+1) - 1
	limit := func(x int64) uint16 {
		x = int64(int32(x)) & rangeMask // the index is an int
		if x >= 2*(maxSample+1) {
			x -= 4 * (maxSample + 1)
		}
		x += center
		return uint16(min(max(x, 0), maxSample))
	}
	descale := func(x int64, n int) int64 { return (x + 1<<(n-1)) >> n }
	var ws [64]int32
	for col := 0; col < 8; col++ {
		in := func(r int) int64 { return int64(blk[8*r+col]) * int64(q[8*r+col]) }
		if blk[8+col] == 0 && blk[16+col] == 0 && blk[24+col] == 0 && blk[32+col] == 0 &&
			blk[40+col] == 0 && blk[48+col] == 0 && blk[56+col] == 0 {
			dc := int32(in(0) << pass1)
			for r := 0; r < 8; r++ {
				ws[8*r+col] = dc
			}
			continue
		}
		t10, t11, t12, t13, t0, t1, t2, t3 := idctButterfly(in(0), in(1), in(2), in(3), in(4), in(5), in(6), in(7))
		n := constBits - pass1
		ws[col] = int32(descale(t10+t3, n))
		ws[56+col] = int32(descale(t10-t3, n))
		ws[8+col] = int32(descale(t11+t2, n))
		ws[48+col] = int32(descale(t11-t2, n))
		ws[16+col] = int32(descale(t12+t1, n))
		ws[40+col] = int32(descale(t12-t1, n))
		ws[24+col] = int32(descale(t13+t0, n))
		ws[32+col] = int32(descale(t13-t0, n))
	}
	for row := 0; row < 8; row++ {
		w := ws[8*row : 8*row+8]
		out := dst[row*stride : row*stride+8]
		if w[1] == 0 && w[2] == 0 && w[3] == 0 && w[4] == 0 && w[5] == 0 && w[6] == 0 && w[7] == 0 {
			v := limit(descale(int64(w[0]), pass1+3))
			for i := range out {
				out[i] = v
			}
			continue
		}
		t10, t11, t12, t13, t0, t1, t2, t3 := idctButterfly(int64(w[0]), int64(w[1]), int64(w[2]), int64(w[3]),
			int64(w[4]), int64(w[5]), int64(w[6]), int64(w[7]))
		n := constBits + pass1 + 3
		out[0] = limit(descale(t10+t3, n))
		out[7] = limit(descale(t10-t3, n))
		out[1] = limit(descale(t11+t2, n))
		out[6] = limit(descale(t11-t2, n))
		out[2] = limit(descale(t12+t1, n))
		out[5] = limit(descale(t12-t1, n))
		out[3] = limit(descale(t13+t0, n))
		out[4] = limit(descale(t13-t0, n))
	}
}

// idctButterfly is the even and odd parts of one 1-D pass of jpeg_idct_islow.
func idctButterfly(x0, x1, x2, x3, x4, x5, x6, x7 int64) (t10, t11, t12, t13, t0, t1, t2, t3 int64) {
	z2, z3 := x2, x6
	z1 := (z2 + z3) * fix0541196100
	t2 = z1 + z3*-fix1847759065
	t3 = z1 + z2*fix0765366865
	t0 = (x0 + x4) << constBits
	t1 = (x0 - x4) << constBits
	t10, t13 = t0+t3, t0-t3
	t11, t12 = t1+t2, t1-t2

	t0, t1, t2, t3 = x7, x5, x3, x1
	z1 = t0 + t3
	z2 = t1 + t2
	z3 = t0 + t2
	z4 := t1 + t3
	z5 := (z3 + z4) * fix1175875602
	t0 *= fix0298631336
	t1 *= fix2053119869
	t2 *= fix3072711026
	t3 *= fix1501321110
	z1 *= -fix0899976223
	z2 *= -fix2562915447
	z3 *= -fix1961570560
	z4 *= -fix0390180644
	z3 += z5
	z4 += z5
	t0 += z1 + z3
	t1 += z2 + z4
	t2 += z2 + z3
	t3 += z1 + z4
	return
}

// yccTables converts YCbCr to RGB as jdcolor.c ycc_rgb_convert does (16-bit fixed point).
type yccTables struct {
	maxSample, center int32
}

func newYCCTables(precision int) yccTables {
	return yccTables{maxSample: int32(1)<<precision - 1, center: int32(1) << (precision - 1)}
}

func (c yccTables) rgb(y, cb, cr int32) (int32, int32, int32) {
	const scale = 16
	const half = 1 << (scale - 1)
	fix := func(x float64) int64 { return int64(x*(1<<scale) + 0.5) }
	cbx, crx := int64(cb-c.center), int64(cr-c.center)
	clamp := func(v int64) int32 { return int32(min(max(v, 0), int64(c.maxSample))) }
	r := int64(y) + (fix(1.40200)*crx+half)>>scale
	g := int64(y) + (-fix(0.34414)*cbx+half-fix(0.71414)*crx)>>scale
	b := int64(y) + (fix(1.77200)*cbx+half)>>scale
	return clamp(r), clamp(g), clamp(b)
}
