package dicom

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// TextDecoder turns the raw bytes of a text value into UTF-8 according to a data set's character set
// (implemented by charset.Decoder). ok is false when some bytes could not be decoded.
type TextDecoder interface {
	Decode(value []byte, vr string) (s string, ok bool)
}

// JSONOptions controls AppendJSON.
type JSONOptions struct {
	// Decoder returns the text decoder for a data set's SpecificCharacterSet terms (nil terms: the default repertoire).
	Decoder func(terms []string) TextDecoder
	// BulkDataURI returns the URI of a value that is sent as bulk data; path is the tag path from the top
	// ("7FE00010", or "00540016/0/00181072" inside a sequence). Without it, such values are left out.
	BulkDataURI func(path string) string
	// InlineLimit: binary values up to this many bytes are sent inline (InlineBinary); larger ones by BulkDataURI.
	InlineLimit int
	// Include filters the top-level elements; nil includes all.
	Include func(Tag) bool
}

// AppendJSON appends the DICOM JSON model (PS3.18 Annex F) of ds to dst, as one object.
func AppendJSON(dst []byte, ds *DataSet, opt *JSONOptions) []byte {
	return appendObject(dst, ds, opt, nil, "", true)
}

func decoderFor(ds *DataSet, parent TextDecoder, opt *JSONOptions) TextDecoder {
	if e := ds.Get(SpecificCharacterSet); e != nil || parent == nil {
		if opt.Decoder != nil {
			return opt.Decoder(ds.Strings(SpecificCharacterSet))
		}
		return asciiDecoder{}
	}
	return parent
}

type asciiDecoder struct{}

func (asciiDecoder) Decode(v []byte, vr string) (string, bool) {
	if utf8.Valid(v) {
		return string(v), true
	}
	return strings.ToValidUTF8(string(v), "\uFFFD"), false
}

func appendObject(dst []byte, ds *DataSet, opt *JSONOptions, parent TextDecoder, path string, top bool) []byte {
	dec := decoderFor(ds, parent, opt)
	dst = append(dst, '{')
	first := true
	for _, e := range ds.Elements {
		if e.Tag.Group() == 0x0002 || e.Tag.Element() == 0 && e.Tag.Group() != 0 {
			continue
		}
		if top && opt.Include != nil && !opt.Include(e.Tag) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		p := e.Tag.Hex()
		if path != "" {
			p = path + "/" + p
		}
		dst = AppendElementJSON(dst, e, dec, opt, p)
	}
	return append(dst, '}')
}

