package render_test

import (
	"encoding/binary"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom"
	"renkei/render"
)

// TestRenderVOILUT: images with a non-linear VOI LUT Sequence (0028,3010), read back the way the archive reads them
// (values over 1 KiB left on the stream), render with the grey levels of dcmtk's dcm2pnm within one level: the
// first LUT when the file has no window (+Wl 1), the first window when it has one (+Wi 1).
func TestRenderVOILUT(t *testing.T) {
	if _, err := exec.LookPath("dcm2pnm"); err != nil {
		t.Skip("dcm2pnm is missing: scripts/setup installs dcmtk")
	}
	for _, c := range []struct {
		name string
		img  lutImage
		args []string
	}{
		{"12-bit-rescaled-16-bit-lut", lutImage{bitsStored: 12, intercept: -1024, lutFirst: -512, lutEntries: 3072, lutBits: 16, gamma: 0.5}, []string{"+Wl", "1"}},
		{"signed-8-bit-entries", lutImage{bitsStored: 16, signed: true, lutFirst: -1500, lutEntries: 2500, lutBits: 8, gamma: 2}, []string{"+Wl", "1"}},
		{"unsigned-12-bit-entries", lutImage{bitsStored: 16, lutFirst: 1000, lutEntries: 2000, lutBits: 12, gamma: 0.3}, []string{"+Wl", "1"}},
		{"window-comes-first", lutImage{bitsStored: 12, intercept: -1024, lutFirst: -1024, lutEntries: 4096, lutBits: 16, gamma: 0.5, window: true}, []string{"+Wi", "1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lut.dcm")
			if err := os.WriteFile(path, c.img.file(), 0o644); err != nil {
				t.Fatal(err)
			}
			ref := dcm2pnm(t, path, c.args...)
			f := readFrame(t, path)
			if len(f.VOILUTs) != 2 {
				t.Fatalf("%d VOI LUTs read, want 2", len(f.VOILUTs))
			}
			got, err := render.Image(f, render.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if worst := worstGrey(t, ref, got); worst > 1 {
				t.Errorf("the rendered grey levels differ from dcm2pnm %v by up to %d", c.args, worst)
			}
		})
	}
}

// TestRenderLUTGrey: a LUT's entries, read from its descriptor and data in their several encodings, give the grey
// levels of PS3.3 C.11.2.1.1 at, between, below and past its inputs.
func TestRenderLUTGrey(t *testing.T) {
	words := func(v ...uint16) []byte {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint16(b, x)
		}
		return b
	}
	for _, c := range []struct {
		name   string
		desc   [3]int
		data   []byte
		signed bool
		in     []float64
		want   []uint8
	}{
		{"16-bit entries, clamped at both ends", [3]int{3, 10, 16}, words(0, 32768, 65535), false, []float64{-5, 10, 11, 11.4, 12, 99}, []uint8{0, 0, 128, 128, 255, 255}},
		{"8-bit entries packed in bytes", [3]int{3, 0, 8}, []byte{0, 100, 255, 0}, false, []float64{0, 1, 2}, []uint8{0, 100, 255}},
		{"8-bit entries in words", [3]int{3, 0, 8}, words(0, 100, 255), false, []float64{0, 1, 2}, []uint8{0, 100, 255}},
		{"signed first value", [3]int{2, 65535, 12}, words(0, 4095), true, []float64{-1, 0}, []uint8{0, 255}},
		{"unsigned first value", [3]int{2, 65535, 12}, words(0, 4095), false, []float64{0, 65535, 65536}, []uint8{0, 0, 255}},
		{"entries past the bits are white", [3]int{1, 0, 8}, words(300), false, []float64{0}, []uint8{255}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := render.NewLUT(c.desc, c.data, c.signed)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint8
			for _, x := range c.in {
				got = append(got, l.Grey(x))
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Error(d)
			}
		})
	}
	if _, err := render.NewLUT([3]int{0, 0, 16}, make([]byte, 100), false); err == nil {
		t.Error("a LUT of 65536 entries with 100 bytes of data was accepted")
	}
	if _, err := render.NewLUT([3]int{2, 0, 4}, make([]byte, 4), false); err == nil {
		t.Error("a LUT of 4 bits per entry was accepted")
	}
}

// lutImage is a 96×64 MONOCHROME2 image in 16 bits whose values sweep the whole stored range, with a VOI LUT
// Sequence of two power-law LUTs (the first with exponent gamma, the second its inverse).
type lutImage struct {
	bitsStored int
	signed     bool
	intercept  int
	lutFirst   int
	lutEntries int
	lutBits    int
	gamma      float64
	window     bool // also a Window Center and Width
}

