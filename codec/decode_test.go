package codec_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"renkei/codec"
)

// toolCase compresses a synthetic image with a real encoder, decodes it with codec, and compares the result with
// the original and with a real decoder's output.
type toolCase struct {
	name   string
	image  string   // key of specs
	enc    []string // encoder command; "IN" and "OUT" are replaced by the paths
	ts     string   // transfer syntax the encoder must produce
	maxErr int64    // largest difference from the original; 0 for lossless, -1 not to compare
	mean   float64  // largest mean absolute difference from the original
	ref    []string // reference decoder command, or nil
	refErr int64    // largest difference from the reference decoder
	wantPI string   // Photometric Interpretation after decoding; "" for the original's
	noBOT  bool     // the encoder was asked for an empty Basic Offset Table
}

const (
	tsRLE      = "1.2.840.10008.1.2.5"
	tsJPEGB    = "1.2.840.10008.1.2.4.50"
	tsJPEGE    = "1.2.840.10008.1.2.4.51"
	tsJPEGL14  = "1.2.840.10008.1.2.4.57"
	tsJPEGSV1  = "1.2.840.10008.1.2.4.70"
	tsJLS      = "1.2.840.10008.1.2.4.80"
	tsJLSNear  = "1.2.840.10008.1.2.4.81"
	tsJ2KLossl = "1.2.840.10008.1.2.4.90"
	tsJ2K      = "1.2.840.10008.1.2.4.91"
	tsHTJ2KL   = "1.2.840.10008.1.2.4.201"
)

var (
	dcmdrle  = []string{"dcmdrle", "IN", "OUT"}
	dcmdjpeg = []string{"dcmdjpeg", "IN", "OUT"}
	dcmdjpls = []string{"dcmdjpls", "IN", "OUT"}
	gdcmraw  = []string{"gdcmconv", "--raw", "IN", "OUT"}
)

