package letterpdf

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"renkei"
)

// prepared is a Doc resolved into the strings the form prints: defaults filled in from the referral, text cleaned,
// structured facts written out. Layout works only from this.
type prepared struct {
	title    string // 診療情報提供書, …
	short    string // the title on continuation pages
	priority string // 【至急】, 【緊急】 or ""
	date     time.Time
	dateText string // 令和8年11月27日
	version  int
	number   string // the referral's number for the footer, or ""

	toName      string
	toLines     []string // department, "○○先生 御侍史" or "担当医 殿"
	greeting    string
	senderRows  [][2]string // label, value
	patientName string
	patientKana string
	sex         string // 男, 女, その他 or ""
	birth       string // 昭和25年3月1日(1950年)76歳
	patientID   string
	sections    []section
}

// section is one ruled box of the letter.
type section struct {
	label string // may contain "\n" where a long label should break
	text  string
	// always: printed even when empty (傷病名 and 紹介目的 of a letter, 所見 and 診断 of a report).
	always bool
}

func prepare(d Doc) (*prepared, error) {
	ref := d.Referral
	kind := d.Kind
	if kind == "" {
		kind = ref.Kind
	}
	if kind == "" {
		kind = renkei.KindReferral
	}
	letter := ref.Letter
	switch {
	case d.Letter != nil:
		letter = *d.Letter
	case d.Reply && ref.Reply != nil:
		letter = *ref.Reply
	case d.Reply:
		letter = renkei.Letter{}
	}
	p := &prepared{date: d.Date, version: d.Version}
	if p.date.IsZero() && ref.SentAt != nil {
		p.date = *ref.SentAt
	}
	if p.date.IsZero() {
		p.date = ref.CreatedAt
	}
	if p.date.IsZero() {
		return nil, errors.New("letter has no date: set Doc.Date")
	}
	p.dateText = letterDate(p.date)
	if p.version == 0 && !d.Reply {
		p.version = ref.Version
	}
	if ref.ID > 0 {
		p.number = fmt.Sprintf("紹介番号 %d", ref.ID)
	}
	report := kind == renkei.KindReading && d.Reply
	switch {
	case report:
		p.title, p.short = "画像診断報告書", "画像診断報告書"
	case kind == renkei.KindReading:
		p.title, p.short = "画像診断依頼書", "画像診断依頼書"
	case d.Reply:
		p.title, p.short = "診療情報提供書（返書）", "返書"
	default:
		p.title, p.short = "診療情報提供書", "診療情報提供書"
	}
	if !d.Reply {
		switch ref.Priority {
		case "urgent":
			p.priority = "【至急】"
		case "stat":
			p.priority = "【緊急】"
		}
	}

	// Addressee and sender. For a reply the referral's two sides swap.
	fromName, toName, dept, doctor := ref.FromName, ref.ToName, ref.ToDepartment, ref.ToDoctor
	if d.Reply {
		fromName, toName, dept, doctor = ref.ToName, ref.FromName, "", ref.FromUserName
	}
	if d.From.Name != "" {
		fromName = d.From.Name
	}
	if d.To.Name != "" {
		toName = d.To.Name
	}
	if d.ToDepartment != "" || d.ToDoctor != "" {
		dept, doctor = d.ToDepartment, d.ToDoctor
	}
	p.toName = oneLine(toName)
	if s := oneLine(dept); s != "" {
		p.toLines = append(p.toLines, s)
	}
	if s := oneLine(doctor); s != "" {
		p.toLines = append(p.toLines, s+" 先生 御侍史")
	} else {
		p.toLines = append(p.toLines, "担当医 殿")
	}
	author := oneLine(letter.Author)
	if author == "" && !d.Reply {
		author = oneLine(ref.FromUserName)
	}
	if s := oneLine(letter.Department); s != "" && author != "" {
		author = s + "　" + author
	}
	doctorLabel := "医師氏名"
	if report {
		doctorLabel = "読影医"
	}
	for _, row := range [][2]string{
		{"医療機関名", fromName},
		{"医療機関コード", d.From.Code},
		{"所在地", d.FromAddress},
		{"電話番号", d.FromPhone},
		{doctorLabel, author},
	} {
		if v := oneLine(row[1]); v != "" || row[0] == "医療機関名" || row[0] == doctorLabel {
			p.senderRows = append(p.senderRows, [2]string{row[0], v})
		}
	}
	switch {
	case report:
	case kind == renkei.KindReading:
		p.greeting = "下記の検査の読影をお願い申し上げます。"
	case d.Reply:
		p.greeting = "このたびはご紹介いただき、誠にありがとうございました。下記のとおりご報告申し上げます。"
	case kind == renkei.KindReverse:
		p.greeting = "下記の患者さんをご紹介申し上げます。今後の診療につき、よろしくお願い申し上げます。"
	default:
		p.greeting = "下記の患者さんをご紹介申し上げます。ご高診のほど、よろしくお願い申し上げます。"
	}

	// Patient.
	pnName, pnKana := personName(ref.PatientName)
	p.patientName, p.patientKana = oneLine(d.PatientName), oneLine(d.PatientKana)
	if p.patientName == "" {
		p.patientName = oneLine(pnName)
	}
	if p.patientKana == "" {
		p.patientKana = oneLine(pnKana)
	}
	sex := d.Sex
	if sex == "" {
		sex = ref.PatientSex
	}
	p.sex = sexJa(sex)
	birth := d.BirthDate
	if birth == "" {
		birth = ref.PatientBirth
	}
	p.birth = oneLine(birthLine(birth, p.date))
	p.patientID = oneLine(d.PatientID)
	if p.patientID == "" {
		p.patientID = oneLine(ref.Patient.ID)
	}

	// Sections, in HS038's order; a report leads with its findings.
	meds := joinText(medicationLines(d.Medications), letter.Medications)
	remarks := letter.Remarks
	if letter.AttachmentKey != "" {
		remarks = joinText([]string{"別添の文書（電子ファイル）をご参照ください。"}, remarks)
	}
	purpose := "紹介目的"
	if kind == renkei.KindReading {
		purpose = "依頼目的"
	}
	letterOnly := !report
	// A letter always says what is known of allergies: "記載なし" (not written) when nothing is, never "なし" unless the
	// author wrote it. A report says so only when it has something.
	allergies := joinText(allergyLines(d.Allergies, fromName), letter.Allergies)
	if strings.TrimSpace(allergies) == "" && letterOnly {
		allergies = "記載なし"
	}
	secs := []section{
		{label: "傷病名", text: letter.Diagnosis, always: letterOnly},
		{label: purpose, text: letter.Purpose, always: letterOnly && !d.Reply},
	}
	if report {
		secs = append(secs,
			section{label: "所見", text: letter.Findings, always: true},
			section{label: "診断", text: letter.Impression, always: true})
	}
	secs = append(secs,
		section{label: "主訴", text: letter.ChiefComplaint},
		section{label: "既往歴及び\n家族歴", text: letter.History},
		section{label: "現病歴", text: letter.PresentIllness},
		section{label: "症状経過及び\n治療経過", text: letter.Course},
		section{label: "検査結果", text: letter.TestResults},
	)
	if !report {
		secs = append(secs,
			section{label: "所見", text: letter.Findings},
			section{label: "診断", text: letter.Impression})
	}
	secs = append(secs,
		section{label: "現在の処方", text: meds},
		section{label: "アレルギー・\n不適応反応", text: allergies},
		section{label: "今後の方針", text: letter.FollowUp},
		section{label: "備考", text: remarks},
	)
	for _, s := range secs {
		s.text = strings.Trim(clean(s.text), "\n ")
		if s.text != "" || s.always {
			p.sections = append(p.sections, s)
		}
	}
	return p, nil
}

