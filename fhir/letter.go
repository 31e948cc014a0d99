package fhir

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"renkei"
)

// The 診療情報提供書 as a JP-CLINS eReferral document (電子カルテ情報共有サービス 2文書5情報 実装ガイド): a Bundle of
// type document whose first entry is a Composition of type 57133-1 with the sections below, coded in
// http://jpfhir.jp/fhir/clins/CodeSystem/document-section.
const (
	secReferralTo   = "910" // 紹介先情報
	secReferralFrom = "920" // 紹介元情報
	secStructured   = "300" // 構造情報 (holds the clinical sections)
	secRemarks      = "220" // 備考・連絡情報
	secPDF          = "230" // PDF
	secAttachment   = "210" // 添付情報
	secPurpose      = "950" // 紹介目的
	secProblem      = "340" // 傷病名・主訴
	secPresent      = "360" // 現病歴
	secPast         = "370" // 既往歴
	secAllergy      = "510" // アレルギー・不耐性反応
	secFamily       = "550" // 家族歴
	secStudy        = "620" // 検査結果
	secCourse       = "330" // 臨床経過
	secInstruction  = "420" // 診療方針指示
	secMedication   = "430" // 投薬指示
)

var sectionTitles = map[string]string{
	secReferralTo: "紹介先情報", secReferralFrom: "紹介元情報", secStructured: "構造情報", secRemarks: "備考・連絡情報",
	secPDF: "PDF", secAttachment: "添付情報", secPurpose: "紹介目的", secProblem: "傷病名・主訴", secPresent: "現病歴",
	secPast: "既往歴", secAllergy: "アレルギー・不耐性反応", secFamily: "家族歴", secStudy: "検査結果", secCourse: "臨床経過",
	secInstruction: "診療方針指示", secMedication: "投薬指示",
	"520": "感染症情報", "530": "予防接種歴", "610": "身体所見", "640": "社会歴・生活習慣", "720": "処置", "730": "手術",
	"740": "輸血歴", "810": "医療機器", "410": "事前指示", "830": "臨床研究参加",
}

// Classes of the Letter fields that share a section.
const (
	clsDiagnosis      = "renkei-diagnosis"
	clsChiefComplaint = "renkei-chief-complaint"
	clsTestResults    = "renkei-test-results"
	clsFindings       = "renkei-findings"
	clsImpression     = "renkei-impression"
)

// LetterImport is a 診療情報提供書 read from a FHIR document.
type LetterImport struct {
	// Letter holds the text of each section. AttachmentKey is empty: the caller stores Attachments[0] (the
	// letter as printed) and sets it; AttachmentType is its media type.
	Letter      renkei.Letter
	Version     int    // the document's version (composition-clinicaldocument-versionNumber)
	Date        string // Composition.date as written
	Identifier  string // Composition.identifier.value (the 文書ID)
	From, To    Party
	Patient     *Patient
	Allergies   []renkei.Allergy
	Medications []renkei.Medication
	Conditions  []renkei.Condition
	Attachments []Document
	Warnings    []Issue
}

// Party is the sending or receiving side of a letter.
type Party struct {
	Institution     string // name
	InstitutionCode string // 医療機関コード
	Department      string
	Doctor          string
}

