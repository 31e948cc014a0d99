// Package codec splits encapsulated Pixel Data into frames and decodes compressed frames to native pixels.
//
// It knows the transfer syntaxes of PS3.5 Annex A.4 that an archive meets in practice: RLE Lossless (decoded in Go),
// JPEG Lossless Process 14 (decoded in Go), JPEG Baseline and Extended (standard library image/jpeg for 8-bit, a
// small Go DCT decoder for 12-bit), JPEG-LS (CharLS, by cgo) and JPEG 2000 including HTJ2K (OpenJPEG, by cgo).
//
// Decoded pixels are native: little endian, BitsAllocated bits per sample, samples interleaved (Planar
// Configuration 0), signed samples sign-extended from BitsStored. Errors wrap ErrCorrupt when the data are wrong and
// ErrUnsupported when they are valid but not handled here.
package codec

import (
	"errors"
	"fmt"
)

// Errors that Frames and Decode wrap; test with errors.Is.
var (
	// ErrCorrupt: the encapsulated data or the compressed frame is malformed, truncated, or does not match the
	// pixel description of the data set.
	ErrCorrupt = errors.New("corrupt pixel data")
	// ErrUnsupported: the data may be valid, but this package cannot decode them (transfer syntax, coding process,
	// or sample layout).
	ErrUnsupported = errors.New("unsupported pixel data")
)

// maxFrameBytes bounds the native size of one decoded frame, so that a forged Rows/Columns cannot make Decode
// allocate without limit. 1 GiB is far above any real frame (a 4096×4096 RGB 16-bit frame is 96 MiB).
const maxFrameBytes = 1 << 30

// Transfer Syntax UIDs, PS3.6 Table A-1.
const (
	tsImplicitVRLittleEndian   = "1.2.840.10008.1.2"
	tsExplicitVRLittleEndian   = "1.2.840.10008.1.2.1"
	tsEncapsulatedUncompressed = "1.2.840.10008.1.2.1.98"
	tsDeflatedExplicitVRLE     = "1.2.840.10008.1.2.1.99"
	tsExplicitVRBigEndian      = "1.2.840.10008.1.2.2"
	tsJPEGBaseline8Bit         = "1.2.840.10008.1.2.4.50"
	tsJPEGExtended12Bit        = "1.2.840.10008.1.2.4.51"
	tsJPEGLossless             = "1.2.840.10008.1.2.4.57"
	tsJPEGLosslessSV1          = "1.2.840.10008.1.2.4.70"
	tsJPEGLSLossless           = "1.2.840.10008.1.2.4.80"
	tsJPEGLSNearLossless       = "1.2.840.10008.1.2.4.81"
	tsJPEG2000Lossless         = "1.2.840.10008.1.2.4.90"
	tsJPEG2000                 = "1.2.840.10008.1.2.4.91"
	tsJPEG2000MCLossless       = "1.2.840.10008.1.2.4.92"
	tsJPEG2000MC               = "1.2.840.10008.1.2.4.93"
	tsHTJ2KLossless            = "1.2.840.10008.1.2.4.201"
	tsHTJ2KLosslessRPCL        = "1.2.840.10008.1.2.4.202"
	tsHTJ2K                    = "1.2.840.10008.1.2.4.203"
	tsRLELossless              = "1.2.840.10008.1.2.5"
)

// Image describes the pixel module of an image (PS3.3 C.7.6.3), as read from the data set.
type Image struct {
	Rows, Columns             int
	SamplesPerPixel           int
	BitsAllocated             int // 8, 16 or 32: the width of each decoded sample
	BitsStored, HighBit       int // HighBit is taken to be BitsStored-1
	PixelRepresentation       int // 1: two's complement, sign-extended from BitsStored in decoded pixels
	PlanarConfiguration       int // of the native form; decoded pixels are always interleaved
	NumberOfFrames            int
	PhotometricInterpretation string
}

// Decoded is a decoded frame: native pixels, little endian, samples interleaved (Planar Configuration 0), and the
// Photometric Interpretation they are now in (e.g. YBR_FULL_422 JPEG → "RGB").
type Decoded struct {
	Pixels                    []byte
	PhotometricInterpretation string
}

// CanDecode reports whether Decode supports the transfer syntax. Native transfer syntaxes report false: their frames
// need no decoding. Without cgo, JPEG-LS and JPEG 2000 report false.
func CanDecode(transferSyntaxUID string) bool {
	switch transferSyntaxUID {
	case tsRLELossless, tsJPEGLossless, tsJPEGLosslessSV1, tsJPEGBaseline8Bit, tsJPEGExtended12Bit:
		return true
	case tsJPEGLSLossless, tsJPEGLSNearLossless:
		return haveJPEGLS
	case tsJPEG2000Lossless, tsJPEG2000, tsHTJ2KLossless, tsHTJ2KLosslessRPCL, tsHTJ2K:
		return haveJPEG2000
	}
	return false
}

// Decode decodes one compressed frame of the given transfer syntax, as returned by Frames, into native pixels
// described by img. Errors wrap ErrUnsupported for a transfer syntax or coding process not handled here, and
// ErrCorrupt for malformed data or data whose size, sample count or precision do not match img. Decode never
// panics on hostile input.
func Decode(transferSyntaxUID string, frame []byte, img Image) (Decoded, error) {
	if !CanDecode(transferSyntaxUID) {
		return Decoded{}, fmt.Errorf("codec: decode: transfer syntax %q: %w", transferSyntaxUID, ErrUnsupported)
	}
	l, err := newLayout(img)
	if err != nil {
		return Decoded{}, fmt.Errorf("codec: decode %s: %w", tsName(transferSyntaxUID), err)
	}
	var d Decoded
	switch transferSyntaxUID {
	case tsRLELossless:
		d, err = decodeRLE(frame, l)
	case tsJPEGLossless, tsJPEGLosslessSV1, tsJPEGBaseline8Bit, tsJPEGExtended12Bit:
		d, err = decodeJPEG(frame, l)
	case tsJPEGLSLossless, tsJPEGLSNearLossless:
		d, err = decodeJPEGLS(frame, l)
	default:
		d, err = decodeJPEG2000(frame, l)
	}
	if err != nil {
		return Decoded{}, fmt.Errorf("codec: decode %s: %w", tsName(transferSyntaxUID), err)
	}
	return d, nil
}

