package codec_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"renkei/codec"
)

// TestDecodeHTJ2K encodes reversible HTJ2K codestreams with OpenJPH's ojph_compress (Debian openjph-tools) and
// checks that OpenJPEG decodes them exactly: unsigned 8-, 12- and 16-bit grey and 8-bit RGB with and without the
// reversible colour transform. ojph_compress 0.9 cannot write negative samples (its raw reader takes them as
// unsigned), so signed data are tested with classic JPEG 2000 only (TestDecodeToolOutput).
func TestDecodeHTJ2K(t *testing.T) {
	if _, err := exec.LookPath("ojph_compress"); err != nil {
		t.Skip("ojph_compress not installed (Debian openjph-tools): HTJ2K decoding untested")
	}
	cases := []struct {
		image string
		pi    string
		extra []string
	}{
		{image: "u12", pi: "MONOCHROME2"},
		{image: "u16", pi: "MONOCHROME2"},
		{image: "u8", pi: "MONOCHROME2"},
		{image: "rgb8", pi: "YBR_RCT", extra: []string{"-colour_trans", "true"}},
		{image: "rgb8", pi: "RGB", extra: []string{"-colour_trans", "false"}},
	}
	for _, tc := range cases {
		t.Run(tc.image+"-"+tc.pi, func(t *testing.T) {
			t.Parallel()
			ti := makeImage(tc.image)
			img := ti.img
			img.PhotometricInterpretation = tc.pi
			dir := t.TempDir()
			in, out := filepath.Join(dir, "in.pgm"), filepath.Join(dir, "out.j2c")
			args := []string{"-i", in, "-o", out, "-reversible", "true"}
			if img.SamplesPerPixel == 3 {
				in = filepath.Join(dir, "in.ppm")
				args[1] = in
			}
			writePNM(t, in, ti)
			tool(t, "ojph_compress", append(args, tc.extra...)...)
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			d, err := codec.Decode(tsHTJ2KL, data, img)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if m, _ := diffStats(t, img, d.Pixels, ti.pixels, false); m != 0 {
				t.Errorf("max difference %d from the original", m)
			}
			want := tc.pi
			if want == "YBR_RCT" {
				want = "RGB"
			}
			if d.PhotometricInterpretation != want {
				t.Errorf("PhotometricInterpretation %q, want %q", d.PhotometricInterpretation, want)
			}
		})
	}
}

// writePNM writes an unsigned image as binary PGM or PPM; samples over 8 bits are big endian (netpbm).
func writePNM(t testing.TB, path string, ti testImage) {
	img := ti.img
	magic := "P5"
	if img.SamplesPerPixel == 3 {
		magic = "P6"
	}
	b := []byte(fmt.Sprintf("%s\n%d %d\n%d\n", magic, img.Columns, img.Rows, 1<<img.BitsStored-1))
	bps := img.BitsAllocated / 8
	for i := 0; i+bps <= len(ti.pixels); i += bps {
		for k := bps - 1; k >= 0; k-- {
			b = append(b, ti.pixels[i+k])
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
