package charset

import (
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// gset is one graphic character set that an ISO 2022 escape sequence can designate into G0 or G1
// (PS3.3 Table C.12-3 and C.12-4; PS3.5 Table H.1-1 and H.1-2).
type gset uint8

const (
	gNone     gset = iota
	gASCII         // ISO-IR 6
	gRomaji        // ISO-IR 14, JIS X 0201 roman: ASCII but 05/12 is YEN SIGN and 07/14 OVERLINE (PS3.5 H.1.1)
	gKatakana      // ISO-IR 13, JIS X 0201 katakana
	gJIS0208       // ISO-IR 87 (and ISO-IR 42, its 1978 edition), two bytes
	gJIS0212       // ISO-IR 159, two bytes
	gGB2312        // ISO-IR 58, two bytes
	gKSX1001       // ISO-IR 149, two bytes
	gLatin1        // ISO-IR 100 and the other 96-character sets below: right halves of ISO 8859
	gLatin2        // ISO-IR 101
	gLatin3        // ISO-IR 109
	gLatin4        // ISO-IR 110
	gCyrillic      // ISO-IR 144
	gArabic        // ISO-IR 127
	gGreek         // ISO-IR 126
	gHebrew        // ISO-IR 138
	gLatin5        // ISO-IR 148
	gThai          // ISO-IR 166
	gLatin9        // ISO-IR 203
)

func (g gset) double() bool { return g >= gJIS0208 && g <= gKSX1001 }

// charmaps holds the ISO 8859 part whose right half is each 96-character set.
var charmaps = [...]*charmap.Charmap{
	gLatin1:   charmap.ISO8859_1,
	gLatin2:   charmap.ISO8859_2,
	gLatin3:   charmap.ISO8859_3,
	gLatin4:   charmap.ISO8859_4,
	gCyrillic: charmap.ISO8859_5,
	gArabic:   charmap.ISO8859_6,
	gGreek:    charmap.ISO8859_7,
	gHebrew:   charmap.ISO8859_8,
	gLatin5:   charmap.ISO8859_9,
	gThai:     charmap.Windows874, // TIS 620 in its right half, which is all G1 uses
	gLatin9:   charmap.ISO8859_15,
}

// escapes maps the bytes after ESC of each designation DICOM knows to the set and the register it designates
// (PS3.3 Table C.12-3/C.12-4, PS3.5 Table H.1-1/H.1-2). ESC ( I, ESC $ @, ESC $ ) B/D and ESC ) J are not DICOM
// Defined Terms but are accepted, since they are unambiguous and turn up in Japanese data.
var escapes = map[string]struct {
	set gset
	g1  bool
}{
	"(B":  {gASCII, false},
	"(J":  {gRomaji, false},
	"(I":  {gKatakana, false},
	")I":  {gKatakana, true},
	")J":  {gRomaji, true},
	"$B":  {gJIS0208, false},
	"$@":  {gJIS0208, false},
	"$(B": {gJIS0208, false},
	"$(D": {gJIS0212, false},
	"$)B": {gJIS0208, true},
	"$)D": {gJIS0212, true},
	"$)A": {gGB2312, true},
	"$)C": {gKSX1001, true},
	"-A":  {gLatin1, true},
	"-B":  {gLatin2, true},
	"-C":  {gLatin3, true},
	"-D":  {gLatin4, true},
	"-L":  {gCyrillic, true},
	"-G":  {gArabic, true},
	"-F":  {gGreek, true},
	"-H":  {gHebrew, true},
	"-M":  {gLatin5, true},
	"-T":  {gThai, true},
	"-b":  {gLatin9, true},
}

const esc = 0x1b

// parseEscape reads the escape sequence at the start of v (v[0] is ESC): ESC, intermediate bytes 02/00–02/15, one
// final byte 03/00–07/14 (ISO/IEC 2022 §13). n is its length, or 0 if v does not hold a whole sequence.
func parseEscape(v []byte) (n int, seq []byte) {
	for i := 1; i < len(v) && i <= 4; i++ {
		switch c := v[i]; {
		case c >= 0x20 && c <= 0x2f:
			continue
		case c >= 0x30 && c <= 0x7e && i > 1:
			return i + 1, v[1 : i+1]
		}
		return 0, nil
	}
	return 0, nil
}

// hasEscape reports whether v holds a designation escape sequence DICOM knows.
func hasEscape(v []byte) bool {
	for i := 0; i < len(v); i++ {
		if v[i] == esc {
			if n, seq := parseEscape(v[i:]); n > 0 {
				if _, ok := escapes[string(seq)]; ok {
					return true
				}
			}
		}
	}
	return false
}

// decode7 decodes one 7-bit code c (02/01–07/14) of a single-byte set, 0 if the set has no character there.
func (g gset) decode7(c byte) rune {
	switch g {
	case gASCII:
		return rune(c)
	case gRomaji:
		switch c {
		case 0x5c:
			return '\u00a5' // YEN SIGN
		case 0x7e:
			return '\u203e' // OVERLINE
		}
		return rune(c)
	case gKatakana:
		if c >= 0x21 && c <= 0x5f {
			return 0xff40 + rune(c) // 02/01 is U+FF61 HALFWIDTH IDEOGRAPHIC FULL STOP … 05/15 U+FF9F
		}
	}
	return 0
}

// decodeGR decodes one byte 08/00–15/15 of a single-byte set invoked into GR, 0 if the set has no character there.
func (g gset) decodeGR(c byte) rune {
	if g >= gLatin1 {
		if r := charmaps[g].DecodeByte(c); r != utf8.RuneError {
			return r
		}
		return 0
	}
	if c < 0xa1 || c == 0xff {
		return 0
	}
	return g.decode7(c & 0x7f)
}

// decode2 decodes one character of a two-byte set from its row and cell, both 1–94; 0 if there is none.
func (g gset) decode2(row, cell byte) rune {
	if row < 1 || row > 94 || cell < 1 || cell > 94 {
		return 0
	}
	var t *[94 * 94]rune
	switch g {
	case gJIS0208:
		t = jis0208()
	case gJIS0212:
		t = jis0212()
	case gGB2312:
		t = gb2312()
	case gKSX1001:
		t = ksx1001()
	default:
		return 0
	}
	return t[int(row-1)*94+int(cell-1)]
}

// The two-byte tables are taken, once and on first use, from x/text's EUC decoders, which hold these sets in the
// same 94×94 layout: EUC-JP is JIS X 0208 in GR and JIS X 0212 after SS2 08/15; EUC-KR (CP949) is KS X 1001 in GR;
// GBK is GB 2312 in GR.
var (
	jis0208 = sync.OnceValue(func() *[94 * 94]rune { return table(japanese.EUCJP, nil) })
	jis0212 = sync.OnceValue(func() *[94 * 94]rune { return table(japanese.EUCJP, []byte{0x8f}) })
	gb2312  = sync.OnceValue(func() *[94 * 94]rune { return table(simplifiedchinese.GBK, nil) })
	ksx1001 = sync.OnceValue(func() *[94 * 94]rune { return table(korean.EUCKR, nil) })
)

func table(e encoding.Encoding, prefix []byte) *[94 * 94]rune {
	t := new([94 * 94]rune)
	dec := e.NewDecoder()
	src := append(prefix[:len(prefix):len(prefix)], 0, 0)
	var dst [16]byte
	for row := 0; row < 94; row++ {
		for cell := 0; cell < 94; cell++ {
			src[len(src)-2], src[len(src)-1] = byte(0xa1+row), byte(0xa1+cell)
			dec.Reset()
			n, _, err := dec.Transform(dst[:], src, true)
			if err != nil {
				continue
			}
			r, size := utf8.DecodeRune(dst[:n])
			if r == utf8.RuneError || size != n {
				continue
			}
			t[row*94+cell] = r
		}
	}
	return t
}

// vrKind says which delimiters a VR has (PS3.5 6.1.2.5.3, 6.2, 6.4).
type vrKind uint8

const (
	vrASCII vrKind = iota // AE, CS, DA, … : the default repertoire only
	vrMulti               // SH, LO, UC: 05/12 separates values
	vrPN                  // PN: 05/12 separates values; ^ and = separate components and groups
	vrText                // ST, LT, UT: one value; 05/12 is a character
)

// decode2022 decodes v with the ISO 2022 code extension technique of PS3.5 6.1.2.5, starting in (and returning
// to) the initial state g0/g1. alt are the G1 sets the data set declares, tried for a GR byte when nothing is
// designated to G1 (a sender that forgot an escape). It reports whether some bytes could not be decoded, which
// then appear as U+FFFD.
func decode2022(b *strings.Builder, v []byte, vk vrKind, g0init, g1init gset, alt []gset) (bad bool) {
	g0, g1 := g0init, g1init
	bad1 := func() {
		b.WriteRune(utf8.RuneError)
		bad = true
	}
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case c == esc:
			n, seq := parseEscape(v[i:])
			if n == 0 {
				bad1()
				i++
				continue
			}
			if d, ok := escapes[string(seq)]; !ok {
				bad1()
			} else if d.g1 {
				g1 = d.set
			} else {
				g0 = d.set
			}
			i += n

		case c < 0x20 || c == 0x7f:
			// PS3.5 6.1.2.5.3: the initial set is active again before CR, LF, FF, TAB and every other control
			// character.
			b.WriteByte(c)
			g0, g1 = g0init, g1init
			i++

		case c == ' ':
			// SPACE is 02/00 in every G0 state, also between two-byte characters (PS3.5 H.2).
			b.WriteByte(c)
			i++

		case c < 0x80 && g0.double():
			// A two-byte G0 set takes its bytes in pairs, and a pair can contain 05/12, ^ or =: these are
			// delimiters only as single bytes (PS3.5 6.1.2.3).
			if i+1 < len(v) && v[i+1] > 0x20 && v[i+1] < 0x7f {
				if r := g0.decode2(c-0x20, v[i+1]-0x20); r != 0 {
					b.WriteRune(r)
				} else {
					bad1()
				}
				i += 2
				continue
			}
			bad1()
			i++

		case c < 0x80:
			if isDelimiter(c, vk) {
				// PS3.5 6.1.2.5.3: the initial state is active again before each delimiter; the delimiter is
				// the single byte, whatever glyph G0 gives it (05/12 is a delimiter under ISO-IR 14 too, H.1.1).
				b.WriteByte(c)
				g0, g1 = g0init, g1init
				i++
				continue
			}
			if r := g0.decode7(c); r != 0 {
				b.WriteRune(r)
			} else {
				bad1()
			}
			i++

		default:
			set := g1
			if set == gNone {
				set = guessG1(v[i:], alt)
			}
			if set.double() {
				if i+1 < len(v) && c > 0xa0 && c < 0xff && v[i+1] > 0xa0 && v[i+1] < 0xff {
					if r := set.decode2(c-0xa0, v[i+1]-0xa0); r != 0 {
						b.WriteRune(r)
					} else {
						bad1()
					}
					i += 2
					continue
				}
				bad1()
				i++
				continue
			}
			if r := set.decodeGR(c); r != 0 {
				b.WriteRune(r)
			} else {
				bad1()
			}
			i++
		}
	}
	return bad
}

// guessG1 returns the first declared G1 set that decodes the character at the start of v.
func guessG1(v []byte, alt []gset) gset {
	for _, g := range alt {
		if g.double() {
			if len(v) > 1 && v[0] > 0xa0 && v[0] < 0xff && v[1] > 0xa0 && v[1] < 0xff && g.decode2(v[0]-0xa0, v[1]-0xa0) != 0 {
				return g
			}
		} else if g.decodeGR(v[0]) != 0 {
			return g
		}
	}
	return gNone
}

func isDelimiter(c byte, vk vrKind) bool {
	switch vk {
	case vrPN:
		return c == '\\' || c == '^' || c == '='
	case vrMulti:
		return c == '\\'
	}
	return false
}
