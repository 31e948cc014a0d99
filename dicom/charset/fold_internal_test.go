package charset

import (
	"slices"
	"testing"
)

// The path without NFKC must give what the general one gives, for every rune it takes and every half-width kana
// with a sound mark after it.
func TestFoldJapaneseMatchesNFKC(t *testing.T) {
	var inputs []string
	for _, rg := range [][2]rune{
		{0x20, 0x7e}, {0x3000, 0x30ff}, {0xff01, 0xff9f}, {0xfa0e, 0xfa29}, {0x4e00, 0x4fff}, {0x9f00, 0x9fff},
		{0x20b00, 0x20bff},
	} {
		for r := rg[0]; r <= rg[1]; r++ {
			inputs = append(inputs, string(r), "a"+string(r)+"ﾞ", string(r)+"ﾟ")
		}
	}
	for _, p := range variantKanji {
		inputs = append(inputs, string(p[0]), string(p[1]))
	}
	for r := '｡'; r <= 'ﾝ'; r++ {
		inputs = append(inputs, string(r)+"ﾞ", string(r)+"ﾟ", string(r)+"ﾞﾞ", "ﾔ"+string(r)+"ﾟﾀ")
	}
	for _, s := range inputs {
		if k, ok := foldJapanese(s); ok {
			if want := foldUnicode(s); k != want {
				t.Errorf("%q: without NFKC %q, with NFKC %q", s, k, want)
			}
		}
	}
}

func TestVariantKanjiTable(t *testing.T) {
	if !slices.IsSortedFunc(variantKanji[:], func(a, b [2]rune) int { return int(a[0] - b[0]) }) {
		t.Error("variantKanji is not sorted by its first rune")
	}
	for i, p := range variantKanji {
		if i > 0 && variantKanji[i-1][0] == p[0] {
			t.Errorf("%c twice", p[0])
		}
		if _, ok := slices.BinarySearchFunc(variantKanji[:], p[1], func(q [2]rune, r rune) int { return int(q[0] - r) }); ok {
			t.Errorf("%c→%c: the target is itself mapped", p[0], p[1])
		}
	}
}

func FuzzFoldPaths(f *testing.F) {
	for _, s := range []string{"ﾔﾏﾀﾞ ﾀﾛｳ", "やまだ=山田*", "髙﨑^德", "ｳﾞｧｲｵﾘﾝ", "ﾞ", "Ａｂｃ　ｄ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if k, ok := foldJapanese(s); ok {
			if want := foldUnicode(s); k != want {
				t.Fatalf("%q: without NFKC %q, with NFKC %q", s, k, want)
			}
		}
	})
}
