package dicom_test

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom"
	"renkei/internal/dicomtest"
)

// enc builds DICOM bytes by hand: element headers in explicit or implicit VR, in either byte order.
type enc struct {
	b  []byte
	bo interface {
		binary.ByteOrder
		binary.AppendByteOrder
	}
	implicit bool
}

func explicitLE() *enc { return &enc{bo: binary.LittleEndian} }
func implicitLE() *enc { return &enc{bo: binary.LittleEndian, implicit: true} }
func explicitBE() *enc { return &enc{bo: binary.BigEndian} }

// sub starts an encoder for nested content (an item) in the same encoding.
func (e *enc) sub() *enc { return &enc{bo: e.bo, implicit: e.implicit} }

func (e *enc) raw(b ...byte) *enc { e.b = append(e.b, b...); return e }

func (e *enc) u16(v uint16) *enc { e.b = e.bo.AppendUint16(e.b, v); return e }

func (e *enc) u32(v uint32) *enc { e.b = e.bo.AppendUint32(e.b, v); return e }

func (e *enc) tag(t dicom.Tag) *enc { return e.u16(t.Group()).u16(t.Element()) }

// long reports whether a VR has the 32-bit length form in explicit VR (PS3.5 Table 7.1-1).
func long(vr string) bool { return strings.Contains("OB OD OF OL OV OW SQ SV UC UN UR UT UV", vr) }

// header writes an element header announcing length bytes.
func (e *enc) header(t dicom.Tag, vr string, length uint32) *enc {
	e.tag(t)
	if e.implicit {
		return e.u32(length)
	}
	e.b = append(e.b, vr...)
	if long(vr) {
		return e.raw(0, 0).u32(length)
	}
	return e.u16(uint16(length))
}

// el writes an element whose value is already encoded in e's byte order.
func (e *enc) el(t dicom.Tag, vr string, v []byte) *enc {
	return e.header(t, vr, uint32(len(v))).raw(v...)
}

// str writes a text element padded to even length (NUL for UI, space otherwise, PS3.5 6.2).
func (e *enc) str(t dicom.Tag, vr, s string) *enc {
	if len(s)%2 == 1 {
		if vr == "UI" {
			s += "\x00"
		} else {
			s += " "
		}
	}
	return e.el(t, vr, []byte(s))
}

func (e *enc) us(t dicom.Tag, v uint16) *enc { return e.header(t, "US", 2).u16(v) }

func (e *enc) item(length uint32) *enc { return e.tag(dicom.Item).u32(length) }
func (e *enc) itemEnd() *enc           { return e.tag(dicom.ItemDelimitationItem).u32(0) }
func (e *enc) seqEnd() *enc            { return e.tag(dicom.SequenceDelimitationItem).u32(0) }

// sq writes a sequence of defined or undefined length; each item is written with a defined length when
// definedItems is set, otherwise with an undefined length and an item delimiter.
func (e *enc) sq(t dicom.Tag, defined, definedItems bool, items ...*enc) *enc {
	body := e.sub()
	for _, it := range items {
		if definedItems {
			body.item(uint32(len(it.b))).raw(it.b...)
		} else {
			body.item(dicom.UndefinedLength).raw(it.b...).itemEnd()
		}
	}
	if defined {
		return e.header(t, "SQ", uint32(len(body.b))).raw(body.b...)
	}
	return e.header(t, "SQ", dicom.UndefinedLength).raw(body.b...).seqEnd()
}

const ctImageStorage = "1.2.840.10008.5.1.4.1.1.2"

// part10 returns a preamble, "DICM", a File Meta Information group naming ts (none when ts is "") and body.
func part10(ts string, body []byte) []byte {
	meta := explicitLE()
	meta.el(dicom.FileMetaInformationVersion, "OB", []byte{0, 1})
	meta.str(dicom.MediaStorageSOPClassUID, "UI", ctImageStorage)
	meta.str(dicom.MediaStorageSOPInstanceUID, "UI", "1.2.3.4")
	if ts != "" {
		meta.str(dicom.TransferSyntaxUID, "UI", ts)
	}
	out := make([]byte, 128, 1024+len(body))
	out = append(out, "DICM"...)
	out = append(out, explicitLE().header(dicom.FileMetaInformationGroupLength, "UL", 4).u32(uint32(len(meta.b))).b...)
	out = append(out, meta.b...)
	return append(out, body...)
}

// stream hides the io.Seeker of a reader, as a network body does.
type stream struct{ r io.Reader }

func (s stream) Read(b []byte) (int, error) { return s.r.Read(b) }

// readers gives the two kinds of source Parse treats differently: one it can seek in, one it must read through.
var readers = []struct {
	name string
	open func([]byte) io.Reader
}{
	{"seekable", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"stream", func(b []byte) io.Reader { return stream{bytes.NewReader(b)} }},
}

func parse(t *testing.T, b []byte, opt dicom.ReadOptions) *dicom.File {
	t.Helper()
	f, err := dicom.Parse(bytes.NewReader(b), opt)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}

// dump lists a data set one line per element, dcmdump style: nested items are prefixed with "> ".
func dump(ds *dicom.DataSet) []string {
	var out []string
	var walk func(ds *dicom.DataSet, prefix string)
	walk = func(ds *dicom.DataSet, prefix string) {
		for _, e := range ds.Elements {
			s := prefix + e.Tag.String() + " " + e.VR
			switch {
			case e.Items != nil:
				s += fmt.Sprintf(" %d items", len(e.Items))
			case e.Fragments != nil:
				s += fmt.Sprintf(" %d fragments", len(e.Fragments))
			case e.Bulk:
				s += fmt.Sprintf(" bulk %d bytes", e.Length)
			default:
				s += fmt.Sprintf(" %q", e.Value)
			}
			out = append(out, s)
			for _, it := range e.Items {
				out = append(out, prefix+"> item")
				walk(it, prefix+"> ")
			}
		}
	}
	walk(ds, "")
	return out
}