// MediaType returns the PS3.18 media type of a frame in that transfer syntax, for WADO-RS frame retrieval in its
// stored form: PS3.18 Table 8.7.3-5 for compressed and Table 8.7.3-4 for uncompressed bulk data. It returns "" for
// a transfer syntax it does not know.
func MediaType(transferSyntaxUID string) string {
	switch transferSyntaxUID {
	case tsImplicitVRLittleEndian, tsExplicitVRLittleEndian, tsExplicitVRBigEndian, tsDeflatedExplicitVRLE,
		tsEncapsulatedUncompressed:
		return "application/octet-stream"
	case tsJPEGBaseline8Bit, tsJPEGExtended12Bit, tsJPEGLossless, tsJPEGLosslessSV1:
		return "image/jpeg"
	case tsRLELossless:
		return "image/dicom-rle"
	case tsJPEGLSLossless, tsJPEGLSNearLossless:
		return "image/jls"
	case tsJPEG2000Lossless, tsJPEG2000:
		// PS3.18 Table 8.7.3-5 pairs these with image/jp2 although the frames are J2K codestreams (PS3.5 A.4.4).
		return "image/jp2"
	case tsJPEG2000MCLossless, tsJPEG2000MC:
		return "image/jpx"
	case tsHTJ2KLossless, tsHTJ2KLosslessRPCL, tsHTJ2K:
		return "image/jphc"
	case "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101":
		return "video/mpeg"
	case "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104",
		"1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.106":
		return "video/mp4"
	case "1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108":
		return "video/H265"
	}
	return ""
}

func tsName(uid string) string {
	switch uid {
	case tsRLELossless:
		return "RLE Lossless"
	case tsJPEGBaseline8Bit:
		return "JPEG Baseline"
	case tsJPEGExtended12Bit:
		return "JPEG Extended"
	case tsJPEGLossless:
		return "JPEG Lossless"
	case tsJPEGLosslessSV1:
		return "JPEG Lossless SV1"
	case tsJPEGLSLossless:
		return "JPEG-LS Lossless"
	case tsJPEGLSNearLossless:
		return "JPEG-LS Near-Lossless"
	case tsJPEG2000Lossless:
		return "JPEG 2000 Lossless"
	case tsJPEG2000:
		return "JPEG 2000"
	case tsHTJ2KLossless, tsHTJ2KLosslessRPCL, tsHTJ2K:
		return "HTJ2K"
	}
	return uid
}

// layout is the native form of one frame, checked once from Image.
type layout struct {
	img            Image
	rows, cols     int
	spp            int
	bytesPerSample int // BitsAllocated/8
	stored         int // BitsStored
	signed         bool
	size           int // bytes of one native frame
}

func newLayout(img Image) (layout, error) {
	l := layout{img: img, rows: img.Rows, cols: img.Columns, spp: img.SamplesPerPixel, stored: img.BitsStored,
		signed: img.PixelRepresentation == 1}
	if l.rows <= 0 || l.cols <= 0 || l.rows > 65535 || l.cols > 65535 {
		return l, fmt.Errorf("rows %d, columns %d out of range 1..65535 (PS3.3 C.7.6.3.1): %w", l.rows, l.cols, ErrCorrupt)
	}
	if l.spp < 1 || l.spp > 4 {
		return l, fmt.Errorf("samples per pixel %d not in 1..4 (PS3.3 C.7.6.3.1.1): %w", l.spp, ErrCorrupt)
	}
	switch img.BitsAllocated {
	case 8, 16, 32:
		l.bytesPerSample = img.BitsAllocated / 8
	default:
		return l, fmt.Errorf("bits allocated %d: only 8, 16 and 32 are decoded: %w", img.BitsAllocated, ErrUnsupported)
	}
	if l.stored < 1 || l.stored > img.BitsAllocated {
		return l, fmt.Errorf("bits stored %d not in 1..%d (bits allocated): %w", l.stored, img.BitsAllocated, ErrCorrupt)
	}
	size := int64(l.rows) * int64(l.cols) * int64(l.spp) * int64(l.bytesPerSample)
	if size > maxFrameBytes {
		return l, fmt.Errorf("a frame of %d bytes is over the %d-byte limit: %w", size, maxFrameBytes, ErrUnsupported)
	}
	l.size = int(size)
	return l, nil
}

// samples is the number of samples in one frame.
func (l layout) samples() int { return l.rows * l.cols * l.spp }

// put stores sample i (interleaved order) with value v: sign-extended from BitsStored when signed, then written
// little endian in BitsAllocated bits.
func (l layout) put(dst []byte, i int, v int32) {
	if l.signed && l.stored < 32 {
		sh := 32 - uint(l.stored)
		v = v << sh >> sh
	}
	switch l.bytesPerSample {
	case 1:
		dst[i] = byte(v)
	case 2:
		dst[2*i] = byte(v)
		dst[2*i+1] = byte(v >> 8)
	default:
		dst[4*i] = byte(v)
		dst[4*i+1] = byte(v >> 8)
		dst[4*i+2] = byte(v >> 16)
		dst[4*i+3] = byte(v >> 24)
	}
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrCorrupt)...)
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrUnsupported)...)
}
