package dicom

import (
	"encoding/binary"
	"math"
	"sort"
	"strconv"
	"strings"
)

// DataSet is an ordered list of data elements (PS3.5 7). Values are held in little-endian order whatever the byte order
// of the encoding they were read from; values too large to keep in memory are left on the stream (Element.Bulk).
type DataSet struct {
	Elements []*Element
}

// Element is one data element.
type Element struct {
	Tag       Tag
	VR        string
	Length    uint32     // the encoded value length; UndefinedLength for sequences, items and encapsulated pixel data
	Value     []byte     // the value, little endian; nil when Bulk or for SQ and encapsulated pixel data
	Items     []*DataSet // the items of an SQ
	Fragments []Fragment // the items of encapsulated pixel data, Basic Offset Table first (PS3.5 A.4)
	Offset    int64      // offset of the value in the stream it was read from
	Bulk      bool       // the value was not loaded: read Length bytes at Offset
	BigEndian bool       // a Bulk value that is still in big-endian order on the stream
}

// Fragment is one item of encapsulated pixel data.
type Fragment struct {
	Offset int64  // offset of the fragment's bytes in the stream
	Length uint32 // its length
	Data   []byte // its bytes, when loaded
}

// UndefinedLength is the value length 0xFFFFFFFF (PS3.5 7.1.1).
const UndefinedLength = 0xFFFFFFFF

// Encapsulated reports whether the element is encapsulated pixel data.
func (e *Element) Encapsulated() bool { return e.Fragments != nil }

// Get returns the element with the given tag, or nil.
func (ds *DataSet) Get(t Tag) *Element {
	if ds == nil {
		return nil
	}
	els := ds.Elements
	i := sort.Search(len(els), func(i int) bool { return els[i].Tag >= t })
	if i < len(els) && els[i].Tag == t {
		return els[i]
	}
	// Data sets read from the wild are not always in order; fall back to a scan.
	for _, e := range els {
		if e.Tag == t {
			return e
		}
	}
	return nil
}

// Set inserts or replaces an element, keeping tag order.
func (ds *DataSet) Set(e *Element) {
	els := ds.Elements
	i := sort.Search(len(els), func(i int) bool { return els[i].Tag >= e.Tag })
	if i < len(els) && els[i].Tag == e.Tag {
		els[i] = e
		return
	}
	ds.Elements = append(els, nil)
	copy(ds.Elements[i+1:], ds.Elements[i:])
	ds.Elements[i] = e
}

// Remove deletes the element with the given tag, if present.
func (ds *DataSet) Remove(t Tag) {
	for i, e := range ds.Elements {
		if e.Tag == t {
			ds.Elements = append(ds.Elements[:i], ds.Elements[i+1:]...)
			return
		}
	}
}

// SetString sets a text element, padding it to even length as PS3.5 6.2 requires (NUL for UI, space otherwise).
func (ds *DataSet) SetString(t Tag, vr, s string) {
	b := []byte(s)
	if len(b)%2 == 1 {
		if vr == "UI" {
			b = append(b, 0)
		} else {
			b = append(b, ' ')
		}
	}
	ds.Set(&Element{Tag: t, VR: vr, Length: uint32(len(b)), Value: b})
}

// SetUint16 sets a US element.
func (ds *DataSet) SetUint16(t Tag, v uint16) {
	b := binary.LittleEndian.AppendUint16(nil, v)
	ds.Set(&Element{Tag: t, VR: "US", Length: 2, Value: b})
}

// Raw returns the raw bytes of an element's value with padding removed, or nil. The bytes are in the data set's
// character set; use a charset.Decoder for text that may not be ASCII.
func (ds *DataSet) Raw(t Tag) []byte {
	e := ds.Get(t)
	if e == nil || e.Value == nil {
		return nil
	}
	return TrimPadding(e.Value, e.VR)
}

