package dicomtest

import (
	"fmt"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"
)

// charset encodes UTF-8 text into the bytes of one value of Specific Character Set (0008,0005).
type charset struct {
	term   string // the value of (0008,0005); "" means the attribute is absent (default repertoire)
	encode func(s string) ([]byte, error)
}

var (
	// csASCII is the default repertoire, ISO-IR 6 (PS3.5 6.1.2.2), written without (0008,0005).
	csASCII = charset{term: "", encode: encodeASCII}
	// csLatin1 is ISO 8859-1 (PS3.3 Table C.12-2).
	csLatin1 = charset{term: "ISO_IR 100", encode: encodeLatin1}
	// csUTF8 is Unicode in UTF-8 (PS3.3 Table C.12-5).
	csUTF8 = charset{term: "ISO_IR 192", encode: encodeUTF8}
	// csJIS is ISO-IR 6 with JIS X 0208 by code extension, the PS3.5 H.3.1 example.
	csJIS = charset{term: `\ISO 2022 IR 87`, encode: func(s string) ([]byte, error) { return encodeISO2022JP(s, false) }}
	// csKanaJIS is JIS X 0201 (Romaji and half-width Katakana) with JIS X 0208, the PS3.5 H.3.2 example.
	csKanaJIS = charset{term: `ISO 2022 IR 13\ISO 2022 IR 87`, encode: func(s string) ([]byte, error) { return encodeISO2022JP(s, true) }}
)

func encodeASCII(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return nil, fmt.Errorf("%q is not ASCII: set a Specific Character Set", s)
		}
	}
	return []byte(s), nil
}

func encodeLatin1(s string) ([]byte, error) {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, fmt.Errorf("%q: %q is not in ISO 8859-1", s, r)
		}
		b = append(b, byte(r))
	}
	return b, nil
}

func encodeUTF8(s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%q is not valid UTF-8", s)
	}
	return []byte(s), nil
}

// encodeISO2022JP encodes s with ISO 2022 code extensions as PS3.5 6.1.2.5.3 requires for Japanese:
// JIS X 0208 is designated to G0 with ESC $ B, and G0 returns to the default before every delimiter
// ('^', '=', '\\' and any other ASCII character) and at the end of the value, so that each component
// group starts in the initial state. With kana (ISO 2022 IR 13 as the first value) the default G0 is
// JIS X 0201 Romaji (return with ESC ( J) and half-width Katakana is in G1, used without escapes;
// otherwise the default G0 is ASCII (return with ESC ( B). PS3.5 H.3.1 and H.3.2 show the results.
func encodeISO2022JP(s string, kana bool) ([]byte, error) {
	ret := []byte{0x1b, '(', 'B'}
	if kana {
		ret = []byte{0x1b, '(', 'J'}
	}
	enc := japanese.EUCJP.NewEncoder()
	var b []byte
	kanji := false
	for _, r := range s {
		switch {
		case r < 0x80:
			if kanji {
				b = append(b, ret...)
				kanji = false
			}
			b = append(b, byte(r))
		case kana && r >= 0xff61 && r <= 0xff9f:
			b = append(b, byte(r-0xff61+0xa1)) // JIS X 0201 Katakana in GR
		default:
			e, err := enc.String(string(r))
			if err != nil || len(e) != 2 || e[0] < 0xa1 || e[1] < 0xa1 {
				return nil, fmt.Errorf("%q: %q is not in JIS X 0208 (use ISO_IR 192)", s, r)
			}
			if !kanji {
				b = append(b, 0x1b, '$', 'B')
				kanji = true
			}
			b = append(b, e[0]&0x7f, e[1]&0x7f) // EUC-JP is JIS X 0208 with the high bits set
		}
	}
	if kanji {
		b = append(b, ret...)
	}
	return b, nil
}
