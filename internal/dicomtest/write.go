package dicomtest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Transfer syntax UIDs, PS3.6 Table A-1.
const (
	tsImplicitLE   = "1.2.840.10008.1.2"
	tsExplicitLE   = "1.2.840.10008.1.2.1"
	tsDeflated     = "1.2.840.10008.1.2.1.99"
	tsExplicitBE   = "1.2.840.10008.1.2.2"
	tsJPEGBaseline = "1.2.840.10008.1.2.4.50"
	tsJPEGLossless = "1.2.840.10008.1.2.4.70" // process 14, selection value 1
	tsJPEGExt12    = "1.2.840.10008.1.2.4.51" // extended (process 2 & 4), 12-bit, lossy
	tsJPEGLS       = "1.2.840.10008.1.2.4.80"
	tsJ2KLossless  = "1.2.840.10008.1.2.4.90"
	tsRLE          = "1.2.840.10008.1.2.5"
)

// element is one data element, its value already encoded and padded to even length.
type element struct {
	tag   uint32
	vr    string
	value []byte
}

// dataset collects elements in any order and writes them sorted, in explicit VR little endian.
// Text values are encoded with cs; the first encoding error is kept in err.
type dataset struct {
	cs    charset
	elems []element
	err   error
}

func (d *dataset) add(tag uint32, vr string, v []byte) {
	if len(v)%2 == 1 {
		pad := byte(' ')
		switch vr {
		case "UI", "OB", "UN":
			pad = 0 // PS3.5 6.2: UI and OB pad with NULL, text with SPACE
		}
		v = append(v, pad)
	}
	if !longVR(vr) && len(v) > 0xfffe {
		d.fail(fmt.Errorf("(%04X,%04X) %s: value of %d bytes does not fit a 16-bit length", tag>>16, tag&0xffff, vr, len(v)))
		return
	}
	d.elems = append(d.elems, element{tag: tag, vr: vr, value: v})
}