// String returns an element's value as text (first value only for multi-valued text), trimmed. It is meant for
// ASCII-only VRs (UI, CS, DA, TM, IS, DS…).
func (ds *DataSet) String(t Tag) string {
	v := ds.Raw(t)
	if v == nil {
		return ""
	}
	s := string(v)
	if i := strings.IndexByte(s, '\\'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// Strings returns all values of a multi-valued text element, each trimmed.
func (ds *DataSet) Strings(t Tag) []string {
	v := ds.Raw(t)
	if v == nil {
		return nil
	}
	parts := strings.Split(string(v), "\\")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// Int returns the first value of a numeric element (US, SS, UL, SL, IS, DS) and whether it was present and valid.
func (ds *DataSet) Int(t Tag) (int, bool) {
	e := ds.Get(t)
	if e == nil || e.Value == nil {
		return 0, false
	}
	v := e.Value
	switch e.VR {
	case "US":
		if len(v) >= 2 {
			return int(binary.LittleEndian.Uint16(v)), true
		}
	case "SS":
		if len(v) >= 2 {
			return int(int16(binary.LittleEndian.Uint16(v))), true
		}
	case "UL":
		if len(v) >= 4 {
			return int(binary.LittleEndian.Uint32(v)), true
		}
	case "SL":
		if len(v) >= 4 {
			return int(int32(binary.LittleEndian.Uint32(v))), true
		}
	case "IS", "DS", "UN", "LO", "SH", "CS":
		s := ds.String(t)
		if n, err := strconv.Atoi(s); err == nil {
			return n, true
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return int(f), true
		}
	}
	return 0, false
}

// TrimPadding removes the trailing padding of a text value: NUL for UI (and tolerated elsewhere), spaces for other
// text VRs. Leading spaces are significant for some VRs and are kept.
func TrimPadding(v []byte, vr string) []byte {
	if !IsText(vr) {
		return v
	}
	for len(v) > 0 && (v[len(v)-1] == 0 || v[len(v)-1] == ' ') {
		v = v[:len(v)-1]
	}
	return v
}

// IsText reports whether values of the VR are character strings.
func IsText(vr string) bool {
	switch vr {
	case "AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT":
		return true
	}
	return false
}

// hasLongLength reports whether the VR uses the 2 reserved bytes + 32-bit length form in explicit VR (PS3.5 7.1.2).
func hasLongLength(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// wordSize is the size of the unit a big-endian value must be byte-swapped by, or 1 for byte and text data.
func wordSize(vr string) int {
	switch vr {
	case "US", "SS", "OW", "AT":
		return 2
	case "UL", "SL", "FL", "OF", "OL":
		return 4
	case "FD", "OD", "SV", "UV", "OV":
		return 8
	}
	return 1
}

// SwapBytes reverses the byte order of each size-byte word of b in place.
func SwapBytes(b []byte, size int) {
	switch size {
	case 2:
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	case 4:
		for i := 0; i+3 < len(b); i += 4 {
			b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
		}
	case 8:
		for i := 0; i+7 < len(b); i += 8 {
			for j := 0; j < 4; j++ {
				b[i+j], b[i+7-j] = b[i+7-j], b[i+j]
			}
		}
	}
}

// DirectoryFiles lists the files a DICOMDIR refers to (Referenced File ID (0004,1500) of each record of the
// Directory Record Sequence (0004,1220), PS3.10 8.5 and PS3.3 F.3), as slash-separated paths relative to the
// DICOMDIR's folder.
func DirectoryFiles(ds *DataSet) []string {
	seq := ds.Get(NewTag(0x0004, 0x1220))
	if seq == nil {
		return nil
	}
	var out []string
	for _, item := range seq.Items {
		if parts := item.Strings(NewTag(0x0004, 0x1500)); len(parts) > 0 {
			for i := range parts {
				parts[i] = strings.TrimSpace(parts[i])
			}
			out = append(out, strings.Join(parts, "/"))
		}
	}
	return out
}
