package charset_test

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"renkei/dicom/charset"
)

var (
	fuzzTerms = [][]string{
		nil,
		{"ISO_IR 100"},
		{"ISO_IR 192"},
		{"ISO_IR 13"},
		{"", "ISO 2022 IR 87"},
		{"ISO 2022 IR 13", "ISO 2022 IR 87"},
		{"ISO 2022 IR 6", "ISO 2022 IR 87", "ISO 2022 IR 159"},
		{"", "ISO 2022 IR 149"},
		{"", "ISO 2022 IR 58"},
		{"ISO 2022 IR 100", "ISO 2022 IR 126", "ISO 2022 IR 144"},
		{"GB18030"},
		{"ISO_IR 999"},
	}
	fuzzFallbacks = []string{"", "CP932", "ISO_IR 192", "ISO_IR 100", `ISO 2022 IR 13\ISO 2022 IR 87`, "utf-16le"}
	fuzzVRs       = []string{"PN", "LO", "SH", "UC", "ST", "LT", "UT", "CS"}
)

func FuzzDecode(f *testing.F) {
	seeds := []string{
		"",
		"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
		"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J",
		"Mori^Ogai=\x1b$B?9\x1b(B^\x1b$(Dl?\x1b$B30\x1b(B",
		"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7",
		"\x8e\x52\x93\x63\x5e\x91\xbe\x98\x59",
		"\x83\x5c\x83\x6a\x81\x5b\x5c\x95\x5c",
		"Buc^J\xe9r\xf4me\\\x1b-F\xc4\xe9",
		"\x1b$B%\\\x1b(B\\ABC\r\n\x1b",
		"\x1b$)Z\x1b$(",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i), uint8(i), uint8(i))
	}
	f.Fuzz(func(t *testing.T, value []byte, term, fallback, vr uint8) {
		terms := fuzzTerms[int(term)%len(fuzzTerms)]
		fb := fuzzFallbacks[int(fallback)%len(fuzzFallbacks)]
		v := fuzzVRs[int(vr)%len(fuzzVRs)]
		s, _ := charset.New(terms, fb).Decode(value, v)
		if !utf8.ValidString(s) {
			t.Fatalf("Decode(%q) with %q, %q, %s = %q: not UTF-8", value, terms, fb, v, s)
		}
		// Every value delimiter in the text is a byte 05/12 of the input.
		if strings.Count(s, `\`) > bytes.Count(value, []byte{'\\'}) {
			t.Fatalf("Decode(%q) with %q, %q, %s = %q: more backslashes than the input", value, terms, fb, v, s)
		}
	})
}