// LetterDocument writes a referral's letter as a JP-CLINS 診療情報提供書 document Bundle: the Composition
// (type LOINC 57133-1, author the writing doctor's Practitioner and the sending Organization, custodian the
// sending Organization, event 診療情報提供書発行 on the date it was sent) with the sections 紹介元情報 (920) and
// 紹介先情報 (910) — the receiving institution, its department (JP_eCS_Department) and doctor, which is how the
// profile names the recipient — and, under 構造情報 (300), 紹介目的 (950), 傷病名・主訴 (340), 現病歴 (360),
// 既往歴 (370), アレルギー・不耐性反応 (510, with the AllergyIntolerance entries), 検査結果 (620), 臨床経過 (330),
// 診療方針指示 (420, the follow-up plan) and 投薬指示 (430, with the MedicationRequest entries); 備考・連絡情報 (220)
// and, when the letter was uploaded as a file, PDF (230) with a DocumentReference whose url is
// "Binary/<AttachmentKey>" (see InlineAttachments). Sections carry their text as escaped XHTML; 紹介目的,
// 傷病名・主訴 and 現病歴, which the profile requires, say emptyReason "unavailable" when the letter leaves them empty.
//
// The document's date is when the referral was sent (else last updated, else created); the error is of kind
// Invalid when the letter has no author or no date, or a fact cannot be written.
func LetterDocument(ref renkei.Referral, from, to renkei.Institution, patient PatientInfo, allergies []renkei.Allergy, meds []renkei.Medication) ([]byte, error) {
	const op = "fhir.LetterDocument"
	fail := func(err error) ([]byte, error) {
		return nil, &renkei.Error{Op: op, Kind: renkei.Invalid, Message: "the referral letter cannot be written as FHIR: " + err.Error(),
			Japanese: "診療情報提供書をFHIRに書き出せません: " + err.Error(), Err: err}
	}
	l := ref.Letter
	when := ref.CreatedAt
	switch {
	case ref.SentAt != nil && !ref.SentAt.IsZero():
		when = *ref.SentAt
	case !ref.UpdatedAt.IsZero():
		when = ref.UpdatedAt
	}
	if when.IsZero() {
		return fail(fmt.Errorf("referral %d has no date", ref.ID))
	}
	when = when.In(jst)
	author := l.Author
	if author == "" {
		author = ref.FromUserName
	}
	if author == "" {
		return fail(fmt.Errorf("referral %d: the letter has no author", ref.ID))
	}
	for _, inst := range []renkei.Institution{from, to} {
		if inst.Code != "" && !renkei.ValidInstitutionCode(inst.Code) {
			return fail(fmt.Errorf("institution %q: %q is not a 医療機関コード", inst.Name, inst.Code))
		}
	}
	if to.Name == "" {
		to.Name = ref.ToName
	}
	if from.Name == "" {
		from.Name = ref.FromName
	}
	version := max(ref.Version, 1)
	x := newExporter(patient, nil)
	x.entries = append(x.entries, bundleEntry{}) // the Composition comes first; filled in at the end
	if err := x.addPatient(ProfilePatient, nil); err != nil {
		return fail(err)
	}
	subject := &reference{Reference: x.patientURL, Type: "Patient"}
	fromOrg := organizationResource(from, "org-from")
	addDepartment(fromOrg, l.Department)
	fromOrgURL := x.add(fromOrg, "Organization", fromOrg.ID)
	fromDoc := practitionerResource(author, "practitioner-from")
	fromDocURL := x.add(fromDoc, "Practitioner", fromDoc.ID)
	toOrg := organizationResource(to, "org-to")
	addDepartment(toOrg, ref.ToDepartment)
	toOrgURL := x.add(toOrg, "Organization", toOrg.ID)
	var toDocURL string
	if ref.ToDoctor != "" {
		toDocURL = x.add(practitionerResource(ref.ToDoctor, "practitioner-to"), "Practitioner", "practitioner-to")
	}
	var allergyRefs, medRefs []reference
	for i, a := range allergies {
		id := x.id("allergy", a.ID, i)
		r, err := allergyResource(a, id, subject, nil, ProfileAllergyIntolerance)
		if err != nil {
			return fail(err)
		}
		allergyRefs = append(allergyRefs, reference{Reference: x.add(r, "AllergyIntolerance", id), Type: "AllergyIntolerance"})
	}
	for i, m := range meds {
		id := x.id("medication", m.ID, i)
		r, err := medicationResource(m, id, i+1, subject, nil, ProfileMedicationRequest)
		if err != nil {
			return fail(err)
		}
		medRefs = append(medRefs, reference{Reference: x.add(r, "MedicationRequest", id), Type: "MedicationRequest"})
	}
	if err := x.duplicates(); err != nil {
		return fail(err)
	}
	code := from.Code
	if code == "" {
		code = from.ID
	}
	docID := fmt.Sprintf("%s^%d^renkei-referral-%d-v%d", code, when.Year(), ref.ID, version)
	comp := &composition{
		header: header{
			ResourceType: "Composition", ID: "composition",
			Meta:      &meta{LastUpdated: when.Format(time.RFC3339), Profile: []string{ProfileCompositionRefer}},
			Language:  "ja",
			Extension: []extension{{URL: extVersionNumber, ValueString: strconv.Itoa(version)}},
		},
		Identifier: &identifier{System: SystemResourceID, Value: docID},
		Status:     "final",
		Type:       &codeableConcept{Coding: []coding{{System: SystemDocType, Code: "57133-1", Display: "診療情報提供書"}}},
		Category:   []codeableConcept{{Coding: []coding{{System: SystemDocSubtype, Code: "OUTPATIENT", Display: "外来文書"}}}},
		Subject:    subject,
		Date:       when.Format(time.RFC3339),
		Author: []reference{
			{Reference: fromDocURL, Type: "Practitioner", Display: author},
			{Reference: fromOrgURL, Type: "Organization", Display: from.Name},
		},
		Title:     "診療情報提供書",
		Custodian: &reference{Reference: fromOrgURL, Type: "Organization", Display: from.Name},
		Event:     []compositionEvent{{Code: []codeableConcept{{Text: "診療情報提供書発行"}}, Period: &period{Start: when.Format("2006-01-02")}}},
	}
	fromSec := newSection(secReferralFrom, divOf(field{text: partyText(from.Name, l.Department, author)}))
	fromSec.Entry = []reference{{Reference: fromOrgURL, Type: "Organization"}, {Reference: fromDocURL, Type: "Practitioner"}}
	toSec := newSection(secReferralTo, divOf(field{text: partyText(to.Name, ref.ToDepartment, ref.ToDoctor)}))
	toSec.Entry = []reference{{Reference: toOrgURL, Type: "Organization"}}
	if toDocURL != "" {
		toSec.Entry = append(toSec.Entry, reference{Reference: toDocURL, Type: "Practitioner"})
	}
	body := newSection(secStructured, "")
	body.Section = []section{
		required(newSection(secPurpose, divOf(field{text: l.Purpose}))),
		required(newSection(secProblem, divOf(field{clsDiagnosis, l.Diagnosis}, field{clsChiefComplaint, l.ChiefComplaint}))),
		required(newSection(secPresent, divOf(field{text: l.PresentIllness}))),
	}
	optional := func(code, div string, entries []reference) {
		if div != "" || len(entries) > 0 {
			s := newSection(code, div)
			s.Entry = entries
			body.Section = append(body.Section, s)
		}
	}
	optional(secPast, divOf(field{text: l.History}), nil)
	optional(secAllergy, divOf(field{text: l.Allergies}), allergyRefs)
	optional(secStudy, divOf(field{clsTestResults, l.TestResults}, field{clsFindings, l.Findings}, field{clsImpression, l.Impression}), nil)
	optional(secCourse, divOf(field{text: l.Course}), nil)
	optional(secInstruction, divOf(field{text: l.FollowUp}), nil)
	optional(secMedication, divOf(field{text: l.Medications}), medRefs)
	comp.Section = []section{fromSec, toSec, body}
	if div := divOf(field{text: l.Remarks}); div != "" {
		comp.Section = append(comp.Section, newSection(secRemarks, div))
	}
	if l.AttachmentKey != "" {
		if l.AttachmentType == "" {
			return fail(fmt.Errorf("referral %d: the attached letter has no media type", ref.ID))
		}
		dr := &documentReference{
			header:  header{ResourceType: "DocumentReference", ID: "letter-file", Meta: &meta{Profile: []string{ProfileDocumentReference}}},
			Status:  "current",
			Type:    &codeableConcept{Coding: []coding{{System: SystemLOINC, Code: "57133-1", Display: "診療情報提供書"}}},
			Subject: subject,
			Date:    when.Format(time.RFC3339),
			Content: []docContent{{Attachment: &attachment{ContentType: l.AttachmentType, URL: "Binary/" + l.AttachmentKey, Title: "診療情報提供書"}}},
		}
		pdf := newSection(secPDF, divOf(field{text: "診療情報提供書（添付ファイル）"}))
		pdf.Entry = []reference{{Reference: x.add(dr, "DocumentReference", dr.ID), Type: "DocumentReference"}}
		comp.Section = append(comp.Section, pdf)
	}
	raw, err := marshalResource(comp)
	if err != nil {
		return fail(err)
	}
	x.entries[0] = bundleEntry{FullURL: uuidURL(x.scope(), "Composition", docID), Resource: raw}
	return marshal(&bundle{
		ResourceType: "Bundle",
		Meta:         &meta{LastUpdated: when.Format(time.RFC3339), Profile: []string{ProfileBundleReferral}},
		Language:     "ja",
		Identifier:   &identifier{System: SystemBundleID, Value: docID},
		Type:         "document",
		Timestamp:    when.Format("2006-01-02T15:04:05.000-07:00"),
		Entry:        x.entries,
	})
}

