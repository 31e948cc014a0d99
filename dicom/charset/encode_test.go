package charset

import (
	"testing"
)

func TestEncoder(t *testing.T) {
	tests := []struct {
		name  string
		terms []string
		in    string
		vr    string
		want  string // "" with ok false: cannot be written in the set
		ok    bool
	}{
		{"PS3.5 H.3.1", []string{"", "ISO 2022 IR 87"}, "Yamada^Tarou=山田^太郎=やまだ^たろう", "PN",
			"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B", true},
		{"PS3.5 H.3.2", []string{"ISO 2022 IR 13", "ISO 2022 IR 87"}, "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう", "PN",
			"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J", true},
		{"PS3.5 I.2 Korean", []string{"", "ISO 2022 IR 149"}, "Hong^Gildong=洪^吉洞=홍^길동", "PN",
			"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf", true},
		{"values of LO return to ASCII before the delimiter", []string{"", "ISO 2022 IR 87"}, "胸部\\CT", "LO", "\x1b$B6;It\x1b(B\\CT", true},
		{"lines of LT", []string{"", "ISO 2022 IR 87"}, "所見\r\nなし", "LT", "\x1b$B=j8+\x1b(B\r\n\x1b$B$J$7\x1b(B", true},
		{"JIS X 0212", []string{"", "ISO 2022 IR 87", "ISO 2022 IR 159"}, "丂橋", "PN", "\x1b$(D0!\x1b$B66\x1b(B", true},
		{"髙 is not in JIS X 0208", []string{"", "ISO 2022 IR 87"}, "髙橋", "PN", "", false},
		{"half-width katakana needs IR 13", []string{"", "ISO 2022 IR 87"}, "ﾔﾏﾀﾞ", "PN", "", false},
		{"ISO_IR 13 has no tilde", []string{"ISO_IR 13"}, "a~b", "LO", "", false},
		{"ISO_IR 13", []string{"ISO_IR 13"}, "ﾔﾏﾀﾞ^ﾀﾛｳ", "PN", "\xd4\xcf\xc0\xde^\xc0\xdb\xb3", true},
		{"ISO_IR 100", []string{"ISO_IR 100"}, "Buc^Jérôme", "PN", "Buc^J\xe9r\xf4me", true},
		{"ISO_IR 100 has no kanji", []string{"ISO_IR 100"}, "山田", "PN", "", false},
		{"Latin-1 by code extension", []string{"ISO 2022 IR 100", "ISO 2022 IR 144"}, "Jérôme=Ёж", "PN", "J\xe9r\xf4me=\x1b-L\xa1\xd6", true},
		{"ISO_IR 192", []string{"ISO_IR 192"}, "髙橋", "PN", "髙橋", true},
		{"GB18030", []string{"GB18030"}, "王", "PN", "\xcd\xf5", true},
		{"default repertoire", nil, "Tanaka^Yuki", "PN", "Tanaka^Yuki", true},
		{"default repertoire has no é", nil, "é", "PN", "", false},
		{"a multi-byte set as value 1 is not used (PS3.3 C.12.1.1.2)", []string{"ISO 2022 IR 87"}, "ABC", "PN", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := NewEncoder(tc.terms).Encode(tc.in, tc.vr)
			if ok != tc.ok || ok && string(got) != tc.want {
				t.Fatalf("encode = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
			if !ok {
				return
			}
			// What is written decodes back to the same text.
			back, good := New(tc.terms, "").Decode(got, tc.vr)
			if !good || back != tc.in {
				t.Errorf("decodes back to %q (%v)", back, good)
			}
		})
	}
}