// checkOffsets verifies that every loaded little-endian value sits at its Offset in src.
func checkOffsets(t *testing.T, src []byte, ds *dicom.DataSet) {
	t.Helper()
	for _, e := range ds.Elements {
		for _, it := range e.Items {
			checkOffsets(t, src, it)
		}
		if e.Value == nil {
			continue
		}
		if e.Offset < 0 || e.Offset+int64(len(e.Value)) > int64(len(src)) {
			t.Errorf("%s: offset %d out of range", e.Tag, e.Offset)
			continue
		}
		if got := src[e.Offset : e.Offset+int64(len(e.Value))]; !bytes.Equal(got, e.Value) {
			t.Errorf("%s: bytes at offset %d are %q, value is %q", e.Tag, e.Offset, got, e.Value)
		}
	}
}

var (
	privateCreator = dicom.NewTag(0x0009, 0x0010)
	privateData    = dicom.NewTag(0x0009, 0x1001)
	sliceThickness = dicom.NewTag(0x0018, 0x0050)
	pixelSpacing   = dicom.NewTag(0x0028, 0x0030)
	refSeriesSeq   = dicom.NewTag(0x0008, 0x1115)
	refImageSeq    = dicom.NewTag(0x0008, 0x1140)
	contentSeq     = dicom.NewTag(0x0040, 0xA730)
	textValue      = dicom.NewTag(0x0040, 0xA160)
	trailing       = dicom.NewTag(0xFFFC, 0xFFFC) // Data Set Trailing Padding
)

// header writes a few ordinary elements; it is the start of most hand-made data sets below.
func header(e *enc) *enc {
	return e.str(dicom.SOPClassUID, "UI", ctImageStorage).
		str(dicom.SOPInstanceUID, "UI", "1.2.3.4").
		str(dicom.PatientName, "PN", "Doe^John").
		str(dicom.StudyInstanceUID, "UI", "1.2.3").
		str(dicom.SeriesInstanceUID, "UI", "1.2.3.1").
		us(dicom.Rows, 512).
		str(pixelSpacing, "DS", `0.5\0.5`)
}

var headerDump = []string{
	`(0008,0016) UI "1.2.840.10008.5.1.4.1.1.2\x00"`,
	`(0008,0018) UI "1.2.3.4\x00"`,
	`(0010,0010) PN "Doe^John"`,
	`(0020,000D) UI "1.2.3\x00"`,
	`(0020,000E) UI "1.2.3.1\x00"`,
	`(0028,0010) US "\x00\x02"`,
	`(0028,0030) DS "0.5\\0.5 "`,
}

func TestParseExplicitLittleEndian(t *testing.T) {
	body := header(explicitLE()).str(privateCreator, "LO", "RENKEI").el(privateData, "UN", []byte{1, 2, 3, 4}).
		str(textValue, "UT", "long text").b
	in := part10(dicom.ExplicitVRLittleEndian, body)
	f := parse(t, in, dicom.DefaultReadOptions)
	// Elements are kept in stream order.
	want := append(append([]string{}, headerDump...), `(0009,0010) LO "RENKEI"`, `(0009,1001) UN "\x01\x02\x03\x04"`, `(0040,A160) UT "long text "`)
	if diff := cmp.Diff(want, dump(f.DataSet)); diff != "" {
		t.Errorf("data set (-want +got):\n%s", diff)
	}
	checkOffsets(t, in, f.DataSet)
	checkOffsets(t, in, f.Meta)
	if got, want := f.DataSetOffset, int64(len(in)-len(body)); got != want {
		t.Errorf("DataSetOffset = %d, want %d", got, want)
	}
	if f.TransferSyntaxUID != dicom.ExplicitVRLittleEndian || f.Deflated || f.PixelData != nil {
		t.Errorf("TransferSyntaxUID %q, Deflated %v, PixelData %v", f.TransferSyntaxUID, f.Deflated, f.PixelData)
	}
	if n, ok := f.DataSet.Int(dicom.Rows); !ok || n != 512 {
		t.Errorf("Rows = %d, %v; want 512", n, ok)
	}
	if got := f.DataSet.String(dicom.SOPInstanceUID); got != "1.2.3.4" {
		t.Errorf("SOPInstanceUID = %q", got)
	}
}

func TestParseImplicitLittleEndian(t *testing.T) {
	groupLength := dicom.NewTag(0x0008, 0x0000)
	unknownSeq := dicom.NewTag(0x0009, 0x1002)
	e := implicitLE().header(groupLength, "UL", 4).u32(0)
	header(e).str(privateCreator, "LO", "RENKEI").el(privateData, "UN", []byte{1, 2, 3, 4})
	// A private element of undefined length: in implicit VR only a sequence can have it (PS3.5 7.5.1).
	e.header(unknownSeq, "", dicom.UndefinedLength).item(dicom.UndefinedLength).str(dicom.PatientID, "", "P1").itemEnd().seqEnd()
	in := part10(dicom.ImplicitVRLittleEndian, e.b)
	f := parse(t, in, dicom.DefaultReadOptions)
	want := append([]string{`(0008,0000) UL "\x00\x00\x00\x00"`}, headerDump...)
	want = append(want, `(0009,0010) LO "RENKEI"`, `(0009,1001) UN "\x01\x02\x03\x04"`,
		`(0009,1002) SQ 1 items`, `> item`, `> (0010,0020) LO "P1"`)
	if diff := cmp.Diff(want, dump(f.DataSet)); diff != "" {
		t.Errorf("VRs from the dictionary (-want +got):\n%s", diff)
	}
	checkOffsets(t, in, f.DataSet)
}

