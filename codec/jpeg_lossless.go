package codec

// decodeJPEGLossless decodes a lossless process 14 frame (T.81 Annex H, SOF3) with Huffman coding: predictors 1–7,
// point transform, 2–16 bit precision, any number of scans and restart intervals. Components must not be
// subsampled. The Photometric Interpretation is kept: the lossless process transforms no colours.
func decodeJPEGLossless(data []byte, l layout) (Decoded, error) {
	// Every sample costs at least one bit of Huffman code, so a shorter frame cannot hold the image.
	if int64(l.samples()) > 8*int64(len(data)) {
		return Decoded{}, corrupt("JPEG lossless frame of %d bytes cannot hold %d samples", len(data), l.samples())
	}
	d := &jpegDecoder{data: data, l: l, adobe: -1}
	var (
		planes [][]uint16
		pts    []int
		done   []bool
	)
	onFrame := func() error {
		f := d.frame
		if f.sof != mSOF3 {
			return unsupported("JPEG lossless decoder given SOF 0x%02X", f.sof)
		}
		if f.precision < 2 || f.precision > 16 {
			return corrupt("JPEG lossless precision %d not in 2..16 (T.81 B.2.2)", f.precision)
		}
		for _, c := range f.comps {
			if c.h != 1 || c.v != 1 {
				return unsupported("JPEG lossless with subsampled components (%dx%d)", c.h, c.v)
			}
		}
		planes = make([][]uint16, len(f.comps))
		for i := range planes {
			planes[i] = make([]uint16, f.width*f.height)
		}
		pts = make([]int, len(f.comps))
		done = make([]bool, len(f.comps))
		return nil
	}
	d.scan = func(s *jpegScan, br *bitReader) error {
		for _, c := range s.comps {
			if done[c.index] {
				return corrupt("JPEG lossless component %d is in two scans", d.frame.comps[c.index].id)
			}
			if !d.dc[c.td].defined {
				return corrupt("JPEG lossless scan uses undefined Huffman table %d", c.td)
			}
		}
		if err := d.losslessScan(s, br, planes); err != nil {
			return err
		}
		for _, c := range s.comps {
			done[c.index] = true
			pts[c.index] = s.al
		}
		return nil
	}
	if err := d.run(onFrame); err != nil {
		return Decoded{}, err
	}
	if d.frame == nil {
		return Decoded{}, corrupt("JPEG stream has no SOF (T.81 B.2)")
	}
	for i, ok := range done {
		if !ok {
			return Decoded{}, corrupt("JPEG lossless component %d has no scan", d.frame.comps[i].id)
		}
	}
	out := make([]byte, l.size)
	n := l.rows * l.cols
	for c, p := range planes {
		pt := uint(pts[c])
		for i, v := range p[:n] {
			l.put(out, i*l.spp+c, int32(v)<<pt)
		}
	}
	return Decoded{Pixels: out, PhotometricInterpretation: l.img.PhotometricInterpretation}, nil
}

// losslessScan decodes one lossless scan into the component planes (T.81 H.1.2 and H.2).
func (d *jpegDecoder) losslessScan(s *jpegScan, br *bitReader, planes [][]uint16) error {
	f := d.frame
	pred, pt := s.ss, s.al
	if pred < 1 || pred > 7 {
		return corrupt("JPEG lossless predictor %d not in 1..7 (T.81 Table H.1)", pred)
	}
	if pt >= f.precision {
		return corrupt("JPEG lossless point transform %d with precision %d (T.81 H.1.2.1)", pt, f.precision)
	}
	w, h := f.width, f.height
	initial := int32(1) << (f.precision - pt - 1) // T.81 H.1.2.1: prediction at the start of a restart interval
	tables := make([]*huffman, len(s.comps))
	comp := make([][]uint16, len(s.comps))
	for k, c := range s.comps {
		tables[k] = &d.dc[c.td]
		comp[k] = planes[c.index]
	}
	left := d.restart // MCUs left in this restart interval; one MCU is one sample of each scan component
	resetY, resetX := 0, 0
	for y := 0; y < h; y++ {
		row := y * w
		for x := 0; x < w; x++ {
			if d.restart > 0 {
				if left == 0 {
					if err := br.restart(); err != nil {
						return err
					}
					left = d.restart
					resetY, resetX = y, x
				}
				left--
			}
			i := row + x
			for k, p := range comp {
				var px int32
				switch {
				case y == resetY && x == resetX:
					px = initial
				case y == resetY:
					px = int32(p[i-1])
				case x == 0:
					px = int32(p[i-w])
				default:
					ra, rb, rc := int32(p[i-1]), int32(p[i-w]), int32(p[i-w-1])
					switch pred {
					case 1:
						px = ra
					case 2:
						px = rb
					case 3:
						px = rc
					case 4:
						px = ra + rb - rc
					case 5:
						px = ra + (rb-rc)>>1
					case 6:
						px = rb + (ra-rc)>>1
					default:
						px = (ra + rb) >> 1
					}
				}
				t, ok := br.decodeHuffman(tables[k])
				if !ok {
					return corrupt("invalid Huffman code in JPEG lossless row %d (T.81 F.2.2.3)", y+1)
				}
				var diff int32
				switch {
				case t == 16:
					diff = 32768 // T.81 H.1.2.2: SSSS 16 has no additional bits
				case t > 16:
					return corrupt("JPEG lossless difference category %d over 16 (T.81 Table H.2)", t)
				default:
					diff = br.receiveExtend(int(t))
				}
				p[i] = uint16(px + diff) // modulo 2^16 (T.81 H.2.1)
			}
		}
		if br.overrun() {
			return corrupt("JPEG lossless entropy-coded data end in row %d of %d", y+1, h)
		}
	}
	return nil
}