func toolCases() []toolCase {
	var cs []toolCase
	// RLE Lossless: dcmcrle, checked against dcmdrle.
	for _, im := range []string{"u8", "u16", "s16", "s12", "rgb8", "rgb16", "u16x5", "rgb8x5"} {
		cs = append(cs, toolCase{name: "rle/" + im, image: im, enc: []string{"dcmcrle", "IN", "OUT"}, ts: tsRLE, ref: dcmdrle})
	}
	cs = append(cs,
		toolCase{name: "rle/s12x5-noBOT", image: "s12x5", enc: []string{"dcmcrle", "-ot", "IN", "OUT"}, ts: tsRLE, ref: dcmdrle, noBOT: true},
		toolCase{name: "rle/u16-gdcm", image: "u16", enc: []string{"gdcmconv", "--rle", "IN", "OUT"}, ts: tsRLE, ref: gdcmraw, noBOT: true},
	)
	// JPEG Lossless SV1 (dcmcjpeg's default) and Process 14 with every selection value.
	for _, im := range []string{"u8", "u16", "s16", "u12", "s12", "rgb8", "rgb16"} {
		cs = append(cs, toolCase{name: "jpeg-sv1/" + im, image: im, enc: []string{"dcmcjpeg", "IN", "OUT"}, ts: tsJPEGSV1, ref: dcmdjpeg})
	}
	for _, sv := range []string{"1", "2", "3", "4", "5", "6", "7"} {
		for _, im := range []string{"u16", "s16", "s12", "rgb8"} {
			cs = append(cs, toolCase{name: "jpeg-sv" + sv + "/" + im, image: im,
				enc: []string{"dcmcjpeg", "+el", "+sv", sv, "IN", "OUT"}, ts: tsJPEGL14, ref: dcmdjpeg})
		}
	}
	cs = append(cs,
		toolCase{name: "jpeg-sv1/u16-pt3", image: "u16", enc: []string{"dcmcjpeg", "+el", "+sv", "1", "+pt", "3", "IN", "OUT"},
			ts: tsJPEGL14, maxErr: 7, mean: 4, ref: dcmdjpeg},
		toolCase{name: "jpeg-sv7/u8-pt2", image: "u8", enc: []string{"dcmcjpeg", "+el", "+sv", "7", "+pt", "2", "IN", "OUT"},
			ts: tsJPEGL14, maxErr: 3, mean: 2, ref: dcmdjpeg},
		toolCase{name: "jpeg-sv1/u16x5-BOT-fragments", image: "u16x5", enc: []string{"dcmcjpeg", "+fs", "1", "IN", "OUT"}, ts: tsJPEGSV1, ref: dcmdjpeg},
		toolCase{name: "jpeg-sv1/s12x5-noBOT-fragments", image: "s12x5", enc: []string{"dcmcjpeg", "-ot", "+fs", "1", "IN", "OUT"},
			ts: tsJPEGSV1, ref: dcmdjpeg, noBOT: true},
		toolCase{name: "jpeg-sv1/rgb8x5-noBOT", image: "rgb8x5", enc: []string{"dcmcjpeg", "-ot", "IN", "OUT"}, ts: tsJPEGSV1, ref: dcmdjpeg, noBOT: true},
		toolCase{name: "jpeg-lossless-gdcm/s16", image: "s16", enc: []string{"gdcmconv", "--jpeg", "IN", "OUT"}, ts: tsJPEGSV1, ref: gdcmraw, noBOT: true},
		toolCase{name: "jpeg-lossless-gdcm/rgb8", image: "rgb8", enc: []string{"gdcmconv", "--jpeg", "IN", "OUT"}, ts: tsJPEGSV1, ref: gdcmraw, noBOT: true},
	)
	// JPEG Baseline 8-bit (image/jpeg): lossy, so within a tolerance of the original and of dcmdjpeg. The noisy
	// test images with random outliers are hard for the DCT, hence the loose bounds on the original.
	cs = append(cs,
		toolCase{name: "jpeg-baseline/u8", image: "u8", enc: []string{"dcmcjpeg", "+eb", "+q", "95", "IN", "OUT"},
			ts: tsJPEGB, maxErr: 255, mean: 8, ref: dcmdjpeg, refErr: 2},
		toolCase{name: "jpeg-baseline/rgb8-422", image: "rgb8", enc: []string{"dcmcjpeg", "+eb", "+q", "95", "IN", "OUT"},
			ts: tsJPEGB, maxErr: 255, mean: 12, ref: dcmdjpeg, refErr: 96, wantPI: "RGB"},
		toolCase{name: "jpeg-baseline/rgb8-444", image: "rgb8", enc: []string{"dcmcjpeg", "+eb", "+s4", "+q", "95", "IN", "OUT"},
			ts: tsJPEGB, maxErr: 255, mean: 8, ref: dcmdjpeg, refErr: 3, wantPI: "RGB"},
		toolCase{name: "jpeg-baseline/rgb8-rgb", image: "rgb8", enc: []string{"dcmcjpeg", "+eb", "+cr", "+q", "95", "IN", "OUT"},
			ts: tsJPEGB, maxErr: 255, mean: 8, ref: dcmdjpeg, refErr: 2, wantPI: "RGB"},
		toolCase{name: "jpeg-baseline/rgb8x5-noBOT", image: "rgb8x5", enc: []string{"dcmcjpeg", "+eb", "-ot", "IN", "OUT"},
			ts: tsJPEGB, maxErr: 255, mean: 14, ref: dcmdjpeg, refErr: 96, wantPI: "RGB", noBOT: true},
	)
	// JPEG Extended 12-bit (Go DCT decoder): lossy.
	cs = append(cs,
		toolCase{name: "jpeg-extended/u12", image: "u12", enc: []string{"dcmcjpeg", "+ee", "+q", "95", "IN", "OUT"},
			ts: tsJPEGE, maxErr: 4095, mean: 64, ref: dcmdjpeg, refErr: 0},
		toolCase{name: "jpeg-extended/u12x5-noBOT", image: "u12x5", enc: []string{"dcmcjpeg", "+ee", "-ot", "+q", "95", "IN", "OUT"},
			ts: tsJPEGE, maxErr: 4095, mean: 64, ref: dcmdjpeg, refErr: 0, noBOT: true},
		// Lossy JPEG codes signed samples as their two's complement bit patterns, so values near zero do not survive
		// the DCT: only the comparison with dcmdjpeg means anything.
		toolCase{name: "jpeg-extended/s12", image: "s12", enc: []string{"dcmcjpeg", "+ee", "+q", "95", "IN", "OUT"},
			ts: tsJPEGE, maxErr: -1, ref: dcmdjpeg, refErr: 0},
		toolCase{name: "jpeg-extended/u8", image: "u8", enc: []string{"dcmcjpeg", "+ee", "+q", "95", "IN", "OUT"},
			ts: tsJPEGE, maxErr: 255, mean: 8, ref: dcmdjpeg, refErr: 2},
	)
	// JPEG-LS (CharLS): dcmcjpls, checked against dcmdjpls.
	for _, im := range []string{"u8", "u16", "s16", "u12", "s12", "rgb8", "rgb16", "u16x5"} {
		cs = append(cs, toolCase{name: "jpegls/" + im, image: im, enc: []string{"dcmcjpls", "IN", "OUT"}, ts: tsJLS, ref: dcmdjpls})
	}
	for _, ilv := range []string{"+il", "+is", "+in"} {
		cs = append(cs, toolCase{name: "jpegls/rgb8" + ilv, image: "rgb8", enc: []string{"dcmcjpls", ilv, "IN", "OUT"}, ts: tsJLS, ref: dcmdjpls})
	}
	cs = append(cs,
		toolCase{name: "jpegls-near/u12", image: "u12", enc: []string{"dcmcjpls", "+en", "+md", "3", "IN", "OUT"},
			ts: tsJLSNear, maxErr: 3, mean: 3, ref: dcmdjpls},
		toolCase{name: "jpegls-near/rgb8", image: "rgb8", enc: []string{"dcmcjpls", "+en", "IN", "OUT"},
			ts: tsJLSNear, maxErr: 2, mean: 2, ref: dcmdjpls},
		toolCase{name: "jpegls/s12x5-noBOT", image: "s12x5", enc: []string{"dcmcjpls", "-ot", "IN", "OUT"}, ts: tsJLS, ref: dcmdjpls, noBOT: true},
	)
	// JPEG 2000 (OpenJPEG): gdcmconv --j2k, checked against gdcmconv --raw.
	for _, im := range []string{"u8", "u16", "s16", "u12", "s12", "rgb8", "rgb16", "u16x5"} {
		cs = append(cs, toolCase{name: "j2k/" + im, image: im, enc: []string{"gdcmconv", "--j2k", "IN", "OUT"}, ts: tsJ2KLossl, ref: gdcmraw, noBOT: true})
	}
	cs = append(cs,
		toolCase{name: "j2k-lossy/s16", image: "s16", enc: []string{"gdcmconv", "--j2k", "--lossy", "-q", "40", "IN", "OUT"},
			ts: tsJ2K, maxErr: 65535, mean: 2000, ref: gdcmraw, noBOT: true},
		toolCase{name: "j2k-lossy/rgb8", image: "rgb8", enc: []string{"gdcmconv", "--j2k", "--lossy", "-q", "40", "IN", "OUT"},
			ts: tsJ2K, maxErr: 255, mean: 12, ref: gdcmraw, noBOT: true},
	)
	return cs
}

