package codec_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"renkei/codec"
)

// testImage is a native image, all frames, little endian, samples interleaved.
type testImage struct {
	img    codec.Image
	pixels []byte
}

// imageSpec names the synthetic images the tests compress.
type imageSpec struct {
	rows, cols, spp, bitsAllocated, bitsStored int
	signed                                     bool
	frames                                     int
}

var specs = map[string]imageSpec{
	"u16":    {48, 64, 1, 16, 16, false, 1},
	"s16":    {48, 64, 1, 16, 16, true, 1},
	"u12":    {48, 64, 1, 16, 12, false, 1},
	"s12":    {48, 64, 1, 16, 12, true, 1},
	"u8":     {48, 64, 1, 8, 8, false, 1},
	"rgb8":   {48, 64, 3, 8, 8, false, 1},
	"rgb16":  {48, 64, 3, 16, 16, false, 1},
	"u16x5":  {48, 64, 1, 16, 16, false, 5},
	"s12x5":  {48, 64, 1, 16, 12, true, 5},
	"u12x5":  {48, 64, 1, 16, 12, false, 5},
	"rgb8x5": {48, 64, 3, 8, 8, false, 5},
}

// makeImage returns gradients with noise, and now and then a sample anywhere in the range, so that every
// difference category (up to SSSS 16) and the sign bit are exercised. Signed samples are sign-extended.
func makeImage(name string) testImage {
	s, ok := specs[name]
	if !ok {
		panic("no image spec " + name)
	}
	return makeImageSpec(s, name)
}

func makeImageSpec(s imageSpec, seed string) testImage {
	pi := "MONOCHROME2"
	if s.spp == 3 {
		pi = "RGB"
	}
	img := codec.Image{Rows: s.rows, Columns: s.cols, SamplesPerPixel: s.spp, BitsAllocated: s.bitsAllocated,
		BitsStored: s.bitsStored, HighBit: s.bitsStored - 1, NumberOfFrames: s.frames, PhotometricInterpretation: pi}
	lo, hi := int64(0), int64(1)<<s.bitsStored-1
	if s.signed {
		img.PixelRepresentation = 1
		lo, hi = -(int64(1) << (s.bitsStored - 1)), int64(1)<<(s.bitsStored-1)-1
	}
	var h uint64
	for _, c := range seed {
		h = h*31 + uint64(c)
	}
	r := rand.New(rand.NewPCG(h, 42))
	bps := s.bitsAllocated / 8
	n := s.rows * s.cols * s.spp
	pix := make([]byte, n*s.frames*bps)
	span := hi - lo
	for f := 0; f < s.frames; f++ {
		for y := 0; y < s.rows; y++ {
			for x := 0; x < s.cols; x++ {
				for c := 0; c < s.spp; c++ {
					var v int64
					if r.IntN(97) == 0 {
						v = lo + r.Int64N(span+1)
					} else {
						t := (int64(x)*3 + int64(y)*2 + int64(c)*40 + int64(f)*17) % 256
						v = lo + span*t/255 + int64(r.IntN(9)) - 4
					}
					v = max(lo, min(hi, v))
					i := ((f*s.rows+y)*s.cols+x)*s.spp + c
					for b := 0; b < bps; b++ {
						pix[i*bps+b] = byte(v >> (8 * b))
					}
				}
			}
		}
	}
	return testImage{img: img, pixels: pix}
}

// element is one data element for the test Part 10 writer.
type element struct {
	tag   uint32
	vr    string
	value []byte
}

func str(s string, pad byte) []byte {
	b := []byte(s)
	if len(b)%2 == 1 {
		b = append(b, pad)
	}
	return b
}

func us(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }

// writeDICOM writes ti as an Explicit VR Little Endian Part 10 file (PS3.10 7.1) with the elements that dcmtk and
// GDCM need to compress it.
func writeDICOM(t testing.TB, path string, ti testImage) {
	t.Helper()
	writePart10(t, path, ti.img, "1.2.840.10008.1.2.1", ti.pixels, nil)
}

