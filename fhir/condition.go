package fhir

import (
	"fmt"

	"renkei"
)

// condition checks a Condition against JP Core (and JP-CLINS when it claims it) and maps it.
func (d *doc) condition(e *entry) (renkei.Condition, bool) {
	c := d.checker(e)
	r := &condition{}
	if is := decode(e.raw, r, e.loc, e.label+": "); is != nil {
		d.issues = append(d.issues, *is)
		return renkei.Condition{}, false
	}
	e.value = r
	c.header(&r.header)
	key := d.subject(c, "subject", r.Subject)
	if r.Code == nil || (r.Code.Text == "" && len(r.Code.Coding) == 0) {
		c.err("code", "code (the diagnosis) is required", "病名(code)がありません")
	}
	c.codes("code", r.Code, diseaseSystems, "a diagnosis", "病名")
	clinical, verif := "", ""
	if r.ClinicalStatus != nil {
		clinical = c.conceptIn("clinicalStatus", r.ClinicalStatus, csConditionClinical, []string{"active", "recurrence", "relapse", "inactive", "remission", "resolved"}, "臨床状態(clinicalStatus)")
	}
	if r.VerificationStatus != nil {
		verif = c.conceptIn("verificationStatus", r.VerificationStatus, csConditionVerStatus, []string{"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}, "確からしさ(verificationStatus)")
	}
	if verif == "entered-in-error" && r.ClinicalStatus != nil {
		c.err("clinicalStatus", "clinicalStatus SHALL NOT be present when verificationStatus is entered-in-error (con-5)", "誤登録とされた病名に臨床状態が書かれています")
	}
	for i, cat := range r.Category {
		for j, cd := range cat.Coding {
			if cd.System == csConditionCategory && cd.Code != "problem-list-item" && cd.Code != "encounter-diagnosis" {
				c.err(idx(idx("category", i)+".coding", j)+".code", "\""+cd.Code+"\" is not problem-list-item or encounter-diagnosis", "病名の分類(category)の値が正しくありません")
			}
		}
	}
	status := ""
	switch clinical {
	case "active", "inactive", "resolved":
		status = clinical
	case "recurrence", "relapse":
		status = "active"
		c.warn("clinicalStatus", "clinicalStatus "+clinical+" imported as active", "臨床状態「"+clinical+"」は「活動性」として取り込みます")
	case "remission":
		status = "inactive"
		c.warn("clinicalStatus", "clinicalStatus remission imported as inactive", "臨床状態「寛解」は「非活動性」として取り込みます")
	}
	c.dateTime("onsetDateTime", r.OnsetDateTime)
	c.period("onsetPeriod", r.OnsetPeriod)
	if c.clins && r.OnsetDateTime == "" {
		c.err("onsetDateTime", "JP-CLINS requires onsetDateTime (the 病名開始日)", "病名開始日(onsetDateTime)がありません")
	}
	c.dateTime("abatementDateTime", r.AbatementDateTime)
	if r.AbatementDateTime != "" || r.AbatementString != "" {
		c.warn("abatement", "abatement not imported; the clinical status says whether the condition is resolved", "転帰日(abatement)は取り込まれません")
	}
	c.dateTime("recordedDate", r.RecordedDate)
	notes(c, r.Note)
	name, code := d.source(c, e, &r.header, nil)
	e.code = code
	if c.skipWithheld() {
		return renkei.Condition{}, false
	}
	if verif == "refuted" {
		c.warn("verificationStatus", "refuted: the diagnosis was ruled out, so it is not imported", "「否定された」病名のため取り込みません")
		return renkei.Condition{}, false
	}
	author := d.who(c, &r.header, r.Recorder)
	if author == "" {
		author = d.who(c, &r.header, r.Asserter)
	}
	f := fact(e, author, r.RecordedDate, key, name)
	f.EnteredInError = verif == "entered-in-error"
	return renkei.Condition{
		Fact:  f,
		Name:  text(r.Code),
		Codes: codingsOf(r.Code),
		Onset: onset(r.OnsetDateTime, r.OnsetString, r.OnsetPeriod, r.OnsetAge),
		// 疑い病名: provisional and differential, and their parent unconfirmed, are all not (yet) confirmed.
		Suspected: verif == "provisional" || verif == "differential" || verif == "unconfirmed",
		Status:    status,
	}, true
}

// conditionResource writes a Condition as a JP Core Condition.
func conditionResource(cd renkei.Condition, id string, subject *reference, ext []extension, profile string) (*condition, error) {
	r := &condition{
		header:   header{ResourceType: "Condition", ID: id, Meta: &meta{Profile: []string{profile}}, Extension: ext},
		Category: []codeableConcept{{Coding: []coding{{System: csConditionCategory, Code: "problem-list-item"}}}},
		Code:     conceptOf(cd.Codes, cd.Name),
		Subject:  subject,
	}
	if r.Code == nil {
		return nil, fmt.Errorf("condition %d has neither name nor code", cd.ID)
	}
	verif := "confirmed"
	if cd.Suspected {
		verif = "provisional"
	}
	if cd.EnteredInError {
		verif = "entered-in-error"
	} else {
		status := cd.Status
		if status == "" {
			status = "active"
		}
		if status != "active" && status != "inactive" && status != "resolved" {
			return nil, fmt.Errorf("condition %q: unknown status %q", cd.Name, cd.Status)
		}
		r.ClinicalStatus = &codeableConcept{Coding: []coding{{System: csConditionClinical, Code: status}}}
	}
	r.VerificationStatus = &codeableConcept{Coding: []coding{{System: csConditionVerStatus, Code: verif}}}
	var err error
	if r.OnsetDateTime, r.OnsetString, err = onsetOut(cd.Onset); err != nil {
		return nil, fmt.Errorf("condition %q: %w", cd.Name, err)
	}
	r.RecordedDate = instantOut(cd.RecordedAt)
	if cd.Author != "" {
		r.Recorder = &reference{Display: cd.Author}
	}
	return r, nil
}
