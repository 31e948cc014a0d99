package codec_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"renkei/codec"
)

// fuzzImage maps fuzzer-chosen numbers to a small pixel description, so that the fuzzer also explores frames
// that do not match the data set.
func fuzzImage(rows, cols, spp, bits uint8, signed bool) codec.Image {
	img := codec.Image{Rows: 1 + int(rows%48), Columns: 1 + int(cols%64), SamplesPerPixel: 1,
		PhotometricInterpretation: "MONOCHROME2"}
	if spp%2 == 1 {
		img.SamplesPerPixel, img.PhotometricInterpretation = 3, "RGB"
	}
	img.BitsAllocated = []int{8, 16, 16, 32}[bits%4]
	img.BitsStored = img.BitsAllocated
	if bits%4 == 2 {
		img.BitsStored = 12
	}
	img.HighBit = img.BitsStored - 1
	if signed {
		img.PixelRepresentation = 1
	}
	return img
}

// fuzzArgs returns the fuzzImage arguments that describe img.
func fuzzArgs(img codec.Image) (uint8, uint8, uint8, uint8, bool) {
	bits := map[[2]int]uint8{{8, 8}: 0, {16, 16}: 1, {16, 12}: 2, {32, 32}: 3}[[2]int{img.BitsAllocated, img.BitsStored}]
	return uint8(img.Rows - 1), uint8(img.Columns - 1), uint8(img.SamplesPerPixel / 3), bits, img.PixelRepresentation == 1
}

// seedFrames compresses small synthetic images with a real encoder and returns each single frame with its image.
func seedFrames(f *testing.F, specNames []string, encoders [][]string) {
	for _, name := range specNames {
		s := specs[name]
		s.rows, s.cols, s.frames = 8, 16, 1
		ti := makeImageSpec(s, name)
		dir := f.TempDir()
		in := filepath.Join(dir, "in.dcm")
		writeDICOM(f, in, ti)
		for i, enc := range encoders {
			out := filepath.Join(dir, strconv.Itoa(i)+".dcm")
			args := append(append([]string{}, enc[1:]...), in, out)
			tool(f, enc[0], args...)
			p := parseDICOM(f, out)
			frames, err := codec.Frames(p.items, nil, nil, 1, p.ts)
			if err != nil {
				f.Fatal(err)
			}
			r, c, spp, bits, signed := fuzzArgs(ti.img)
			f.Add(frames[0], r, c, spp, bits, signed)
		}
	}
}

func fuzzDecode(t *testing.T, ts string, frame []byte, img codec.Image) {
	d, err := codec.Decode(ts, frame, img)
	if err != nil {
		if !errors.Is(err, codec.ErrCorrupt) && !errors.Is(err, codec.ErrUnsupported) {
			t.Fatalf("error %v wraps neither ErrCorrupt nor ErrUnsupported", err)
		}
		return
	}
	want := img.Rows * img.Columns * img.SamplesPerPixel * img.BitsAllocated / 8
	if len(d.Pixels) != want {
		t.Fatalf("decoded %d bytes, want %d", len(d.Pixels), want)
	}
}

func FuzzRLE(f *testing.F) {
	seedFrames(f, []string{"u8", "s16", "rgb8", "rgb16"}, [][]string{{"dcmcrle"}})
	f.Add([]byte{}, uint8(0), uint8(0), uint8(0), uint8(0), false)
	f.Add(append([]byte{1, 0, 0, 0, 64}, make([]byte, 59)...), uint8(0), uint8(3), uint8(0), uint8(0), false)
	f.Fuzz(func(t *testing.T, frame []byte, rows, cols, spp, bits uint8, signed bool) {
		fuzzDecode(t, tsRLE, frame, fuzzImage(rows, cols, spp, bits, signed))
	})
}

func FuzzJPEGLossless(f *testing.F) {
	seedFrames(f, []string{"u8", "s16", "u12", "rgb8"}, [][]string{{"dcmcjpeg"}, {"dcmcjpeg", "+el", "+sv", "6"}, {"dcmcjpeg", "+el", "+sv", "4", "+pt", "1"}})
	seedPVRG(f, 1, [][]string{{"-k", "1", "-r", "16"}, {"-k", "7", "-n"}})
	seedPVRG(f, 3, [][]string{{"-k", "1", "-r", "16"}, {"-k", "7", "-n"}})
	f.Fuzz(func(t *testing.T, frame []byte, rows, cols, spp, bits uint8, signed bool) {
		fuzzDecode(t, tsJPEGL14, frame, fuzzImage(rows, cols, spp, bits, signed))
	})
}

