// Package render turns a decoded DICOM frame into the picture a screen shows, as PS3.3 C.11 describes it: the
// modality rescale, a linear VOI window (C.11.2.1.2.1) or a VOI LUT (C.11.2.1.1), MONOCHROME1 shown inverted, colour
// from RGB, YBR_FULL or PALETTE COLOR (C.7.6.3.1.5), and scaling to a viewport. WADO-RS `rendered` and `thumbnail`
// answers are made with it; its pixels are tested against dcmtk's dcm2pnm with the same window or LUT.
package render

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"math"

	"golang.org/x/image/draw"
)

// Frame is one decoded frame and what its header says about showing it.
type Frame struct {
	Rows, Columns   int
	SamplesPerPixel int
	BitsAllocated   int // 8, 16 or 32
	BitsStored      int
	Signed          bool // PixelRepresentation 1; samples are sign-extended in Pixels
	Photometric     string
	Pixels          []byte // native little endian, samples interleaved

	Slope, Intercept float64 // Modality LUT (rescale); Slope 0 is taken as 1
	// WindowCenter and WindowWidth are the file's VOI windows (the first is the default).
	WindowCenter, WindowWidth []float64
	// VOILUTs are the file's VOI LUT Sequence (0028,3010), read by VOILUTs; the first is shown when the file has
	// no window and Options name none.
	VOILUTs []LUT
	// Palette is the PALETTE COLOR lookup (red, green, blue).
	Palette *Palette
}

// Palette is a PALETTE COLOR lookup table (PS3.3 C.7.6.3.1.5).
type Palette struct {
	First   int      // the first stored value mapped
	Bits    int      // 8 or 16 bits per entry
	R, G, B []uint16 // entries
}

// Options choose the window and the size. A zero Width means the file's first window, else its first VOI LUT, else
// the frame's range (the order of dcmtk's dcm2pnm +Wi 1, +Wl 1, +Wm).
type Options struct {
	Center, Width float64
	// Viewport bounds the picture's size (the image is scaled to fit, keeping its aspect); zero keeps its size.
	Viewport image.Point
}

// ErrUnsupported is returned for frames render does not show (more than 3 samples, a bit depth over 32).
var ErrUnsupported = errors.New("render: unsupported image")

