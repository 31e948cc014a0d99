package charset

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// Encoding is the inverse of the decoding (PS3.5 6.1.2.5; Annex H for Japanese, I for Korean, J for Chinese), for the
// sets the decoder knows. A C-FIND SCP answers in the character set of the request when its values can be written in
// it (PS3.4 C.4.1.1.3.2 lets it answer in any set it declares; a Japanese workstation that asked in ISO 2022 IR 87
// expects that).

// escape is the designation sequence of each set, after ESC (PS3.3 Tables C.12-3, C.12-4).
var escape = [...]string{
	gASCII: "(B", gRomaji: "(J", gKatakana: ")I", gJIS0208: "$B", gJIS0212: "$(D", gGB2312: "$)A", gKSX1001: "$)C",
	gLatin1: "-A", gLatin2: "-B", gLatin3: "-C", gLatin4: "-D", gCyrillic: "-L", gArabic: "-G", gGreek: "-F",
	gHebrew: "-H", gLatin5: "-M", gThai: "-T", gLatin9: "-b",
}

// g1 reports whether the set is designated into G1 and written with the high bit set.
func (g gset) g1() bool { return g == gKatakana || g >= gGB2312 }

// Encoder writes UTF-8 text in the character set of a SpecificCharacterSet value: the inverse of Decoder, used to
// answer a query in the character set it was asked in.
type Encoder struct {
	valid      bool // false: the terms cannot be used for an answer (unknown first term, or a multi-byte set first)
	utf8       bool
	stateless  encoding.Encoding // GB18030, GBK
	init0      gset              // ISO 2022: the initial G0 and G1, from value 1
	init1      gset
	sets       []gset // ISO 2022: every set the terms declare
	extensions bool   // escape sequences may be written (an ISO 2022 term, or several values)
}

// termKey normalises a Defined Term the lenient way the decoder reads it: case, spaces, '_' and '-' do not matter.
func termKey(term string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return -1
	}, term)
}

// irNumber returns the ISO-IR number of a term ("ISO_IR 100", "ISO 2022 IR 87"), 6 for the empty value 1, and
// whether the term uses code extensions.
func irNumber(term string) (n int, ext, ok bool) {
	key := termKey(term)
	switch {
	case key == "":
		return 6, false, true
	case strings.HasPrefix(key, "ISO2022IR"):
		n, err := strconv.Atoi(key[len("ISO2022IR"):])
		return n, true, err == nil
	case strings.HasPrefix(key, "ISOIR"):
		n, err := strconv.Atoi(key[len("ISOIR"):])
		return n, false, err == nil
	}
	return 0, false, false
}

// NewEncoder returns the encoder for the terms of a SpecificCharacterSet (nil: the default repertoire).
func NewEncoder(terms []string) *Encoder {
	e := &Encoder{valid: true, init0: gASCII, sets: []gset{gASCII}}
	if len(terms) == 0 {
		return e
	}
	switch termKey(terms[0]) {
	case "ISOIR192":
		return &Encoder{valid: true, utf8: true}
	case "GB18030":
		return &Encoder{valid: true, stateless: simplifiedchinese.GB18030}
	case "GBK":
		return &Encoder{valid: true, stateless: simplifiedchinese.GBK}
	}
	n, ext, ok := irNumber(terms[0])
	g, known := irSets[n]
	if !ok || !known || g[0] == gJIS0208 || g[0] == gJIS0212 || g[0] == gNone {
		// PS3.3 C.12.1.1.2: a multi-byte set may only be value 2 and later.
		return &Encoder{}
	}
	e.init0, e.init1, e.sets = g[0], g[1], nil
	e.extensions = ext || len(terms) > 1
	for _, t := range terms {
		n, _, ok := irNumber(t)
		if g, known := irSets[n]; ok && known {
			for _, s := range g {
				if s != gNone {
					e.sets = append(e.sets, s)
				}
			}
		}
	}
	return e
}

// delimiter reports whether r delimits values, components or lines in a value of the VR: delimiters are written in
// the initial state (PS3.5 6.1.2.5.3).
func delimiter(r rune, vr string) bool {
	switch vr {
	case "PN":
		return r == '\\' || r == '^' || r == '='
	case "SH", "LO", "UC":
		return r == '\\'
	case "ST", "LT", "UT":
		return r == '\r' || r == '\n' || r == '\f' || r == '\t'
	}
	return false
}