func (d *dataset) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// str adds a string of a VR that Specific Character Set does not affect (AE, AS, CS, DA, DS, IS, TM, UI…).
// Values are joined with the backslash delimiter.
func (d *dataset) str(tag uint32, vr string, values ...string) {
	s := strings.Join(values, `\`)
	if _, err := encodeASCII(s); err != nil {
		d.fail(fmt.Errorf("(%04X,%04X) %s: %w", tag>>16, tag&0xffff, vr, err))
		return
	}
	d.add(tag, vr, []byte(s))
}

// text adds a value of a VR that Specific Character Set affects (SH, LO, ST, LT, PN, UC, UT), encoded with d.cs.
func (d *dataset) text(tag uint32, vr, s string) {
	b, err := d.cs.encode(s)
	if err != nil {
		d.fail(fmt.Errorf("(%04X,%04X) %s: %w", tag>>16, tag&0xffff, vr, err))
		return
	}
	d.add(tag, vr, b)
}

func (d *dataset) is(tag uint32, n int) { d.str(tag, "IS", strconv.Itoa(n)) }

func (d *dataset) us(tag uint32, values ...uint16) {
	b := make([]byte, 0, 2*len(values))
	for _, v := range values {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	d.add(tag, "US", b)
}

func (d *dataset) ss(tag uint32, values ...int16) {
	b := make([]byte, 0, 2*len(values))
	for _, v := range values {
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	d.add(tag, "SS", b)
}

// at adds an Attribute Tag value, PS3.5 6.2: group then element, each a 16-bit little endian number.
func (d *dataset) at(tag uint32, values ...uint32) {
	b := make([]byte, 0, 4*len(values))
	for _, v := range values {
		b = binary.LittleEndian.AppendUint16(b, uint16(v>>16))
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	d.add(tag, "AT", b)
}

// longVR reports whether vr has a reserved field and a 32-bit length in explicit VR encoding, PS3.5 Table 7.1-1.
func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

func appendHeader(b []byte, tag uint32, vr string, n uint32) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(tag>>16))
	b = binary.LittleEndian.AppendUint16(b, uint16(tag))
	b = append(b, vr...)
	if longVR(vr) {
		b = append(b, 0, 0)
		return binary.LittleEndian.AppendUint32(b, n)
	}
	return binary.LittleEndian.AppendUint16(b, uint16(n))
}

func appendElement(b []byte, e element) []byte {
	return append(appendHeader(b, e.tag, e.vr, uint32(len(e.value))), e.value...)
}

func uidValue(uid string) []byte {
	b := []byte(uid)
	if len(b)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

// writePart10 writes the preamble, "DICM", the File Meta Information (PS3.10 7.1) and the elements of d,
// sorted by tag, in explicit VR little endian. It writes no pixel data unless d holds it: callers streaming
// pixels write (7FE0,0010) themselves after the sorted elements, which must then all be below it.
func writePart10(w *bufio.Writer, sopClassUID, sopInstanceUID string, d *dataset) error {
	if d.err != nil {
		return d.err
	}
	var meta []byte
	meta = appendElement(meta, element{0x00020001, "OB", []byte{0, 1}}) // version 1, PS3.10 7.1
	meta = appendElement(meta, element{0x00020002, "UI", uidValue(sopClassUID)})
	meta = appendElement(meta, element{0x00020003, "UI", uidValue(sopInstanceUID)})
	meta = appendElement(meta, element{0x00020010, "UI", uidValue(tsExplicitLE)})
	meta = appendElement(meta, element{0x00020012, "UI", uidValue(implementationClassUID)})
	meta = appendElement(meta, element{0x00020013, "SH", []byte(implementationVersionName)})

	var head [132]byte
	copy(head[128:], "DICM")
	w.Write(head[:])
	var gl []byte
	gl = appendHeader(gl, 0x00020000, "UL", 4)
	gl = binary.LittleEndian.AppendUint32(gl, uint32(len(meta)))
	w.Write(gl)
	w.Write(meta)

	slices.SortStableFunc(d.elems, func(a, b element) int {
		switch {
		case a.tag < b.tag:
			return -1
		case a.tag > b.tag:
			return 1
		}
		return 0
	})
	var buf []byte
	for i, e := range d.elems {
		if i > 0 && d.elems[i-1].tag == e.tag {
			return fmt.Errorf("(%04X,%04X) set twice", e.tag>>16, e.tag&0xffff)
		}
		buf = appendElement(buf[:0], e)
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// readMeta reads the File Meta Information group of a Part 10 file (always explicit VR little endian, PS3.10 7.1)
// and returns its string values by tag. Dataset uses it to check what the tools wrote.
func readMeta(b []byte) (map[uint32]string, error) {
	if len(b) < 144 || !bytes.Equal(b[128:132], []byte("DICM")) {
		return nil, fmt.Errorf("no DICM prefix")
	}
	m := map[uint32]string{}
	for p := 132; p+8 <= len(b); {
		tag := uint32(binary.LittleEndian.Uint16(b[p:]))<<16 | uint32(binary.LittleEndian.Uint16(b[p+2:]))
		if tag>>16 != 2 {
			break
		}
		vr := string(b[p+4 : p+6])
		var n, hdr int
		if longVR(vr) {
			if p+12 > len(b) {
				return nil, fmt.Errorf("truncated meta element (%04X,%04X)", tag>>16, tag&0xffff)
			}
			n, hdr = int(binary.LittleEndian.Uint32(b[p+8:])), 12
		} else {
			n, hdr = int(binary.LittleEndian.Uint16(b[p+6:])), 8
		}
		if p+hdr+n > len(b) {
			return nil, fmt.Errorf("truncated meta element (%04X,%04X)", tag>>16, tag&0xffff)
		}
		m[tag] = strings.TrimRight(string(b[p+hdr:p+hdr+n]), "\x00 ")
		p += hdr + n
	}
	return m, nil
}