// writeEncapsulated writes one compressed frame as a single fragment, with an empty Basic Offset Table.
func writeEncapsulated(t testing.TB, path string, img codec.Image, ts string, frame []byte) {
	t.Helper()
	writePart10(t, path, img, ts, nil, [][]byte{nil, frame})
}

// writePart10 writes native pixels, or encapsulated items (Basic Offset Table first) when items is not nil.
func writePart10(t testing.TB, path string, img codec.Image, ts string, pixels []byte, items [][]byte) {
	t.Helper()
	const sopClass = "1.2.840.10008.5.1.4.1.1.7"
	const sopInstance = "1.2.826.0.1.3680043.9.7433.1.1"
	meta := []element{
		{0x00020001, "OB", []byte{0, 1}},
		{0x00020002, "UI", str(sopClass, 0)},
		{0x00020003, "UI", str(sopInstance, 0)},
		{0x00020010, "UI", str(ts, 0)},
		{0x00020012, "UI", str("1.2.826.0.1.3680043.9.7433.9", 0)},
	}
	pixVR := "OW"
	if img.BitsAllocated == 8 {
		pixVR = "OB"
	}
	ds := []element{
		{0x00080016, "UI", str(sopClass, 0)},
		{0x00080018, "UI", str(sopInstance, 0)},
		{0x00080060, "CS", str("OT", ' ')},
		{0x00100010, "PN", str("TEST^CODEC", ' ')},
		{0x00100020, "LO", str("CODEC1", ' ')},
		{0x0020000D, "UI", str("1.2.826.0.1.3680043.9.7433.2", 0)},
		{0x0020000E, "UI", str("1.2.826.0.1.3680043.9.7433.3", 0)},
		{0x00200013, "IS", str("1", ' ')},
		{0x00280002, "US", us(img.SamplesPerPixel)},
		{0x00280004, "CS", str(img.PhotometricInterpretation, ' ')},
		{0x00280010, "US", us(img.Rows)},
		{0x00280011, "US", us(img.Columns)},
		{0x00280100, "US", us(img.BitsAllocated)},
		{0x00280101, "US", us(img.BitsStored)},
		{0x00280102, "US", us(img.HighBit)},
		{0x00280103, "US", us(img.PixelRepresentation)},
	}
	if items == nil {
		ds = append(ds, element{0x7FE00010, pixVR, str(string(pixels), 0)})
	}
	if img.SamplesPerPixel > 1 {
		ds = append(ds, element{0x00280006, "US", us(0)})
	}
	if img.NumberOfFrames > 1 {
		ds = append(ds, element{0x00280008, "IS", str(strconv.Itoa(img.NumberOfFrames), ' ')})
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].tag < ds[j].tag })
	var mb bytes.Buffer
	for _, e := range meta {
		writeElement(&mb, e)
	}
	var out bytes.Buffer
	out.Write(make([]byte, 128))
	out.WriteString("DICM")
	writeElement(&out, element{0x00020000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(mb.Len()))})
	out.Write(mb.Bytes())
	for _, e := range ds {
		writeElement(&out, e)
	}
	if items != nil { // PS3.5 A.4: undefined length, items, sequence delimiter
		out.Write([]byte{0xE0, 0x7F, 0x10, 0x00, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF})
		for _, it := range items {
			it = str(string(it), 0)
			out.Write([]byte{0xFE, 0xFF, 0x00, 0xE0})
			binary.Write(&out, binary.LittleEndian, uint32(len(it)))
			out.Write(it)
		}
		out.Write([]byte{0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0})
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

func writeElement(w *bytes.Buffer, e element) {
	binary.Write(w, binary.LittleEndian, uint16(e.tag>>16))
	binary.Write(w, binary.LittleEndian, uint16(e.tag))
	w.WriteString(e.vr)
	if longVR(e.vr) {
		w.Write([]byte{0, 0})
		binary.Write(w, binary.LittleEndian, uint32(len(e.value)))
	} else {
		binary.Write(w, binary.LittleEndian, uint16(len(e.value)))
	}
	w.Write(e.value)
}

// parsed is what the tests need from a Part 10 file in an explicit VR little endian transfer syntax.
type parsed struct {
	ts     string
	elems  map[uint32][]byte // top-level elements with a defined length
	items  [][]byte          // encapsulated Pixel Data items, Basic Offset Table first
	native []byte            // native Pixel Data
}

const undefinedLength = 0xFFFFFFFF

// parseDICOM is a small test-only reader of explicit VR little endian Part 10 files (PS3.5 7.1.2, A.4).
func parseDICOM(t testing.TB, path string) parsed {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		t.Fatalf("%s: no DICM prefix", path)
	}
	p := parsed{elems: map[uint32][]byte{}}
	if _, err := readElements(b, 132, &p, true); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	p.ts = strings.TrimRight(string(p.elems[0x00020010]), "\x00 ")
	if p.ts == "1.2.840.10008.1.2" || p.ts == "1.2.840.10008.1.2.2" {
		t.Fatalf("%s: transfer syntax %s is not explicit VR little endian", path, p.ts)
	}
	return p
}

