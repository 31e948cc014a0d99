//go:build cgo

package codec

// JPEG 2000 goes through cgo to OpenJPEG (Debian libopenjp2-7-dev 2.5): the pure-Go JPEG 2000 decoders checked here
// were wrong on 12- and 16-bit data (shared/DEPENDENCIES.md), OpenJPEG is bit-exact on them, and 2.5 also decodes
// HTJ2K (ISO/IEC 15444-15) codestreams.

/*
#cgo pkg-config: libopenjp2
#include <stdlib.h>
#include <string.h>
#include <openjpeg.h>

typedef struct {
	const unsigned char* data;
	OPJ_SIZE_T size;
	OPJ_SIZE_T pos;
} renkei_mem;

static OPJ_SIZE_T renkei_mem_read(void* buf, OPJ_SIZE_T n, void* user) {
	renkei_mem* m = (renkei_mem*)user;
	if (m->pos >= m->size) return (OPJ_SIZE_T)-1;
	OPJ_SIZE_T left = m->size - m->pos;
	if (n > left) n = left;
	memcpy(buf, m->data + m->pos, n);
	m->pos += n;
	return n;
}

static OPJ_OFF_T renkei_mem_skip(OPJ_OFF_T n, void* user) {
	renkei_mem* m = (renkei_mem*)user;
	if (n < 0) {
		if ((OPJ_SIZE_T)(-n) > m->pos) n = -(OPJ_OFF_T)m->pos;
	} else if ((OPJ_SIZE_T)n > m->size - m->pos) {
		n = (OPJ_OFF_T)(m->size - m->pos);
	}
	m->pos += n;
	return n;
}

static OPJ_BOOL renkei_mem_seek(OPJ_OFF_T n, void* user) {
	renkei_mem* m = (renkei_mem*)user;
	if (n < 0 || (OPJ_SIZE_T)n > m->size) return OPJ_FALSE;
	m->pos = (OPJ_SIZE_T)n;
	return OPJ_TRUE;
}

static void renkei_opj_error(const char* msg, void* user) {
	char* buf = (char*)user;
	if (buf[0] == 0) {
		strncpy(buf, msg, 255);
		buf[255] = 0;
		size_t n = strlen(buf);
		while (n > 0 && (buf[n-1] == '\n' || buf[n-1] == '\r')) buf[--n] = 0;
	}
}

static void renkei_opj_quiet(const char* msg, void* user) { (void)msg; (void)user; }

// renkei_j2k_decode decodes a J2K codestream (jp2 == 0) or a JP2 file (jp2 != 0) held in memory. On success it
// returns the image, which the caller frees with opj_image_destroy; on failure NULL, with errbuf (256 bytes) set.
static opj_image_t* renkei_j2k_decode(const unsigned char* data, size_t size, int jp2, char* errbuf) {
	renkei_mem m = {data, size, 0};
	opj_image_t* img = NULL;
	opj_codec_t* codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
	if (codec == NULL) {
		strcpy(errbuf, "cannot create decoder");
		return NULL;
	}
	opj_set_error_handler(codec, renkei_opj_error, errbuf);
	opj_set_warning_handler(codec, renkei_opj_quiet, NULL);
	opj_set_info_handler(codec, renkei_opj_quiet, NULL);
	opj_dparameters_t params;
	opj_set_default_decoder_parameters(&params);
	opj_stream_t* s = opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE);
	if (s == NULL) {
		opj_destroy_codec(codec);
		strcpy(errbuf, "cannot create stream");
		return NULL;
	}
	opj_stream_set_user_data(s, &m, NULL);
	opj_stream_set_user_data_length(s, (OPJ_UINT64)size);
	opj_stream_set_read_function(s, renkei_mem_read);
	opj_stream_set_skip_function(s, renkei_mem_skip);
	opj_stream_set_seek_function(s, renkei_mem_seek);
	int ok = opj_setup_decoder(codec, &params) &&
		opj_read_header(s, codec, &img) &&
		opj_decode(codec, s, img) &&
		opj_end_decompress(codec, s);
	opj_stream_destroy(s);
	opj_destroy_codec(codec);
	if (!ok) {
		if (img != NULL) opj_image_destroy(img);
		if (errbuf[0] == 0) strcpy(errbuf, "decoding failed");
		return NULL;
	}
	return img;
}

static opj_image_comp_t* renkei_comp(opj_image_t* img, int i) { return &img->comps[i]; }
*/
import "C"

import (
	"bytes"
	"encoding/binary"
	"unsafe"
)

const haveJPEG2000 = true

