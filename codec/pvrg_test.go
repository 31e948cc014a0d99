package codec_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"renkei/codec"
)

// TestDecodePVRG checks what dcmtk and GDCM never write: restart intervals, non-interleaved scans (one per
// component), point transforms and 12-bit DCT with restarts. The Stanford PVRG codec writes them (from one raw
// big-endian file per component); dcmdjpeg (IJG libjpeg with the lossless patch) is the reference decoder. PVRG's
// own lossless decoder is not: it disagrees with IJG and with T.81 H.1.2.1 on the prediction of the first line with
// predictors other than 1 and after restarts, and IJG rejects restart intervals that end mid-row.
func TestDecodePVRG(t *testing.T) {
	cases := []struct {
		name  string
		image string
		args  []string
		// skipOriginal: the decoded image need not equal the original, for lossy coding, and because PVRG's
		// encoder predicts differently from T.81 where its decoder does.
		skipOriginal bool
	}{
		{name: "lossless-p12-sv1", image: "u12", args: []string{"-k", "1"}},
		{name: "lossless-p12-r64-sv1", image: "u12", args: []string{"-k", "1", "-r", "64"}, skipOriginal: true},
		{name: "lossless-p16-r128-sv6", image: "u16", args: []string{"-k", "6", "-r", "128"}, skipOriginal: true},
		{name: "lossless-p12-r192-sv7", image: "u12", args: []string{"-k", "7", "-r", "192"}, skipOriginal: true},
		{name: "lossless-p8-rgb-interleaved-r64-sv5", image: "rgb8", args: []string{"-k", "5", "-r", "64"}, skipOriginal: true},
		{name: "lossless-p8-rgb-noninterleaved-sv2", image: "rgb8", args: []string{"-k", "2", "-n"}, skipOriginal: true},
		{name: "lossless-p16-rgb-noninterleaved-r128-sv3", image: "rgb16", args: []string{"-k", "3", "-n", "-r", "128"}, skipOriginal: true},
		{name: "lossless-p12-pt2", image: "u12", args: []string{"-k", "1", "-t", "2"}, skipOriginal: true},
		{name: "dct-p12-r7", image: "u12", args: []string{"-q", "30", "-r", "7"}, skipOriginal: true},
		{name: "dct-p12-r1", image: "u12", args: []string{"-q", "50", "-r", "1"}, skipOriginal: true},
		{name: "dct-p12", image: "u12", args: []string{"-q", "10"}, skipOriginal: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ti := makeImage(tc.image)
			img := ti.img
			dir := t.TempDir()
			precision := img.BitsStored
			bps := img.BitsAllocated / 8
			args := append([]string{"-iw", strconv.Itoa(img.Columns), "-ih", strconv.Itoa(img.Rows),
				"-p", strconv.Itoa(precision)}, tc.args...)
			args = append(args, "-s", filepath.Join(dir, "out.jpg"))
			n := img.Rows * img.Columns
			for c := 0; c < img.SamplesPerPixel; c++ {
				plane := make([]byte, 0, n*bps)
				for i := 0; i < n; i++ {
					k := (i*img.SamplesPerPixel + c) * bps
					for b := bps - 1; b >= 0; b-- {
						plane = append(plane, ti.pixels[k+b])
					}
				}
				name := filepath.Join(dir, fmt.Sprintf("c%d.raw", c))
				if err := os.WriteFile(name, plane, 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, name)
			}
			tool(t, "pvrg-jpeg", args...)
			data, err := os.ReadFile(filepath.Join(dir, "out.jpg"))
			if err != nil {
				t.Fatal(err)
			}
			ts := tsJPEGL14
			if tc.args[0] != "-k" {
				ts = tsJPEGE
			}
			d, err := codec.Decode(ts, data, img)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			wrapped, refOut := filepath.Join(dir, "pvrg.dcm"), filepath.Join(dir, "ref.dcm")
			writeEncapsulated(t, wrapped, img, ts, data)
			tool(t, "dcmdjpeg", wrapped, refOut)
			ref := parseDICOM(t, refOut).native
			if m, mean := diffStats(t, img, d.Pixels, ref, true); m != 0 {
				t.Errorf("against dcmdjpeg: max difference %d, mean %.3f", m, mean)
			}
			if !tc.skipOriginal {
				if m, _ := diffStats(t, img, d.Pixels, ti.pixels, false); m != 0 {
					t.Errorf("lossless: max difference %d from the original", m)
				}
			}
		})
	}
}