func newSection(code, div string) section {
	s := section{Title: sectionTitles[code], Code: &codeableConcept{Coding: []coding{{System: SystemDocSection, Code: code, Display: sectionTitles[code] + "セクション"}}}}
	if div != "" {
		s.Text = &narrative{Status: "additional", Div: div}
	}
	return s
}

// required marks an empty required section as such instead of inventing text for it.
func required(s section) section {
	if s.Text == nil && len(s.Entry) == 0 {
		s.EmptyReason = &codeableConcept{Coding: []coding{{System: csListEmptyReason, Code: "unavailable", Display: "Unavailable"}}}
	}
	return s
}

func partyText(inst, dept, doctor string) string {
	return strings.Join(nonEmpty(inst, dept, doctor), " ")
}

func addDepartment(o *organization, dept string) {
	if dept != "" {
		o.Extension = append(o.Extension, extension{URL: extDepartment, ValueCodeableConcept: &codeableConcept{Text: dept}})
	}
}

// practitionerResource writes a doctor's name (family and given split at the first space) as a JP Core
// Practitioner.
func practitionerResource(name, id string) *practitioner {
	n := humanName{Use: "official", Text: name}
	family, given, ok := strings.Cut(strings.ReplaceAll(name, "　", " "), " ")
	n.Family = family
	if ok && strings.TrimSpace(given) != "" {
		n.Given = []string{strings.TrimSpace(given)}
	}
	rep := "ABC"
	if !isASCII(name) {
		rep = "IDE"
	}
	n.Extension = []extension{{URL: extNameRepresentation, ValueCode: rep}}
	return &practitioner{header: header{ResourceType: "Practitioner", ID: id, Meta: &meta{Profile: []string{ProfilePractitioner}}}, Name: []humanName{n}}
}