func TestParseBigEndian(t *testing.T) {
	var (
		ul   = dicom.NewTag(0x0028, 0x0000) // group length, UL
		fd   = dicom.NewTag(0x0018, 0x9087) // Diffusion b-value, FD
		at   = dicom.NewTag(0x0028, 0x0009) // Frame Increment Pointer, AT
		ob   = dicom.NewTag(0x0029, 0x1010) // private OB: bytes, never swapped
		fl   = dicom.NewTag(0x0018, 0x9089) // Diffusion Gradient Orientation, FL, 3 values
		pix  = make([]byte, 64)             // OW pixel data, big endian on the wire
		want = make([]byte, 64)
	)
	for i := range 32 {
		binary.BigEndian.PutUint16(pix[2*i:], uint16(0x0100+i))
		binary.LittleEndian.PutUint16(want[2*i:], uint16(0x0100+i))
	}
	e := explicitBE()
	e.header(at, "AT", 4).u16(0x0018).u16(0x1063)
	e.str(dicom.PatientName, "PN", "Doe^John")
	e.sq(refSeriesSeq, false, true, e.sub().us(dicom.Rows, 0x0102))
	e.header(fl, "FL", 12).u32(math.Float32bits(1)).u32(math.Float32bits(-2)).u32(math.Float32bits(0.5))
	e.header(fd, "FD", 8).raw(binary.BigEndian.AppendUint64(nil, math.Float64bits(1000.25))...)
	e.header(ul, "UL", 4).u32(0x01020304)
	e.el(ob, "OB", []byte{1, 2, 3, 4})
	e.el(dicom.PixelData, "OW", pix)
	in := part10(dicom.ExplicitVRBigEndian, e.b)
	opt := dicom.DefaultReadOptions
	opt.BulkThreshold = 32
	f := parse(t, in, opt)
	f32 := func(v ...float32) string {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
		return fmt.Sprintf("%q", b)
	}
	wantDump := []string{
		`(0028,0009) AT "\x18\x00c\x10"`,
		`(0010,0010) PN "Doe^John"`,
		`(0008,1115) SQ 1 items`,
		`> item`,
		`> (0028,0010) US "\x02\x01"`,
		`(0018,9089) FL ` + f32(1, -2, 0.5),
		fmt.Sprintf(`(0018,9087) FD %q`, binary.LittleEndian.AppendUint64(nil, math.Float64bits(1000.25))),
		`(0028,0000) UL "\x04\x03\x02\x01"`,
		`(0029,1010) OB "\x01\x02\x03\x04"`,
		`(7FE0,0010) OW bulk 64 bytes`,
	}
	if diff := cmp.Diff(wantDump, dump(f.DataSet)); diff != "" {
		t.Errorf("values are little endian after parsing (-want +got):\n%s", diff)
	}
	if f.Meta.String(dicom.TransferSyntaxUID) != dicom.ExplicitVRBigEndian {
		t.Errorf("the meta group is little endian whatever the transfer syntax: got %q", f.Meta.String(dicom.TransferSyntaxUID))
	}
	px := f.PixelData
	if px == nil || !px.Bulk || !px.BigEndian {
		t.Fatalf("pixel data %+v: want a bulk value marked big endian", px)
	}
	got, err := dicom.ReadValue(bytes.NewReader(in), px)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("ReadValue of big-endian OW = % x, want % x", got[:8], want[:8])
	}
	if !bytes.Equal(in[px.Offset:px.Offset+64], pix) {
		t.Errorf("pixel data Offset %d does not point at the value on the wire", px.Offset)
	}
}

func TestParseDeflated(t *testing.T) {
	pix := bytes.Repeat([]byte{1, 2, 3, 4}, 4096)
	body := header(explicitLE()).sq(refSeriesSeq, false, false, explicitLE().str(dicom.SeriesInstanceUID, "UI", "1.2.3.1")).
		el(dicom.PixelData, "OW", pix).b
	var z bytes.Buffer
	zw, _ := flate.NewWriter(&z, flate.BestCompression)
	zw.Write(body)
	zw.Close()
	in := part10(dicom.DeflatedExplicitVRLittleEndian, z.Bytes())

	opt := dicom.DefaultReadOptions
	opt.BulkThreshold = 1 << 20
	f := parse(t, in, opt)
	want := append(append([]string{}, headerDump...), `(0008,1115) SQ 1 items`, `> item`, `> (0020,000E) UI "1.2.3.1\x00"`,
		fmt.Sprintf("(7FE0,0010) OW %q", pix))
	if diff := cmp.Diff(want, dump(f.DataSet)); diff != "" {
		t.Errorf("deflated data set (-want +got):\n%s", diff)
	}
	if !f.Deflated {
		t.Error("Deflated is false")
	}
	// Offsets of a deflated data set count inflated bytes from the start of the data set.
	checkOffsets(t, body, f.DataSet)

	t.Run("bomb", func(t *testing.T) {
		// 8 MiB of zeros deflate to a few kilobytes; MaxInflated stops the parser long before the end.
		bomb := explicitLE().header(dicom.PixelData, "OB", 8<<20).raw(make([]byte, 8<<20)...).b
		var z bytes.Buffer
		zw, _ := flate.NewWriter(&z, flate.BestCompression)
		zw.Write(bomb)
		zw.Close()
		opt := dicom.DefaultReadOptions
		opt.MaxInflated = 1 << 20
		_, err := dicom.Parse(bytes.NewReader(part10(dicom.DeflatedExplicitVRLittleEndian, z.Bytes())), opt)
		if !errors.Is(err, dicom.ErrInflateLimit) {
			t.Errorf("Parse of a deflate bomb: %v; want the MaxInflated error", err)
		}
	})
}