// AppendElementJSON appends `"ggggeeee":{…}` for one element.
func AppendElementJSON(dst []byte, e *Element, dec TextDecoder, opt *JSONOptions, path string) []byte {
	dst = append(dst, '"')
	dst = append(dst, e.Tag.Hex()...)
	dst = append(dst, `":{"vr":"`...)
	vr := e.VR
	if len(vr) != 2 || vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' {
		vr = "UN"
	}
	dst = append(dst, vr...)
	dst = append(dst, '"')
	switch {
	case vr == "SQ":
		if len(e.Items) > 0 {
			dst = append(dst, `,"Value":[`...)
			for i, it := range e.Items {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = appendObject(dst, it, opt, dec, path+"/"+strconv.Itoa(i), false)
			}
			dst = append(dst, ']')
		}
	case e.Bulk || e.Fragments != nil:
		if opt.BulkDataURI != nil {
			dst = append(dst, `,"BulkDataURI":`...)
			dst = appendJSONString(dst, opt.BulkDataURI(path))
		}
	case len(e.Value) == 0:
	case vr == "PN":
		dst = appendPN(dst, e.Value, dec)
	case IsText(vr):
		dst = appendStrings(dst, e.Value, vr, dec)
	case vr == "AT":
		dst = append(dst, `,"Value":[`...)
		for i := 0; i+4 <= len(e.Value); i += 4 {
			if i > 0 {
				dst = append(dst, ',')
			}
			t := NewTag(binary.LittleEndian.Uint16(e.Value[i:]), binary.LittleEndian.Uint16(e.Value[i+2:]))
			dst = append(dst, '"')
			dst = append(dst, t.Hex()...)
			dst = append(dst, '"')
		}
		dst = append(dst, ']')
	case wordSize(vr) > 1 && (vr == "US" || vr == "SS" || vr == "UL" || vr == "SL" || vr == "FL" || vr == "FD" || vr == "SV" || vr == "UV"):
		dst = appendNumbers(dst, e.Value, vr)
	default: // OB OD OF OL OV OW UN
		if opt.InlineLimit > 0 && len(e.Value) > opt.InlineLimit && opt.BulkDataURI != nil {
			dst = append(dst, `,"BulkDataURI":`...)
			dst = appendJSONString(dst, opt.BulkDataURI(path))
		} else {
			dst = append(dst, `,"InlineBinary":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, e.Value)
			dst = append(dst, '"')
		}
	}
	return append(dst, '}')
}

func appendPN(dst []byte, raw []byte, dec TextDecoder) []byte {
	s, _ := dec.Decode(TrimPadding(raw, "PN"), "PN")
	dst = append(dst, `,"Value":[`...)
	for i, v := range strings.Split(s, "\\") {
		if i > 0 {
			dst = append(dst, ',')
		}
		v = strings.TrimRight(v, " ")
		if v == "" {
			dst = append(dst, "null"...)
			continue
		}
		dst = append(dst, '{')
		n := 0
		for g, group := range strings.SplitN(v, "=", 3) {
			group = strings.TrimRight(group, " ")
			if group == "" {
				continue
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = append(dst, `"`+[]string{"Alphabetic", "Ideographic", "Phonetic"}[g]+`":`...)
			dst = appendJSONString(dst, group)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendStrings(dst []byte, raw []byte, vr string, dec TextDecoder) []byte {
	raw = TrimPadding(raw, vr)
	var s string
	switch vr {
	case "SH", "LO", "ST", "LT", "UC", "UT":
		s, _ = dec.Decode(raw, vr)
	default:
		s, _ = asciiDecoder{}.Decode(raw, vr)
	}
	var vals []string
	if vr == "LT" || vr == "ST" || vr == "UT" || vr == "UR" {
		vals = []string{s} // PS3.5 6.2: these VRs are single-valued; a backslash is text
	} else {
		vals = strings.Split(s, "\\")
	}
	dst = append(dst, `,"Value":[`...)
	for i, v := range vals {
		if i > 0 {
			dst = append(dst, ',')
		}
		if vr != "LT" && vr != "ST" && vr != "UT" {
			v = strings.TrimSpace(v)
		}
		if v == "" {
			dst = append(dst, "null"...)
			continue
		}
		switch vr {
		case "IS":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				dst = strconv.AppendInt(dst, n, 10)
				continue
			}
		case "DS":
			if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				if jsonNumber(v) {
					dst = append(dst, v...)
				} else {
					dst = strconv.AppendFloat(dst, f, 'g', -1, 64)
				}
				continue
			}
		}
		dst = appendJSONString(dst, v)
	}
	return append(dst, ']')
}

// appendJSONString appends s as a JSON string (RFC 8259 7). strconv.AppendQuote is Go syntax, not JSON: it writes
// control characters and invalid UTF-8 as \x escapes, which JSON parsers refuse. Here control characters are \u
// escapes and invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// jsonNumber reports whether s is already a number in JSON's grammar (RFC 8259 6), so it can be sent unchanged.
func jsonNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i >= len(s) {
		return false
	}
	if s[i] == '0' {
		i++
	} else if s[i] >= '1' && s[i] <= '9' {
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	} else {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	return i == len(s)
}

func appendNumbers(dst []byte, v []byte, vr string) []byte {
	size := wordSize(vr)
	dst = append(dst, `,"Value":[`...)
	for i := 0; i+size <= len(v); i += size {
		if i > 0 {
			dst = append(dst, ',')
		}
		switch vr {
		case "US":
			dst = strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint16(v[i:])), 10)
		case "SS":
			dst = strconv.AppendInt(dst, int64(int16(binary.LittleEndian.Uint16(v[i:]))), 10)
		case "UL":
			dst = strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint32(v[i:])), 10)
		case "SL":
			dst = strconv.AppendInt(dst, int64(int32(binary.LittleEndian.Uint32(v[i:]))), 10)
		case "UV":
			dst = strconv.AppendUint(dst, binary.LittleEndian.Uint64(v[i:]), 10)
		case "SV":
			dst = strconv.AppendInt(dst, int64(binary.LittleEndian.Uint64(v[i:])), 10)
		case "FL":
			dst = appendFloat(dst, float64(math.Float32frombits(binary.LittleEndian.Uint32(v[i:]))), 32)
		case "FD":
			dst = appendFloat(dst, math.Float64frombits(binary.LittleEndian.Uint64(v[i:])), 64)
		}
	}
	return append(dst, ']')
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}
