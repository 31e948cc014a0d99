package letterpdf

import (
	"fmt"
	"math"

	"github.com/go-pdf/fpdf"
)

// The page, in points: A4 portrait (210×297 mm = 595.28×841.89 pt), 15 mm side margins.
const (
	pageW, pageH  = 595.28, 841.89
	left          = 42.0
	width         = pageW - 2*left
	right         = left + width
	top           = 40.0
	contentBottom = pageH - 54 // boxes end above the footer
	footerY       = pageH - 28 // the footer's baseline
)

// Fonts and sizes. IPAex glyphs are 1 em wide for kanji and kana; 10.5 pt on a 16 pt lead is the usual
// business-letter setting (40 characters per 420 pt).
const (
	fontMincho = "ipaexm"
	fontGothic = "ipaexg"
	ascent     = 0.88 // IPAex's ascender, in em: where the baseline sits below the top of a line

	bodySize, bodyLead   = 10.5, 16.0
	labelSize, labelLead = 9.5, 13.5
	pad                  = 5.0  // inside a box
	labelW               = 88.0 // the heading column of the section boxes
	rule                 = 0.6  // box lines
)

type opKind int

const (
	opText opKind = iota
	opRect
	opLine
)

// op is one drawing operation. Layout produces a list of them per page before anything is drawn, so that the
// footer of every page can say how many pages there are ("1 / 2").
type op struct {
	kind       opKind
	font       string
	size       float64 // font size, or line width
	x, y, w, h float64 // text: x and baseline; rect: box; line: from (x,y) to (w,h)
	s          string
	fill       bool
}

type page struct{ ops []op }

type layout struct {
	pdf   *fpdf.Fpdf // for measuring text only
	p     *prepared
	pages []*page
	y     float64 // the top of free space on the last page
	on    *page   // the page drawn on, when not the last (footers)
}

func (l *layout) measure(font string, size float64) func(string) float64 {
	return func(s string) float64 {
		l.pdf.SetFont(font, "", size)
		return l.pdf.GetStringWidth(s)
	}
}

func (l *layout) cur() *page {
	if l.on != nil {
		return l.on
	}
	return l.pages[len(l.pages)-1]
}

func (l *layout) text(font string, size, x, baseline float64, s string) {
	if s == "" {
		return
	}
	l.cur().ops = append(l.cur().ops, op{kind: opText, font: font, size: size, x: x, y: baseline, s: s})
}

// textIn sets s on one line of a box starting at top with the given lead, shrinking the size until it fits maxW.
func (l *layout) textIn(font string, size, x, lineTop, lead, maxW float64, s string) {
	if s == "" {
		return
	}
	m := l.measure(font, size)(s)
	if m > maxW {
		size = math.Max(5, size*maxW/m)
	}
	l.text(font, size, x, baselineIn(lineTop, lead, size), s)
}

func (l *layout) textRight(font string, size, xRight, baseline float64, s string) {
	l.text(font, size, xRight-l.measure(font, size)(s), baseline, s)
}

func (l *layout) textCentre(font string, size, xMid, baseline float64, s string) {
	l.text(font, size, xMid-l.measure(font, size)(s)/2, baseline, s)
}

func (l *layout) rect(x, y, w, h float64, fill bool) {
	l.cur().ops = append(l.cur().ops, op{kind: opRect, size: rule, x: x, y: y, w: w, h: h, fill: fill})
}

func (l *layout) line(x1, y1, x2, y2, lw float64) {
	l.cur().ops = append(l.cur().ops, op{kind: opLine, size: lw, x: x1, y: y1, w: x2, h: y2})
}

// baselineIn is where text of the given size sits in a line of the given lead: centred on the em box.
func baselineIn(lineTop, lead, size float64) float64 {
	return lineTop + (lead-size)/2 + ascent*size
}

// layOut places the whole letter: header, addressee and sender, patient, the section boxes (continued across
// pages), and a footer on every page.
func layOut(p *prepared, pdf *fpdf.Fpdf) []*page {
	l := &layout{pdf: pdf, p: p}
	l.newPage()
	l.header()
	l.addressee()
	l.sender()
	l.greeting()
	l.patient()
	l.y += 10
	for _, s := range p.sections {
		l.section(s)
	}
	l.footers()
	return l.pages
}