// ParseLetterDocument reads a 診療情報提供書 document Bundle (JP-CLINS eReferral, as a clinic's EMR or
// LetterDocument writes it): the letter's text by section, its sender and recipient, the patient, and the
// allergies, medications and conditions it carries, checked as Parse checks them. Resources of other types
// (Encounter, Observation, FamilyMemberHistory, …) are not imported; their sections' text is, and a warning
// says so. Sections renkei has no field for are appended to Remarks under their title, with a warning.
//
// Like Parse it is all or nothing; the error is of kind Invalid (TooLarge above MaxSize) and wraps a
// *ValidationError.
func ParseLetterDocument(data []byte) (*LetterImport, error) {
	const op = "fhir.ParseLetterDocument"
	d, err := load(op, data)
	if err != nil {
		return nil, err
	}
	if d.bundle == nil || d.bundle.Type != "document" {
		d.errAt("Bundle.type", "a 診療情報提供書 is a Bundle of type document", "診療情報提供書の形式（document）ではありません")
		return nil, invalid(op, renkei.Invalid, d.issues)
	}
	if len(d.entries) == 0 || d.entries[0].index != 0 || d.entries[0].typ != "Composition" {
		d.errAt("Bundle.entry[0]", "the first entry of a document is its Composition", "文書の先頭に文書構成情報(Composition)がありません")
		return nil, invalid(op, renkei.Invalid, d.issues)
	}
	li := &LetterImport{}
	counts := map[string]int{}
	for _, e := range d.entries {
		switch e.typ {
		case "Patient", "Organization", "Practitioner", "Provenance", "OperationOutcome":
			d.support(e, counts)
		}
	}
	for _, e := range d.entries[1:] {
		switch e.typ {
		case "Patient", "Organization", "Practitioner", "Provenance", "OperationOutcome":
		case "AllergyIntolerance":
			e.label = d.label(e, "アレルギー", counts)
			if a, ok := d.allergy(e); ok {
				li.Allergies = append(li.Allergies, a)
			}
		case "Condition":
			e.label = d.label(e, "病名", counts)
			if c, ok := d.condition(e); ok {
				li.Conditions = append(li.Conditions, c)
			}
		case "MedicationRequest", "MedicationStatement":
			e.label = d.label(e, "処方", counts)
			if m, ok := d.medication(e); ok {
				li.Medications = append(li.Medications, m)
			}
		case "DocumentReference":
			e.label = d.label(e, "添付文書", counts)
			if doc, ok := d.document(e); ok {
				li.Attachments = append(li.Attachments, doc)
			}
		case "Encounter":
			e.label = d.label(e, "受診情報", counts)
			enc := &encounter{}
			if is := decode(e.raw, enc, e.loc, e.label+": "); is != nil {
				d.issues = append(d.issues, *is)
				continue
			}
			e.value = enc
		case "Composition":
			d.errAt(e.loc, "a second Composition", "文書構成情報(Composition)が2つあります")
		default:
			e.label = d.label(e, e.typ, counts)
			d.checker(e).warn("", e.typ+" is not imported; the text of its section is", "この情報（"+e.typ+"）はデータとしては取り込まず、文章として取り込みます")
		}
	}
	d.letter(d.entries[0], li)
	if d.failed() {
		return nil, invalid(op, renkei.Invalid, d.issues)
	}
	if d.patient != nil {
		p := patientOf(d.patient.value.(*patient))
		li.Patient = &p
	}
	if len(li.Attachments) > 0 {
		li.Letter.AttachmentType = li.Attachments[0].ContentType
	}
	li.Warnings = d.warnings()
	return li, nil
}