func TestParseSequences(t *testing.T) {
	refSOPInstance := dicom.ReferencedSOPInstanceUID
	item := func(uid string) *enc { return explicitLE().str(refSOPInstance, "UI", uid) }
	nested := explicitLE().str(dicom.SeriesInstanceUID, "UI", "1.2.3.1").sq(refImageSeq, false, false, item("1.2.3.1.1"), item("1.2.3.1.2"))
	cases := []struct {
		name                  string
		defined, definedItems bool
	}{
		{"defined length, defined items", true, true},
		{"defined length, undefined items", true, false},
		{"undefined length, defined items", false, true},
		{"undefined length, undefined items", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := explicitLE().str(dicom.PatientName, "PN", "Doe^John")
			e.sq(refSeriesSeq, tc.defined, tc.definedItems, nested, explicitLE())
			e.sq(contentSeq, tc.defined, tc.definedItems) // empty sequence
			e.str(textValue, "UT", "after")
			in := part10(dicom.ExplicitVRLittleEndian, e.b)
			f := parse(t, in, dicom.DefaultReadOptions)
			want := []string{
				`(0010,0010) PN "Doe^John"`,
				`(0008,1115) SQ 2 items`,
				`> item`,
				`> (0020,000E) UI "1.2.3.1\x00"`,
				`> (0008,1140) SQ 2 items`,
				`> > item`,
				`> > (0008,1155) UI "1.2.3.1.1\x00"`,
				`> > item`,
				`> > (0008,1155) UI "1.2.3.1.2\x00"`,
				`> item`,
				`(0040,A730) SQ 0 items`,
				`(0040,A160) UT "after "`,
			}
			if diff := cmp.Diff(want, dump(f.DataSet)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			checkOffsets(t, in, f.DataSet)
		})
	}
}

// PS3.5 6.2.2: a UN element of undefined length holds a sequence encoded in Implicit VR Little Endian, whatever the
// transfer syntax around it.
func TestParseUNUndefinedLength(t *testing.T) {
	for _, outer := range []struct {
		name string
		e    func() *enc
		ts   string
	}{
		{"explicit LE", explicitLE, dicom.ExplicitVRLittleEndian},
		{"explicit BE", explicitBE, dicom.ExplicitVRBigEndian},
	} {
		t.Run(outer.name, func(t *testing.T) {
			item1 := implicitLE().str(dicom.SeriesInstanceUID, "UI", "1.2.3.1")
			inner := implicitLE().str(dicom.ReferencedSOPInstanceUID, "UI", "1.2.3.9")
			inner.header(refImageSeq, "", dicom.UndefinedLength).item(uint32(len(item1.b))).raw(item1.b...).seqEnd()
			e := outer.e().header(refSeriesSeq, "UN", dicom.UndefinedLength)
			e.raw(implicitLE().item(dicom.UndefinedLength).raw(inner.b...).itemEnd().seqEnd().b...)
			e.str(dicom.PatientName, "PN", "Doe^John")
			f := parse(t, part10(outer.ts, e.b), dicom.DefaultReadOptions)
			want := []string{
				`(0008,1115) SQ 1 items`,
				`> item`,
				`> (0008,1155) UI "1.2.3.9\x00"`,
				`> (0008,1140) SQ 1 items`,
				`> > item`,
				`> > (0020,000E) UI "1.2.3.1\x00"`,
				`(0010,0010) PN "Doe^John"`,
			}
			if diff := cmp.Diff(want, dump(f.DataSet)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("defined length", func(t *testing.T) {
		// A known attribute sent as UN is read with its dictionary VR; an unknown one stays UN.
		seq := implicitLE().item(dicom.UndefinedLength).str(dicom.SeriesInstanceUID, "UI", "1.2.3.1").itemEnd()
		e := explicitLE().el(refSeriesSeq, "UN", seq.b).el(dicom.PatientName, "UN", []byte("Doe^John")).el(privateData, "UN", []byte{1, 2, 3, 4})
		f := parse(t, part10(dicom.ExplicitVRLittleEndian, e.b), dicom.DefaultReadOptions)
		want := []string{
			`(0008,1115) SQ 1 items`,
			`> item`,
			`> (0020,000E) UI "1.2.3.1\x00"`,
			`(0010,0010) PN "Doe^John"`,
			`(0009,1001) UN "\x01\x02\x03\x04"`,
		}
		if diff := cmp.Diff(want, dump(f.DataSet)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestParseEncapsulated(t *testing.T) {
	frag1 := []byte("fragment1!")
	frag2 := bytes.Repeat([]byte("big fragment "), 2000)       // 26,000 bytes: above the 16 KiB BulkThreshold
	frag3 := bytes.Repeat([]byte("huge fragment ... "), 20000) // 360,000 bytes: a seekable source seeks past it
	bot := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 0), uint32(8+len(frag1)))
	e := explicitLE().us(dicom.Rows, 2).header(dicom.PixelData, "OB", dicom.UndefinedLength)
	for _, fr := range [][]byte{bot, frag1, frag2, frag3} {
		e.item(uint32(len(fr))).raw(fr...)
	}
	e.seqEnd().el(trailing, "OB", []byte{0, 0})
	in := part10(dicom.JPEGBaseline8Bit, e.b)
	for _, r := range readers {
		for _, stop := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/StopAtPixelData=%v", r.name, stop), func(t *testing.T) {
				opt := dicom.DefaultReadOptions
				opt.StopAtPixelData = stop
				f, err := dicom.Parse(r.open(in), opt)
				if err != nil {
					t.Fatal(err)
				}
				px := f.PixelData
				if px == nil || !px.Encapsulated() || px.VR != "OB" || px.Length != dicom.UndefinedLength || px != f.DataSet.Get(dicom.PixelData) {
					t.Fatalf("PixelData = %+v; want the encapsulated element of the data set", px)
				}
				type frag struct {
					Len    uint32
					Loaded bool
				}
				var got []frag
				for i, fr := range px.Fragments {
					got = append(got, frag{fr.Length, fr.Data != nil})
					want := [][]byte{bot, frag1, frag2, frag3}[i]
					if !bytes.Equal(in[fr.Offset:fr.Offset+int64(fr.Length)], want) {
						t.Errorf("fragment %d: Offset %d does not point at its bytes", i, fr.Offset)
					}
					if fr.Data != nil && !bytes.Equal(fr.Data, want) {
						t.Errorf("fragment %d: Data differs from the stream", i)
					}
				}
				want := []frag{{8, true}, {uint32(len(frag1)), true}, {uint32(len(frag2)), false}, {uint32(len(frag3)), false}}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("fragments (-want +got):\n%s", diff)
				}
				if !stop && f.DataSet.Get(trailing) == nil {
					t.Error("the element after the pixel data was not read")
				}
			})
		}
	}
}

func TestParseStopAtPixelData(t *testing.T) {
	pix := bytes.Repeat([]byte{0xAB, 0xCD}, 500)
	for _, c := range []struct {
		name string
		e    func() *enc
		ts   string
	}{
		{"explicit LE", explicitLE, dicom.ExplicitVRLittleEndian},
		{"implicit LE", implicitLE, dicom.ImplicitVRLittleEndian},
		{"explicit BE", explicitBE, dicom.ExplicitVRBigEndian},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := c.e().us(dicom.Rows, 2).el(dicom.PixelData, "OW", pix).el(trailing, "OB", []byte{0, 0})
			in := part10(c.ts, e.b)
			opt := dicom.DefaultReadOptions
			opt.StopAtPixelData = true
			f, err := dicom.Parse(stream{bytes.NewReader(in)}, opt)
			if err != nil {
				t.Fatal(err)
			}
			els := f.DataSet.Elements
			if len(els) != 2 || els[1] != f.PixelData {
				t.Fatalf("data set %v; want Rows then the pixel data, and nothing after", dump(f.DataSet))
			}
			px := f.PixelData
			if !px.Bulk || px.Value != nil || px.Length != uint32(len(pix)) || px.BigEndian != (c.ts == dicom.ExplicitVRBigEndian) {
				t.Errorf("pixel data %+v: want bulk, unread, %d bytes", px, len(pix))
			}
			if !bytes.Equal(in[px.Offset:px.Offset+int64(px.Length)], pix) {
				t.Errorf("Offset %d does not point at the pixel data", px.Offset)
			}
		})
	}
}