// newPage starts a page. Pages after the first carry a line naming the document and the patient, so a loose page
// can be put back with its letter.
func (l *layout) newPage() {
	l.pages = append(l.pages, &page{})
	l.y = top
	if len(l.pages) == 1 {
		return
	}
	b := baselineIn(l.y, 14, 9)
	l.text(fontGothic, 9, left, b, l.p.short+"（続き）")
	who := l.p.dateText
	if l.p.patientName != "" {
		who = "患者氏名：" + l.p.patientName + " 様　" + who
	}
	l.textRight(fontMincho, 9, right, b, who)
	l.line(left, l.y+16, right, l.y+16, 0.4)
	l.y += 24
}

func (l *layout) header() {
	p := l.p
	b := baselineIn(l.y, 16, bodySize)
	if p.priority != "" {
		l.text(fontGothic, 12, left, baselineIn(l.y, 16, 12), p.priority)
	}
	date := p.dateText
	if p.version > 1 {
		date = fmt.Sprintf("第%d版　%s", p.version, date)
	}
	l.textRight(fontMincho, bodySize, right, b, date)
	l.y += 22
	l.textCentre(fontGothic, 20, pageW/2, baselineIn(l.y, 28, 20), p.title)
	l.y += 28
	half := l.measure(fontGothic, 20)(p.title)/2 + 24
	l.line(pageW/2-half, l.y+2, pageW/2+half, l.y+2, 0.8)
	l.y += 14
}

// addressee sets the block at the top left: institution, department, "○○ 先生 御侍史" or "担当医 殿", underlined.
func (l *layout) addressee() {
	const w, size, lead = 290.0, 13.0, 19.0
	var lines []line
	for _, s := range append([]string{l.p.toName}, l.p.toLines...) {
		if s != "" {
			lines = append(lines, wrap(s, w, l.measure(fontMincho, size))...)
		}
	}
	for _, ln := range lines {
		l.text(fontMincho, size, left+ln.indent, baselineIn(l.y, lead, size), ln.text)
		l.y += lead
	}
	l.line(left, l.y+1, left+w, l.y+1, 0.6)
	l.y += 10
}

// sender sets the writer's block on the right half: labelled rows, values wrapped.
func (l *layout) sender() {
	const x, lw, size, lead = 300.0, 72.0, 10.0, 14.5
	vw := right - x - lw
	for _, row := range l.p.senderRows {
		lines := wrap(row[1], vw, l.measure(fontMincho, size))
		l.text(fontGothic, 8.5, x, baselineIn(l.y, lead, 8.5), row[0])
		for _, ln := range lines {
			l.text(fontMincho, size, x+lw+ln.indent, baselineIn(l.y, lead, size), ln.text)
			l.y += lead
		}
	}
	l.y += 10
}

func (l *layout) greeting() {
	if l.p.greeting == "" {
		return
	}
	for _, ln := range wrap(l.p.greeting, width, l.measure(fontMincho, bodySize)) {
		l.text(fontMincho, bodySize, left+ln.indent, baselineIn(l.y, bodyLead, bodySize), ln.text)
		l.y += bodyLead
	}
	l.y += 6
}

// patient sets the patient table:
//
//	| ふりがな | ヤマダ タロウ     | 性別   | 男 |
//	| 患者氏名 | 山田 太郎         |        |    |
//	| 生年月日 | 昭和25年…76歳     | 患者ID | …  |
func (l *layout) patient() {
	p := l.p
	const lw, sexLW, sexVW = 70.0, 44.0, 62.0
	c1 := left + lw
	c2 := right - sexLW - sexVW
	c3 := right - sexVW
	y := l.y
	label := func(x, y, w, h float64, s string) {
		l.rect(x, y, w, h, true)
		l.textIn(fontGothic, 9, x+pad, y, h, w-2*pad, s)
	}
	value := func(x, y, w, h, size float64, s string) {
		l.rect(x, y, w, h, false)
		l.textIn(fontMincho, size, x+pad, y, h, w-2*pad, s)
	}
	nameTop := y
	if p.patientKana != "" {
		label(left, y, lw, 16, "ふりがな")
		value(c1, y, c2-c1, 16, 8.5, p.patientKana)
		y += 16
	}
	label(left, y, lw, 28, "患者氏名")
	value(c1, y, c2-c1, 28, 14, p.patientName)
	y += 28
	label(c2, nameTop, sexLW, y-nameTop, "性別")
	value(c3, nameTop, sexVW, y-nameTop, 12, p.sex)
	label(left, y, lw, 20, "生年月日")
	if p.patientID != "" {
		value(c1, y, c2-c1, 20, bodySize, p.birth)
		label(c2, y, sexLW, 20, "患者ID")
		value(c3, y, sexVW, 20, 9, p.patientID)
	} else {
		value(c1, y, right-c1, 20, bodySize, p.birth)
	}
	l.y = y + 20
}

