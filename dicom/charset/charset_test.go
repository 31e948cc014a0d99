package charset_test

import (
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom/charset"
)

// cr parses bytes written as the standard writes them, in column/row notation: "05/14 01/11".
func cr(t testing.TB, s string) string {
	t.Helper()
	var b []byte
	for _, f := range strings.Fields(s) {
		col, row, ok := strings.Cut(f, "/")
		c, err1 := strconv.Atoi(col)
		r, err2 := strconv.Atoi(row)
		if !ok || err1 != nil || err2 != nil || c > 15 || r > 15 {
			t.Fatalf("bad column/row %q", f)
		}
		b = append(b, byte(c<<4|r))
	}
	return string(b)
}

// hx parses bytes written in hex, spaces and 0x prefixes ignored: "0x5A 0x68" or "5a 68".
func hx(t testing.TB, s string) string {
	t.Helper()
	s = strings.NewReplacer("0x", "", "0X", "", " ", "", "\n", "", "\t", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return string(b)
}

type decodeCase struct {
	name     string
	terms    []string
	fallback string
	vr       string
	in       string
	want     string
	wantOK   bool
}

func runDecode(t *testing.T, cases []decodeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := charset.New(tc.terms, tc.fallback).Decode([]byte(tc.in), tc.vr)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Decode(%q) text (-want +got):\n%s", tc.in, diff)
			}
			if ok != tc.wantOK {
				t.Errorf("Decode(%q) ok = %v, want %v", tc.in, ok, tc.wantOK)
			}
		})
	}
}

// The examples of the standard, byte for byte.
func TestDecodeStandardExamples(t *testing.T) {
	// PS3.5 H.3.1, Example H.3-1: (0008,0005) \ISO 2022 IR 87. The bytes are those of David Clunie's chrH31.dcm,
	// which encodes this example.
	h31 := hx(t, `59 61 6d 61 64 61 5e 54 61 72 6f 75 3d 1b 24 42 3b 33 45 44 1b 28 42 5e 1b 24 42 42 40 4f 3a 1b 28
		42 3d 1b 24 42 24 64 24 5e 24 40 1b 28 42 5e 1b 24 42 24 3f 24 6d 24 26 1b 28 42`)
	// PS3.5 H.3.2, Example H.3-2: (0008,0005) ISO 2022 IR 13\ISO 2022 IR 87, "Encoded representation".
	h32 := cr(t, `13/04 12/15 12/00 13/14 05/14 12/00 13/11 11/03 03/13 01/11 02/04 04/02 03/11 03/03 04/05 04/04
		01/11 02/08 04/10 05/14 01/11 02/04 04/02 04/02 04/00 04/15 03/10 01/11 02/08 04/10 03/13 01/11 02/04 04/02
		02/04 06/04 02/04 05/14 02/04 04/00 01/11 02/08 04/10 05/14 01/11 02/04 04/02 02/04 03/15 02/04 06/13 02/04
		02/06 01/11 02/08 04/10`)
	// PS3.5 I.2, Example I.2-1: (0008,0005) \ISO 2022 IR 149, "Encoded representation".
	i2 := cr(t, `04/08 06/15 06/14 06/07 05/14 04/07 06/09 06/12 06/04 06/15 06/14 06/07 03/13 01/11 02/04 02/09 04/03
		15/11 15/03 05/14 01/11 02/04 02/09 04/03 13/01 12/14 13/04 13/07 03/13 01/11 02/04 02/09 04/03 12/08 10/11
		05/14 01/11 02/04 02/09 04/03 11/01 14/06 11/05 11/15`)
	// PS3.5 K.2, Example K.2-1: (0008,0005) \ISO 2022 IR 58, "Character encoded representation".
	k2 := hx(t, `0x5A 0x68 0x61 0x6E 0x67 0x5E 0x58 0x69 0x61 0x6F 0x44 0x6F 0x6E 0x67 0x3D 0x1B 0x24 0x29 0x41 0xD5 0xC5
		0x5E 0x1B 0x24 0x29 0x41 0xD0 0xA1 0xB6 0xAB 0x3D 0x20`)
	runDecode(t, []decodeCase{
		{name: "H.3.1 ISO 2022 IR 87", terms: []string{"", "ISO 2022 IR 87"}, vr: "PN", in: h31,
			want: "Yamada^Tarou=山田^太郎=やまだ^たろう", wantOK: true},
		{name: "H.3.2 ISO 2022 IR 13 and IR 87", terms: []string{"ISO 2022 IR 13", "ISO 2022 IR 87"}, vr: "PN", in: h32,
			want: "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう", wantOK: true},
		{name: "I.2 ISO 2022 IR 149", terms: []string{"", "ISO 2022 IR 149"}, vr: "PN", in: i2,
			want: "Hong^Gildong=洪^吉洞=홍^길동", wantOK: true},
		{name: "K.2 ISO 2022 IR 58", terms: []string{"", "ISO 2022 IR 58"}, vr: "PN", in: k2,
			want: "Zhang^XiaoDong=张^小东= ", wantOK: true},
	})
}

