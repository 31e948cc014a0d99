// Package charset decodes the text values of a DICOM data set to UTF-8 according to its Specific Character Set
// (0008,0005), encodes UTF-8 back into such a set (Encoder), and folds text into search keys.
//
// Decoding follows PS3.5 6.1 (Support of Character Repertoires): the single-byte sets ISO_IR 6, 100, 101, 109,
// 110, 126, 127, 138, 144, 148, 166, 203 and 13 (JIS X 0201), the multi-byte sets ISO_IR 192 (UTF-8), GB18030 and
// GBK, and the ISO 2022 code extension technique of 6.1.2.4–6.1.2.5 with ISO 2022 IR 13, 87 (JIS X 0208), 159
// (JIS X 0212), 58 (GB 2312) and 149 (KS X 1001), as explained for Japanese in PS3.5 Annex H, for Korean in Annex I
// and for Chinese in Annexes J and K.
//
// Under ISO_IR 13 and ISO 2022 IR 13, G0 holds ISO-IR 14 (JIS X 0201 roman), so 05/12 decodes to YEN SIGN where
// it is not the value delimiter (in ST, LT and UT) and 07/14 to OVERLINE (PS3.5 H.1.1). pydicom, which decodes
// these terms with Python's shift_jis codec, gives BACKSLASH and TILDE; this package follows the standard.
//
// Real data is messier than the standard, above all Japanese data, and a Decoder reads what the declaration and
// the sender's configuration allow it to: Shift_JIS (CP932) from senders configured to send it, "ISO_IR 13\ISO 2022 IR 87"-style mixes of the
// terms with and without code extensions, escape sequences in values whose data set declares no ISO 2022 term,
// GR bytes whose escape sequence was left out, and values labelled ISO_IR 192 that are not UTF-8.
package charset

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/unicode"
)

// Decoder decodes byte values of one data set according to its SpecificCharacterSet (0008,0005).
// A Decoder is immutable and safe for concurrent use; the zero Decoder is the one New(nil, "") returns.
type Decoder struct {
	primary  *scheme // what the data set declares; nil when it declares only the default repertoire, or nothing known
	fallback *scheme // what the sender is configured to send; nil means Latin-1 as a last guess
}

// scheme is one way of turning bytes into text: either ISO 2022 (with or without code extensions), starting in
// state g0/g1, or one stateless encoding (UTF-8, GB18030, CP932…).
type scheme struct {
	g0, g1 gset   // ISO 2022: the initial state, from value 1 of (0008,0005)
	alt    []gset // ISO 2022: the G1 sets of the other values, for GR bytes when G1 holds nothing
	utf8   bool
	enc    encoding.Encoding
	// asciiSafe says the scheme decodes bytes 00/00–07/15 other than ESC as themselves.
	asciiSafe bool
}

var (
	// defaultScheme is ISO-IR 6 with code extensions, for values that carry escape sequences under a
	// declaration that has none.
	defaultScheme = &scheme{g0: gASCII, asciiSafe: true}
	// latin1Scheme is the last guess for bytes that nothing declared: what dcmtk and pydicom do by default.
	latin1Scheme = &scheme{g0: gASCII, g1: gLatin1, asciiSafe: true}
)

