package fhir

import (
	"fmt"
	"maps"
	"strings"
	"time"

	"renkei"
)

var allergyCodeSystems = func() codeSystems {
	m := maps.Clone(allergenSystems)
	maps.Copy(m, drugSystems) // JP-CLINS 薬剤禁忌 (category medication, criticality high) code the drug itself
	return m
}()

// allergy checks an AllergyIntolerance against JP Core (and JP-CLINS when it claims it) and maps it.
func (d *doc) allergy(e *entry) (renkei.Allergy, bool) {
	c := d.checker(e)
	r := &allergyIntolerance{}
	if is := decode(e.raw, r, e.loc, e.label+": "); is != nil {
		d.issues = append(d.issues, *is)
		return renkei.Allergy{}, false
	}
	e.value = r
	c.header(&r.header)
	key := d.subject(c, "patient", r.Patient)
	if r.Code == nil || (r.Code.Text == "" && len(r.Code.Coding) == 0) {
		c.err("code", "code (the substance) is required", "原因物質(code)がありません")
	} else if c.clins && r.Code.Text == "" {
		c.err("code.text", "JP-CLINS requires code.text", "原因物質の名称(code.text)がありません")
	}
	c.codes("code", r.Code, allergyCodeSystems, "an allergen", "原因物質")
	clinical, verif := "", ""
	if r.ClinicalStatus != nil {
		clinical = c.conceptIn("clinicalStatus", r.ClinicalStatus, csAllergyClinical, []string{"active", "inactive", "resolved"}, "臨床状態(clinicalStatus)")
	}
	if r.VerificationStatus != nil {
		verif = c.conceptIn("verificationStatus", r.VerificationStatus, csAllergyVerification, []string{"unconfirmed", "confirmed", "refuted", "entered-in-error"}, "確からしさ(verificationStatus)")
	}
	switch {
	case verif == "entered-in-error" && r.ClinicalStatus != nil:
		c.err("clinicalStatus", "clinicalStatus SHALL NOT be present when verificationStatus is entered-in-error (ait-2)", "誤登録とされたデータに臨床状態が書かれています")
	case verif != "entered-in-error" && r.ClinicalStatus == nil:
		c.warn("clinicalStatus", "clinicalStatus missing (ait-1): imported as active", "臨床状態(clinicalStatus)がないため「現存」として取り込みます")
		clinical = "active"
	}
	c.codeIn("type", r.Type, []string{"allergy", "intolerance"}, "種類(type)")
	category := renkei.AllergyCategory("")
	for i, cat := range r.Category {
		c.codeIn(idx("category", i), cat, []string{"food", "medication", "environment", "biologic"}, "分類(category)")
		m := allergyCategory(cat)
		switch {
		case category == "":
			category = m
		case m != category:
			c.warn(idx("category", i), "more than one category: imported as "+string(category), "分類が複数あるため最初の分類で取り込みます")
		}
	}
	c.codeIn("criticality", r.Criticality, []string{"low", "high", "unable-to-assess"}, "重篤度(criticality)")
	c.dateTime("onsetDateTime", r.OnsetDateTime)
	c.period("onsetPeriod", r.OnsetPeriod)
	c.dateTime("recordedDate", r.RecordedDate)
	c.dateTime("lastOccurrence", r.LastOccurrence)
	var reactions []string
	severity := ""
	for i, rx := range r.Reaction {
		p := idx("reaction", i)
		for j, x := range rx.ModifierExtension {
			c.err(idx(p+".modifierExtension", j), "unknown modifierExtension "+x.URL, "意味を変える拡張（modifierExtension）が含まれているため取り込めません")
		}
		if len(rx.Manifestation) == 0 {
			c.err(p+".manifestation", "reaction.manifestation is required", "症状(reaction.manifestation)がありません")
		}
		for _, m := range rx.Manifestation {
			if t := text(&m); t != "" {
				reactions = append(reactions, t)
			}
		}
		if rx.Description != "" {
			c.warn(p+".description", "reaction.description not imported", "症状の説明(reaction.description)は取り込まれません")
		}
		c.codeIn(p+".severity", rx.Severity, []string{"mild", "moderate", "severe"}, "症状の重さ(severity)")
		if severityRank(rx.Severity) > severityRank(severity) {
			severity = rx.Severity
		}
	}
	if severity == "" {
		switch r.Criticality {
		case "high":
			severity = "severe"
		case "low":
			severity = "mild"
		}
	}
	notes(c, r.Note)
	name, code := d.source(c, e, &r.header, nil)
	e.code = code
	if c.skipWithheld() {
		return renkei.Allergy{}, false
	}
	if verif == "refuted" && !d.failed() {
		c.warn("verificationStatus", "refuted: the allergy was ruled out, so it is not imported", "「否定された」アレルギーのため取り込みません")
		return renkei.Allergy{}, false
	}
	author := d.who(c, &r.header, r.Recorder)
	if author == "" {
		author = d.who(c, &r.header, r.Asserter)
	}
	f := fact(e, author, r.RecordedDate, key, name)
	f.EnteredInError = verif == "entered-in-error"
	return renkei.Allergy{
		Fact:      f,
		Category:  category,
		Substance: text(r.Code),
		Codes:     codingsOf(r.Code),
		Reaction:  strings.Join(reactions, "、"),
		Severity:  severity,
		Onset:     onset(r.OnsetDateTime, r.OnsetString, r.OnsetPeriod, r.OnsetAge),
		Status:    clinical,
	}, true
}

