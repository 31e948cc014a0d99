package fhir

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"renkei"
)

var (
	medicationRequestStatuses   = []string{"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}
	medicationRequestIntents    = []string{"proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option"}
	medicationStatementStatuses = []string{"active", "completed", "entered-in-error", "intended", "stopped", "on-hold", "unknown", "not-taken"}
)

// JP Core identifier systems of a prescription's RP number and the order of a drug within the RP.
const (
	systemRPNumber  = "urn:oid:1.2.392.100495.20.3.81"
	systemOrderInRP = "urn:oid:1.2.392.100495.20.3.82"
)

// medication checks a MedicationRequest or MedicationStatement and maps it.
func (d *doc) medication(e *entry) (renkei.Medication, bool) {
	c := d.checker(e)
	var (
		h          *header
		status     string
		concept    *codeableConcept
		medRef     *reference
		subject    *reference
		dosages    []dosage
		dosagePath string
		recorded   string
		author     string
		prescriber string
		start, end string
		skip       bool
		notesOf    []annotation
	)
	if e.typ == "MedicationRequest" {
		r := &medicationRequest{}
		if is := decode(e.raw, r, e.loc, e.label+": "); is != nil {
			d.issues = append(d.issues, *is)
			return renkei.Medication{}, false
		}
		e.value = r
		h, concept, medRef, subject, dosages, dosagePath = &r.header, r.MedicationCodeableConcept, r.MedicationReference, r.Subject, r.DosageInstruction, "dosageInstruction"
		c.header(h)
		status = requiredCode(c, "status", r.Status, medicationRequestStatuses, "状態(status)")
		requiredCode(c, "intent", r.Intent, medicationRequestIntents, "指示の種類(intent)")
		switch r.Intent {
		case "proposal", "plan", "option":
			c.warn("intent", "intent "+r.Intent+" is not an order; imported as a medication", "処方の指示ではなく「"+r.Intent+"」ですが、処方として取り込みます")
		}
		if r.DoNotPerform != nil && *r.DoNotPerform {
			c.err("doNotPerform", "doNotPerform is true: this forbids the drug and is not a prescription", "「投与しない」指示のため処方として取り込めません")
		}
		c.dateTime("authoredOn", r.AuthoredOn)
		recorded = r.AuthoredOn
		author = d.who(c, h, r.Recorder)
		if author == "" {
			author = d.who(c, h, r.Requester)
		}
		if r.ReportedReference != nil {
			prescriber = d.who(c, h, r.ReportedReference)
		}
		if r.DispenseRequest != nil && r.DispenseRequest.ValidityPeriod != nil {
			c.period("dispenseRequest.validityPeriod", r.DispenseRequest.ValidityPeriod)
			start, end = r.DispenseRequest.ValidityPeriod.Start, r.DispenseRequest.ValidityPeriod.End
		}
		notesOf = r.Note
	} else {
		r := &medicationStatement{}
		if is := decode(e.raw, r, e.loc, e.label+": "); is != nil {
			d.issues = append(d.issues, *is)
			return renkei.Medication{}, false
		}
		e.value = r
		h, concept, medRef, subject, dosages, dosagePath = &r.header, r.MedicationCodeableConcept, r.MedicationReference, r.Subject, r.Dosage, "dosage"
		c.header(h)
		status = requiredCode(c, "status", r.Status, medicationStatementStatuses, "状態(status)")
		c.dateTime("effectiveDateTime", r.EffectiveDateTime)
		c.period("effectivePeriod", r.EffectivePeriod)
		c.dateTime("dateAsserted", r.DateAsserted)
		recorded = r.DateAsserted
		if r.EffectivePeriod != nil {
			start, end = r.EffectivePeriod.Start, r.EffectivePeriod.End
		} else {
			start = r.EffectiveDateTime
		}
		if src := r.InformationSource; src != nil {
			if oe := d.resolve(src.Reference); src.Type == "Organization" || (oe != nil && oe.typ == "Organization") {
				prescriber = d.who(c, h, src)
			} else {
				author = d.who(c, h, src)
			}
		}
		switch r.Status {
		case "not-taken":
			c.warn("status", "not-taken: the patient does not take this drug, so it is not imported", "「服用していない」薬のため取り込みません")
			skip = true
		case "intended":
			c.warn("status", "intended: imported as active", "「服用予定」の薬を「服用中」として取り込みます")
		}
		notesOf = r.Note
	}
	key := d.subject(c, "subject", subject)
	switch {
	case concept != nil:
		if concept.Text == "" && len(concept.Coding) == 0 {
			c.err("medicationCodeableConcept", "medicationCodeableConcept is empty", "薬剤(medication)の指定が空です")
		}
		c.codes("medicationCodeableConcept", concept, drugSystems, "a drug", "薬剤")
	case medRef != nil && strings.HasPrefix(medRef.Reference, "#"):
		m := &medication{}
		if _, ok := d.contained(c, h, medRef.Reference, m); !ok || m.Code == nil {
			c.err("medicationReference", "medicationReference "+medRef.Reference+" names no contained Medication with a code", "薬剤(medication)の参照先が見つかりません")
		} else {
			concept = m.Code
			c.codes("medicationReference", concept, drugSystems, "a drug", "薬剤")
		}
	case medRef != nil:
		c.err("medicationReference", "medicationReference to "+medRef.Reference+": renkei needs medicationCodeableConcept or a contained Medication", "薬剤は名称・コードを直接書いてください（medicationCodeableConcept）")
	default:
		c.err("medication[x]", "medication[x] is required", "薬剤(medication)の指定がありません")
	}
	m := renkei.Medication{Drug: text(concept), Codes: codingsOf(concept), PrescribedBy: prescriber}
	if len(dosages) > 1 {
		c.warn(idx(dosagePath, 1), "more than one dosage: only the first is imported", "用法が複数あるため最初の用法だけを取り込みます")
	}
	for i, ds := range dosages {
		p := idx(dosagePath, i)
		for j, x := range ds.ModifierExtension {
			c.err(idx(p+".modifierExtension", j), "unknown modifierExtension "+x.URL, "意味を変える拡張（modifierExtension）が含まれているため取り込めません")
		}
		for j, x := range ds.Extension {
			if x.URL == extPeriodOfUse && x.ValuePeriod != nil {
				c.period(idx(p+".extension", j)+".valuePeriod", x.ValuePeriod)
				if i == 0 {
					start, end = x.ValuePeriod.Start, x.ValuePeriod.End
				}
			}
		}
		if ds.Timing != nil && ds.Timing.Repeat != nil && ds.Timing.Repeat.BoundsPeriod != nil {
			c.period(p+".timing.repeat.boundsPeriod", ds.Timing.Repeat.BoundsPeriod)
			if i == 0 && start == "" {
				start, end = ds.Timing.Repeat.BoundsPeriod.Start, ds.Timing.Repeat.BoundsPeriod.End
			}
		}
		if i > 0 {
			continue
		}
		for _, dr := range ds.DoseAndRate {
			if q := dr.DoseQuantity; q != nil && m.Dose == "" {
				m.Dose = string(q.Value) + q.Unit
			}
		}
		m.Route = text(ds.Route)
		if ds.Timing != nil {
			m.Frequency = text(ds.Timing.Code)
			if m.Frequency == "" && ds.Timing.Repeat != nil {
				m.Frequency = frequencyText(ds.Timing.Repeat)
			}
		}
		switch {
		case covered(ds.Text, m.Dose, m.Frequency, m.Route):
		case m.Dose == "" && m.Frequency == "":
			m.Frequency = ds.Text // the instruction is only written as text: keep it whole
		default:
			c.warn(p+".text", "dosage text not imported word for word (\""+ds.Text+"\"); its structured parts are", "用法の文章（"+ds.Text+"）は構造化された部分だけを取り込みます")
		}
	}
	m.Start, m.End = start, end
	switch status {
	case "active", "completed", "stopped":
		m.Status = status
	case "cancelled":
		m.Status = "stopped"
	case "on-hold", "draft":
		m.Status = "active"
		c.warn("status", "status "+status+" imported as active", "状態「"+status+"」の処方を「処方中」として取り込みます")
	case "intended":
		m.Status = "active"
	}
	notes(c, notesOf)
	name, code := d.source(c, e, h, nil)
	e.code = code
	if skip || c.skipWithheld() {
		return renkei.Medication{}, false
	}
	m.Fact = fact(e, author, recorded, key, name)
	m.EnteredInError = status == "entered-in-error"
	return m, true
}

// requiredCode checks a required code element.
func requiredCode(c *checker, path, v string, allowed []string, ja string) string {
	if v == "" {
		c.err(path, path+" is required", ja+"がありません")
		return ""
	}
	c.codeIn(path, v, allowed, ja)
	return v
}

// frequencyText writes a daily Timing.repeat as a Japanese 用法 ("1日3回"); other rhythms are left to text.
func frequencyText(r *timingRepeat) string {
	if r.Frequency != "" && (r.Period == "1" || r.Period == "") && r.PeriodUnit == "d" {
		return "1日" + string(r.Frequency) + "回"
	}
	return ""
}

// covered reports whether a dosage text says nothing beyond its structured parts.
func covered(text string, parts ...string) bool {
	for _, p := range parts {
		if p != "" {
			text = strings.Replace(text, p, "", 1)
		}
	}
	return strings.TrimFunc(text, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsPunct(r) }) == ""
}

