package fhir

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"renkei"
)

// checker collects the issues of one resource. base is the resource's location (Bundle.entry[2].resource),
// label its name for a clerk (アレルギー 2件目).
type checker struct {
	issues *[]Issue
	base   string
	label  string
	clins  bool // the resource claims a JP-CLINS (電子カルテ情報共有サービス) profile
	// withheld: the resource is tagged 未告知 (UNINFORMED: not told to the patient) or 未提供 (UNDELIVERED: not to
	// be shared). renkei shows patients their own record and has no way to keep one fact from them, so such a
	// fact is not imported (with a warning).
	withheld bool
}

// csEHRSharingIndication is JP-CLINS's meta.tag code system: LTS (長期保存), UNINFORMED (未告知), UNDELIVERED (未提供).
const csEHRSharingIndication = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication"

// skipWithheld reports (with a warning) whether the resource must not be imported because of its meta.tag.
func (c *checker) skipWithheld() bool {
	if c.withheld {
		c.warn("meta.tag", "tagged UNINFORMED/UNDELIVERED (not to be shown to the patient or shared): not imported, since renkei shows patients their record", "未告知または未提供の指定があるため取り込みません（患者本人にも表示されるため）")
	}
	return c.withheld
}

func (c *checker) add(sev Severity, path, en, ja string) {
	loc := c.base
	if path != "" {
		loc += "." + path
	}
	*c.issues = append(*c.issues, Issue{Severity: sev, Location: loc, Message: en, MessageJa: c.label + ": " + ja})
}

func (c *checker) err(path, en, ja string)  { c.add(Error, path, en, ja) }
func (c *checker) warn(path, en, ja string) { c.add(Warning, path, en, ja) }

// FHIR R4 primitive formats (https://hl7.org/fhir/R4/datatypes.html).
var (
	reDate     = regexp.MustCompile(`^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?$`)
	reDateTime = regexp.MustCompile(`^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$`)
	reInstant  = regexp.MustCompile(`^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$`)
	reID       = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
)

// validCalendar reports whether the day part of a full date exists (the regexes accept 2023-02-30).
func validCalendar(s string) bool {
	if len(s) < 10 {
		return true
	}
	_, err := time.Parse("2006-01-02", s[:10])
	return err == nil
}

// date checks a FHIR date element.
func (c *checker) date(path, v string) {
	if v != "" && (!reDate.MatchString(v) || !validCalendar(v)) {
		c.err(path, "\""+v+"\" is not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)", "日付の形式が正しくありません（"+v+"。例: 2024-05-01）")
	}
}

// dateTime checks a FHIR dateTime element.
func (c *checker) dateTime(path, v string) {
	if v != "" && (!reDateTime.MatchString(v) || !validCalendar(v)) {
		c.err(path, "\""+v+"\" is not a FHIR dateTime (YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+09:00)", "日時の形式が正しくありません（"+v+"。例: 2024-05-01 または 2024-05-01T10:00:00+09:00）")
	}
}

// instant checks a FHIR instant element.
func (c *checker) instant(path, v string) {
	if v != "" && (!reInstant.MatchString(v) || !validCalendar(v)) {
		c.err(path, "\""+v+"\" is not a FHIR instant (YYYY-MM-DDThh:mm:ss+09:00)", "日時の形式が正しくありません（"+v+"。例: 2024-05-01T10:00:00+09:00）")
	}
}

func (c *checker) period(path string, p *period) {
	if p == nil {
		return
	}
	c.dateTime(path+".start", p.Start)
	c.dateTime(path+".end", p.End)
	if p.Start != "" && p.End != "" && reDateTime.MatchString(p.Start) && reDateTime.MatchString(p.End) {
		s, e := parseDateTime(p.Start), parseDateTime(p.End)
		if !s.IsZero() && !e.IsZero() && e.Before(s) {
			c.err(path, "period ends before it starts", "終了日が開始日より前になっています")
		}
	}
}

// jst is the zone of dates written without one: renkei serves Japan.
var jst = time.FixedZone("JST", 9*60*60)

// parseDateTime reads a FHIR date, dateTime or instant; a partial date is its first instant in JST.
func parseDateTime(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02", "2006-01", "2006"} {
		if t, err := time.ParseInLocation(layout, s, jst); err == nil {
			return t
		}
	}
	return time.Time{}
}

