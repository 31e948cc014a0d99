package dicomtest

import "encoding/binary"

// Synthetic pixels: gradients and shapes so that images look like something when rendered, plus deterministic
// noise so that lossless compression is not trivial. Each function fills one row of one frame, so that CT can
// stream large images through one row buffer.

// mix is SplitMix64's finaliser: a cheap, well-distributed hash of (seed, i).
func mix(seed, i uint64) uint64 {
	z := seed + (i+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

const ctPadding = -2000 // PixelPaddingValue outside the reconstruction circle, as many CT scanners write

// ctRow writes row y of a CT-like frame: signed 16-bit stored values for RescaleIntercept -1024, a body-sized
// disc of soft-tissue-to-lung gradient with a bone disc that moves from frame to frame, padding outside.
func ctRow(dst []byte, seed uint64, frame, y, rows, cols int) {
	cx, cy := cols/2, rows/2
	r := min(rows, cols)/2 - 1
	bx, by, br := cx+r/3*(frame%8-4)/4, cy-r/4, r/5
	dy, ey := y-cy, y-by
	base := uint64((frame*rows + y) * cols)
	for x := 0; x < cols; x++ {
		v := ctPadding
		if dx := x - cx; dx*dx+dy*dy <= r*r {
			hu := 60 - 900*x/cols + 200*y/rows
			if ex := x - bx; ex*ex+ey*ey <= br*br {
				hu = 1200
			}
			hu += int(mix(seed, base+uint64(x))%61) - 30
			v = hu + 1024
		}
		binary.LittleEndian.PutUint16(dst[2*x:], uint16(int16(v)))
	}
}

// narrowCTRow rewrites, in place, a row from ctRow for BitsStored 12 (unsigned, padding to 0) or 8 (one byte per
// sample: the 12-bit value divided by 16) and returns it; 16 leaves it as it is.
func narrowCTRow(row []byte, bits int) []byte {
	if bits == 16 {
		return row
	}
	n := len(row) / 2
	for i := range n {
		v := max(0, min(4095, int(int16(binary.LittleEndian.Uint16(row[2*i:])))))
		if bits == 8 {
			row[i] = byte(v >> 4)
		} else {
			binary.LittleEndian.PutUint16(row[2*i:], uint16(v))
		}
	}
	if bits == 8 {
		return row[:n]
	}
	return row
}

// mrRow writes unsigned 16-bit values using the full range (above 32767, so that a reader treating them as
// signed shows it): an ellipse with a left-to-right gradient over low background noise.
func mrRow(dst []byte, seed uint64, frame, y, rows, cols int) {
	a, b := cols*9/20, rows*2/5
	dy := y - rows/2
	base := uint64((frame*rows + y) * cols)
	for x := 0; x < cols; x++ {
		n := mix(seed, base+uint64(x))
		v := int(n % 64)
		if dx := x - cols/2; dx*dx*b*b+dy*dy*a*a <= a*a*b*b {
			v = 8000 + 30000*x/cols + int(n%1024)
		}
		binary.LittleEndian.PutUint16(dst[2*x:], uint16(v))
	}
}

// crRow writes 12-bit values in 16-bit words: a gradient with a collimated border of high values.
func crRow(dst []byte, seed uint64, frame, y, rows, cols int) {
	base := uint64((frame*rows + y) * cols)
	for x := 0; x < cols; x++ {
		n := mix(seed, base+uint64(x))
		v := 3900 + int(n%64)
		if x >= 6 && y >= 6 && x < cols-6 && y < rows-6 {
			v = 300 + 2500*y/rows + 800*x/cols + int(n%128)
		}
		binary.LittleEndian.PutUint16(dst[2*x:], uint16(v))
	}
}

// signed12Row writes signed 12-bit values (−1900…1900) sign-extended into 16-bit words.
func signed12Row(dst []byte, seed uint64, frame, y, rows, cols int) {
	base := uint64((frame*rows + y) * cols)
	for x := 0; x < cols; x++ {
		v := -1800 + 3600*x/(cols-1) + int(mix(seed, base+uint64(x))%201) - 100
		binary.LittleEndian.PutUint16(dst[2*x:], uint16(int16(v)))
	}
}

// usRow writes 8-bit RGB, interleaved: speckle with a red "Doppler" blob that moves across the frames.
func usRow(dst []byte, seed uint64, frame, y, rows, cols int) {
	bx, by, br := cols/4+frame*cols/20, rows/2, rows/6
	ey := y - by
	base := uint64((frame*rows + y) * cols)
	for x := 0; x < cols; x++ {
		n := mix(seed, base+uint64(x))
		g := byte(20 + 120*y/rows + int(n%48))
		p := dst[3*x : 3*x+3]
		p[0], p[1], p[2] = g, g, g
		if ex := x - bx; ex*ex+ey*ey <= br*br {
			p[0], p[1], p[2] = byte(180+n%60), 40, byte(30+(n>>8)%20)
		}
	}
}

// rgbRow writes 8-bit RGB, interleaved: red across, green down, a noisy blue checkerboard.
func rgbRow(dst []byte, seed uint64, frame, y, rows, cols int) {
	base := uint64((frame*rows + y) * cols)
	for x := 0; x < cols; x++ {
		n := mix(seed, base+uint64(x))
		p := dst[3*x : 3*x+3]
		p[0] = byte(255 * x / (cols - 1))
		p[1] = byte(255 * y / (rows - 1))
		p[2] = byte((x/16+y/16)%2*160 + int(n%64))
	}
}

// paletteRow writes 8-bit palette indices: a diagonal ramp with a little noise.
func paletteRow(dst []byte, seed uint64, frame, y, rows, cols int) {
	base := uint64((frame*rows + y) * cols)
	for x := 0; x < cols; x++ {
		dst[x] = byte((x+y)*239/(rows+cols-2) + int(mix(seed, base+uint64(x))%16))
	}
}

// paletteLUTs returns 256-entry, 16-bit red, green and blue palettes, PS3.3 C.7.6.3.1.6, little endian.
func paletteLUTs() (r, g, b []byte) {
	for i := range 256 {
		r = binary.LittleEndian.AppendUint16(r, uint16(i*257))
		g = binary.LittleEndian.AppendUint16(g, uint16((255-i)*257))
		d := i - 128
		if d < 0 {
			d = -d
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(min(255, 2*d)*257))
	}
	return r, g, b
}