func TestDecode(t *testing.T) {
	h31 := "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B"
	h32 := "\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J"
	const h3Want = "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"
	sjis := hx(t, "8e 52 93 63 5e 91 be 98 59") // 山田^太郎 in CP932
	runDecode(t, []decodeCase{
		// Single-byte sets without code extensions (PS3.3 Table C.12-2).
		{name: "no declaration ASCII", vr: "PN", in: "Doe^John", want: "Doe^John", wantOK: true},
		{name: "empty value", terms: []string{"ISO_IR 100"}, vr: "LO", in: "", want: "", wantOK: true},
		{name: "ISO_IR 100 Latin-1", terms: []string{"ISO_IR 100"}, vr: "PN", in: "Buc^J\xe9r\xf4me",
			want: "Buc^Jérôme", wantOK: true},
		{name: "ISO_IR 126 Greek", terms: []string{"ISO_IR 126"}, vr: "LO", in: hx(t, "d9 ec dd e3 e1"),
			want: "Ωμέγα", wantOK: true},
		{name: "ISO_IR 192 UTF-8", terms: []string{"ISO_IR 192"}, vr: "PN", in: "Wang^XiaoDong=王^小東=",
			want: "Wang^XiaoDong=王^小東=", wantOK: true},
		{name: "GB18030", terms: []string{"GB18030"}, vr: "PN", in: "Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=",
			want: "Wang^XiaoDong=王^小东=", wantOK: true},
		{name: "GBK", terms: []string{"GBK"}, vr: "PN", in: "Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=",
			want: "Wang^XiaoDong=王^小东=", wantOK: true},

		// ISO_IR 13: JIS X 0201, ISO-IR 14 in G0 and ISO-IR 13 in G1 (PS3.5 H.1.1).
		{name: "ISO_IR 13 katakana", terms: []string{"ISO_IR 13"}, vr: "PN", in: "\xd4\xcf\xc0\xde^\xc0\xdb\xb3",
			want: "ﾔﾏﾀﾞ^ﾀﾛｳ", wantOK: true},
		{name: "ISO_IR 13 yen sign and overline in text", terms: []string{"ISO_IR 13"}, vr: "LT", in: "100\\ ~",
			want: "100¥ ‾", wantOK: true},
		{name: "ISO_IR 13 05/12 is still the value delimiter", terms: []string{"ISO_IR 13"}, vr: "LO",
			in: "\xb1\\\xb2", want: "ｱ\\ｲ", wantOK: true},
		{name: "ISO_IR 6 backslash in text", vr: "ST", in: `C:\DICOM`, want: `C:\DICOM`, wantOK: true},

		// ISO 2022 state handling (PS3.5 6.1.2.5.3).
		{name: "05/12 inside a JIS X 0208 pair is not a delimiter", terms: []string{"", "ISO 2022 IR 87"}, vr: "LO",
			in: "\x1b$B%\\\x1b(B\\ABC", want: "ボ\\ABC", wantOK: true},
		{name: "G1 returns to value 1 after CR", terms: []string{"ISO 2022 IR 100", "ISO 2022 IR 126"}, vr: "LT",
			in: "\x1b-F\xc4\r\n\xe9", want: "Δ\r\né", wantOK: true},
		{name: "G1 returns to value 1 at ^", terms: []string{"ISO 2022 IR 100", "ISO 2022 IR 144"}, vr: "PN",
			in: "\x1b-L\xbb^\xbb", want: "Л^»", wantOK: true},
		{name: "no reset at ^ outside PN", terms: []string{"ISO 2022 IR 100", "ISO 2022 IR 144"}, vr: "LO",
			in: "\x1b-L\xbb^\xbb", want: "Л^Л", wantOK: true},
		{name: "multiple values with their own escapes",
			terms: []string{"ISO 2022 IR 100", "ISO 2022 IR 144", "ISO 2022 IR 126"}, vr: "PN",
			in:   "Buc^J\xe9r\xf4me\\\x1b\x2d\x46\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2\\\x1b\x2d\x4C\xbb\xee\xda\x63\x65\xdc\xd1\x79\x70\xd3",
			want: "Buc^Jérôme\\Διονυσιος\\Люкceмбypг", wantOK: true},
		{name: "JIS X 0212 (pydicom test_japanese_multi_byte_personname)",
			terms: []string{"ISO 2022 IR 6", "ISO 2022 IR 87", "ISO 2022 IR 159"}, vr: "PN",
			in: hx(t, `4d 6f 72 69 5e 4f 67 61 69 3d 1b 24 42 3f 39 1b 28 42 5e 1b 24 28 44 6c 3f 1b 24 42 33 30 1b 28 42
				3d 1b 24 42 24 62 24 6a 1b 28 42 5e 1b 24 42 24 2a 24 26 24 2c 24 24 1b 28 42`),
			want: "Mori^Ogai=森^鷗外=もり^おうがい", wantOK: true},
		{name: "JIS X 0201, 0208 and 0212 mixed (pydicom test_japanese_multi_byte_encoding)",
			terms: []string{"ISO 2022 IR 13", "ISO 2022 IR 87", "ISO 2022 IR 159"}, vr: "LO",
			in: "\x1b$B$\"\x1b(Ja\x1b)I\xb1\x1b$B%\"\x1b$(DmN\x1b(J", want: "あaｱア齩", wantOK: true},

		// Mislabels and undeclared data, as Japanese senders produce them.
		{name: "mislabel ISO_IR 13 with ISO 2022 IR 87", terms: []string{"ISO_IR 13", "ISO 2022 IR 87"}, vr: "PN",
			in: h32, want: h3Want, wantOK: true},
		{name: "mislabel ISO 2022 IR 13 with ISO_IR 87", terms: []string{"ISO 2022 IR 13", "ISO_IR 87"}, vr: "PN",
			in: h32, want: h3Want, wantOK: true},
		{name: "terms in the wrong order", terms: []string{"ISO 2022 IR 87", "ISO 2022 IR 13"}, vr: "PN",
			in: h32, want: h3Want, wantOK: true},
		{name: "escapes without a declaration", vr: "PN", in: h31,
			want: "Yamada^Tarou=山田^太郎=やまだ^たろう", wantOK: true},
		{name: "escapes under ISO_IR 192", terms: []string{"ISO_IR 192"}, vr: "PN", in: h31,
			want: "Yamada^Tarou=山田^太郎=やまだ^たろう", wantOK: true},
		{name: "missing escape after a delimiter: declared G1 set used",
			terms: []string{"", "ISO 2022 IR 13"}, vr: "PN",
			in: "ASCII+\x1b\x29\x49\xd4\xcf\xc0\xde\x5e\xc0\xdb\xb3", want: "ASCII+ﾔﾏﾀﾞ^ﾀﾛｳ", wantOK: true},
		{name: "undeclared CP932 with CP932 fallback", fallback: "CP932", vr: "PN", in: sjis,
			want: "山田^太郎", wantOK: true},
		{name: "undeclared CP932 with SHIFT_JIS fallback", fallback: "SHIFT_JIS", vr: "PN", in: sjis,
			want: "山田^太郎", wantOK: true},
		{name: "CP932 trail byte 05/12 is not a delimiter", fallback: "CP932", vr: "LO",
			in: hx(t, "83 5c 83 6a 81 5b 5c 95 5c"), want: "ソニー\\表", wantOK: true},
		{name: "CP932 IBM extension kanji", fallback: "CP932", vr: "PN", in: hx(t, "ee e0 ed 95 5e 88 ea 98 59"),
			want: "髙﨑^一郎", wantOK: true},
		{name: "ISO_IR 192 label on CP932 bytes with CP932 fallback", terms: []string{"ISO_IR 192"},
			fallback: "CP932", vr: "PN", in: sjis, want: "山田^太郎", wantOK: true},
		{name: "ISO 2022 IR 87 label on CP932 bytes with CP932 fallback", terms: []string{"", "ISO 2022 IR 87"},
			fallback: "CP932", vr: "PN", in: sjis, want: "山田^太郎", wantOK: true},
		{name: "ISO 2022 IR 13 label on CP932 kanji with CP932 fallback",
			terms: []string{"ISO 2022 IR 13", "ISO 2022 IR 87"}, fallback: "CP932", vr: "PN",
			in: sjis + "=\xd4\xcf\xc0\xde^\xc0\xdb\xb3", want: "山田^太郎=ﾔﾏﾀﾞ^ﾀﾛｳ", wantOK: true},
		{name: "ISO_IR 192 label on CP932 bytes without fallback", terms: []string{"ISO_IR 192"}, vr: "PN",
			in: sjis, want: "\uFFFDR\uFFFDc^\uFFFD\uFFFD\uFFFDY", wantOK: false},
		{name: "undeclared Latin-1 without fallback: Latin-1, not ok", vr: "PN", in: "Buc^J\xe9r\xf4me",
			want: "Buc^Jérôme", wantOK: false},
		{name: "undeclared Latin-1 with ISO_IR 100 fallback", fallback: "ISO_IR 100", vr: "PN",
			in: "Buc^J\xe9r\xf4me", want: "Buc^Jérôme", wantOK: true},
		{name: "fallback as a term list", fallback: `ISO 2022 IR 13\ISO 2022 IR 87`, vr: "PN", in: h32,
			want: h3Want, wantOK: true},
		{name: "fallback as a WHATWG label", fallback: "euc-jp", vr: "LO", in: "\xbb\xb3\xc5\xc4",
			want: "山田", wantOK: true},
		{name: "unknown term falls back", terms: []string{"ISO_IR 999"}, fallback: "ISO_IR 192", vr: "PN",
			in: "山田^太郎", want: "山田^太郎", wantOK: true},
		{name: "unknown second term is ignored", terms: []string{"", "ISO 2022 IR 87", "JAPANESE"}, vr: "PN",
			in: h31, want: "Yamada^Tarou=山田^太郎=やまだ^たろう", wantOK: true},
		{name: "lenient spelling", terms: []string{"iso-ir-100 "}, vr: "PN", in: "Buc^J\xe9r\xf4me",
			want: "Buc^Jérôme", wantOK: true},

		// Bytes that nothing decodes.
		{name: "unassigned JIS X 0208 row", terms: []string{"", "ISO 2022 IR 87"}, vr: "LO",
			in: "A\x1b$B\x29\x21\x1b(BB", want: "A\uFFFDB", wantOK: false},
		{name: "truncated JIS X 0208 pair", terms: []string{"", "ISO 2022 IR 87"}, vr: "LO",
			in: "\x1b$B;", want: "\uFFFD", wantOK: false},
		{name: "unknown escape sequence", terms: []string{"", "ISO 2022 IR 87"}, vr: "LO",
			in: "A\x1b$)ZB", want: "A\uFFFDB", wantOK: false},
		{name: "truncated escape sequence", terms: []string{"", "ISO 2022 IR 87"}, vr: "LO",
			in: "A\x1b$", want: "A\uFFFD$", wantOK: false},
		{name: "GR byte with nothing in G1 and no fallback", terms: []string{"", "ISO 2022 IR 87"}, vr: "LO",
			in: "A\xe9", want: "A\uFFFD", wantOK: false},

		// VRs outside the scope of (0008,0005) are the default repertoire (PS3.5 6.1.2.2).
		{name: "CS is ASCII", terms: []string{"ISO_IR 192"}, vr: "CS", in: `ORIGINAL\PRIMARY`,
			want: `ORIGINAL\PRIMARY`, wantOK: true},
		{name: "CS with a high byte", terms: []string{"ISO_IR 100"}, vr: "CS", in: "ABC\xe9",
			want: "ABC\uFFFD", wantOK: false},
	})
}