// header checks what every resource may carry that changes its meaning.
func (c *checker) header(h *header) {
	if h.ID != "" && !reID.MatchString(h.ID) {
		c.err("id", "id \""+h.ID+"\" is not a FHIR id (1-64 letters, digits, '-' and '.')", "IDの形式が正しくありません")
	}
	if h.ImplicitRules != "" {
		c.err("implicitRules", "implicitRules is set: the resource follows rules renkei does not know", "このデータは独自の規則（implicitRules）で書かれているため取り込めません")
	}
	for i, e := range h.ModifierExtension {
		c.err(idx("modifierExtension", i), "unknown modifierExtension "+e.URL+": it may change the meaning of the resource", "意味を変える拡張（modifierExtension）が含まれているため取り込めません")
	}
	if h.Meta != nil {
		for _, t := range h.Meta.Tag {
			if t.System == csEHRSharingIndication && (t.Code == "UNINFORMED" || t.Code == "UNDELIVERED") {
				c.withheld = true
			}
		}
		for _, p := range h.Meta.Profile {
			if strings.HasPrefix(p, "http://jpfhir.jp/fhir/clins/") || strings.HasPrefix(p, "http://jpfhir.jp/fhir/eCS/") {
				c.clins = true
			}
		}
	}
}

func idx(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// codeIn checks that a code element (a FHIR code, not a CodeableConcept) is one of the allowed values.
func (c *checker) codeIn(path, v string, allowed []string, ja string) {
	if v != "" && !slices.Contains(allowed, v) {
		c.err(path, "\""+v+"\" is not one of "+strings.Join(allowed, ", "), ja+"の値（"+v+"）が正しくありません")
	}
}

// conceptIn checks a CodeableConcept bound (required) to a FHIR code system: its codings in that system must
// use allowed codes, and one must be present. It returns the code found.
func (c *checker) conceptIn(path string, cc *codeableConcept, system string, allowed []string, ja string) string {
	if cc == nil {
		return ""
	}
	found := ""
	for i, cd := range cc.Coding {
		p := idx(path+".coding", i)
		if cd.System != system {
			continue
		}
		if !slices.Contains(allowed, cd.Code) {
			c.err(p+".code", "\""+cd.Code+"\" is not one of "+strings.Join(allowed, ", "), ja+"の値（"+cd.Code+"）が正しくありません")
			continue
		}
		if found == "" {
			found = cd.Code
		}
	}
	if found == "" && !hasIssueAt(c, path) {
		c.err(path, "no coding from "+system, ja+"のコードがありません")
	}
	return found
}

// hasIssueAt reports whether an error was already reported under path (to avoid saying the same thing twice).
func hasIssueAt(c *checker, path string) bool {
	loc := c.base + "." + path
	for _, is := range *c.issues {
		if is.Severity == Error && strings.HasPrefix(is.Location, loc) {
			return true
		}
	}
	return false
}

// reference checks that a Reference names something.
func (c *checker) reference(path string, r *reference, required bool, ja string) {
	if r == nil {
		if required {
			c.err(path, path+" is required", ja+"("+path+")の指定がありません")
		}
		return
	}
	if r.Reference == "" && (r.Identifier == nil || r.Identifier.Value == "") && r.Display == "" {
		c.err(path, path+" has no reference, identifier or display", ja+"("+path+")の指定が空です")
	}
}

// codeSystems groups the code systems a kind of fact is expected to use, with their OID and variant names.
type codeSystems map[string]string // system URI → name for messages

var (
	drugSystems = codeSystems{
		SystemYJ: "YJ", "urn:oid:1.2.392.100495.20.1.73": "YJ", "urn:oid:1.2.392.100495.20.2.73": "YJ",
		"http://www.capstandard.jp/iyaku.info/CodeSystem/YJ_code": "YJ",
		SystemHOT9: "HOT9", "urn:oid:1.2.392.200119.4.403.1": "HOT9",
		SystemHOT7: "HOT7", "urn:oid:1.2.392.200119.4.403.2": "HOT7",
		SystemHOT13: "HOT13", "urn:oid:1.2.392.200119.4.402.1": "HOT13",
		"http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationGeneralOrderCode": "一般名処方マスタ",
		"urn:oid:1.2.392.100495.20.1.81":                                        "一般名処方マスタ", "urn:oid:1.2.392.100495.20.2.81": "一般名処方マスタ",
		"urn:oid:1.2.392.100495.20.2.71": "レセプト電算医薬品コード",
	}
	allergenSystems = codeSystems{
		SystemJFAGYFood: "JFAGY", SystemJFAGYMedication: "JFAGY", SystemJFAGYNonFoodNonMed: "JFAGY",
		"http://jpfhir.jp/fhir/core/CodeSystem/GCM/JP_JfagyMedicationAllergen_CS": "JFAGY",
		"http://jpfhir.jp/fhir/core/CodeSystem/YCM/JP_JfagyMedicationAllergen_CS": "JFAGY",
	}
	diseaseSystems = codeSystems{
		SystemMEDISDiseaseEx: "MEDIS病名交換用コード", "urn:oid:1.2.392.200119.4.101.6": "MEDIS病名交換用コード",
		SystemMEDISDiseaseKey: "MEDIS病名管理番号", "urn:oid:1.2.392.200119.4.101.2": "MEDIS病名管理番号",
		SystemReceiptDisease: "傷病名コード",
		SystemICD10:          "ICD-10", "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-3digits": "ICD-10",
		"http://hl7.org/fhir/sid/icd-10": "ICD-10", "urn:oid:2.16.840.1.113883.6.3": "ICD-10",
	}
)

// codes checks the codings of a coded fact against the systems expected for it and returns them as they are.
// A coding from another system is accepted with a warning when the concept has text a person can read (the
// CodeableConcept's text or the coding's display); without any text it is an error, since nobody could tell
// what the fact is.
func (c *checker) codes(path string, cc *codeableConcept, expected codeSystems, what, whatJa string) {
	if cc == nil {
		return
	}
	for i, cd := range cc.Coding {
		p := idx(path+".coding", i)
		if cd.Code == "" {
			c.err(p+".code", "coding without a code", whatJa+"のコードが空です")
			continue
		}
		if _, ok := expected[cd.System]; ok {
			continue
		}
		readable := cc.Text != "" || cd.Display != ""
		sys := cd.System
		if sys == "" {
			sys = "(none)"
		}
		switch {
		case !readable:
			c.err(p+".system", "code system "+sys+" is not one renkei knows for "+what+" and there is no text", whatJa+"のコード体系（"+sys+"）が不明で、名称もありません")
		default:
			c.warn(p+".system", "code system "+sys+" is not a JP Core/JP-CLINS system for "+what+"; the text is kept", whatJa+"のコード体系（"+sys+"）は標準ではありません。名称で取り込みます")
		}
	}
}

// text returns what people read for a concept: its text, else the first display.
func text(cc *codeableConcept) string {
	if cc == nil {
		return ""
	}
	if cc.Text != "" {
		return cc.Text
	}
	for _, cd := range cc.Coding {
		if cd.Display != "" {
			return cd.Display
		}
	}
	return ""
}

// codingsOf returns the codings as renkei keeps them: exactly as they arrived.
func codingsOf(cc *codeableConcept) []renkei.Coding {
	if cc == nil {
		return nil
	}
	var out []renkei.Coding
	for _, cd := range cc.Coding {
		out = append(out, renkei.Coding{System: cd.System, Code: cd.Code, Display: cd.Display})
	}
	return out
}

// conceptOf is the inverse of codingsOf and text, for export.
func conceptOf(codes []renkei.Coding, txt string) *codeableConcept {
	cc := &codeableConcept{Text: txt}
	for _, cd := range codes {
		cc.Coding = append(cc.Coding, coding{System: cd.System, Code: cd.Code, Display: cd.Display})
	}
	if len(cc.Coding) == 0 && cc.Text == "" {
		return nil
	}
	return cc
}

// hl7 code systems of the coded status elements.
const (
	csAllergyClinical     = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
	csAllergyVerification = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
	csConditionClinical   = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	csConditionVerStatus  = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	csConditionCategory   = "http://terminology.hl7.org/CodeSystem/condition-category"
	csListEmptyReason     = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
)
