package letterpdf_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/go-pdf/fpdf"

	"renkei"
	"renkei/letterpdf"
)

// sample is a typical referral letter: a clinic sends 山田 太郎 to a hospital's cardiology department.
func sample() letterpdf.Doc {
	sent := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	return letterpdf.Doc{
		Referral: renkei.Referral{
			ID:           42,
			Kind:         renkei.KindReferral,
			FromName:     "みなみ内科クリニック",
			FromUserName: "佐藤 花子",
			ToName:       "中央病院",
			ToDepartment: "循環器内科",
			ToDoctor:     "田中 一郎",
			Patient:      renkei.PatientKey{Issuer: "minami", ID: "000123"},
			PatientName:  "Yamada^Taro=山田^太郎=ヤマダ^タロウ",
			PatientBirth: "19500301",
			PatientSex:   "M",
			Version:      1,
			Letter: renkei.Letter{
				Diagnosis:      "労作性狭心症の疑い\n2型糖尿病",
				Purpose:        "精査加療のお願い",
				ChiefComplaint: "階段昇降時の胸部圧迫感",
				History:        "既往歴：高血圧症（2015年〜）、2型糖尿病（2018年〜）。\n家族歴：父 心筋梗塞（70歳）。",
				PresentIllness: "2026年10月頃より、階段を2階まで上ると胸部の圧迫感が出現し、安静で5分ほどで消失するようになりました。",
				Course:         "安静時心電図ではV4–V6にST低下を認めます。HbA1c 7.2%、LDL-C 142mg/dL。",
				Remarks:        "ご多忙のところ恐縮ですが、よろしくお願いいたします。",
				Author:         "佐藤 花子",
				Department:     "内科",
			},
			SentAt: &sent,
		},
		From:        renkei.Institution{Name: "みなみ内科クリニック", Code: "1312345678"},
		To:          renkei.Institution{Name: "中央病院"},
		FromAddress: "東京都中央区南町1-2-3 みなみビル2階",
		FromPhone:   "03-1234-5678",
		Allergies: []renkei.Allergy{
			{Category: renkei.AllergyDrug, Substance: "ペニシリン系抗菌薬", Reaction: "蕁麻疹", Severity: "moderate"},
			{Category: renkei.AllergyFood, Substance: "卵", Reaction: "アナフィラキシー", Severity: "severe"},
		},
		Medications: []renkei.Medication{
			{Drug: "アムロジピン錠5mg", Dose: "1錠", Route: "内服", Frequency: "1日1回朝食後", Start: "2015-04-01"},
			{Drug: "メトホルミン塩酸塩錠250mg", Dose: "2錠", Route: "内服", Frequency: "1日2回朝夕食後"},
			{Drug: "中止した薬", Status: "stopped"},
		},
	}
}