// letter reads the Composition into li.
func (d *doc) letter(e *entry, li *LetterImport) {
	e.label = "文書構成情報"
	c := d.checker(e)
	r := &composition{}
	if is := decode(e.raw, r, e.loc, e.label+": "); is != nil {
		d.issues = append(d.issues, *is)
		return
	}
	c.header(&r.header)
	switch r.Status {
	case "final", "amended", "preliminary":
	case "":
		c.err("status", "status is required", "文書の状態(status)がありません")
	default:
		c.err("status", "status "+r.Status+": the document was withdrawn or is not final", "取り消された文書のため取り込めません（"+r.Status+"）")
	}
	isReferral := false
	if r.Type != nil {
		for _, cd := range r.Type.Coding {
			if cd.Code == "57133-1" && (cd.System == SystemDocType || cd.System == SystemLOINC) {
				isReferral = true
			}
		}
	}
	if !isReferral {
		c.err("type", "not a 診療情報提供書: Composition.type is not 57133-1", "診療情報提供書（文書区分 57133-1）ではありません")
	}
	d.subject(c, "subject", r.Subject)
	c.dateTime("date", r.Date)
	if r.Date == "" {
		c.err("date", "date is required", "作成日(date)がありません")
	}
	li.Date = r.Date
	if r.Identifier != nil {
		li.Identifier = r.Identifier.Value
	}
	li.Version = 1
	for i, x := range r.Extension {
		if x.URL == extVersionNumber {
			if v, err := strconv.Atoi(strings.TrimSpace(x.ValueString)); err == nil && v > 0 {
				li.Version = v
			} else {
				c.warn(idx("extension", i), "version \""+x.ValueString+"\" is not a number; read as 1", "版数（"+x.ValueString+"）が数字ではないため第1版とします")
			}
		}
	}
	if len(r.Author) == 0 {
		c.err("author", "author is required", "作成者(author)がありません")
	}
	for _, a := range r.Author {
		if oe := d.resolve(a.Reference); a.Type == "Organization" || (oe != nil && oe.typ == "Organization") {
			if li.From.Institution == "" {
				li.From = d.party(a, li.From)
			}
		} else if li.Letter.Author == "" {
			li.Letter.Author = d.who(c, &r.header, &a)
		}
	}
	l := &li.Letter
	var walk func(path string, secs []section)
	walk = func(path string, secs []section) {
		for i, s := range secs {
			p := idx(path, i)
			code := ""
			if s.Code != nil {
				for _, cd := range s.Code.Coding {
					if cd.System == SystemDocSection || cd.System == "http://jpfhir.jp/fhir/eReferral/CodeSystem/document-section" {
						code = cd.Code
					}
				}
			}
			for j, en := range s.Entry {
				if te := d.resolve(en.Reference); te == nil {
					c.err(idx(p+".entry", j), "entry "+en.Reference+" is not in the document", "文書が参照するデータ（"+en.Reference+"）が文書に含まれていません")
				}
			}
			plain, classed := "", map[string]string{}
			if s.Text != nil && s.Text.Div != "" {
				var err error
				if plain, classed, err = textOfDiv(s.Text.Div); err != nil {
					c.err(p+".text.div", "narrative is not well-formed XHTML: "+err.Error(), "「"+s.Title+"」の本文の形式が正しくありません")
				}
			}
			switch code {
			case secStructured:
				walk(p+".section", s.Section)
				continue
			case secReferralFrom:
				for _, en := range s.Entry {
					li.From = d.party(en, li.From)
				}
				if li.From.Doctor != "" && l.Author == "" {
					l.Author = li.From.Doctor
				}
			case secReferralTo:
				for _, en := range s.Entry {
					li.To = d.party(en, li.To)
				}
			case secPurpose:
				l.Purpose = plain
				if plain == "" {
					l.Purpose = d.purposeOf(s.Entry)
				}
			case secProblem:
				if len(classed) > 0 {
					l.Diagnosis, l.ChiefComplaint = classed[clsDiagnosis], classed[clsChiefComplaint]
				} else {
					l.Diagnosis = plain
				}
			case secPresent:
				l.PresentIllness = plain
			case secPast:
				l.History = join(l.History, plain)
			case secFamily:
				l.History = join(l.History, labelled("家族歴", plain))
			case secStudy:
				if len(classed) > 0 {
					l.TestResults, l.Findings, l.Impression = classed[clsTestResults], classed[clsFindings], classed[clsImpression]
				} else {
					l.TestResults = plain
				}
			case secCourse:
				l.Course = plain
			case secInstruction:
				l.FollowUp = plain
			case secMedication:
				l.Medications = plain
			case secAllergy:
				l.Allergies = plain
			case secRemarks:
				l.Remarks = join(l.Remarks, plain)
			case secPDF, secAttachment:
			default:
				title := s.Title
				if title == "" {
					title = sectionTitles[code]
				}
				if plain != "" {
					l.Remarks = join(l.Remarks, labelled(title, plain))
					c.warn(p, "section "+code+" ("+title+") has no field in renkei: its text is added to Remarks", "「"+title+"」は備考に追記して取り込みます")
				}
			}
			if len(s.Section) > 0 && code != secStructured {
				walk(p+".section", s.Section)
			}
		}
	}
	walk("section", r.Section)
	if l.Department == "" {
		l.Department = li.From.Department
	}
	if li.From.Doctor == "" {
		li.From.Doctor = l.Author
	}
}

// party fills a Party from a section entry (Organization or Practitioner).
func (d *doc) party(r reference, p Party) Party {
	e := d.resolve(r.Reference)
	if e == nil {
		return p
	}
	switch v := e.value.(type) {
	case *organization:
		p.Institution, p.InstitutionCode = v.Name, institutionCode(v)
		for _, x := range v.Extension {
			if x.URL == extDepartment {
				p.Department = text(x.ValueCodeableConcept)
			}
		}
	case *practitioner:
		p.Doctor = personName(v.Name)
	}
	return p
}

// purposeOf reads the 紹介目的 from the Encounter the section refers to (Encounter.reasonCode), when the section
// has no text.
func (d *doc) purposeOf(entries []reference) string {
	var out []string
	for _, en := range entries {
		if e := d.resolve(en.Reference); e != nil {
			if enc, ok := e.value.(*encounter); ok {
				for _, rc := range enc.ReasonCode {
					if t := text(&rc); t != "" {
						out = append(out, t)
					}
				}
			}
		}
	}
	return strings.Join(out, "\n")
}

func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "\n" + b
}

func labelled(title, text string) string {
	if text == "" {
		return ""
	}
	return title + ": " + strings.TrimLeftFunc(text, unicode.IsSpace)
}
