package render

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"renkei/dicom"
)

// LUT is a VOI LUT (PS3.3 C.11.2.1.1): the modality value First maps to Data[0], First+1 to Data[1] and so on;
// values below First map to the first entry, values past the last entry to the last one. Entries are Bits wide
// (8 to 16 bits) and are shown with 0 as black and 2^Bits−1 as white.
type LUT struct {
	First       int
	Bits        int
	Data        []uint16
	Explanation string // LUT Explanation (0028,3003), "" when absent
}

// Grey is the grey level (0–255) the LUT gives to the modality value x. A value between two inputs takes the
// nearer one's entry.
func (l *LUT) Grey(x float64) uint8 {
	if len(l.Data) == 0 {
		return 0
	}
	i := int(math.Round(x)) - l.First
	i = min(max(i, 0), len(l.Data)-1)
	top := float64(uint32(1)<<l.Bits - 1)
	return uint8(math.Round(math.Min(float64(l.Data[i]), top) / top * 255))
}

// NewLUT makes a LUT from the three values of a LUT Descriptor (0028,3002) and the bytes of LUT Data (0028,3006),
// little endian. The descriptor's first value is the number of entries (0 meaning 65536, PS3.3 C.11.1.1.1); its
// second, the first input mapped, is read as signed when signedFirst is set; its third is the bits per entry.
// Data of 8-bit entries packed two to a 16-bit word (as some writers store them) is accepted too. An empty or
// short table, or bits outside 8–16, is an error.
func NewLUT(desc [3]int, data []byte, signedFirst bool) (*LUT, error) {
	n := desc[0]
	if n == 0 {
		n = 65536
	}
	first := desc[1]
	if signedFirst && first >= 32768 {
		first -= 65536
	}
	bits := desc[2]
	if bits < 8 || bits > 16 {
		return nil, fmt.Errorf("render: a VOI LUT of %d bits per entry (PS3.3 C.11.2.1.1 allows 8 to 16)", bits)
	}
	l := &LUT{First: first, Bits: bits, Data: make([]uint16, n)}
	switch {
	case len(data) >= 2*n:
		for i := range l.Data {
			l.Data[i] = binary.LittleEndian.Uint16(data[2*i:])
		}
	case bits == 8 && len(data) >= n:
		for i := range l.Data {
			l.Data[i] = uint16(data[i])
		}
	default:
		return nil, fmt.Errorf("render: a VOI LUT of %d entries with %d bytes of LUT Data", n, len(data))
	}
	return l, nil
}

// VOILUTs reads the VOI LUT Sequence (0028,3010) of an image's data set, in the file's order (the first is the
// default when the file has no window, as dcmtk's dcm2pnm +Wl 1 shows it). read fetches a value left on the stream
// (Element.Bulk); with a nil read only loaded values are used. An image without the sequence has none; an item
// that is not a usable LUT is an error.
func VOILUTs(ds *dicom.DataSet, read func(*dicom.Element) ([]byte, error)) ([]LUT, error) {
	seq := ds.Get(dicom.NewTag(0x0028, 0x3010))
	if seq == nil || len(seq.Items) == 0 {
		return nil, nil
	}
	value := func(e *dicom.Element) ([]byte, error) {
		if e.Bulk && read != nil {
			return read(e)
		}
		return e.Value, nil
	}
	// The first input mapped is in the units of the modality LUT's output, which is signed when the stored values
	// are or when the rescale can make them negative (dcmtk reads it the same way).
	pr, _ := ds.Int(dicom.NewTag(0x0028, 0x0103))
	intercept, _ := strconv.ParseFloat(ds.String(dicom.NewTag(0x0028, 0x1052)), 64)
	negative := pr == 1 || intercept < 0
	var out []LUT
	for i, it := range seq.Items {
		d := it.Get(dicom.NewTag(0x0028, 0x3002))
		data := it.Get(dicom.NewTag(0x0028, 0x3006))
		if d == nil || data == nil {
			return nil, fmt.Errorf("render: VOI LUT %d has no LUT Descriptor or LUT Data", i+1)
		}
		db, err := value(d)
		if err != nil {
			return nil, err
		}
		if len(db) < 6 {
			return nil, fmt.Errorf("render: VOI LUT %d: a LUT Descriptor of %d bytes, not three values", i+1, len(db))
		}
		var desc [3]int
		for k := range desc {
			desc[k] = int(binary.LittleEndian.Uint16(db[2*k:]))
		}
		b, err := value(data)
		if err != nil {
			return nil, err
		}
		l, err := NewLUT(desc, b, d.VR == "SS" || negative)
		if err != nil {
			return nil, fmt.Errorf("VOI LUT %d: %w", i+1, err)
		}
		l.Explanation = strings.TrimSpace(it.String(dicom.NewTag(0x0028, 0x3003)))
		out = append(out, *l)
	}
	return out, nil
}