// poppler runs a poppler-utils tool and returns its output. A missing tool fails the test: CI installs
// poppler-utils, so a skip would only hide that the PDF was never checked.
func poppler(t *testing.T, tool string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package poppler-utils (apt-get install poppler-utils): %v", tool, err)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// render renders d into a file in a temporary directory and returns its path.
func render(t *testing.T, d letterpdf.Doc) string {
	t.Helper()
	var buf bytes.Buffer
	if err := letterpdf.Render(&buf, d); err != nil {
		t.Fatalf("Render: %v", err)
	}
	path := filepath.Join(t.TempDir(), "letter.pdf")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// squash removes white space, which pdftotext puts between table cells and at line ends.
func squash(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

func pages(t *testing.T, path string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^Pages:\s+(\d+)`).FindStringSubmatch(poppler(t, "pdfinfo", path))
	if m == nil {
		t.Fatal("pdfinfo printed no page count")
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// checkA4 asserts that every page is A4 portrait, 595.28 x 841.89 pt.
func checkA4(t *testing.T, path string) {
	t.Helper()
	n := pages(t, path)
	info := poppler(t, "pdfinfo", "-f", "1", "-l", strconv.Itoa(n), path)
	sizes := regexp.MustCompile(`(?m)^Page\s+\d+ size:\s+([\d.]+) x ([\d.]+) pts`).FindAllStringSubmatch(info, -1)
	if len(sizes) != n {
		t.Fatalf("pdfinfo gave %d page sizes for %d pages:\n%s", len(sizes), n, info)
	}
	for i, m := range sizes {
		w, _ := strconv.ParseFloat(m[1], 64)
		h, _ := strconv.ParseFloat(m[2], 64)
		if abs(w-595.28) > 0.5 || abs(h-841.89) > 0.5 {
			t.Errorf("page %d is %v x %v pt, want A4 595.28 x 841.89", i+1, w, h)
		}
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// checkFontsEmbedded asserts that pdffonts lists at least one font and that every font is embedded.
func checkFontsEmbedded(t *testing.T, path string) {
	t.Helper()
	out := poppler(t, "pdffonts", path)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 {
		t.Fatalf("pdffonts lists no font:\n%s", out)
	}
	for _, l := range lines[2:] { // after the heading and the rule
		f := strings.Fields(l)
		// name type… encoding emb sub uni object ID: emb is the fifth field from the end.
		if len(f) < 6 || f[len(f)-5] != "yes" {
			t.Errorf("font not embedded: %s", l)
		}
		if !strings.Contains(strings.ToLower(f[0]), "ipaex") {
			t.Errorf("font %s is not an IPAex font", f[0])
		}
	}
}

func TestRenderLetter(t *testing.T) {
	path := render(t, sample())
	checkA4(t, path)
	checkFontsEmbedded(t, path)
	if n := pages(t, path); n != 1 {
		t.Errorf("a typical letter has %d pages, want 1", n)
	}
	text := squash(poppler(t, "pdftotext", "-layout", path, "-"))
	for _, want := range []string{
		"診療情報提供書", "令和8年11月27日",
		"中央病院", "循環器内科", "田中一郎先生御侍史",
		"みなみ内科クリニック", "1312345678", "東京都中央区南町1-2-3", "03-1234-5678", "佐藤花子",
		"山田太郎", "ヤマダタロウ", "男", "昭和25年3月1日(1950年)76歳", "000123",
		"傷病名", "労作性狭心症の疑い", "2型糖尿病", "紹介目的", "精査加療のお願い", "階段昇降時の胸部圧迫感",
		"現在の処方", "アムロジピン錠5mg", "1日1回朝食後", "メトホルミン塩酸塩錠250mg",
		"ペニシリン系抗菌薬", "蕁麻疹", "中等度", "卵", "アナフィラキシー", "重度",
		"1/1", "紹介番号42",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("pdftotext output lacks %q:\n%s", want, text)
		}
	}
	for _, unwanted := range []string{"中止した薬", "記載なし", "第1版", "今後の方針", "（続き）"} {
		if strings.Contains(text, unwanted) {
			t.Errorf("pdftotext output has %q", unwanted)
		}
	}
}

// TestRenderLongLetter renders a letter whose course runs to 6,000 characters: it flows over further pages, its box
// continued, and every character of it comes out of pdftotext, in order.
func TestRenderLongLetter(t *testing.T) {
	d := sample()
	d.Version = 2
	var b strings.Builder
	for i := 1; utf8Len(b.String()) < 6000; i++ {
		fmt.Fprintf(&b, "第%d日：血圧は%d/%dmmHg、「胸痛なし」。", i, 120+i%20, 70+i%10)
		if i%25 == 0 {
			b.WriteString("\n")
		}
	}
	course := b.String()
	d.Referral.Letter.Course = course
	path := render(t, d)
	checkA4(t, path)
	checkFontsEmbedded(t, path)
	n := pages(t, path)
	if n < 2 {
		t.Fatalf("a letter with a %d-character course has %d page(s), want at least 2", utf8Len(course), n)
	}
	text := squash(poppler(t, "pdftotext", "-layout", path, "-"))
	// The course's characters must appear in order; between them pdftotext may put only the box heading repeated
	// on each page, the page headers and footers.
	want := []rune(squash(course))
	got := []rune(text)
	j := 0
	for _, r := range got {
		if j < len(want) && r == want[j] {
			j++
		}
	}
	if j < len(want) {
		t.Fatalf("pdftotext lost the course from character %d on: %q…", j, string(want[j:min(j+40, len(want))]))
	}
	for _, want := range []string{"症状経過及び", "（続き）", "第2版", fmt.Sprintf("1/%d", n), fmt.Sprintf("%d/%d", n, n), "ペニシリン系抗菌薬", "アナフィラキシー"} {
		if !strings.Contains(text, want) {
			t.Errorf("pdftotext output lacks %q", want)
		}
	}
	if strings.Contains(text, "令和8年11月27日") && !strings.Contains(text, "患者氏名：山田太郎様") {
		t.Errorf("continuation pages lack the patient line")
	}
}

func utf8Len(s string) int { return len([]rune(s)) }

// TestRenderKinds prints the other documents: the reply, a reading request and its report, and letters without
// allergy data.
func TestRenderKinds(t *testing.T) {
	reply := renkei.Letter{Diagnosis: "労作性狭心症", Course: "冠動脈CTで左前下行枝に75%狭窄を認め、PCIを施行しました。", FollowUp: "貴院での継続加療をお願いいたします。", Author: "田中 一郎", Department: "循環器内科"}
	report := renkei.Letter{Findings: "右肺上葉に径12mmの結節影を認めます。", Impression: "肺癌の疑い。", Author: "鈴木 次郎", Department: "放射線科"}
	tests := []struct {
		name    string
		edit    func(*letterpdf.Doc)
		want    []string
		notWant []string
		after   [][2]string // the text after the first a[0] contains a[1] (a heading, its box's text)
	}{
		{
			name: "reply",
			edit: func(d *letterpdf.Doc) {
				d.Reply = true
				d.Referral.Reply = &reply
				d.From, d.To = d.To, d.From
				d.FromAddress, d.FromPhone = "東京都中央区北町9-9", "03-9999-0000"
				d.Allergies = nil
			},
			want:    []string{"診療情報提供書（返書）", "みなみ内科クリニック", "佐藤花子先生御侍史", "中央病院", "循環器内科田中一郎", "労作性狭心症", "左前下行枝に75%狭窄", "今後の方針", "貴院での継続加療", "記載なし"},
			notWant: []string{"紹介目的", "第1版"},
		},
		{
			name: "reading request",
			edit: func(d *letterpdf.Doc) {
				d.Kind = renkei.KindReading
				d.Referral.Priority = "urgent"
				d.Referral.ToDoctor = ""
				d.Referral.ToDepartment = "放射線科"
				d.Referral.Letter.Purpose = "胸部CTの読影をお願いします。"
			},
			want: []string{"画像診断依頼書", "【至急】", "放射線科担当医殿", "依頼目的", "胸部CTの読影"},
		},
		{
			name: "reading report",
			edit: func(d *letterpdf.Doc) {
				d.Kind = renkei.KindReading
				d.Reply = true
				d.Referral.Reply = &report
				d.From, d.To = d.To, d.From
				d.Allergies, d.Medications = nil, nil
			},
			want:    []string{"画像診断報告書", "読影医", "放射線科鈴木次郎", "所見", "右肺上葉に径12mmの結節影", "診断", "肺癌の疑い。"},
			notWant: []string{"紹介目的", "記載なし", "アレルギー"},
		},
		{
			name:    "no allergy data: 記載なし",
			edit:    func(d *letterpdf.Doc) { d.Allergies = nil },
			after:   [][2]string{{"アレルギー・", "記載なし"}},
			notWant: []string{"ペニシリン"},
		},
		{
			name: "the letter says なし",
			edit: func(d *letterpdf.Doc) {
				d.Allergies = nil
				d.Referral.Letter.Allergies = "なし"
			},
			after:   [][2]string{{"アレルギー・", "なし"}},
			notWant: []string{"記載なし"},
		},
		{
			name: "entered in error and resolved",
			edit: func(d *letterpdf.Doc) {
				d.Allergies[0].EnteredInError = true
				d.Allergies[1].Status = "resolved"
			},
			want:    []string{"卵〔食物〕", "（消失）"},
			notWant: []string{"ペニシリン"},
		},
		{
			name: "date in Japan, names from the PN, empty sections",
			edit: func(d *letterpdf.Doc) {
				d.Referral.SentAt = nil
				d.Date = time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC)
				d.Referral.Letter = renkei.Letter{}
				d.Referral.PatientName = "Yamada^Hanako=𠮷田^花子=ヨシダ^ハナコ"
				d.Referral.PatientSex = "F"
			},
			want:    []string{"令和8年11月28日", "〓田花子", "ヨシダハナコ", "女", "傷病名", "紹介目的"},
			notWant: []string{"主訴", "現病歴", "備考"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := sample()
			tt.edit(&d)
			text := squash(poppler(t, "pdftotext", "-layout", render(t, d), "-"))
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("pdftotext output lacks %q:\n%s", w, text)
				}
			}
			for _, a := range tt.after {
				if i := strings.Index(text, a[0]); i < 0 || !strings.Contains(text[i:], a[1]) {
					t.Errorf("pdftotext output lacks %q after %q:\n%s", a[1], a[0], text)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(text, w) {
					t.Errorf("pdftotext output has %q:\n%s", w, text)
				}
			}
		})
	}
}

func TestRenderNeedsDate(t *testing.T) {
	d := sample()
	d.Referral.SentAt = nil
	err := letterpdf.Render(&bytes.Buffer{}, d)
	if renkei.ErrorKind(err) != renkei.Invalid {
		t.Fatalf("Render without a date: err = %v, want kind Invalid", err)
	}
}

// TestRenderConcurrentSame renders one letter from several goroutines: the renderer is shared and the output is
// the same bytes every time.
func TestRenderConcurrentSame(t *testing.T) {
	var first bytes.Buffer
	if err := letterpdf.Render(&first, sample()); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	outs := make(chan []byte, 4)
	for range 4 {
		go func() {
			var b bytes.Buffer
			errs <- letterpdf.Render(&b, sample())
			outs <- b.Bytes()
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(<-outs, first.Bytes()) {
			t.Fatal("the same letter rendered to different bytes")
		}
	}
}

func TestOpenRejectsNonTrueType(t *testing.T) {
	path := filepath.Join(t.TempDir(), "font.otf")
	if err := os.WriteFile(path, []byte("OTTO\x00\x0a\x00\x80\x00\x03\x00\x20"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := letterpdf.Open(letterpdf.Fonts{Mincho: path, Gothic: path})
	if renkei.ErrorKind(err) != renkei.Invalid {
		t.Fatalf("Open with an OpenType/CFF font: err = %v, want kind Invalid", err)
	}
}

// BenchmarkRender renders a typical one-page letter. Because benchmark machines are noisy it also renders, in the
// same loop, a one-line PDF in fpdf's built-in Helvetica (no font to parse or embed) and reports the letter's time
// as a multiple of it ("x-baseline"); the baseline's own time is "baseline-ns/op".
func BenchmarkRender(b *testing.B) {
	d := sample()
	if err := letterpdf.Render(&bytes.Buffer{}, d); err != nil { // reads the fonts once, outside the timing
		b.Fatal(err)
	}
	var buf bytes.Buffer
	var letter, base time.Duration
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		t0 := time.Now()
		if err := letterpdf.Render(&buf, d); err != nil {
			b.Fatal(err)
		}
		letter += time.Since(t0)

		b.StopTimer()
		buf.Reset()
		t0 = time.Now()
		pdf := fpdf.New("P", "pt", "A4", "")
		pdf.AddPage()
		pdf.SetFont("Helvetica", "", 12)
		pdf.Text(50, 50, "Referral letter")
		if err := pdf.Output(&buf); err != nil {
			b.Fatal(err)
		}
		base += time.Since(t0)
		b.StartTimer()
	}
	b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "baseline-ns/op")
	b.ReportMetric(float64(letter)/float64(base), "x-baseline")
}
