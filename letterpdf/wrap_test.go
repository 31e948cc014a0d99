package letterpdf

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// em measures as IPAex does at 1 pt: full-width characters 1, ASCII 0.5.
func em(s string) float64 {
	w := 0.0
	for _, r := range s {
		if r < 0x80 {
			w += 0.5
		} else {
			w++
		}
	}
	return w
}

func texts(ls []line) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.text)
	}
	return out
}

func TestWrap(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		width float64
		want  []string
	}{
		{"fits", "胸痛あり", 10, []string{"胸痛あり"}},
		{"breaks between any two characters", "あいうえおかきくけこさし", 5, []string{"あいうえお", "かきくけこ", "さし"}},
		{"no 。 at a line start", "あいうえお。かきく", 5, []string{"あいうえ", "お。かきく"}},
		{"no 」、 at a line start", "あいうえお」、かき", 5, []string{"あいうえ", "お」、かき"}},
		{"no 「 at a line end", "あいうえ「おか」", 5, []string{"あいうえ", "「おか」"}},
		{"ASCII words stay whole", "検査値HbA1c 7.2%で安定", 6, []string{"検査値HbA1c", "7.2%で安定"}},
		{"a word that does not fit moves whole", "検査値はHbA1cで", 6, []string{"検査値は", "HbA1cで"}},
		{"a word wider than the line is split", "abcdefghijklmnop", 4, []string{"abcdefgh", "ijklmnop"}},
		{"paragraphs and empty lines", "一行目\n\n三行目", 10, []string{"一行目", "", "三行目"}},
		{"no space at the start of a wrapped line", "ab cd ef", 1.5, []string{"ab", "cd", "ef"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, texts(wrap(tt.text, tt.width, em))); diff != "" {
				t.Errorf("wrap(%q, %v) (-want +got):\n%s", tt.text, tt.width, diff)
			}
		})
	}
}

func TestWrapBulletHangs(t *testing.T) {
	got := wrap("・アムロジピン錠5mg 1錠\n次の行", 8, em)
	want := []line{{text: "・アムロジピン錠"}, {text: "5mg 1錠", indent: 1}, {text: "次の行"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(line{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestWrapKeepsText wraps a long text at many widths: no line is wider than the width (except one that holds a
// single unit), none begins with a noStart character, and nothing but the spaces at breaks is lost.
func TestWrapKeepsText(t *testing.T) {
	text := strings.Repeat("症状経過は「良好」です。HbA1c 7.2%、LDL-C 142mg/dL（前回比−10）でした！ ", 40)
	for w := 3.0; w < 60; w += 0.5 {
		ls := wrap(text, w, em)
		var b strings.Builder
		for i, l := range ls {
			if em(l.text) > w && len(tokens(l.text, em)) > 1 {
				t.Fatalf("width %v: line %d %q is %v wide", w, i, l.text, em(l.text))
			}
			if i > 0 && startsWithAny(l.text, noStart) {
				t.Fatalf("width %v: line %d %q begins with a character that may not begin a line", w, i, l.text)
			}
			b.WriteString(l.text)
		}
		if got, want := strings.ReplaceAll(b.String(), " ", ""), strings.ReplaceAll(text, " ", ""); got != want {
			t.Fatalf("width %v: text changed:\n got %q\nwant %q", w, got, want)
		}
	}
}

func TestClean(t *testing.T) {
	got := clean("𠮷野\r\n家😀\tです\x00。")
	if want := "〓野\n家〓 です。"; got != want {
		t.Errorf("clean = %q, want %q", got, want)
	}
}

func TestPersonName(t *testing.T) {
	tests := []struct{ pn, name, kana string }{
		{"Yamada^Taro=山田^太郎=ヤマダ^タロウ", "山田 太郎", "ヤマダ タロウ"},
		{"Yamada^Taro", "Yamada Taro", ""},
		{"山田 太郎", "山田 太郎", ""},
		{"Yamada^Taro==やまだ^たろう", "Yamada Taro", "やまだ たろう"},
		{"", "", ""},
	}
	for _, tt := range tests {
		name, kana := personName(tt.pn)
		if name != tt.name || kana != tt.kana {
			t.Errorf("personName(%q) = %q, %q; want %q, %q", tt.pn, name, kana, tt.name, tt.kana)
		}
	}
}

func TestBirthLine(t *testing.T) {
	on := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct{ birth, want string }{
		{"19500301", "昭和25年3月1日(1950年)76歳"},
		{"1950-03-01", "昭和25年3月1日(1950年)76歳"},
		{"19501127", "昭和25年11月27日(1950年)76歳"}, // birthday today
		{"19501128", "昭和25年11月28日(1950年)75歳"}, // tomorrow
		{"20190501", "令和元年5月1日(2019年)7歳"},
		{"1950", "1950"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := birthLine(tt.birth, on); got != tt.want {
			t.Errorf("birthLine(%q) = %q, want %q", tt.birth, got, tt.want)
		}
	}
}

func TestLetterDateIsJapanTime(t *testing.T) {
	// 20:00 UTC on 27 November is 05:00 on the 28th in Japan.
	if got, want := letterDate(time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC)), "令和8年11月28日"; got != want {
		t.Errorf("letterDate = %q, want %q", got, want)
	}
}

func TestOpenWithoutFonts(t *testing.T) {
	_, err := open(Fonts{}, []string{t.TempDir() + "/none.ttf"}, nil)
	if err == nil || !strings.Contains(err.Error(), "fonts-ipaexfont") {
		t.Fatalf("open with no fonts: err = %v, want one naming fonts-ipaexfont", err)
	}
}