// New builds a decoder for the (possibly multi-valued) SpecificCharacterSet terms as they appear in the data set
// (e.g. nil, ["ISO_IR 192"], ["", "ISO 2022 IR 87"], ["ISO 2022 IR 13", "ISO 2022 IR 87"], ["ISO_IR 13"],
// ["ISO_IR 100"]).
// fallback names the character set to assume when the data set declares none or its declared one cannot decode the
// bytes (a per-sender setting: "" means ISO_IR 6/Latin-1 behaviour, typical Japanese values "ISO_IR 192",
// "SHIFT_JIS"/"CP932"). It is a Defined Term of (0008,0005), several of them separated by a backslash, or an
// encoding label as the WHATWG Encoding Standard names them ("shift_jis", "euc-jp", "gb18030", "windows-1252"),
// or CP932.
// Unknown terms are not an error: they fall back.
//
// The terms are read leniently. Spaces, underscores and hyphens do not matter, and the forms with and without
// code extensions are equivalent ("ISO_IR 87" is read as ISO 2022 IR 87, "ISO_IR 13\ISO 2022 IR 87" as
// ISO 2022 IR 13\ISO 2022 IR 87), since escape sequences are honoured wherever they occur.
func New(terms []string, fallback string) *Decoder {
	d := &Decoder{primary: build(terms, false)}
	if fallback = strings.TrimSpace(fallback); fallback != "" {
		d.fallback = build(strings.Split(fallback, `\`), true)
	}
	return d
}

// Decode returns the UTF-8 text of one raw value of the given VR (PN, SH, LO, ST, LT, UT, UC, and for others plain
// ASCII).
// ok is false when some bytes could not be decoded by any applicable set; the string then holds the best effort
// (undecodable bytes as U+FFFD) and the caller keeps the raw bytes and flags the instance.
//
// value is the whole Value Field: a backslash in the result separates values (SH, LO, UC, PN), and for PN ^ and =
// separate components and component groups; a byte 05/12 inside a multi-byte character is not a delimiter
// (PS3.5 6.1.2.3). Padding is kept. The order of attempts is: the declared character set; then the fallback;
// then, if neither declares anything, Latin-1, whose result is never ok.
func (d *Decoder) Decode(value []byte, vr string) (s string, ok bool) {
	vk := kindOf(vr)
	if vk == vrASCII {
		return decodeASCII(value)
	}
	first := d.primary
	if first == nil {
		first = defaultScheme
	}
	var cands [3]*scheme
	n := 0
	if first.stateless() && hasEscape(value) {
		// Escape sequences under a stateless declaration: try them as ISO 2022 before the declaration.
		cands[n] = defaultScheme
		n++
	}
	cands[n] = first
	n++
	if d.fallback != nil {
		cands[n] = d.fallback
		n++
	}
	if cands[0].asciiSafe && plainASCII(value) {
		return string(value), true
	}
	var best, last string
	for i, sc := range cands[:n] {
		out, ok := sc.decode(value, vk)
		if ok {
			return out, true
		}
		if i == 0 {
			best = out
		}
		last = out
	}
	if d.primary == nil {
		if d.fallback != nil {
			return last, false
		}
		out, _ := latin1Scheme.decode(value, vk)
		return out, false
	}
	return best, false
}

func (sc *scheme) stateless() bool { return sc.utf8 || sc.enc != nil }

func (sc *scheme) decode(v []byte, vk vrKind) (string, bool) {
	switch {
	case sc.utf8:
		if utf8.Valid(v) {
			return string(v), true
		}
		var b strings.Builder
		b.Grow(len(v) + 8)
		for len(v) > 0 {
			r, size := utf8.DecodeRune(v)
			b.WriteRune(r) // RuneError for each byte that is not part of a valid sequence
			v = v[size:]
		}
		return b.String(), false
	case sc.enc != nil:
		out, err := sc.enc.NewDecoder().Bytes(v)
		if err != nil {
			return strings.Repeat("\uFFFD", len(v)), false
		}
		// x/text decoders write U+FFFD for each byte sequence they cannot decode. None of the multi-byte
		// encodings offered here encodes U+FFFD itself except GB18030, whose senders do not.
		return string(out), !strings.ContainsRune(string(out), utf8.RuneError)
	}
	var b strings.Builder
	b.Grow(len(v) + len(v)/2 + 8)
	bad := decode2022(&b, v, vk, sc.g0, sc.g1, sc.alt)
	return b.String(), !bad
}

func kindOf(vr string) vrKind {
	switch vr {
	case "PN":
		return vrPN
	case "SH", "LO", "UC":
		return vrMulti
	case "ST", "LT", "UT":
		return vrText
	}
	return vrASCII
}

// plainASCII reports whether v holds only bytes 00/00–07/15 and no ESC.
func plainASCII(v []byte) bool {
	for _, c := range v {
		if c >= 0x80 || c == esc {
			return false
		}
	}
	return true
}

func decodeASCII(v []byte) (string, bool) {
	ok := true
	for _, c := range v {
		if c >= 0x80 {
			ok = false
			break
		}
	}
	if ok {
		return string(v), true
	}
	var b strings.Builder
	b.Grow(len(v) + 16)
	for _, c := range v {
		if c >= 0x80 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String(), false
}

// build makes the scheme for one list of terms; nil if they declare nothing beyond the default repertoire.
// names allows encoding labels besides Defined Terms (for the fallback).
func build(terms []string, names bool) *scheme {
	if len(terms) == 0 {
		return nil
	}
	first, ok := lookup(terms[0], names)
	if !ok {
		return nil
	}
	if first.stateless() {
		return first
	}
	sc := &scheme{g0: gASCII, g1: first.g1}
	if first.g0 != gNone && !first.g0.double() {
		sc.g0 = first.g0 // a two-byte set as value 1 is read as ISO-IR 6 plus that set
	}
	declared := sc.g0 != gASCII || first.g0.double() || sc.g1 != gNone
	for _, t := range terms[1:] {
		ts, ok := lookup(t, names)
		if !ok || ts.stateless() {
			continue // PS3.3 C.12.1.1.2: UTF-8, GB18030 and GBK allow no code extensions; ignore them here
		}
		if (ts.g0 != gNone && ts.g0 != gASCII) || ts.g1 != gNone {
			declared = true
		}
		if ts.g1 != gNone && ts.g1 != sc.g1 && !slices.Contains(sc.alt, ts.g1) {
			sc.alt = append(sc.alt, ts.g1)
		}
	}
	if !declared {
		return nil
	}
	sc.asciiSafe = sc.g0 == gASCII
	return sc
}

// irSets are the sets of each ISO-IR registration number that is a DICOM Defined Term (PS3.3 Table C.12-2 to
// C.12-5): what it designates to G0 and to G1.
var irSets = map[int][2]gset{
	6:   {gASCII, gNone},
	13:  {gRomaji, gKatakana}, // PS3.5 H.1.1 Note 2: ISO-IR 14 in G0, ISO-IR 13 in G1
	87:  {gJIS0208, gNone},
	159: {gJIS0212, gNone},
	58:  {gNone, gGB2312},
	149: {gNone, gKSX1001},
	100: {gASCII, gLatin1},
	101: {gASCII, gLatin2},
	109: {gASCII, gLatin3},
	110: {gASCII, gLatin4},
	144: {gASCII, gCyrillic},
	127: {gASCII, gArabic},
	126: {gASCII, gGreek},
	138: {gASCII, gHebrew},
	148: {gASCII, gLatin5},
	166: {gASCII, gThai},
	203: {gASCII, gLatin9},
}

// lookup returns the scheme of one term, with only g0/g1 set for ISO 2022 terms. ok is false for unknown terms.
func lookup(term string, names bool) (sc *scheme, ok bool) {
	key := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return -1
	}, term)
	num := ""
	switch {
	case key == "":
		return &scheme{g0: gASCII}, true // an empty value 1 is ISO-IR 6 (PS3.3 C.12.1.1.2)
	case strings.HasPrefix(key, "ISO2022IR"):
		num = key[len("ISO2022IR"):]
	case strings.HasPrefix(key, "ISOIR"):
		num = key[len("ISOIR"):]
	case key == "GB18030":
		return &scheme{enc: simplifiedchinese.GB18030, asciiSafe: true}, true
	case key == "GBK":
		return &scheme{enc: simplifiedchinese.GBK, asciiSafe: true}, true
	}
	if num != "" {
		n, err := strconv.Atoi(num)
		if err != nil {
			return nil, false
		}
		if n == 192 {
			return &scheme{utf8: true, asciiSafe: true}, true
		}
		g, ok := irSets[n]
		if !ok {
			return nil, false
		}
		return &scheme{g0: g[0], g1: g[1]}, true
	}
	if !names {
		return nil, false
	}
	switch key {
	case "UTF8":
		return &scheme{utf8: true, asciiSafe: true}, true
	case "CP932", "MS932", "WINDOWS31J", "SHIFTJIS", "SJIS":
		// x/text's Shift_JIS is the WHATWG one, which is Microsoft's CP932 (NEC and IBM extensions, user-defined
		// area to the Private Use Area).
		return &scheme{enc: japanese.ShiftJIS, asciiSafe: true}, true
	}
	enc, err := htmlindex.Get(strings.TrimSpace(term))
	if err != nil {
		return nil, false
	}
	if enc == unicode.UTF8 {
		return &scheme{utf8: true, asciiSafe: true}, true
	}
	return &scheme{enc: enc, asciiSafe: asciiSafe(enc)}, true
}

// asciiSafe reports whether enc decodes 00/00–07/15 as themselves (not so for UTF-16 and ISO-2022-JP).
func asciiSafe(enc encoding.Encoding) bool {
	var probe [0x80]byte
	for i := range probe {
		probe[i] = byte(i)
	}
	out, err := enc.NewDecoder().Bytes(probe[:])
	return err == nil && string(out) == string(probe[:])
}