// The single-byte code extensions of pydicom's tests (ENCODED_NAMES in tests/test_charset.py, after David Clunie's
// example files), each as value 2 after an empty value 1.
func TestDecodeSingleByteCodeExtensions(t *testing.T) {
	cases := []struct{ term, want, in string }{
		{"ISO 2022 IR 13", "ﾔﾏﾀﾞ^ﾀﾛｳ", "\x1b\x29\x49\xd4\xcf\xc0\xde\x5e\x1b\x29\x49\xc0\xdb\xb3"},
		{"ISO 2022 IR 100", "Buc^Jérôme", "\x1b\x2d\x41\x42\x75\x63\x5e\x1b\x2d\x41\x4a\xe9\x72\xf4\x6d\x65"},
		{"ISO 2022 IR 101", "Wałęsa", "\x1b\x2d\x42\x57\x61\xb3\xea\x73\x61"},
		{"ISO 2022 IR 109", "antaŭnomo", "\x1b\x2d\x43\x61\x6e\x74\x61\xfd\x6e\x6f\x6d\x6f"},
		{"ISO 2022 IR 110", "vārds", "\x1b\x2d\x44\x76\xe0\x72\x64\x73"},
		{"ISO 2022 IR 127", "قباني^لنزار", "\x1b\x2d\x47\xe2\xc8\xc7\xe6\xea\x5e\x1b\x2d\x47\xe4\xe6\xd2\xc7\xd1"},
		{"ISO 2022 IR 126", "Διονυσιος", "\x1b\x2d\x46\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2"},
		{"ISO 2022 IR 138", "שרון^דבורה", "\x1b\x2d\x48\xf9\xf8\xe5\xef\x5e\x1b\x2d\x48\xe3\xe1\xe5\xf8\xe4"},
		{"ISO 2022 IR 144", "Люкceмбypг", "\x1b\x2d\x4c\xbb\xee\xda\x63\x65\xdc\xd1\x79\x70\xd3"},
		{"ISO 2022 IR 148", "Çavuşoğlu", "\x1b\x2d\x4d\xc7\x61\x76\x75\xfe\x6f\xf0\x6c\x75"},
		{"ISO 2022 IR 166", "นามสกุล", "\x1b\x2d\x54\xb9\xd2\xc1\xca\xa1\xd8\xc5"},
	}
	for _, tc := range cases {
		t.Run(tc.term, func(t *testing.T) {
			got, ok := charset.New([]string{"", tc.term}, "").Decode([]byte("ASCII+"+tc.in), "PN")
			if diff := cmp.Diff("ASCII+"+tc.want, got); diff != "" || !ok {
				t.Errorf("ok = %v, text (-want +got):\n%s", ok, diff)
			}
		})
	}
}

func TestDecoderZeroValue(t *testing.T) {
	var d charset.Decoder
	got, ok := d.Decode([]byte("Doe^John"), "PN")
	if got != "Doe^John" || !ok {
		t.Errorf("zero Decoder: %q, %v", got, ok)
	}
}

func BenchmarkDecode(b *testing.B) {
	cases := []struct {
		name  string
		terms []string
		in    string
	}{
		{"ASCII", []string{"ISO_IR 100"}, "YAMADA^TAROU"},
		{"H.3.2", []string{"ISO 2022 IR 13", "ISO 2022 IR 87"},
			"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J"},
		{"UTF-8", []string{"ISO_IR 192"}, "Yamada^Tarou=山田^太郎=やまだ^たろう"},
	}
	for _, bc := range cases {
		d := charset.New(bc.terms, "CP932")
		in := []byte(bc.in)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d.Decode(in, "PN")
			}
		})
	}
}