// FuzzJPEGExtended covers the 12-bit DCT decoder; 8-bit frames go to image/jpeg.
func FuzzJPEGExtended(f *testing.F) {
	seedFrames(f, []string{"u12", "s12"}, [][]string{{"dcmcjpeg", "+ee"}})
	seedPVRG(f, 1, [][]string{{"-q", "30", "-r", "3"}, {"-q", "30", "-n"}})
	seedPVRG(f, 3, [][]string{{"-q", "30", "-n"}})
	f.Fuzz(func(t *testing.T, frame []byte, rows, cols, spp, bits uint8, signed bool) {
		fuzzDecode(t, tsJPEGE, frame, fuzzImage(rows, cols, spp, bits, signed))
	})
}

// seedPVRG adds 12-bit PVRG streams of spp components, with restart intervals or separate scans.
func seedPVRG(f *testing.F, spp int, argSets [][]string) {
	dir := f.TempDir()
	for i, extra := range argSets {
		args := append([]string{"-iw", "16", "-ih", "8", "-p", "12"}, extra...)
		out := filepath.Join(dir, fmt.Sprintf("%d-%d.jpg", i, spp))
		args = append(args, "-s", out)
		for c := 0; c < spp; c++ {
			plane := make([]byte, 2*16*8) // big-endian 12-bit samples
			for k := range plane {
				plane[k] = byte(k*(c+3)) & 0x0F
			}
			name := filepath.Join(dir, fmt.Sprintf("c%d-%d-%d.raw", c, i, spp))
			if err := os.WriteFile(name, plane, 0o644); err != nil {
				f.Fatal(err)
			}
			args = append(args, name)
		}
		tool(f, "pvrg-jpeg", args...)
		data, err := os.ReadFile(out)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, uint8(7), uint8(15), uint8(spp/3), uint8(2), false)
	}
}

func FuzzFrames(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 10, 0, 0, 0}, []byte("ab"), []byte{0xFF, 0xD8, 1}, uint8(2), uint64(0), uint64(3))
	f.Fuzz(func(t *testing.T, bot, frag1, frag2 []byte, frames uint8, eot0, eot1 uint64) {
		items := [][]byte{bot, frag1, frag2, frag1}
		for _, ts := range []string{tsRLE, tsJPEGSV1, tsJ2K} {
			if got, err := codec.Frames(items, nil, nil, int(frames%5), ts); err == nil && len(got) != max(1, int(frames%5)) {
				t.Fatalf("%d frames, want %d", len(got), frames%5)
			}
			items[0] = nil
			if _, err := codec.Frames(items, []uint64{eot0, eot1}, []uint64{eot1, eot0}, 2, ts); err != nil && !errors.Is(err, codec.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
		}
	})
}

// FuzzJPEGLS and FuzzJPEG2000 check that hostile frames reach CharLS and OpenJPEG only after the checks in this
// package, and that neither library crashes on them.
func FuzzJPEGLS(f *testing.F) {
	seedFrames(f, []string{"u8", "s12", "rgb8"}, [][]string{{"dcmcjpls"}, {"dcmcjpls", "+in"}})
	seedFrames(f, []string{"u12"}, [][]string{{"dcmcjpls", "+en"}})
	f.Fuzz(func(t *testing.T, frame []byte, rows, cols, spp, bits uint8, signed bool) {
		fuzzDecode(t, tsJLS, frame, fuzzImage(rows, cols, spp, bits, signed))
	})
}

func FuzzJPEG2000(f *testing.F) {
	seedFrames(f, []string{"u8", "s12", "rgb8"}, [][]string{{"gdcmconv", "--j2k"}})
	f.Fuzz(func(t *testing.T, frame []byte, rows, cols, spp, bits uint8, signed bool) {
		fuzzDecode(t, tsJ2K, frame, fuzzImage(rows, cols, spp, bits, signed))
	})
}