// decodeJPEG2000 decodes a JPEG 2000 or HTJ2K frame (PS3.5 A.4.4, A.4.11), either a bare codestream, as PS3.5
// requires, or a JP2 file, which some writers store. OpenJPEG applies the inverse multi-component transform, so
// YBR_RCT and YBR_ICT come back as RGB; other Photometric Interpretations are kept.
func decodeJPEG2000(data []byte, l layout) (Decoded, error) {
	jp2 := C.int(0)
	switch {
	case bytes.HasPrefix(data, []byte{0xFF, 0x4F, 0xFF, 0x51}):
	case bytes.HasPrefix(data, jp2Signature):
		jp2 = 1
	default:
		return Decoded{}, corrupt("JPEG 2000 frame starts with neither SOC+SIZ nor a JP2 signature (ISO/IEC 15444-1 A.4.1)")
	}
	if err := checkSIZ(data, l); err != nil {
		return Decoded{}, err
	}
	var errbuf [256]C.char
	// Go memory without Go pointers may be lent to C for the duration of a call (cgo pointer rules).
	img := C.renkei_j2k_decode((*C.uchar)(unsafe.Pointer(&data[0])), C.size_t(len(data)), jp2, &errbuf[0])
	if img == nil {
		return Decoded{}, corrupt("JPEG 2000: %s", C.GoString(&errbuf[0]))
	}
	defer C.opj_image_destroy(img)
	nc := int(img.numcomps)
	if nc != l.spp {
		return Decoded{}, corrupt("JPEG 2000 image has %d components, the data set says %d samples per pixel", nc, l.spp)
	}
	planes := make([][]C.OPJ_INT32, nc)
	for c := 0; c < nc; c++ {
		comp := C.renkei_comp(img, C.int(c))
		w, h, prec := int(comp.w), int(comp.h), int(comp.prec)
		if comp.dx != 1 || comp.dy != 1 {
			return Decoded{}, unsupported("JPEG 2000 component %d is subsampled %dx%d", c, comp.dx, comp.dy)
		}
		if w != l.cols || h != l.rows {
			return Decoded{}, corrupt("JPEG 2000 component %d is %dx%d, the data set says %dx%d", c, w, h, l.cols, l.rows)
		}
		if prec < 1 || prec > 8*l.bytesPerSample {
			return Decoded{}, corrupt("JPEG 2000 precision %d with bits allocated %d", prec, 8*l.bytesPerSample)
		}
		if comp.data == nil {
			return Decoded{}, corrupt("JPEG 2000 component %d has no data", c)
		}
		planes[c] = unsafe.Slice(comp.data, w*h)
	}
	out := make([]byte, l.size)
	for c, p := range planes {
		for i, v := range p {
			l.put(out, i*nc+c, int32(v))
		}
	}
	pi := l.img.PhotometricInterpretation
	if pi == "YBR_RCT" || pi == "YBR_ICT" {
		pi = "RGB"
	}
	return Decoded{Pixels: out, PhotometricInterpretation: pi}, nil
}

// maxJ2KTiles bounds the tile count: OpenJPEG allocates per tile before decoding, so a forged SIZ with 1×1 tiles
// would cost memory out of all proportion to the frame. Real frames have one tile or a few.
const maxJ2KTiles = 4096

// checkSIZ checks the image and tile size (ISO/IEC 15444-1 A.5.1) against the data set before OpenJPEG allocates
// anything, so that a small forged frame cannot make it allocate a huge image.
func checkSIZ(data []byte, l layout) error {
	cs := data
	if bytes.HasPrefix(data, jp2Signature) {
		cs = nil
		for p := 0; p+8 <= len(data); { // JP2 boxes (ISO/IEC 15444-1 I.4)
			n := uint64(binary.BigEndian.Uint32(data[p:]))
			hdr := uint64(8)
			switch n {
			case 0:
				n = uint64(len(data) - p)
			case 1:
				if p+16 > len(data) {
					return corrupt("JP2 box header truncated")
				}
				n, hdr = binary.BigEndian.Uint64(data[p+8:]), 16
			}
			if n < hdr || n > uint64(len(data)-p) {
				return corrupt("JP2 box of %d bytes at %d runs past the %d-byte frame", n, p, len(data))
			}
			if string(data[p+4:p+8]) == "jp2c" {
				cs = data[p+int(hdr) : p+int(n)]
				break
			}
			p += int(n)
		}
	}
	if len(cs) < 4+38 || !bytes.HasPrefix(cs, []byte{0xFF, 0x4F, 0xFF, 0x51}) {
		return corrupt("JPEG 2000 codestream has no SOC and SIZ (ISO/IEC 15444-1 A.4.1, A.5.1)")
	}
	siz := cs[4:]
	u32 := func(i int) uint64 { return uint64(binary.BigEndian.Uint32(siz[i:])) }
	lsiz := int(binary.BigEndian.Uint16(siz))
	xsiz, ysiz, xo, yo, xt, yt, xto, yto := u32(4), u32(8), u32(12), u32(16), u32(20), u32(24), u32(28), u32(32)
	csiz := int(binary.BigEndian.Uint16(siz[36:]))
	if lsiz != 38+3*csiz || len(siz) < lsiz {
		return corrupt("JPEG 2000 SIZ segment of %d bytes for %d components (ISO/IEC 15444-1 A.5.1)", lsiz, csiz)
	}
	if xo >= xsiz || yo >= ysiz || xsiz-xo != uint64(l.cols) || ysiz-yo != uint64(l.rows) {
		return corrupt("JPEG 2000 image is %dx%d, the data set says %dx%d", int64(xsiz)-int64(xo), int64(ysiz)-int64(yo), l.cols, l.rows)
	}
	if csiz != l.spp {
		return corrupt("JPEG 2000 image has %d components, the data set says %d samples per pixel", csiz, l.spp)
	}
	if xt == 0 || yt == 0 || xto > xo || yto > yo {
		return corrupt("JPEG 2000 tiles %dx%d at %d,%d (ISO/IEC 15444-1 A.5.1)", xt, yt, xto, yto)
	}
	if tiles := ((xsiz - xto + xt - 1) / xt) * ((ysiz - yto + yt - 1) / yt); tiles > maxJ2KTiles {
		return unsupported("JPEG 2000 frame of %d tiles, more than %d", tiles, maxJ2KTiles)
	}
	return nil
}
