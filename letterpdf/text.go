package letterpdf

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// geta (〓) stands in for a character the PDF cannot carry, as Japanese systems have long printed 外字 they lack.
const geta = '〓'

// clean makes text safe for the PDF: line ends become "\n", tabs become spaces, other control characters go, and
// characters outside the Basic Multilingual Plane (emoji, and rare kanji such as 𠮷) become 〓, because fpdf's
// CID map covers the BMP only (a rune above U+FFFF makes it panic).
func clean(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteByte('\n')
		case r == '\r' || r == '\t':
			b.WriteByte(' ')
		case r == utf8.RuneError, r > 0xFFFF:
			b.WriteRune(geta)
		case unicode.IsControl(r), r == '\uFEFF':
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// oneLine is clean for fields printed on one line (names, addresses): line ends become spaces.
func oneLine(s string) string {
	return strings.TrimSpace(strings.ReplaceAll(clean(s), "\n", " "))
}

// personName turns a DICOM PN (PS3.5 6.2: "Yamada^Taro=山田^太郎=やまだ^たろう") into the name people read and its
// reading: the ideographic group (or the alphabetic one when there is none) and the phonetic group, with "^" as a
// space. A plain name passes through.
func personName(pn string) (name, kana string) {
	groups := strings.Split(pn, "=")
	join := func(g string) string {
		parts := strings.FieldsFunc(g, func(r rune) bool { return r == '^' })
		return strings.TrimSpace(strings.Join(parts, " "))
	}
	name = join(groups[0])
	if len(groups) > 1 && join(groups[1]) != "" {
		name = join(groups[1])
	}
	if len(groups) > 2 {
		kana = join(groups[2])
	}
	return name, kana
}

// 禁則処理, kept simple: these never begin a line (closing brackets, punctuation, small kana, the long-vowel and
// iteration marks) …
const noStart = "、。，．,.)）]］｝}〕〉》」』】〙〗!！?？:：;；・ーぁぃぅぇぉっゃゅょゎゕゖァィゥェォッャュョヮヵヶ々ゝゞヽヾ…‥％%"

// … and these never end one (opening brackets).
const noEnd = "(（[［｛{〔〈《「『【〘〖"

// line is one wrapped line: its text, and how far it is indented (the hanging indent of a "・" item).
type line struct {
	text   string
	indent float64
}

// unit is what wrapping never splits: one character, or a run of ASCII letters, digits and signs ("CT", "5mg",
// "HbA1c", "7.2%"), so that Western words and numbers stay whole while Japanese breaks between any two characters.
type unit struct {
	s     string
	w     float64
	space bool
}

func isWordRune(r rune) bool { return r < 0x80 && r > ' ' }

// wrap breaks text into lines no wider than width, measured by measure. Japanese has no spaces, so lines break
// between any two characters, except before a noStart or after a noEnd character: then the line gives its last
// character(s) to the next (追い出し). A paragraph (a "\n") always starts a new line; an empty paragraph is an empty
// line. A paragraph that starts with a bullet ("・", "•", "-" or "*" and a space) continues under its text.
func wrap(text string, width float64, measure func(string) float64) []line {
	var out []line
	for _, para := range strings.Split(text, "\n") {
		para = strings.TrimRight(para, " ")
		if para == "" {
			out = append(out, line{})
			continue
		}
		indent := 0.0
		if b := bullet(para); b != "" {
			indent = measure(b)
		}
		out = append(out, wrapParagraph(para, width, indent, measure)...)
	}
	return out
}

func bullet(para string) string {
	for _, b := range []string{"・", "•", "- ", "* ", "※"} {
		if strings.HasPrefix(para, b) {
			return b
		}
	}
	return ""
}

func tokens(para string, measure func(string) float64) []unit {
	var us []unit
	for i := 0; i < len(para); {
		r, n := utf8.DecodeRuneInString(para[i:])
		j := i + n
		if isWordRune(r) {
			for j < len(para) && isWordRune(rune(para[j])) {
				j++
			}
		}
		s := para[i:j]
		us = append(us, unit{s: s, w: measure(s), space: r == ' '})
		i = j
	}
	return us
}

func wrapParagraph(para string, width, indent float64, measure func(string) float64) []line {
	us := tokens(para, measure)
	var out []line
	var cur []unit
	curW := 0.0
	avail := width
	flush := func() {
		for len(cur) > 0 && cur[len(cur)-1].space {
			cur = cur[:len(cur)-1]
		}
		var b strings.Builder
		for _, u := range cur {
			b.WriteString(u.s)
		}
		in := 0.0
		if len(out) > 0 {
			in = indent
		}
		out = append(out, line{text: b.String(), indent: in})
		cur, curW, avail = cur[:0], 0, width-indent
	}
	for i := 0; i < len(us); i++ {
		u := us[i]
		if len(cur) == 0 && u.space && len(out) > 0 {
			continue // a wrapped line does not begin with a space
		}
		if curW+u.w <= avail || (len(cur) == 0 && u.w <= avail) {
			cur = append(cur, u)
			curW += u.w
			continue
		}
		if len(cur) == 0 {
			// A word wider than the line: split it between characters.
			var parts []unit
			for _, r := range u.s {
				parts = append(parts, unit{s: string(r), w: measure(string(r))})
			}
			us = append(us[:i], append(parts, us[i+1:]...)...)
			i--
			continue
		}
		// Break before u. 禁則: give characters back until the next line does not begin with a noStart character
		// and this one does not end with a noEnd character, keeping at least one on this line.
		var carry []unit
		next := u
		for len(cur) > 1 && (startsWithAny(next.s, noStart) || endsWithAny(cur[len(cur)-1].s, noEnd)) {
			next = cur[len(cur)-1]
			carry = append([]unit{next}, carry...)
			cur = cur[:len(cur)-1]
		}
		flush()
		for _, c := range carry {
			cur = append(cur, c)
			curW += c.w
		}
		i-- // place u again on the new line
	}
	if len(cur) > 0 || len(out) == 0 {
		flush()
	}
	return out
}

func startsWithAny(s, set string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return strings.ContainsRune(set, r)
}

func endsWithAny(s, set string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return strings.ContainsRune(set, r)
}
