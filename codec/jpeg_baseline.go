package codec

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
)

// decodeJPEGBaseline decodes an 8-bit DCT frame (baseline, extended or progressive) with the standard library.
// Three-component frames come back as RGB: image/jpeg undoes the YCbCr transform (and chroma subsampling) unless
// the stream says it holds RGB (Adobe APP14 transform 0, or component identifiers 'R','G','B'), as PS3.5 8.2.1
// expects for YBR_FULL_422 and YBR_FULL.
func decodeJPEGBaseline(data []byte, l layout) (Decoded, error) {
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return Decoded{}, jpegError(err)
	}
	if cfg.Width != l.cols || cfg.Height != l.rows {
		return Decoded{}, corrupt("JPEG frame is %dx%d, the data set says %dx%d", cfg.Width, cfg.Height, l.cols, l.rows)
	}
	m, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return Decoded{}, jpegError(err)
	}
	out := make([]byte, l.size)
	w, h := l.cols, l.rows
	switch m := m.(type) {
	case *image.Gray:
		if l.spp != 1 {
			return Decoded{}, corrupt("JPEG frame has 1 component, the data set says %d samples per pixel", l.spp)
		}
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			for x, v := range row {
				l.put(out, y*w+x, int32(v))
			}
		}
		return Decoded{Pixels: out, PhotometricInterpretation: l.img.PhotometricInterpretation}, nil
	case *image.YCbCr:
		if l.spp != 3 {
			return Decoded{}, corrupt("JPEG frame has 3 components, the data set says %d samples per pixel", l.spp)
		}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				yi, ci := m.YOffset(x, y), m.COffset(x, y)
				r, g, b := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				i := 3 * (y*w + x)
				l.put(out, i, int32(r))
				l.put(out, i+1, int32(g))
				l.put(out, i+2, int32(b))
			}
		}
	case *image.RGBA:
		if l.spp != 3 {
			return Decoded{}, corrupt("JPEG frame has 3 components, the data set says %d samples per pixel", l.spp)
		}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				p := m.PixOffset(x, y)
				i := 3 * (y*w + x)
				l.put(out, i, int32(m.Pix[p]))
				l.put(out, i+1, int32(m.Pix[p+1]))
				l.put(out, i+2, int32(m.Pix[p+2]))
			}
		}
	default:
		return Decoded{}, unsupported("JPEG frame decodes to %T (four components)", m)
	}
	return Decoded{Pixels: out, PhotometricInterpretation: "RGB"}, nil
}

// jpegError classifies an image/jpeg error.
func jpegError(err error) error {
	if _, ok := err.(jpeg.UnsupportedError); ok {
		return unsupported("JPEG: %v", err)
	}
	return corrupt("JPEG: %v", err)
}