func readElements(b []byte, pos int, p *parsed, top bool) (int, error) {
	for pos+8 <= len(b) {
		tag := uint32(binary.LittleEndian.Uint16(b[pos:]))<<16 | uint32(binary.LittleEndian.Uint16(b[pos+2:]))
		if tag == 0xFFFEE00D { // item delimitation
			return pos + 8, nil
		}
		vr := string(b[pos+4 : pos+6])
		var n uint32
		if longVR(vr) {
			if pos+12 > len(b) {
				return 0, fmt.Errorf("truncated element %08X", tag)
			}
			n = binary.LittleEndian.Uint32(b[pos+8:])
			pos += 12
		} else {
			n = uint32(binary.LittleEndian.Uint16(b[pos+6:]))
			pos += 8
		}
		if n == undefinedLength {
			var err error
			if tag == 0x7FE00010 && top {
				pos, err = readItems(b, pos, p)
			} else {
				pos, err = skipSequence(b, pos)
			}
			if err != nil {
				return 0, err
			}
			continue
		}
		if pos+int(n) > len(b) {
			return 0, fmt.Errorf("element %08X of %d bytes runs past the file", tag, n)
		}
		if top {
			p.elems[tag] = b[pos : pos+int(n)]
			if tag == 0x7FE00010 {
				p.native = b[pos : pos+int(n)]
			}
		}
		pos += int(n)
	}
	return pos, nil
}

func readItems(b []byte, pos int, p *parsed) (int, error) {
	for pos+8 <= len(b) {
		tag := uint32(binary.LittleEndian.Uint16(b[pos:]))<<16 | uint32(binary.LittleEndian.Uint16(b[pos+2:]))
		n := int(binary.LittleEndian.Uint32(b[pos+4:]))
		pos += 8
		switch tag {
		case 0xFFFEE0DD:
			return pos, nil
		case 0xFFFEE000:
			if pos+n > len(b) {
				return 0, fmt.Errorf("pixel data item runs past the file")
			}
			p.items = append(p.items, b[pos:pos+n])
			pos += n
		default:
			return 0, fmt.Errorf("unexpected tag %08X in pixel data", tag)
		}
	}
	return 0, fmt.Errorf("pixel data has no sequence delimiter")
}

func skipSequence(b []byte, pos int) (int, error) {
	for pos+8 <= len(b) {
		tag := uint32(binary.LittleEndian.Uint16(b[pos:]))<<16 | uint32(binary.LittleEndian.Uint16(b[pos+2:]))
		n := binary.LittleEndian.Uint32(b[pos+4:])
		pos += 8
		switch {
		case tag == 0xFFFEE0DD:
			return pos, nil
		case tag == 0xFFFEE000 && n == undefinedLength:
			var err error
			if pos, err = readElements(b, pos, &parsed{}, false); err != nil {
				return 0, err
			}
		case tag == 0xFFFEE000:
			pos += int(n)
		default:
			return 0, fmt.Errorf("unexpected tag %08X in sequence", tag)
		}
	}
	return 0, fmt.Errorf("sequence has no delimiter")
}

