package renkei

import "time"

// Coding is a code in the code system it arrived in (renkei never translates codes: a fact keeps its codes as
// the source wrote them, and its text for people).
type Coding struct {
	System  string `json:"system,omitempty"` // a FHIR code system URI (see package fhir)
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// The code systems of JP Core and JP-CLINS (MEDIS 病名交換用コード and 病名管理番号, ICD-10, YJ, HOT, JFAGY) are named
// in package fhir, which validates imports against them.

// Fact is what every clinical fact carries: where it came from, who wrote it, when. Facts of two institutions about
// one patient are kept side by side, never merged: a reader sees both, with their sources.
type Fact struct {
	ID              int64      `json:"id,omitempty"`
	Institution     int64      `json:"institution,omitempty"`     // the source institution (owner)
	InstitutionName string     `json:"institutionName,omitempty"` // for display
	Patient         PatientKey `json:"patient,omitempty"`         // the local patient it is about, as their institution knows them
	PatientPK       int64      `json:"patientPk,omitempty"`       // that local patient's index key (of any institution)
	Author          string     `json:"author,omitempty"`          // who recorded it (a user's name, or the FHIR resource's recorder)
	RecordedAt      time.Time  `json:"recordedAt,omitempty"`
	Source          string     `json:"source,omitempty"`         // "manual", "fhir" (imported), …
	SourceID        string     `json:"sourceId,omitempty"`       // the FHIR resource id it was imported from, if any
	EnteredInError  bool       `json:"enteredInError,omitempty"` // withdrawn by its author; kept for the audit trail, hidden from readers
}

// AllergyCategory says what a patient reacts to.
type AllergyCategory string

// Allergy categories (the three; FHIR's medication/food/environment/biologic map onto them).
const (
	AllergyDrug  AllergyCategory = "drug"
	AllergyFood  AllergyCategory = "food"
	AllergyOther AllergyCategory = "other"
)

// Allergy is an allergy or intolerance (アレルギー・不適応反応).
type Allergy struct {
	Fact
	Category  AllergyCategory `json:"category,omitempty"`
	Substance string          `json:"substance,omitempty"` // text as people read it, e.g. "ペニシリン系抗菌薬"
	Codes     []Coding        `json:"codes,omitempty"`     // JFAGY, YJ, …, as they arrived
	Reaction  string          `json:"reaction,omitempty"`  // e.g. "蕁麻疹"
	Severity  string          `json:"severity,omitempty"`  // "mild", "moderate", "severe", or ""
	Onset     string          `json:"onset,omitempty"`     // date as written (YYYY, YYYY-MM or YYYY-MM-DD), or ""
	Status    string          `json:"status,omitempty"`    // "active" (default), "inactive", "resolved"
}

// Medication is a current or past prescription (処方).
type Medication struct {
	Fact
	Drug         string   `json:"drug,omitempty"`      // text, e.g. "アムロジピン錠5mg"
	Codes        []Coding `json:"codes,omitempty"`     // YJ, HOT, …
	Dose         string   `json:"dose,omitempty"`      // e.g. "1錠"
	Route        string   `json:"route,omitempty"`     // e.g. "内服"
	Frequency    string   `json:"frequency,omitempty"` // e.g. "1日1回朝食後"
	Start        string   `json:"start,omitempty"`
	End          string   `json:"end,omitempty"`
	PrescribedBy string   `json:"prescribedBy,omitempty"` // the prescribing institution's name, when not the source
	Status       string   `json:"status,omitempty"`       // "active", "completed", "stopped"
}

// Condition is a diagnosis (病名).
type Condition struct {
	Fact
	Name      string   `json:"name,omitempty"`  // text, e.g. "2型糖尿病"
	Codes     []Coding `json:"codes,omitempty"` // MEDIS 病名交換用コード, ICD-10
	Onset     string   `json:"onset,omitempty"`
	Suspected bool     `json:"suspected,omitempty"` // 疑い病名
	Status    string   `json:"status,omitempty"`    // "active", "resolved", "inactive"
}

// Document kinds, with their LOINC codes as JP-CLINS uses them.
const (
	DocDischargeSummary = "discharge-summary" // 退院時サマリー, LOINC 18842-5
	DocReferralLetter   = "referral-letter"   // 診療情報提供書, LOINC 57133-1
	DocReadingReport    = "reading-report"    // 読影レポート, LOINC 18748-4
	DocOther            = "other"
)

// Document is a clinical document of a patient: a PDF, an image or text (a discharge summary, a report, a scanned
// letter). Its bytes are a blob.
type Document struct {
	Fact
	Kind        string `json:"kind,omitempty"`
	Title       string `json:"title,omitempty"`
	Date        string `json:"date,omitempty"`        // the document's own date, as written
	ContentType string `json:"contentType,omitempty"` // application/pdf, image/jpeg, image/png, text/plain
	BlobKey     string `json:"blobKey,omitempty"`
	Size        int64  `json:"size,omitempty"`
}

// Record is what renkei knows of one patient's clinical facts, from every institution the reader may see.
type Record struct {
	Allergies   []Allergy
	Medications []Medication
	Conditions  []Condition
	Documents   []Document
}