func (im lutImage) file() []byte {
	const rows, cols = 64, 96
	lo, hi := 0, 1<<im.bitsStored-1
	if im.signed {
		lo, hi = -(1 << (im.bitsStored - 1)), 1<<(im.bitsStored-1)-1
	}
	px := make([]byte, 0, 2*rows*cols)
	for i := range rows * cols {
		v := lo + int(float64(i)/float64(rows*cols-1)*float64(hi-lo))
		px = binary.LittleEndian.AppendUint16(px, uint16(v))
	}
	pr := uint16(0)
	if im.signed {
		pr = 1
	}
	ds := &dicom.DataSet{}
	for _, e := range []*dicom.Element{
		text(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.7"), text(0x00080018, "UI", "2.25.1001"), text(0x00080060, "CS", "OT"),
		text(0x0020000D, "UI", "2.25.1002"), text(0x0020000E, "UI", "2.25.1003"),
		words(0x00280002, "US", 1), text(0x00280004, "CS", "MONOCHROME2"), words(0x00280010, "US", rows), words(0x00280011, "US", cols),
		words(0x00280100, "US", 16), words(0x00280101, "US", uint16(im.bitsStored)), words(0x00280102, "US", uint16(im.bitsStored-1)),
		words(0x00280103, "US", pr),
		text(0x00281052, "DS", strconv.Itoa(im.intercept)), text(0x00281053, "DS", "1"),
		{Tag: 0x00283010, VR: "SQ", Length: dicom.UndefinedLength, Items: []*dicom.DataSet{im.lut(im.gamma, "GAMMA"), im.lut(1/im.gamma, "INVERSE")}},
		{Tag: 0x7FE00010, VR: "OW", Length: uint32(len(px)), Value: px},
	} {
		ds.Set(e)
	}
	if im.window {
		ds.Set(text(0x00281050, "DS", "500"))
		ds.Set(text(0x00281051, "DS", "1500"))
	}
	return part10(ds)
}

func (im lutImage) lut(gamma float64, explanation string) *dicom.DataSet {
	top := float64(uint32(1)<<im.lutBits - 1)
	data := make([]uint16, im.lutEntries)
	for i := range data {
		data[i] = uint16(math.Round(top * math.Pow(float64(i)/float64(im.lutEntries-1), gamma)))
	}
	vr := "US"
	if im.lutFirst < 0 {
		vr = "SS"
	}
	it := &dicom.DataSet{}
	it.Set(words(0x00283002, vr, uint16(im.lutEntries), uint16(im.lutFirst), uint16(im.lutBits)))
	it.Set(text(0x00283003, "LO", explanation))
	it.Set(words(0x00283006, "OW", data...))
	return it
}

func text(tag uint32, vr, s string) *dicom.Element {
	return &dicom.Element{Tag: dicom.Tag(tag), VR: vr, Length: uint32(len(s)), Value: []byte(s)}
}

func words(tag uint32, vr string, v ...uint16) *dicom.Element {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return &dicom.Element{Tag: dicom.Tag(tag), VR: vr, Length: uint32(len(b)), Value: b}
}

// part10 is ds as a Part 10 file in explicit VR little endian, written by the repository's own writer.
func part10(ds *dicom.DataSet) []byte {
	meta := &dicom.DataSet{}
	meta.Set(&dicom.Element{Tag: 0x00020001, VR: "OB", Length: 2, Value: []byte{0, 1}})
	meta.SetString(0x00020002, "UI", ds.String(0x00080016))
	meta.SetString(0x00020003, "UI", ds.String(0x00080018))
	meta.SetString(0x00020010, "UI", dicom.ExplicitVRLittleEndian)
	var buf writerBuf
	if err := dicom.WriteFile(&buf, meta, ds, nil, nil); err != nil {
		panic(err)
	}
	return buf
}

type writerBuf []byte

func (w *writerBuf) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }

// readFrame reads a file as the archive does for rendering: header values over 1 KiB left on the stream and read
// on demand.
func readFrame(t *testing.T, path string) render.Frame {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	opt := dicom.DefaultReadOptions
	opt.BulkThreshold = 1024
	f, err := dicom.Parse(fh, opt)
	if err != nil {
		t.Fatal(err)
	}
	ds := f.DataSet
	read := func(e *dicom.Element) ([]byte, error) { return dicom.ReadValue(fh, e) }
	px, err := read(f.PixelData)
	if err != nil {
		t.Fatal(err)
	}
	num := func(tag dicom.Tag) float64 { v, _ := strconv.ParseFloat(ds.String(tag), 64); return v }
	get := func(tag dicom.Tag) int { v, _ := ds.Int(tag); return v }
	fr := render.Frame{Rows: get(0x00280010), Columns: get(0x00280011), SamplesPerPixel: 1, BitsAllocated: get(0x00280100),
		BitsStored: get(0x00280101), Signed: get(0x00280103) == 1, Photometric: ds.String(0x00280004), Pixels: px,
		Slope: num(0x00281053), Intercept: num(0x00281052)}
	if ds.Get(0x00281051) != nil {
		fr.WindowCenter, fr.WindowWidth = []float64{num(0x00281050)}, []float64{num(0x00281051)}
	}
	if fr.VOILUTs, err = render.VOILUTs(ds, read); err != nil {
		t.Fatal(err)
	}
	return fr
}

func dcm2pnm(t *testing.T, path string, args ...string) image.Image {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref.png")
	if b, err := exec.Command("dcm2pnm", append(append([]string{"+on"}, args...), path, out)...).CombinedOutput(); err != nil {
		t.Fatalf("dcm2pnm: %v %s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func worstGrey(t *testing.T, ref, got image.Image) int {
	t.Helper()
	if ref.Bounds() != got.Bounds() {
		t.Fatalf("a %v picture, dcm2pnm's is %v", got.Bounds(), ref.Bounds())
	}
	worst := 0
	b := ref.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r0, _, _, _ := ref.At(x, y).RGBA()
			r1, _, _, _ := got.At(x, y).RGBA()
			d := int(r0>>8) - int(r1>>8)
			worst = max(worst, d, -d)
		}
	}
	return worst
}