func TestParseBulkThreshold(t *testing.T) {
	small := []byte("0123456789abcdef")                     // 16 bytes: at the threshold, loaded
	big := bytes.Repeat([]byte("0123456789abcdef"), 2)      // 32 bytes: above it, bulk
	huge := bytes.Repeat([]byte("0123456789abcdef"), 1<<15) // 512 KiB: a seekable source seeks over it
	ob1, ob2, ob3 := dicom.NewTag(0x0029, 0x1010), dicom.NewTag(0x0029, 0x1011), dicom.NewTag(0x0029, 0x1012)
	e := explicitLE().el(ob1, "OB", small).sq(refSeriesSeq, true, true, explicitLE().el(ob2, "OB", big)).el(ob3, "OB", huge).
		el(dicom.PixelData, "OW", huge)
	in := part10(dicom.ExplicitVRLittleEndian, e.b)
	for _, r := range readers {
		t.Run(r.name, func(t *testing.T) {
			opt := dicom.DefaultReadOptions
			opt.BulkThreshold = 16
			f, err := dicom.Parse(r.open(in), opt)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{
				`(0029,1010) OB "0123456789abcdef"`,
				`(0008,1115) SQ 1 items`,
				`> item`,
				`> (0029,1011) OB bulk 32 bytes`,
				`(0029,1012) OB bulk 524288 bytes`,
				`(7FE0,0010) OW bulk 524288 bytes`,
			}
			if diff := cmp.Diff(want, dump(f.DataSet)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			for _, c := range []struct {
				e    *dicom.Element
				want []byte
			}{{f.DataSet.Get(refSeriesSeq).Items[0].Get(ob2), big}, {f.DataSet.Get(ob3), huge}, {f.PixelData, huge}} {
				got, err := dicom.ReadValue(bytes.NewReader(in), c.e)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, c.want) {
					t.Errorf("%s: ReadValue at Offset %d gives other bytes than the value", c.e.Tag, c.e.Offset)
				}
			}
		})
	}
}