// section sets one ruled box: the heading in a shaded column on the left, the text on the right. A box that does
// not fit is split across pages, its heading repeated with "（続き）"; the first part has at least two lines, or the
// whole box moves to the next page.
func (l *layout) section(s section) {
	lines := wrap(s.text, width-labelW-2*pad, l.measure(fontMincho, bodySize))
	minLines := 1
	if s.always {
		minLines = 2
	}
	label := s.label
	for {
		labelLines := wrap(label, labelW-2*pad, l.measure(fontGothic, labelSize))
		labelH := float64(len(labelLines)) * labelLead
		n := max(len(lines), minLines)
		h := math.Max(float64(n)*bodyLead, labelH) + 2*pad
		if l.y+h <= contentBottom {
			l.box(labelLines, lines, h)
			return
		}
		fit := int((contentBottom - l.y - 2*pad) / bodyLead)
		if fit >= 2 && float64(fit)*bodyLead >= labelH && fit < len(lines) {
			l.box(labelLines, lines[:fit], float64(fit)*bodyLead+2*pad)
			lines = lines[fit:]
			minLines = 1
			label = s.label + "\n（続き）"
		}
		l.newPage()
	}
}

func (l *layout) box(labelLines, lines []line, h float64) {
	l.rect(left, l.y, labelW, h, true)
	l.rect(left+labelW, l.y, width-labelW, h, false)
	for i, ln := range labelLines {
		l.text(fontGothic, labelSize, left+pad+ln.indent, baselineIn(l.y+pad+float64(i)*labelLead, labelLead, labelSize), ln.text)
	}
	x := left + labelW + pad
	for i, ln := range lines {
		l.text(fontMincho, bodySize, x+ln.indent, baselineIn(l.y+pad+float64(i)*bodyLead, bodyLead, bodySize), ln.text)
	}
	l.y += h
}

// footers puts on every page its number of the total, the document and its version, and the referral's number.
func (l *layout) footers() {
	n := len(l.pages)
	what := l.p.short
	if l.p.version > 1 {
		what += fmt.Sprintf("　第%d版", l.p.version)
	}
	defer func() { l.on = nil }()
	for i, pg := range l.pages {
		l.on = pg
		l.textCentre(fontMincho, 9, pageW/2, footerY, fmt.Sprintf("%d / %d", i+1, n))
		l.text(fontMincho, 8.5, left, footerY, what)
		if l.p.number != "" {
			l.textRight(fontMincho, 8.5, right, footerY, l.p.number)
		}
	}
}

// paint draws the pages' operations with fpdf.
func paint(pdf *fpdf.Fpdf, pages []*page) {
	pdf.SetDrawColor(0, 0, 0)
	pdf.SetFillColor(236, 236, 236)
	pdf.SetTextColor(0, 0, 0)
	for _, pg := range pages {
		pdf.AddPage()
		for _, o := range pg.ops {
			switch o.kind {
			case opText:
				pdf.SetFont(o.font, "", o.size)
				pdf.Text(o.x, o.y, o.s)
			case opRect:
				pdf.SetLineWidth(o.size)
				style := "D"
				if o.fill {
					style = "FD"
				}
				pdf.Rect(o.x, o.y, o.w, o.h, style)
			case opLine:
				pdf.SetLineWidth(o.size)
				pdf.Line(o.x, o.y, o.w, o.h)
			}
		}
	}
}
