package charset_test

import (
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"renkei/dicom/charset"
)

func TestFold(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty", "", ""},
		{"ASCII folded already", "YAMADA^TAROU", "YAMADA^TAROU"},
		{"ASCII lower case and spaces", "Yamada Tarou^ MD", "YAMADATAROU^MD"},
		{"full-width ASCII", "ＹＡＭＡＤＡ＾ｔａｒｏｕ", "YAMADA^TAROU"},
		{"katakana with space", "ヤマダ タロウ", "ヤマダタロウ"},
		{"half-width katakana", "ﾔﾏﾀﾞﾀﾛｳ", "ヤマダタロウ"},
		{"hiragana with ideographic space", "やまだ　たろう", "ヤマダタロウ"},
		{"iteration marks", "いすゞ", "イスヾ"},
		{"long vowel mark", "サトー", "サト"},
		{"half-width long vowel mark", "ｻﾄｰ", "サト"},
		{"long vowel typed as minus sign", "サト−", "サト"},
		{"middle dot", "ジョン・スミス", "ジョンスミス"},
		{"variant kanji", "髙﨑", "高崎"},
		{"watanabe", "渡邊 渡邉 渡辺", "渡辺渡辺渡辺"},
		{"saitou", "齋藤齊藤斉藤斎藤", "斎藤斎藤斎藤斎藤"},
		{"old forms", "澤濱嶋櫻廣國眞髮德", "沢浜島桜広国真髪徳"},
		{"supplementary plane variant", "𠮷田", "吉田"},
		{"compatibility ideograph through NFKC", "\uFA10", "塚"},
		{"wildcards and delimiters kept", "ﾔﾏ*^ﾀﾛ?=山田", "ヤマ*^タロ?=山田"},
		{"full-width wildcards become DICOM wildcards", "ヤマ＊", "ヤマ*"},
		{"Latin with accents", "Buc^Jérôme", "BUC^JÉRÔME"},
		{"Greek", "Διονυσιος", "ΔΙΟΝΥΣΙΟΣ"},
		{"invalid UTF-8", "A\xffb", "A\uFFFDB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, charset.Fold(tc.in)); diff != "" {
				t.Errorf("Fold(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestFoldSameKey(t *testing.T) {
	groups := [][]string{
		{"ヤマダ タロウ", "ﾔﾏﾀﾞﾀﾛｳ", "やまだたろう", "ヤマダ　タロウ"},
		{"髙橋", "高橋"},
		{"ｻｲﾄｰ", "サイト", "さいと"},
	}
	for _, g := range groups {
		want := charset.Fold(g[0])
		for _, s := range g[1:] {
			if got := charset.Fold(s); got != want {
				t.Errorf("Fold(%q) = %q, Fold(%q) = %q", s, got, g[0], want)
			}
		}
	}
}

func TestFoldNoAllocASCII(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { charset.Fold("YAMADA^TAROU") }); n != 0 {
		t.Errorf("Fold of a folded ASCII name allocates %v times", n)
	}
}

func FuzzFold(f *testing.F) {
	for _, s := range []string{"", "Yamada^Tarou", "ﾔﾏﾀﾞ ﾀﾛｳ", "やまだ=山田*", "髙﨑", "ǅ", "ﬃ", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := charset.Fold(s)
		if !utf8.ValidString(k) {
			t.Fatalf("Fold(%q) = %q, not UTF-8", s, k)
		}
		if k2 := charset.Fold(k); k2 != k {
			t.Fatalf("Fold not idempotent: Fold(%q) = %q, Fold of that = %q", s, k, k2)
		}
	})
}

func BenchmarkFold(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"ASCII folded", "YAMADA^TAROU"},
		{"ASCII", "Yamada^Tarou"},
		{"kanji", "山田^太郎"},
		{"kanji variants", "髙﨑^德太郎"},
		{"half-width katakana", "ﾔﾏﾀﾞ^ﾀﾛｳ"},
		{"PN three groups", "Yamada^Tarou=山田^太郎=やまだ^たろう"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				charset.Fold(bc.in)
			}
		})
	}
}