// encodeSet returns the bytes of r in set g: 7-bit codes for G0 sets, 8-bit for G1 sets.
func encodeSet(g gset, r rune, vr string) ([]byte, bool) {
	switch g {
	case gASCII:
		if r < 0x80 {
			return []byte{byte(r)}, true
		}
	case gRomaji:
		text := vr == "ST" || vr == "LT" || vr == "UT"
		switch {
		case r < 0x80 && r != '\\' && r != '~':
			return []byte{byte(r)}, true
		case r == '¥' && text:
			return []byte{0x5c}, true
		case r == '‾':
			return []byte{0x7e}, true
		}
	case gKatakana:
		if r >= 0xFF61 && r <= 0xFF9F {
			return []byte{byte(r-0xFF61) + 0xA1}, true
		}
	case gJIS0208, gJIS0212:
		tables := jisTables()
		if code, ok := tables[g-gJIS0208][r]; ok {
			return []byte{byte(code >> 8), byte(code)}, true
		}
	case gGB2312, gKSX1001:
		if r < 0x80 {
			return nil, false
		}
		enc := simplifiedchinese.GBK
		if g == gKSX1001 {
			enc = korean.EUCKR
		}
		b, err := enc.NewEncoder().Bytes([]byte(string(r)))
		if err == nil && len(b) == 2 && b[0] >= 0xA1 && b[0] <= 0xFE && b[1] >= 0xA1 && b[1] <= 0xFE {
			return b, true
		}
	default:
		if cm := charmaps[g]; cm != nil && r >= 0x80 {
			if b, ok := cm.EncodeRune(r); ok && b >= 0xA0 {
				return []byte{b}, true
			}
		}
	}
	return nil, false
}

// jisTables returns the inverse of the JIS X 0208 (rows 1–8, 16–84) and JIS X 0212 tables that dicom/charset
// decodes with (x/text's EUC-JP), built once: rune → the two 7-bit bytes. x/text's EUC-JP encoder cannot be used as
// it is: it writes JIS X 0208 extensions for characters that JIS X 0212 has (髙), and never JIS X 0212.
var jisTables = sync.OnceValue(func() [2]map[rune]uint16 {
	t := [2]map[rune]uint16{{}, {}}
	dec := japanese.EUCJP.NewDecoder()
	for i, prefix := range [][]byte{nil, {0x8F}} {
		for row := 1; row <= 94; row++ {
			if i == 0 && !jis0208Row(row) {
				continue
			}
			for cell := 1; cell <= 94; cell++ {
				b, err := dec.Bytes(append(append([]byte(nil), prefix...), byte(row+0xA0), byte(cell+0xA0)))
				r, size := utf8.DecodeRune(b)
				if err != nil || r == utf8.RuneError || size != len(b) {
					continue
				}
				if _, dup := t[i][r]; !dup {
					t[i][r] = uint16(row+0x20)<<8 | uint16(cell+0x20)
				}
			}
		}
	}
	return t
})

// jis0208Row reports whether a row is one of JIS X 0208's own (1–8 symbols and kana, 16–84 kanji): the EUC-JP
// encoder also writes the NEC and IBM extensions of rows 13 and 89–92 (CP932's), which ISO-IR 87 does not have, and
// which a strict receiver would not decode (髙 is one of them).
func jis0208Row(row int) bool { return row >= 1 && row <= 8 || row >= 16 && row <= 84 }

// encode returns s (UTF-8) in the encoder's character set, for a value of the VR; ok is false when some character
// cannot be written in it.
func (e *Encoder) Encode(s, vr string) ([]byte, bool) {
	switch {
	case !e.valid:
		return nil, false
	case e.utf8:
		return []byte(s), utf8.ValidString(s)
	case e.stateless != nil:
		b, err := e.stateless.NewEncoder().Bytes([]byte(s))
		return b, err == nil
	}
	out := make([]byte, 0, len(s)+8)
	cur0, cur1 := e.init0, e.init1
	designate := func(g gset) bool {
		if !e.extensions {
			return false
		}
		out = append(out, 0x1b)
		out = append(out, escape[g]...)
		return true
	}
	for _, r := range s {
		if r == utf8.RuneError || r == 0x1b {
			return nil, false
		}
		if delimiter(r, vr) {
			// PS3.5 6.1.2.5.3: back to the initial G0 before a delimiter (and G1 is re-designated when next needed).
			if cur0 != e.init0 {
				designate(e.init0)
				cur0 = e.init0
			}
			cur1 = e.init1
			out = append(out, byte(r))
			continue
		}
		if b, ok := encodeSet(cur0, r, vr); ok {
			out = append(out, b...)
			continue
		}
		if cur1 != gNone {
			if b, ok := encodeSet(cur1, r, vr); ok {
				out = append(out, b...)
				continue
			}
		}
		found := false
		for _, g := range e.sets {
			b, ok := encodeSet(g, r, vr)
			if !ok {
				continue
			}
			if !designate(g) {
				return nil, false
			}
			if g.g1() {
				cur1 = g
			} else {
				cur0 = g
			}
			out = append(out, b...)
			found = true
			break
		}
		if !found {
			return nil, false
		}
	}
	if cur0 != e.init0 {
		designate(e.init0)
	}
	return out, true
}