// TestParseErrors covers each way Parse refuses data, from both kinds of source. Every refusal is a *ParseError that
// says where, except a missing "DICM", which is ErrNotDICOM.
func TestParseErrors(t *testing.T) {
	ds := func(e *enc) []byte { return part10(dicom.ExplicitVRLittleEndian, e.b) }
	nested := func(depth int) *enc {
		e := explicitLE().str(dicom.PatientID, "LO", "deep")
		for range depth {
			e = explicitLE().sq(contentSeq, false, false, e)
		}
		return e
	}
	valid := ds(header(explicitLE()))
	encapsulated := func(e *enc) []byte {
		return part10(dicom.JPEGBaseline8Bit, explicitLE().header(dicom.PixelData, "OB", dicom.UndefinedLength).raw(e.b...).b)
	}
	cases := []struct {
		name string
		in   []byte
		opt  func(*dicom.ReadOptions)
		want string    // in the message
		tag  dicom.Tag // the element the error names, if any
	}{
		{name: "empty", in: nil, want: "not a DICOM Part 10 file"},
		{name: "short preamble", in: make([]byte, 100), want: "not a DICOM Part 10 file"},
		{name: "no DICM", in: append(make([]byte, 128), "DICX\x02\x00\x10\x00"...), want: "not a DICOM Part 10 file"},
		{name: "preamble only", in: valid[:128], want: "not a DICOM Part 10 file"},
		{name: "no meta", in: append(append(make([]byte, 128), "DICM"...), header(explicitLE()).b...),
			want: "the File Meta Information (group 0002) is missing"},
		{name: "no transfer syntax", in: part10("", header(explicitLE()).b), tag: dicom.TransferSyntaxUID,
			want: "has no Transfer Syntax UID"},
		{name: "invalid transfer syntax", in: part10("1.2.840.10008.1.2.x", nil), tag: dicom.TransferSyntaxUID,
			want: `transfer syntax "1.2.840.10008.1.2.x" is not a valid UID`},
		{name: "meta truncated in a header", in: valid[:134], want: "ends in the middle of an element header"},
		{name: "meta truncated in a value", in: valid[:150], tag: dicom.FileMetaInformationVersion, want: "the data ends early"},
		{name: "invalid VR", in: ds(explicitLE().tag(dicom.PatientName).raw('p', 'n', 2, 0, 'A', 'B')), tag: dicom.PatientName,
			want: `invalid VR "pn" in explicit VR encoding`},
		{name: "truncated tag", in: ds(header(explicitLE()).raw(0x10, 0)), want: "ends in the middle of an element header"},
		{name: "truncated length", in: ds(explicitLE().tag(dicom.PixelData).raw('O', 'W', 0, 0, 1)), tag: dicom.PixelData,
			want: "the data ends early"},
		{name: "value past the end", in: ds(explicitLE().header(dicom.PatientName, "PN", 100).raw([]byte("Doe^John")...)),
			tag: dicom.PatientName, want: "the data ends early: 100 more bytes"},
		{name: "bulk value past the end", in: ds(explicitLE().header(dicom.PixelData, "OW", 1<<20).raw(make([]byte, 1000)...)),
			tag: dicom.PixelData, want: "the data ends early"},
		{name: "sequence past the end", in: ds(explicitLE().header(contentSeq, "SQ", 1000).item(20)),
			want: "the data ends in the middle of an element header"},
		{name: "item header cut", in: ds(explicitLE().header(contentSeq, "SQ", 1000).raw(0xFE, 0xFF, 0, 0xE0, 1)), tag: contentSeq,
			want: "the data ends early"},
		{name: "undefined length on UT", in: ds(explicitLE().header(textValue, "UT", dicom.UndefinedLength).raw([]byte("text")...)),
			tag: textValue, want: "undefined length (0xFFFFFFFF) is not allowed for VR UT"},
		{name: "undefined length on PN, implicit VR",
			in:  part10(dicom.ImplicitVRLittleEndian, implicitLE().header(dicom.PatientName, "", dicom.UndefinedLength).str(dicom.PatientID, "", "P1").b),
			tag: dicom.PatientName, want: "undefined length (0xFFFFFFFF) is not allowed for VR PN"},
		{name: "undefined length on US, implicit VR",
			in:  part10(dicom.ImplicitVRLittleEndian, implicitLE().header(dicom.Rows, "", dicom.UndefinedLength).item(0).seqEnd().b),
			tag: dicom.Rows, want: "undefined length (0xFFFFFFFF) is not allowed for VR US"},
		{name: "encapsulated pixel data in a native syntax", in: ds(explicitLE().header(dicom.PixelData, "OB", dicom.UndefinedLength).item(0).seqEnd()),
			tag: dicom.PixelData, want: "undefined length (0xFFFFFFFF) is not allowed for VR OB"},
		{name: "nested too deep", in: ds(nested(17)), tag: contentSeq, want: "sequences are nested deeper than 16 levels"},
		{name: "MaxDepth", in: ds(nested(3)), opt: func(o *dicom.ReadOptions) { o.MaxDepth = 2 }, tag: contentSeq,
			want: "nested deeper than 2 levels"},
		{name: "item delimiter at top level", in: ds(explicitLE().itemEnd()), tag: dicom.ItemDelimitationItem,
			want: "item delimitation outside an undefined-length item"},
		{name: "item delimiter in a defined-length item", in: ds(explicitLE().header(contentSeq, "SQ", 16).item(8).itemEnd()),
			tag: dicom.ItemDelimitationItem, want: "item delimitation outside an undefined-length item"},
		{name: "item outside a sequence", in: ds(explicitLE().item(0)), tag: dicom.Item, want: "unexpected item tag outside a sequence"},
		{name: "not an item in a sequence", in: ds(explicitLE().header(contentSeq, "SQ", dicom.UndefinedLength).str(dicom.PatientID, "LO", "P1")),
			tag: contentSeq, want: "expected an item (FFFE,E000) in the sequence, found (0010,0020)"},
		{name: "sequence delimiter in a defined-length sequence", in: ds(explicitLE().header(contentSeq, "SQ", 16).seqEnd().item(0)),
			tag: contentSeq, want: "sequence delimiter in a sequence of defined length"},
		{name: "item past its sequence", in: ds(explicitLE().header(contentSeq, "SQ", 4).item(0)), tag: contentSeq,
			want: "an item runs past the end of its sequence"},
		{name: "element past its item", in: ds(explicitLE().header(contentSeq, "SQ", 20).item(4).str(dicom.PatientID, "LO", "P1")),
			want: "an element runs past the end of its item"},
		{name: "no basic offset table", in: encapsulated(explicitLE().seqEnd()),
			tag: dicom.PixelData, want: "has no Basic Offset Table item"},
		{name: "fragment of undefined length", in: encapsulated(explicitLE().item(0).item(dicom.UndefinedLength)),
			tag: dicom.PixelData, want: "a pixel data fragment has undefined length"},
		{name: "not an item in pixel data", in: encapsulated(explicitLE().item(0).str(dicom.PatientID, "LO", "P1")),
			tag: dicom.PixelData, want: "expected a fragment item (FFFE,E000) in encapsulated pixel data"},
		{name: "fragment past the end", in: encapsulated(explicitLE().item(0).item(1<<20).raw(1, 2)),
			tag: dicom.PixelData, want: "the data ends early"},
		{name: "offset table past the end", in: encapsulated(explicitLE().item(60<<20).raw(1, 2)),
			tag: dicom.PixelData, want: "the data ends early"},
		{name: "pixel data without delimiter", in: encapsulated(explicitLE().item(0)),
			tag: dicom.PixelData, want: "the data ends early"},
		{name: "header too large", in: valid, opt: func(o *dicom.ReadOptions) { o.MaxHeaderBytes = 800 }, tag: dicom.Rows,
			want: "the header is larger than the 800 bytes allowed"},
	}
	for _, tc := range cases {
		for _, r := range readers {
			t.Run(tc.name+"/"+r.name, func(t *testing.T) {
				opt := dicom.DefaultReadOptions
				if tc.opt != nil {
					tc.opt(&opt)
				}
				f, err := dicom.Parse(r.open(tc.in), opt)
				if err == nil {
					t.Fatalf("Parse succeeded with %d elements; want an error containing %q", len(f.DataSet.Elements), tc.want)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q; want it to contain %q", err, tc.want)
				}
				if errors.Is(err, dicom.ErrNotDICOM) {
					return
				}
				var pe *dicom.ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("error %v (%T) is not a *dicom.ParseError", err, err)
				}
				if pe.Tag != tc.tag {
					t.Errorf("error names element %s, want %s", pe.Tag, tc.tag)
				}
				if pe.Offset < 0 || pe.Offset > int64(len(tc.in)) {
					t.Errorf("error offset %d is outside the %d-byte input", pe.Offset, len(tc.in))
				}
			})
		}
	}
}

// allocated returns how many bytes f allocates on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestParseMemoryBound feeds Parse small inputs that announce or expand to much more than they hold: the memory it
// takes stays near the limits, not what the input announces.
func TestParseMemoryBound(t *testing.T) {
	deflated := func(body []byte) []byte {
		var z bytes.Buffer
		zw, _ := flate.NewWriter(&z, flate.BestCompression)
		zw.Write(body)
		zw.Close()
		return part10(dicom.DeflatedExplicitVRLittleEndian, z.Bytes())
	}
	// 16 MiB of empty 8-byte elements deflate to about 16 KiB; each would be an Element in memory.
	tiny := bytes.Repeat(explicitLE().header(privateData, "LO", 0).b, 2<<20)
	// Each element is charged part of its real size against MaxHeaderBytes: memory stays within 4 times the limit.
	limited := dicom.DefaultReadOptions
	limited.MaxHeaderBytes = 8 << 20
	trusted := dicom.ReadOptions{BulkThreshold: 1<<31 - 1, MaxDepth: 16, MaxHeaderBytes: 1<<31 - 1, MaxInflated: 8 << 30}
	cases := []struct {
		name string
		in   []byte
		opt  dicom.ReadOptions
		max  uint64
		want string
	}{
		{"tiny elements, deflated", deflated(tiny), limited, 4 * 8 << 20, "the header is larger than"},
		{"offset table announced past the end", part10(dicom.JPEGBaseline8Bit,
			explicitLE().header(dicom.PixelData, "OB", dicom.UndefinedLength).item(60<<20).raw(1, 2).b), dicom.DefaultReadOptions, 1 << 20, "the data ends early"},
		{"value announced past the end, everything loaded", part10(dicom.ExplicitVRLittleEndian,
			explicitLE().header(privateData, "OB", 1<<30).raw(1, 2).b), trusted, 1 << 20, "the data ends early"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = dicom.Parse(stream{bytes.NewReader(tc.in)}, tc.opt) })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want %q", err, tc.want)
			}
			t.Logf("%d-byte input: %d KiB allocated", len(tc.in), n>>10)
			if n > tc.max {
				t.Errorf("a %d-byte input allocated %d MiB; want at most %d MiB", len(tc.in), n>>20, tc.max>>20)
			}
		})
	}
}

