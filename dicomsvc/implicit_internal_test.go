package dicomsvc

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"renkei/dicom"
)

// explicit builds Explicit VR Little Endian elements (PS3.5 7.1.2).
type explicit struct{ b []byte }

func (x *explicit) tag(t dicom.Tag) {
	x.b = binary.LittleEndian.AppendUint16(x.b, t.Group())
	x.b = binary.LittleEndian.AppendUint16(x.b, t.Element())
}

func (x *explicit) el(t dicom.Tag, vr string, v []byte) *explicit {
	x.tag(t)
	x.b = append(x.b, vr...)
	if longLength(vr) {
		x.b = append(x.b, 0, 0)
		x.b = binary.LittleEndian.AppendUint32(x.b, uint32(len(v)))
	} else {
		x.b = binary.LittleEndian.AppendUint16(x.b, uint16(len(v)))
	}
	x.b = append(x.b, v...)
	return x
}

// container writes a sequence (vr "SQ" or "UN") or an item (vr "") of defined length, or undefined with a delimiter
// when defined is false.
func (x *explicit) container(t dicom.Tag, vr string, body []byte, defined bool, delim dicom.Tag) *explicit {
	x.tag(t)
	if vr != "" {
		x.b = append(x.b, vr...)
		x.b = append(x.b, 0, 0)
	}
	n := uint32(dicom.UndefinedLength)
	if defined {
		n = uint32(len(body))
	}
	x.b = binary.LittleEndian.AppendUint32(x.b, n)
	x.b = append(x.b, body...)
	if !defined {
		x.tag(delim)
		x.b = binary.LittleEndian.AppendUint32(x.b, 0)
	}
	return x
}

func TestToImplicit(t *testing.T) {
	nested := (&explicit{}).el(0x0040A010, "CS", []byte("CONTAINS")).b
	item1 := (&explicit{}).el(dicom.ReferencedSOPClassUID, "UI", []byte("1.2.840.10008.5.1.4.1.1.2\x00")).
		el(dicom.ReferencedSOPInstanceUID, "UI", []byte("1.2.3.4")).
		container(0x0040A730, "SQ", (&explicit{}).container(dicom.Item, "", nested, false, dicom.ItemDelimitationItem).b, true, 0).b
	item2 := (&explicit{}).el(dicom.ReferencedSOPInstanceUID, "UI", []byte("1.2.3.5\x00")).b
	seq := (&explicit{}).container(dicom.Item, "", item1, true, 0).container(dicom.Item, "", item2, false, dicom.ItemDelimitationItem).b
	// A UN value of undefined length holds a sequence in Implicit VR Little Endian (PS3.5 6.2.2).
	un := []byte{0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF}
	un = append(un, 0x09, 0x00, 0x11, 0x10, 4, 0, 0, 0, 'a', 'b', 'c', 'd')
	un = append(un, 0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0)
	x := (&explicit{}).el(0x00080000, "UL", []byte{0, 0, 0, 0}).
		el(dicom.SpecificCharacterSet, "CS", []byte("ISO_IR 100")).
		container(0x00081140, "SQ", seq, true, 0).
		el(0x00090010, "LO", []byte("RENKEI  ")).
		el(0x00091010, "UN", nil)
	// The UN element above was written with length 0; make it undefined and put its implicit sequence behind it.
	x.b = x.b[:len(x.b)-4]
	x.b = binary.LittleEndian.AppendUint32(x.b, dicom.UndefinedLength)
	x.b = append(x.b, un...)
	x.el(dicom.PatientName, "PN", []byte("Buc^J\xe9r\xf4me ")).el(dicom.PixelData, "OW", []byte{1, 2, 3, 4, 5, 6, 7, 8})

	var out bytes.Buffer
	if err := toImplicit(&out, bytes.NewReader(x.b)); err != nil {
		t.Fatal(err)
	}
	opt := dicom.ReadOptions{BulkThreshold: 1 << 20, MaxDepth: 16, MaxHeaderBytes: 1 << 20, MaxInflated: 1 << 20}
	want, err := dicom.ParseDataSet(bytes.NewReader(x.b), dicom.ExplicitVRLittleEndian, opt)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dicom.ParseDataSet(bytes.NewReader(out.Bytes()), dicom.ImplicitVRLittleEndian, opt)
	if err != nil {
		t.Fatalf("the output is not Implicit VR Little Endian: %v", err)
	}
	want.Remove(0x00080000) // group lengths are dropped
	if d := diffDataSets(want, got, ""); d != "" {
		t.Error(d)
	}

	// Encapsulated pixel data has no Implicit VR form (PS3.5 A.4).
	enc := (&explicit{}).container(dicom.PixelData, "OB", (&explicit{}).container(dicom.Item, "", nil, true, 0).b, false, dicom.SequenceDelimitationItem).b
	if err := toImplicit(&out, bytes.NewReader(enc)); err == nil || !strings.Contains(err.Error(), "encapsulated") {
		t.Errorf("encapsulated pixel data: %v", err)
	}
	// A truncated data set is an error, not a shorter object.
	if err := toImplicit(&out, bytes.NewReader(x.b[:len(x.b)-3])); err == nil {
		t.Error("truncated data set converted")
	}
}

// diffDataSets compares tags, values and items, not VRs (Implicit VR has none).
func diffDataSets(want, got *dicom.DataSet, path string) string {
	if len(want.Elements) != len(got.Elements) {
		return path + ": " + strings.Join(tagList(got), ",") + ", want " + strings.Join(tagList(want), ",")
	}
	for i, w := range want.Elements {
		g := got.Elements[i]
		switch {
		case w.Tag != g.Tag:
			return path + ": " + g.Tag.String() + ", want " + w.Tag.String()
		case len(w.Items) != len(g.Items):
			return path + w.Tag.String() + ": item count differs"
		case w.Items != nil:
			for j := range w.Items {
				if d := diffDataSets(w.Items[j], g.Items[j], path+w.Tag.String()+"/"); d != "" {
					return d
				}
			}
		case !bytes.Equal(w.Value, g.Value):
			return path + w.Tag.String() + ": values differ"
		}
	}
	return ""
}

func tagList(ds *dicom.DataSet) []string {
	var out []string
	for _, e := range ds.Elements {
		out = append(out, e.Tag.String())
	}
	return out
}