func TestDecodeToolOutput(t *testing.T) {
	for _, tc := range toolCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ti := makeImage(tc.image)
			dir := t.TempDir()
			in, out := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "out.dcm")
			writeDICOM(t, in, ti)
			tool(t, tc.enc[0], subst(tc.enc[1:], in, out)...)
			p := parseDICOM(t, out)
			if p.ts != tc.ts {
				t.Fatalf("%s wrote transfer syntax %s, want %s", tc.enc[0], p.ts, tc.ts)
			}
			if len(p.items) < 2 {
				t.Fatalf("no encapsulated pixel data")
			}
			if tc.noBOT != (len(p.items[0]) == 0) {
				t.Fatalf("Basic Offset Table is %d bytes; want empty: %v", len(p.items[0]), tc.noBOT)
			}
			got, pi := decodeAll(t, p)
			img := p.image()
			wantPI := tc.wantPI
			if wantPI == "" {
				wantPI = img.PhotometricInterpretation
			}
			if pi != wantPI {
				t.Errorf("PhotometricInterpretation %q, want %q", pi, wantPI)
			}
			if maxd, mean := diffStats(t, img, got, ti.pixels, false); tc.maxErr >= 0 && (maxd > tc.maxErr || (tc.maxErr > 0 && mean > tc.mean)) {
				t.Errorf("against the original: max difference %d (want ≤ %d), mean %.2f (want ≤ %.2f)", maxd, tc.maxErr, mean, tc.mean)
			}
			if tc.ref == nil {
				return
			}
			refOut := filepath.Join(dir, "ref.dcm")
			tool(t, tc.ref[0], subst(tc.ref[1:], out, refOut)...)
			rp := parseDICOM(t, refOut)
			if rp.native == nil {
				t.Fatalf("%s wrote no native pixel data", tc.ref[0])
			}
			// Reference decoders differ on the bits above BitsStored; compare the stored bits.
			rmax, rmean := diffStats(t, img, got, rp.interleaved(), true)
			if rmax > tc.refErr {
				t.Errorf("against %s: max difference %d (want ≤ %d), mean %.3f", tc.ref[0], rmax, tc.refErr, rmean)
			}
		})
	}
}