func (p parsed) us(tag uint32) int {
	v := p.elems[tag]
	if len(v) < 2 {
		return 0
	}
	return int(binary.LittleEndian.Uint16(v))
}

func (p parsed) str(tag uint32) string { return strings.TrimRight(string(p.elems[tag]), "\x00 ") }

func (p parsed) image() codec.Image {
	frames, _ := strconv.Atoi(p.str(0x00280008))
	if frames == 0 {
		frames = 1
	}
	return codec.Image{Rows: p.us(0x00280010), Columns: p.us(0x00280011), SamplesPerPixel: p.us(0x00280002),
		BitsAllocated: p.us(0x00280100), BitsStored: p.us(0x00280101), HighBit: p.us(0x00280102),
		PixelRepresentation: p.us(0x00280103), PlanarConfiguration: p.us(0x00280006), NumberOfFrames: frames,
		PhotometricInterpretation: p.str(0x00280004)}
}

// interleaved returns native pixel data with samples interleaved, whatever the file's Planar Configuration.
func (p parsed) interleaved() []byte {
	img := p.image()
	if img.PlanarConfiguration == 0 || img.SamplesPerPixel == 1 {
		return p.native
	}
	bps := img.BitsAllocated / 8
	plane := img.Rows * img.Columns
	frame := plane * img.SamplesPerPixel * bps
	out := make([]byte, len(p.native))
	for f := 0; f+frame <= len(p.native); f += frame {
		for s := 0; s < img.SamplesPerPixel; s++ {
			for i := 0; i < plane; i++ {
				src := f + (s*plane+i)*bps
				dst := f + (i*img.SamplesPerPixel+s)*bps
				copy(out[dst:dst+bps], p.native[src:src+bps])
			}
		}
	}
	return out
}

// tool runs a command-line codec and fails the test with its output if it fails.
func tool(t testing.TB, name string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (Debian packages dcmtk, libgdcm-tools): %v", name, err)
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// decodeAll splits p's pixel data into frames and decodes each one.
func decodeAll(t testing.TB, p parsed) ([]byte, string) {
	t.Helper()
	img := p.image()
	frames, err := codec.Frames(p.items, nil, nil, img.NumberOfFrames, p.ts)
	if err != nil {
		t.Fatalf("Frames: %v", err)
	}
	if len(frames) != img.NumberOfFrames {
		t.Fatalf("Frames returned %d frames, want %d", len(frames), img.NumberOfFrames)
	}
	var all []byte
	var pi string
	for i, f := range frames {
		d, err := codec.Decode(p.ts, f, img)
		if err != nil {
			t.Fatalf("Decode frame %d: %v", i+1, err)
		}
		all = append(all, d.Pixels...)
		pi = d.PhotometricInterpretation
	}
	return all, pi
}

// diffStats compares two native pixel buffers sample by sample, using only the low bitsStored bits of each
// sample (interpreted as signed when signed), and returns the largest and the mean absolute difference.
func diffStats(t testing.TB, img codec.Image, got, want []byte, maskHigh bool) (maxDiff int64, mean float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
	bps := img.BitsAllocated / 8
	var sum int64
	n := len(got) / bps
	for i := 0; i < n; i++ {
		a, b := sample(got[i*bps:], bps), sample(want[i*bps:], bps)
		if maskHigh {
			a, b = low(a, img), low(b, img)
		}
		d := a - b
		if d < 0 {
			d = -d
		}
		maxDiff = max(maxDiff, d)
		sum += d
	}
	return maxDiff, float64(sum) / float64(n)
}

func sample(b []byte, bps int) int64 {
	var v uint64
	for i := bps - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return int64(v)
}

// low keeps the BitsStored bits of v, sign-extended for signed images.
func low(v int64, img codec.Image) int64 {
	sh := 64 - uint(img.BitsStored)
	if img.PixelRepresentation == 1 {
		return v << sh >> sh
	}
	return int64(uint64(v) << sh >> sh)
}

func tempPath(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }
