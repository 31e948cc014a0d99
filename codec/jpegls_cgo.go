//go:build cgo

package codec

// JPEG-LS goes through cgo to CharLS (Debian libcharls-dev 2.4): it is the reference implementation, bit-exact on
// 8–16-bit data, and no pure-Go JPEG-LS decoder checked here was correct (see shared/DEPENDENCIES.md).

/*
#cgo pkg-config: charls
#include <stdlib.h>
#include <charls/charls.h>

// renkei_jls_decode decodes src into dst (dst_size bytes, pixel data only); info and ilv receive the header.
// A call with dst == NULL only reads the header. Returns a charls_jpegls_errc.
static int renkei_jls_decode(const void* src, size_t src_size, void* dst, size_t dst_size,
                             charls_frame_info* info, int* ilv) {
	charls_jpegls_decoder* d = charls_jpegls_decoder_create();
	if (d == NULL) return CHARLS_JPEGLS_ERRC_NOT_ENOUGH_MEMORY;
	charls_jpegls_errc e = charls_jpegls_decoder_set_source_buffer(d, src, src_size);
	if (e == 0) e = charls_jpegls_decoder_read_header(d);
	if (e == 0) e = charls_jpegls_decoder_get_frame_info(d, info);
	charls_interleave_mode mode = CHARLS_INTERLEAVE_MODE_NONE;
	if (e == 0) e = charls_jpegls_decoder_get_interleave_mode(d, &mode);
	*ilv = (int)mode;
	if (e == 0 && dst != NULL) {
		size_t need = 0;
		e = charls_jpegls_decoder_get_destination_size(d, 0, &need);
		if (e == 0 && need > dst_size) e = CHARLS_JPEGLS_ERRC_DESTINATION_BUFFER_TOO_SMALL;
		if (e == 0) e = charls_jpegls_decoder_decode_to_buffer(d, dst, need, 0);
	}
	charls_jpegls_decoder_destroy(d);
	return (int)e;
}
*/
import "C"

import (
	"bytes"
	"unsafe"
)

const haveJPEGLS = true

// decodeJPEGLS decodes a JPEG-LS frame (ISO/IEC 14495-1, PS3.5 A.4.3). CharLS undoes any HP colour transform; the
// Photometric Interpretation is kept.
func decodeJPEGLS(data []byte, l layout) (Decoded, error) {
	if len(data) == 0 {
		return Decoded{}, corrupt("empty JPEG-LS frame")
	}
	// CharLS 2.4.1 spins for seconds when entropy-coded data end without a marker (found by FuzzJPEGLS): a frame
	// that does not end in EOI gets one, so that truncated data fail at once.
	if !bytes.HasSuffix(bytes.TrimRight(data, "\x00"), []byte{0xFF, 0xD9}) {
		data = append(data[:len(data):len(data)], 0xFF, mEOI)
	}
	// Go memory without Go pointers may be lent to C for the duration of a call (cgo pointer rules).
	src := unsafe.Pointer(&data[0])
	var info C.charls_frame_info
	var ilv C.int
	if e := C.renkei_jls_decode(src, C.size_t(len(data)), nil, 0, &info, &ilv); e != 0 {
		return Decoded{}, corrupt("JPEG-LS header: %s", C.GoString(C.charls_get_error_message(C.charls_jpegls_errc(e))))
	}
	w, h, bits, nc := int(info.width), int(info.height), int(info.bits_per_sample), int(info.component_count)
	if w != l.cols || h != l.rows {
		return Decoded{}, corrupt("JPEG-LS frame is %dx%d, the data set says %dx%d", w, h, l.cols, l.rows)
	}
	if nc != l.spp {
		return Decoded{}, corrupt("JPEG-LS frame has %d components, the data set says %d samples per pixel", nc, l.spp)
	}
	if bits < 2 || bits > 16 || bits > 8*l.bytesPerSample {
		return Decoded{}, corrupt("JPEG-LS precision %d with bits allocated %d", bits, 8*l.bytesPerSample)
	}
	width := 1 // CharLS writes 1 byte per sample up to 8 bits, else 2 (native order)
	if bits > 8 {
		width = 2
	}
	n := l.samples()
	raw := make([]byte, n*width)
	if e := C.renkei_jls_decode(src, C.size_t(len(data)), unsafe.Pointer(&raw[0]), C.size_t(len(raw)), &info, &ilv); e != 0 {
		return Decoded{}, corrupt("JPEG-LS: %s", C.GoString(C.charls_get_error_message(C.charls_jpegls_errc(e))))
	}
	// With interleave mode none CharLS returns one plane per component; line and sample interleave come back
	// pixel-interleaved.
	planar := ilv == C.CHARLS_INTERLEAVE_MODE_NONE && nc > 1
	out := make([]byte, l.size)
	plane := l.rows * l.cols
	for i := 0; i < n; i++ {
		var v int32
		if width == 1 {
			v = int32(raw[i])
		} else {
			v = int32(*(*uint16)(unsafe.Pointer(&raw[2*i])))
		}
		j := i
		if planar {
			j = (i%plane)*nc + i/plane
		}
		l.put(out, j, v)
	}
	return Decoded{Pixels: out, PhotometricInterpretation: l.img.PhotometricInterpretation}, nil
}