// Image renders f. Grey images come back as *image.Gray, colour ones as *image.RGBA.
func Image(f Frame, o Options) (image.Image, error) {
	n := f.Rows * f.Columns
	if n <= 0 {
		return nil, fmt.Errorf("render: %d×%d: %w", f.Columns, f.Rows, ErrUnsupported)
	}
	bytesPer := f.BitsAllocated / 8
	if f.BitsAllocated == 1 || bytesPer < 1 || bytesPer > 4 || bytesPer == 3 {
		return nil, fmt.Errorf("render: %d bits allocated: %w", f.BitsAllocated, ErrUnsupported)
	}
	if len(f.Pixels) < n*f.SamplesPerPixel*bytesPer {
		return nil, fmt.Errorf("render: %d bytes for %d×%d×%d samples of %d bits: the frame is short", len(f.Pixels), f.Columns, f.Rows, f.SamplesPerPixel, f.BitsAllocated)
	}
	sample := func(i int) int {
		switch bytesPer {
		case 1:
			if f.Signed {
				return int(int8(f.Pixels[i]))
			}
			return int(f.Pixels[i])
		case 2:
			v := binary.LittleEndian.Uint16(f.Pixels[2*i:])
			if f.Signed {
				return int(int16(v))
			}
			return int(v)
		}
		v := binary.LittleEndian.Uint32(f.Pixels[4*i:])
		if f.Signed {
			return int(int32(v))
		}
		return int(v)
	}
	var out image.Image
	switch {
	case f.SamplesPerPixel == 1 && f.Photometric == "PALETTE COLOR":
		if f.Palette == nil || len(f.Palette.R) == 0 {
			return nil, errors.New("render: PALETTE COLOR without its lookup table")
		}
		rgba := image.NewRGBA(image.Rect(0, 0, f.Columns, f.Rows))
		p := f.Palette
		entry := func(lut []uint16, v int) uint8 {
			i := min(max(v-p.First, 0), len(lut)-1)
			if p.Bits == 16 {
				return uint8(lut[i] >> 8)
			}
			return uint8(lut[i])
		}
		for i := 0; i < n; i++ {
			v := sample(i)
			rgba.Pix[4*i], rgba.Pix[4*i+1], rgba.Pix[4*i+2], rgba.Pix[4*i+3] = entry(p.R, v), entry(p.G, v), entry(p.B, v), 255
		}
		out = rgba
	case f.SamplesPerPixel == 1:
		slope := f.Slope
		if slope == 0 {
			slope = 1
		}
		c, w := o.Center, o.Width
		if w <= 0 && len(f.WindowWidth) > 0 && f.WindowWidth[0] > 0 && len(f.WindowCenter) > 0 {
			c, w = f.WindowCenter[0], f.WindowWidth[0]
		}
		var voi func(x float64) uint8
		switch {
		case w > 0:
		case len(f.VOILUTs) > 0: // PS3.3 C.11.2.1.1
			voi = f.VOILUTs[0].Grey
		default: // the frame's own range (dcmtk's "min-max" window)
			lo, hi := math.Inf(1), math.Inf(-1)
			for i := 0; i < n; i++ {
				x := float64(sample(i))*slope + f.Intercept
				lo, hi = math.Min(lo, x), math.Max(hi, x)
			}
			c, w = (lo+hi)/2, math.Max(1, hi-lo)
		}
		if voi == nil {
			voi = func(x float64) uint8 { return Linear(x, c, w) }
		}
		gray := image.NewGray(image.Rect(0, 0, f.Columns, f.Rows))
		invert := f.Photometric == "MONOCHROME1"
		for i := 0; i < n; i++ {
			y := voi(float64(sample(i))*slope + f.Intercept)
			if invert {
				y = 255 - y
			}
			gray.Pix[i] = y
		}
		out = gray
	case f.SamplesPerPixel == 3:
		rgba := image.NewRGBA(image.Rect(0, 0, f.Columns, f.Rows))
		shift := max(0, f.BitsStored-8)
		if f.BitsStored == 0 {
			shift = max(0, f.BitsAllocated-8)
		}
		ybr := f.Photometric == "YBR_FULL"
		for i := 0; i < n; i++ {
			r, g, b := sample(3*i)>>shift, sample(3*i+1)>>shift, sample(3*i+2)>>shift
			if ybr { // PS3.3 C.7.6.3.1.2
				y, cb, cr := float64(r), float64(g)-128, float64(b)-128
				r, g, b = int(math.Round(y+1.402*cr)), int(math.Round(y-0.344136*cb-0.714136*cr)), int(math.Round(y+1.772*cb))
			}
			rgba.Pix[4*i], rgba.Pix[4*i+1], rgba.Pix[4*i+2], rgba.Pix[4*i+3] = clamp8(r), clamp8(g), clamp8(b), 255
		}
		out = rgba
	default:
		return nil, fmt.Errorf("render: %d samples per pixel: %w", f.SamplesPerPixel, ErrUnsupported)
	}
	return scale(out, o.Viewport), nil
}

// Linear is the VOI LUT function LINEAR of PS3.3 C.11.2.1.2.1 onto 0–255.
func Linear(x, c, w float64) uint8 {
	switch {
	case w < 1:
		w = 1
	}
	lo := c - 0.5 - (w-1)/2
	hi := c - 0.5 + (w-1)/2
	switch {
	case x <= lo:
		return 0
	case x > hi:
		return 255
	}
	return uint8(math.Round(((x-(c-0.5))/(w-1) + 0.5) * 255))
}

func clamp8(v int) uint8 { return uint8(min(max(v, 0), 255)) }

// scale fits m in the viewport, keeping its aspect; a viewport of zero, or larger than m, leaves it as it is.
func scale(m image.Image, vp image.Point) image.Image {
	b := m.Bounds()
	if vp.X <= 0 && vp.Y <= 0 {
		return m
	}
	if vp.X <= 0 {
		vp.X = math.MaxInt32
	}
	if vp.Y <= 0 {
		vp.Y = math.MaxInt32
	}
	f := math.Min(float64(vp.X)/float64(b.Dx()), float64(vp.Y)/float64(b.Dy()))
	if f >= 1 {
		return m
	}
	w, h := max(1, int(math.Round(float64(b.Dx())*f))), max(1, int(math.Round(float64(b.Dy())*f)))
	var dst draw.Image
	if _, ok := m.(*image.Gray); ok {
		dst = image.NewGray(image.Rect(0, 0, w, h))
	} else {
		dst = image.NewRGBA(image.Rect(0, 0, w, h))
	}
	draw.CatmullRom.Scale(dst, dst.Bounds(), m, b, draw.Src, nil)
	return dst
}