// TestParseTruncated cuts a real CT file inside the preamble, the meta information, every element header and value
// (at a stride through the pixel data): no such prefix parses, from either kind of source. A cut exactly between two
// elements leaves a shorter valid file, since Part 10 carries no total length; that prefix parses.
func TestParseTruncated(t *testing.T) {
	path := t.TempDir() + "/ct.dcm"
	if err := dicomtest.CT(path, dicomtest.CTOptions{Rows: 512, Cols: 512, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	in, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := parse(t, in, dicom.DefaultReadOptions)
	boundaries := map[int]bool{}
	cuts := map[int]bool{}
	for _, ds := range []*dicom.DataSet{f.Meta, f.DataSet} {
		for _, e := range ds.Elements {
			end := int(e.Offset) + int(e.Length)
			if ds == f.DataSet || e.Tag >= dicom.TransferSyntaxUID {
				boundaries[end] = true // the meta information is complete once it names the transfer syntax
			}
			for _, o := range []int{int(e.Offset) - 12, int(e.Offset) - 8, int(e.Offset) - 6, int(e.Offset) - 4, int(e.Offset) - 2, int(e.Offset) - 1, int(e.Offset), int(e.Offset) + 1, end - 1} {
				cuts[o] = true
			}
		}
	}
	for o := 0; o < 140; o++ {
		cuts[o] = true
	}
	for o := 0; o < len(in); o += 4099 {
		cuts[o] = true
	}
	for _, r := range readers {
		for n := range cuts {
			if n < 0 || n >= len(in) {
				continue
			}
			g, err := dicom.Parse(r.open(in[:n]), dicom.DefaultReadOptions)
			switch {
			case boundaries[n] && err != nil:
				t.Errorf("%s: file cut between elements at byte %d: %v", r.name, n, err)
			case boundaries[n] && len(g.DataSet.Elements) >= len(f.DataSet.Elements):
				t.Errorf("%s: file cut at byte %d has all %d elements", r.name, n, len(g.DataSet.Elements))
			case !boundaries[n] && err == nil:
				t.Errorf("%s: file cut at byte %d of %d parsed without error", r.name, n, len(in))
			}
		}
	}
}

func TestValidUID(t *testing.T) {
	digits64 := "1." + strings.Repeat("2", 62)
	for _, tc := range []struct {
		uid  string
		want bool
	}{
		{"1.2.840.10008.1.2.1", true},
		{"0", true},
		{"0.0", true},
		{"2.25.329800735698586629295641978511506172918", true},
		{digits64, true},
		{digits64 + "3", false}, // 65 characters
		{"", false},
		{"1..2", false},
		{".1.2", false},
		{"1.2.", false},
		{"1.02", false},
		{"01.2", false},
		{"1.2a", false},
		{"1.2.abc", false},
		{"1.2 ", false},
		{"1.2\x00", false},
		{"1,2", false},
		{"-1.2", false},
		{"１.２", false}, // full-width digits
	} {
		if got := dicom.ValidUID(tc.uid); got != tc.want {
			t.Errorf("ValidUID(%q) = %v, want %v", tc.uid, got, tc.want)
		}
	}
}

// TestParseDataset parses the files dcmtk and GDCM made (every transfer syntax renkei stores) from both kinds of
// source, and checks that the pixel data of each uncompressed encoding reads back as the source's.
func TestParseDataset(t *testing.T) {
	samples, err := dicomtest.Dataset(t.TempDir())
	if errors.Is(err, exec.ErrNotFound) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	pixels := map[string][]byte{} // little-endian pixel data of each explicit-le sample, by name
	read := func(t *testing.T, s dicomtest.Sample, r io.Reader, opt dicom.ReadOptions) *dicom.File {
		f, err := dicom.Parse(r, opt)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		return f
	}
	for _, s := range samples {
		t.Run(s.Name, func(t *testing.T) {
			in, err := os.ReadFile(s.Path)
			if err != nil {
				t.Fatal(err)
			}
			opt := dicom.DefaultReadOptions
			if s.TransferSyntaxUID == dicom.DeflatedExplicitVRLittleEndian {
				opt.BulkThreshold = 1 << 30
			}
			fh, err := os.Open(s.Path)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			f := read(t, s, fh, opt)
			g := read(t, s, stream{bytes.NewReader(in)}, opt)
			if diff := cmp.Diff(dump(f.DataSet), dump(g.DataSet)); diff != "" {
				t.Errorf("a file and a stream of it parse differently (-file +stream):\n%s", diff)
			}
			ds := f.DataSet
			got := []string{f.TransferSyntaxUID, ds.String(dicom.SOPInstanceUID), ds.String(dicom.StudyInstanceUID)}
			if diff := cmp.Diff([]string{s.TransferSyntaxUID, s.SOPInstanceUID, s.StudyInstanceUID}, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			rows, _ := ds.Int(dicom.Rows)
			cols, _ := ds.Int(dicom.Columns)
			if rows != s.Rows || cols != s.Columns || f.PixelData == nil {
				t.Fatalf("%d×%d, pixel data %v; want %d×%d with pixel data", rows, cols, f.PixelData != nil, s.Rows, s.Columns)
			}
			px := f.PixelData
			if dicom.IsEncapsulated(s.TransferSyntaxUID) {
				if len(px.Fragments) < 2 {
					t.Fatalf("%d fragments; want an offset table and at least one fragment", len(px.Fragments))
				}
				for i, fr := range px.Fragments {
					if h := in[fr.Offset-8 : fr.Offset]; !bytes.Equal(h[:4], []byte{0xFE, 0xFF, 0x00, 0xE0}) || binary.LittleEndian.Uint32(h[4:]) != fr.Length {
						t.Errorf("fragment %d: the 8 bytes before Offset %d are % x, not its item header", i, fr.Offset, h)
					}
				}
				return
			}
			var v []byte
			if px.Bulk {
				if v, err = dicom.ReadValue(bytes.NewReader(in), px); err != nil {
					t.Fatal(err)
				}
			} else {
				v = px.Value
			}
			if s.Source == "" {
				pixels[s.Name] = v
				return
			}
			src, ok := pixels[s.Source]
			if !ok {
				t.Skipf("source %s not parsed", s.Source)
			}
			if !bytes.Equal(v, src) {
				t.Errorf("pixel data (%d bytes) differs from %s's (%d bytes)", len(v), s.Source, len(src))
			}
		})
	}
}