func subst(args []string, in, out string) []string {
	r := make([]string, len(args))
	for i, a := range args {
		switch a {
		case "IN":
			r[i] = in
		case "OUT":
			r[i] = out
		default:
			r[i] = a
		}
	}
	return r
}

// pydicomFiles are the compressed test files shipped by Debian's python3-pydicom, from several encoders.
const pydicomFiles = "/usr/lib/python3/dist-packages/pydicom/data/test_files"

// TestDecodePydicomFiles decodes pydicom's compressed samples and compares them with dcmtk's or GDCM's decoding.
func TestDecodePydicomFiles(t *testing.T) {
	if _, err := os.Stat(pydicomFiles); err != nil {
		t.Fatalf("pydicom test files missing (Debian package python3-pydicom): %v", err)
	}
	cases := []struct {
		file   string
		ref    []string
		refErr int64
	}{
		{"MR_small_RLE.dcm", dcmdrle, 0},
		{"SC_rgb_rle.dcm", dcmdrle, 0},
		{"SC_rgb_rle_16bit.dcm", dcmdrle, 0},
		{"SC_rgb_rle_2frame.dcm", dcmdrle, 0},
		{"SC_rgb_rle_32bit_2frame.dcm", dcmdrle, 0},
		{"rtdose_rle.dcm", dcmdrle, 0},
		{"SC_rgb_jpeg_gdcm.dcm", dcmdjpeg, 0},
		{"MR_small_jpeg_ls_lossless.dcm", dcmdjpls, 0},
		{"MR_small_jp2klossless.dcm", gdcmraw, 0},
		{"GDCMJ2K_TextGBR.dcm", gdcmraw, 0},
		{"JPEG2000.dcm", gdcmraw, 0},
		{"SC_rgb_gdcm_KY.dcm", gdcmraw, 0},
		{"693_J2KI.dcm", gdcmraw, 0},
		{"SC_rgb_jpeg_dcmtk.dcm", dcmdjpeg, 96},
		{"SC_rgb_dcmtk_+eb+cr.dcm", dcmdjpeg, 2},
		{"SC_rgb_dcmtk_+eb+cy+s4.dcm", dcmdjpeg, 3},
		{"SC_rgb_dcmtk_+eb+cy+s2.dcm", dcmdjpeg, 96},
		{"SC_rgb_dcmtk_+eb+cy+n1.dcm", dcmdjpeg, 96},
		{"SC_rgb_small_odd_jpeg.dcm", dcmdjpeg, 96},
		{"JPEG-lossy.dcm", dcmdjpeg, 0},
		{"JPGExtended.dcm", dcmdjpeg, 0},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			src := filepath.Join(pydicomFiles, tc.file)
			p := parseDICOM(t, src)
			got, _ := decodeAll(t, p)
			refOut := tempPath(t, "ref.dcm")
			tool(t, tc.ref[0], subst(tc.ref[1:], src, refOut)...)
			rp := parseDICOM(t, refOut)
			ref := rp.interleaved()
			if len(ref) == len(got)+1 { // the reference keeps the pad byte of odd-length Pixel Data
				ref = ref[:len(got)]
			}
			rmax, rmean := diffStats(t, p.image(), got, ref, true)
			if rmax > tc.refErr {
				t.Errorf("against %s: max difference %d (want ≤ %d), mean %.3f", tc.ref[0], rmax, tc.refErr, rmean)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	u16 := codec.Image{Rows: 4, Columns: 4, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, PhotometricInterpretation: "MONOCHROME2"}
	cases := []struct {
		name  string
		ts    string
		frame []byte
		img   codec.Image
		want  error
	}{
		{"unknown syntax", "1.2.3", []byte{1}, u16, codec.ErrUnsupported},
		{"native syntax", "1.2.840.10008.1.2.1", []byte{1}, u16, codec.ErrUnsupported},
		{"zero rows", tsRLE, make([]byte, 64), codec.Image{Columns: 4, SamplesPerPixel: 1, BitsAllocated: 8, BitsStored: 8}, codec.ErrCorrupt},
		{"bits allocated 12", tsRLE, make([]byte, 64), codec.Image{Rows: 1, Columns: 4, SamplesPerPixel: 1, BitsAllocated: 12, BitsStored: 12}, codec.ErrUnsupported},
		{"rle short header", tsRLE, make([]byte, 10), u16, codec.ErrCorrupt},
		{"rle wrong segment count", tsRLE, append([]byte{1, 0, 0, 0, 64}, make([]byte, 80)...), u16, codec.ErrCorrupt},
		{"jpeg no SOI", tsJPEGSV1, []byte{0, 1, 2, 3}, u16, codec.ErrCorrupt},
		{"jpeg arithmetic", tsJPEGSV1, []byte{0xFF, 0xD8, 0xFF, 0xCB, 0, 11, 8, 0, 4, 0, 4, 1, 1, 0x11, 0}, u16, codec.ErrUnsupported},
		{"jpeg-ls garbage", tsJLS, []byte{0xFF, 0xD8, 0xFF, 0xF7, 0, 3}, u16, codec.ErrCorrupt},
		{"j2k garbage", tsJ2KLossl, []byte{0xFF, 0x4F, 0xFF, 0x51, 0, 2}, u16, codec.ErrCorrupt},
		{"j2k no SOC", tsJ2KLossl, []byte{1, 2, 3, 4}, u16, codec.ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := codec.Decode(tc.ts, tc.frame, tc.img)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode error %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "codec: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestDecodeMismatch(t *testing.T) {
	// A valid frame checked against a data set that describes another image.
	ti := makeImage("u16")
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "out.dcm")
	writeDICOM(t, in, ti)
	for _, enc := range [][]string{{"dcmcjpeg", in, out}, {"dcmcjpls", in, out}, {"gdcmconv", "--j2k", in, out}, {"dcmcrle", in, out}} {
		tool(t, enc[0], enc[1:]...)
		p := parseDICOM(t, out)
		frames, err := codec.Frames(p.items, nil, nil, 1, p.ts)
		if err != nil {
			t.Fatal(err)
		}
		mismatches := []codec.Image{
			{Rows: 47, Columns: 64, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16},
			{Rows: 48, Columns: 64, SamplesPerPixel: 3, BitsAllocated: 16, BitsStored: 16},
			{Rows: 48, Columns: 64, SamplesPerPixel: 1, BitsAllocated: 8, BitsStored: 8},
		}
		if enc[0] == "dcmcrle" {
			// RLE segments carry no dimensions: fewer rows than encoded decode to the first rows.
			mismatches = mismatches[1:]
		}
		for _, img := range mismatches {
			if _, err := codec.Decode(p.ts, frames[0], img); !errors.Is(err, codec.ErrCorrupt) {
				t.Errorf("%s with %+v: error %v, want ErrCorrupt", enc[0], img, err)
			}
		}
		// Truncated frames must fail cleanly, not crash.
		for _, n := range []int{len(frames[0]) / 2, len(frames[0]) - 12} {
			if _, err := codec.Decode(p.ts, frames[0][:n], p.image()); err == nil {
				t.Errorf("%s truncated to %d of %d bytes: no error", enc[0], n, len(frames[0]))
			}
		}
	}
}

func TestCanDecodeMediaType(t *testing.T) {
	cases := []struct {
		ts        string
		canDecode bool
		mediaType string
	}{
		{"1.2.840.10008.1.2.1", false, "application/octet-stream"},
		{"1.2.840.10008.1.2", false, "application/octet-stream"},
		{tsRLE, true, "image/dicom-rle"},
		{tsJPEGB, true, "image/jpeg"},
		{tsJPEGE, true, "image/jpeg"},
		{tsJPEGL14, true, "image/jpeg"},
		{tsJPEGSV1, true, "image/jpeg"},
		{tsJLS, true, "image/jls"},
		{tsJLSNear, true, "image/jls"},
		{tsJ2KLossl, true, "image/jp2"},
		{tsJ2K, true, "image/jp2"},
		{"1.2.840.10008.1.2.4.92", false, "image/jpx"},
		{tsHTJ2KL, true, "image/jphc"},
		{"1.2.840.10008.1.2.4.203", true, "image/jphc"},
		{"1.2.840.10008.1.2.4.102", false, "video/mp4"},
		{"1.2.3.4", false, ""},
	}
	for _, tc := range cases {
		if got := codec.CanDecode(tc.ts); got != tc.canDecode {
			t.Errorf("CanDecode(%s) = %v, want %v", tc.ts, got, tc.canDecode)
		}
		if got := codec.MediaType(tc.ts); got != tc.mediaType {
			t.Errorf("MediaType(%s) = %q, want %q", tc.ts, got, tc.mediaType)
		}
	}
}
