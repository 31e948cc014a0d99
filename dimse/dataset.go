package dimse

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"renkei/dicom"
)

// MaxIdentifierLength bounds a data set that is read whole rather than streamed: a C-FIND, C-MOVE or C-GET
// identifier, a C-FIND match, an N-ACTION or N-EVENT-REPORT information set.
const MaxIdentifierLength = 4 << 20

// parseDataSet reads a small data set in a transfer syntax, loading every value (none is longer than limit).
func parseDataSet(r io.Reader, ts string, limit int) (*dicom.DataSet, error) {
	return dicom.ParseDataSet(r, ts, dicom.ReadOptions{BulkThreshold: limit, MaxDepth: 16, MaxHeaderBytes: limit, MaxInflated: int64(limit)})
}

// EncodeDataSet encodes a data set whose values are all loaded in Explicit or Implicit VR Little Endian, the two
// syntaxes this package accepts for identifiers (PS3.5 A.1, A.2). Group length elements and group 0002 are left out.
func EncodeDataSet(ds *dicom.DataSet, ts string) ([]byte, error) {
	var buf bytes.Buffer
	switch ts {
	case dicom.ExplicitVRLittleEndian:
		if err := dicom.WriteDataSet(&buf, ds, nil); err != nil {
			return nil, err
		}
	case dicom.ImplicitVRLittleEndian:
		if err := writeImplicit(&buf, ds); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("dimse: cannot encode a data set in transfer syntax %s", ts)
	}
	return buf.Bytes(), nil
}

// writeImplicit writes a data set in Implicit VR Little Endian (PS3.5 A.1, 7.1.3): tag, 32-bit length, value;
// sequences and items with undefined length and delimiters (PS3.5 7.5).
func writeImplicit(buf *bytes.Buffer, ds *dicom.DataSet) error {
	hdr := func(t dicom.Tag, n uint32) {
		var b [8]byte
		binary.LittleEndian.PutUint16(b[0:], t.Group())
		binary.LittleEndian.PutUint16(b[2:], t.Element())
		binary.LittleEndian.PutUint32(b[4:], n)
		buf.Write(b[:])
	}
	for _, e := range ds.Elements {
		if e.Tag.Element() == 0 || e.Tag.Group() == 0x0002 {
			continue
		}
		switch {
		case e.VR == "SQ" || e.Items != nil:
			hdr(e.Tag, dicom.UndefinedLength)
			for _, it := range e.Items {
				hdr(dicom.Item, dicom.UndefinedLength)
				if err := writeImplicit(buf, it); err != nil {
					return err
				}
				hdr(dicom.ItemDelimitationItem, 0)
			}
			hdr(dicom.SequenceDelimitationItem, 0)
		case e.Fragments != nil:
			return fmt.Errorf("dimse: %s: encapsulated pixel data cannot be written in Implicit VR Little Endian (PS3.5 A.4)", e.Tag)
		case e.Bulk:
			return fmt.Errorf("dimse: %s: value not loaded", e.Tag)
		default:
			v := e.Value
			hdr(e.Tag, uint32(len(v)+len(v)%2))
			buf.Write(v)
			if len(v)%2 == 1 {
				pad := byte(0)
				if dicom.IsText(e.VR) && e.VR != "UI" {
					pad = ' '
				}
				buf.WriteByte(pad)
			}
		}
	}
	return nil
}