func sexJa(s string) string {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "M":
		return "男"
	case "F":
		return "女"
	case "O":
		return "その他"
	}
	return ""
}

var (
	severityJa = map[string]string{"mild": "軽度", "moderate": "中等度", "severe": "重度"}
	categoryJa = map[renkei.AllergyCategory]string{renkei.AllergyDrug: "薬剤", renkei.AllergyFood: "食物", renkei.AllergyOther: "その他"}
	statusJa   = map[string]string{"inactive": "非活動", "resolved": "消失"}
)

// allergyLines writes each allergy as one bulleted line: substance, category, reaction, severity, onset, status,
// and the source institution when it is not the sender.
func allergyLines(as []renkei.Allergy, sender string) []string {
	var out []string
	for _, a := range as {
		if a.EnteredInError {
			continue
		}
		s := "・" + oneLine(a.Substance)
		if c := categoryJa[a.Category]; c != "" {
			s += "〔" + c + "〕"
		}
		if r := oneLine(a.Reaction); r != "" {
			s += "　反応：" + r
		}
		if v := severityJa[a.Severity]; v != "" {
			s += "　重症度：" + v
		} else if a.Severity != "" {
			s += "　重症度：" + oneLine(a.Severity)
		}
		if a.Onset != "" {
			s += "　発現：" + oneLine(a.Onset)
		}
		if v := statusJa[a.Status]; v != "" {
			s += "（" + v + "）"
		}
		if src := oneLine(a.InstitutionName); src != "" && src != oneLine(sender) {
			s += "　情報元：" + src
		}
		out = append(out, s)
	}
	return out
}

// medicationLines writes each current prescription as one bulleted line: drug, dose, route, frequency, start, and
// the prescribing institution when one is named.
func medicationLines(ms []renkei.Medication) []string {
	var out []string
	for _, m := range ms {
		if m.EnteredInError || (m.Status != "" && m.Status != "active") {
			continue
		}
		parts := []string{"・" + oneLine(m.Drug)}
		for _, f := range []string{m.Dose, m.Route, m.Frequency} {
			if v := oneLine(f); v != "" {
				parts = append(parts, v)
			}
		}
		s := strings.Join(parts, "　")
		if m.Start != "" {
			s += "（" + oneLine(m.Start) + "〜）"
		}
		if v := oneLine(m.PrescribedBy); v != "" {
			s += "　" + v + "処方"
		}
		out = append(out, s)
	}
	return out
}

// joinText puts the structured lines first, then the letter's own text.
func joinText(lines []string, text string) string {
	text = strings.TrimSpace(text)
	if text != "" {
		lines = append(lines, text)
	}
	return strings.Join(lines, "\n")
}
