package codec_test

import (
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"renkei/codec"
)

// ctLike returns a 512×512 frame shaped like a CT slice: a disc of smooth tissue with noise in air, 16-bit with
// 12 bits stored, signed in Hounsfield units or unsigned with a 1024 offset (or unsigned 8-bit).
func ctLike(bitsAllocated int, signed bool) testImage {
	const n = 512
	img := codec.Image{Rows: n, Columns: n, SamplesPerPixel: 1, BitsAllocated: bitsAllocated, BitsStored: bitsAllocated,
		NumberOfFrames: 1, PhotometricInterpretation: "MONOCHROME2"}
	if bitsAllocated == 16 {
		img.BitsStored = 12
	}
	if signed {
		img.PixelRepresentation = 1
	}
	img.HighBit = img.BitsStored - 1
	r := rand.New(rand.NewPCG(1, 2))
	bps := bitsAllocated / 8
	pix := make([]byte, n*n*bps)
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			dx, dy := float64(x-n/2), float64(y-n/2)
			v := -1000.0 // air, in Hounsfield units
			if d := math.Hypot(dx, dy); d < 220 {
				v = 40 + 300*math.Sin(dx/23)*math.Cos(dy/31)
			}
			v += r.NormFloat64() * 8
			if !signed {
				v += 1024
			}
			if bitsAllocated == 8 {
				v /= 8
			}
			s := int64(v)
			for b := 0; b < bps; b++ {
				pix[(y*n+x)*bps+b] = byte(s >> (8 * b))
			}
		}
	}
	return testImage{img: img, pixels: pix}
}

func BenchmarkDecode(b *testing.B) {
	cases := []struct {
		name   string
		bits   int
		signed bool
		enc    []string
	}{
		{"RLE", 16, true, []string{"dcmcrle"}},
		{"JPEGLosslessSV1", 16, true, []string{"dcmcjpeg"}},
		{"JPEGLosslessSV6", 16, true, []string{"dcmcjpeg", "+el"}},
		{"JPEGExtended12", 16, false, []string{"dcmcjpeg", "+ee"}},
		{"JPEGBaseline8", 8, false, []string{"dcmcjpeg", "+eb"}},
		{"JPEGLS", 16, true, []string{"dcmcjpls"}},
		{"JPEGLSNear", 16, false, []string{"dcmcjpls", "+en"}},
		{"JPEG2000", 16, true, []string{"gdcmconv", "--j2k"}},
		{"JPEG2000Lossy", 16, true, []string{"gdcmconv", "--j2k", "--lossy", "-q", "40"}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			ti := ctLike(tc.bits, tc.signed)
			dir := b.TempDir()
			in, out := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "out.dcm")
			writeDICOM(b, in, ti)
			tool(b, tc.enc[0], append(append([]string{}, tc.enc[1:]...), in, out)...)
			p := parseDICOM(b, out)
			frames, err := codec.Frames(p.items, nil, nil, 1, p.ts)
			if err != nil {
				b.Fatal(err)
			}
			benchDecode(b, p.ts, frames[0], p.image())
		})
	}
	b.Run("HTJ2K", func(b *testing.B) {
		if _, err := exec.LookPath("ojph_compress"); err != nil {
			b.Skip("ojph_compress not installed")
		}
		ti := ctLike(16, false) // ojph_compress reads unsigned PGM
		dir := b.TempDir()
		in, out := filepath.Join(dir, "in.pgm"), filepath.Join(dir, "out.j2c")
		writePNM(b, in, ti)
		tool(b, "ojph_compress", "-i", in, "-o", out, "-reversible", "true")
		data, err := os.ReadFile(out)
		if err != nil {
			b.Fatal(err)
		}
		benchDecode(b, tsHTJ2KL, data, ti.img)
	})
}

// benchDecode also reports the process's CPU time per decode, which a busy shared machine does not inflate the way
// it inflates wall time.
func benchDecode(b *testing.B, ts string, frame []byte, img codec.Image) {
	b.SetBytes(int64(img.Rows * img.Columns * img.SamplesPerPixel * img.BitsAllocated / 8))
	b.ReportMetric(float64(len(frame)), "frame-bytes")
	n := 0
	start := cpuTime()
	for b.Loop() {
		if _, err := codec.Decode(ts, frame, img); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(n), "cpu-ns/op")
}

func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