func allergyCategory(fhir string) renkei.AllergyCategory {
	switch fhir {
	case "medication":
		return renkei.AllergyDrug
	case "food":
		return renkei.AllergyFood
	case "environment", "biologic":
		return renkei.AllergyOther
	}
	return ""
}

func severityRank(s string) int {
	switch s {
	case "mild":
		return 1
	case "moderate":
		return 2
	case "severe":
		return 3
	}
	return 0
}

// onset returns an onset[x] as written.
func onset(dt, s string, p *period, age *quantity) string {
	switch {
	case dt != "":
		return dt
	case s != "":
		return s
	case p != nil && p.Start != "":
		return p.Start
	case age != nil && age.Value != "":
		return string(age.Value) + age.Unit
	}
	return ""
}

// allergyResource writes an Allergy as a JP Core AllergyIntolerance.
func allergyResource(a renkei.Allergy, id string, subject *reference, ext []extension, profile string) (*allergyIntolerance, error) {
	r := &allergyIntolerance{
		header:  header{ResourceType: "AllergyIntolerance", ID: id, Meta: &meta{Profile: []string{profile}}, Extension: ext},
		Code:    conceptOf(a.Codes, a.Substance),
		Patient: subject,
	}
	switch a.Category {
	case renkei.AllergyDrug:
		r.Category = []string{"medication"}
	case renkei.AllergyFood:
		r.Category = []string{"food"}
	case renkei.AllergyOther:
		r.Category = []string{"environment"}
	case "":
	default:
		return nil, fmt.Errorf("allergy %q: unknown category %q", a.Substance, a.Category)
	}
	if r.Code == nil {
		return nil, fmt.Errorf("allergy %d has neither substance nor code", a.ID)
	}
	if a.EnteredInError {
		r.VerificationStatus = &codeableConcept{Coding: []coding{{System: csAllergyVerification, Code: "entered-in-error"}}}
	} else {
		status := a.Status
		if status == "" {
			status = "active"
		}
		if status != "active" && status != "inactive" && status != "resolved" {
			return nil, fmt.Errorf("allergy %q: unknown status %q", a.Substance, a.Status)
		}
		r.ClinicalStatus = &codeableConcept{Coding: []coding{{System: csAllergyClinical, Code: status}}}
		r.VerificationStatus = &codeableConcept{Coding: []coding{{System: csAllergyVerification, Code: "confirmed"}}}
	}
	var err error
	if r.OnsetDateTime, r.OnsetString, err = onsetOut(a.Onset); err != nil {
		return nil, fmt.Errorf("allergy %q: %w", a.Substance, err)
	}
	r.RecordedDate = instantOut(a.RecordedAt)
	if a.Author != "" {
		r.Recorder = &reference{Display: a.Author}
	}
	if severityRank(a.Severity) == 0 && a.Severity != "" {
		return nil, fmt.Errorf("allergy %q: unknown severity %q", a.Substance, a.Severity)
	}
	if a.Reaction != "" || a.Severity != "" {
		m := codeableConcept{Text: a.Reaction}
		if a.Reaction == "" {
			// R4 requires a manifestation; say it is not known rather than invent one.
			m.Extension = []extension{{URL: extDataAbsentReason, ValueCode: "unknown"}}
		}
		r.Reaction = []allergyReaction{{Manifestation: []codeableConcept{m}, Severity: a.Severity}}
	}
	return r, nil
}

// onsetOut writes an onset as written: a FHIR dateTime when it is one, else a string.
func onsetOut(s string) (dt, str string, err error) {
	if s == "" {
		return "", "", nil
	}
	if reDateTime.MatchString(s) {
		if !validCalendar(s) {
			return "", "", fmt.Errorf("date %q does not exist", s)
		}
		return s, "", nil
	}
	return "", s, nil
}

// instantOut writes a time as a FHIR instant, or "" for the zero time.
func instantOut(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}