// dosageText is the human instruction renkei writes in Dosage.text.
func dosageText(dose, frequency, route string) string {
	var parts []string
	for _, s := range []string{dose, frequency, route} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " ")
}

// reDose splits a dose written as a number and a unit ("1錠", "0.5g").
var reDose = regexp.MustCompile(`^((?:0|[1-9][0-9]*)(?:\.[0-9]+)?)(|[^\s.0-9].*[^\s]|[^\s.0-9])$`)

// medicationResource writes a Medication as a JP Core MedicationRequest (one drug per RP, rp its number).
func medicationResource(m renkei.Medication, id string, rp int, subject *reference, ext []extension, profile string) (*medicationRequest, error) {
	r := &medicationRequest{
		header: header{ResourceType: "MedicationRequest", ID: id, Meta: &meta{Profile: []string{profile}}, Extension: ext},
		Identifier: []identifier{
			{System: systemRPNumber, Value: fmt.Sprint(rp)},
			{System: systemOrderInRP, Value: "1"},
		},
		Intent:                    "order",
		MedicationCodeableConcept: conceptOf(m.Codes, m.Drug),
		Subject:                   subject,
		AuthoredOn:                instantOut(m.RecordedAt),
	}
	if r.MedicationCodeableConcept == nil {
		return nil, fmt.Errorf("medication %d has neither drug name nor code", m.ID)
	}
	switch {
	case m.EnteredInError:
		r.Status = "entered-in-error"
	case m.Status == "":
		r.Status = "unknown"
	case m.Status == "active" || m.Status == "completed" || m.Status == "stopped":
		r.Status = m.Status
	default:
		return nil, fmt.Errorf("medication %q: unknown status %q", m.Drug, m.Status)
	}
	if m.Author != "" {
		r.Recorder = &reference{Display: m.Author}
	}
	if m.PrescribedBy != "" {
		// A reported record: the source institution did not prescribe it (FHIR R4 MedicationRequest.reported[x]).
		r.ReportedReference = &reference{Type: "Organization", Display: m.PrescribedBy}
	}
	if m.Dose == "" && m.Frequency == "" && m.Route == "" && m.Start == "" && m.End == "" {
		return r, nil
	}
	ds := dosage{Text: dosageText(m.Dose, m.Frequency, m.Route)}
	if m.Frequency != "" {
		ds.Timing = &timing{Code: &codeableConcept{Text: m.Frequency}}
	}
	if m.Route != "" {
		ds.Route = &codeableConcept{Text: m.Route}
	}
	if g := reDose.FindStringSubmatch(m.Dose); g != nil {
		ds.DoseAndRate = []doseAndRate{{DoseQuantity: &quantity{Value: number(g[1]), Unit: g[2]}}}
	}
	if m.Start != "" || m.End != "" {
		for _, s := range []string{m.Start, m.End} {
			if s != "" && (!reDateTime.MatchString(s) || !validCalendar(s)) {
				return nil, fmt.Errorf("medication %q: %q is not a date", m.Drug, s)
			}
		}
		ds.Extension = []extension{{URL: extPeriodOfUse, ValuePeriod: &period{Start: m.Start, End: m.End}}}
	}
	r.DosageInstruction = []dosage{ds}
	return r, nil
}
