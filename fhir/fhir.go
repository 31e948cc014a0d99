// Package fhir reads and writes the clinical record and the referral letter as HL7 FHIR R4 JSON shaped by the
// Japanese profiles: JP Core (http://jpfhir.jp/fhir/core) for the resources and JP-CLINS, the profiles of the
// national 電子カルテ情報共有サービス (http://jpfhir.jp/fhir/clins), for the 診療情報提供書 document.
//
// Parse imports allergies, medications, conditions and documents from a resource or a Bundle; RecordBundle
// exports a renkei.Record as a collection Bundle; LetterDocument and ParseLetterDocument write and read a
// referral letter as a document Bundle. Import is all or nothing: every problem is reported as an Issue with a
// FHIRPath-like location and an English and a Japanese message, and input with any error yields no facts.
//
// The structs are hand-written for the few resources used; no FHIR library is involved (the Go ones were last
// released in 2022). Codes are kept exactly as they arrive (system, code, display) and never translated; there
// is no terminology server, so a code is checked for its system, not for its existence.
package fhir

import (
	"fmt"
	"strings"

	"renkei"
)

// Limits on input. The caller bounds the upload (10 MB); Parse checks again so that it is safe on its own.
const (
	MaxSize           = 10 << 20 // bytes of JSON
	MaxDepth          = 64       // nesting of JSON objects and arrays
	MaxNumberDigits   = 30       // digits in one JSON number
	MaxAttachmentSize = 7 << 20  // decoded bytes of one inline attachment (its base64 must fit in MaxSize)
)

// Profiles (StructureDefinition canonical URLs) renkei writes in meta.profile.
const (
	ProfileAllergyIntolerance = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_AllergyIntolerance"
	ProfileCondition          = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Condition"
	ProfileMedicationRequest  = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_MedicationRequest"
	ProfileDocumentReference  = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_DocumentReference"
	ProfilePatient            = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient"
	ProfileOrganization       = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Organization"
	ProfilePractitioner       = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Practitioner"
	ProfileBundleReferral     = "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_eReferral"
	ProfileCompositionRefer   = "http://jpfhir.jp/fhir/eReferral/StructureDefinition/JP_Composition_eReferral"
)

// Code systems and identifier systems, as JP Core and JP-CLINS name them. The preferred URI comes first; the
// OIDs are the older names that JP Core's NamingSystems still list and that real EMR output still carries.
const (
	SystemJFAGYFood          = "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS"                 // JFAGY 食物アレルゲン
	SystemJFAGYMedication    = "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyMedicationAllergen_CS"           // JFAGY 医薬品アレルゲン
	SystemJFAGYNonFoodNonMed = "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyNonFoodNonMedicationAllergen_CS" // JFAGY その他
	SystemYJ                 = "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code"                           // YJ コード (urn:oid:1.2.392.100495.20.1.73)
	SystemHOT9               = "http://medis.or.jp/CodeSystem/master-HOT9"                                     // urn:oid:1.2.392.200119.4.403.1
	SystemHOT7               = "http://medis.or.jp/CodeSystem/master-HOT7"                                     // urn:oid:1.2.392.200119.4.403.2
	SystemHOT13              = "http://medis.or.jp/CodeSystem/master-HOT13"                                    // urn:oid:1.2.392.200119.4.402.1
	SystemMEDISDiseaseEx     = "http://medis.or.jp/CodeSystem/master-disease-exCode"                           // MEDIS 病名交換用コード (urn:oid:1.2.392.200119.4.101.6)
	SystemMEDISDiseaseKey    = "http://medis.or.jp/CodeSystem/master-disease-keyNumber"                        // MEDIS 病名管理番号 (urn:oid:1.2.392.200119.4.101.2)
	SystemReceiptDisease     = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/masterB-disease"                    // 支払基金 傷病名コード
	SystemICD10              = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full"                    // ICD-10 (2013) 対応標準病名
	SystemLOINC              = "http://loinc.org"

	SystemInstitutionNo   = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no" // 医療機関コード (10 digits)
	SystemDocSection      = "http://jpfhir.jp/fhir/clins/CodeSystem/document-section"
	SystemDocType         = "http://jpfhir.jp/fhir/Common/CodeSystem/doc-typecodes"
	SystemDocSubtype      = "http://jpfhir.jp/fhir/Common/CodeSystem/doc-subtypecodes"
	SystemResourceID      = "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier"
	SystemBundleID        = "http://jpfhir.jp/fhir/clins/bundle-identifier"
	extInstitutionNumber  = "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber"
	extDepartment         = "http://jpfhir.jp/fhir/eCS/Extension/StructureDefinition/JP_eCS_Department"
	extNameRepresentation = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
	extPeriodOfUse        = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_MedicationDosage_PeriodOfUse"
	extVersionNumber      = "http://hl7.org/fhir/StructureDefinition/composition-clinicaldocument-versionNumber"
	extDataAbsentReason   = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
)

// PatientIDSystem returns the JP Core identifier system of the patient IDs of the institution with the given
// 医療機関コード: urn:oid:1.2.392.100495.20.3.51 + "1" + the ten digits.
func PatientIDSystem(institutionCode string) string {
	return "urn:oid:1.2.392.100495.20.3.51.1" + institutionCode
}

// Severity says whether an Issue stops the import.
type Severity int

// Severities.
const (
	Error   Severity = iota // the input is refused; nothing is imported
	Warning                 // the input is imported; a person should look at this
)

// String returns "error" or "warning".
func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// Issue is one problem found in the input.
type Issue struct {
	Severity  Severity
	Location  string // FHIRPath-like, e.g. Bundle.entry[2].resource.code.coding[0].system
	Message   string // English, for operators and logs
	MessageJa string // Japanese, for the clerk who uploaded the file
}

// String returns the issue for logs: severity, location and the English message.
func (i Issue) String() string { return fmt.Sprintf("%s: %s: %s", i.Severity, i.Location, i.Message) }

// ValidationError is the error Parse and ParseLetterDocument return when the input has at least one Error
// issue. It holds every issue found (errors and warnings); it is wrapped in a *renkei.Error of kind Invalid
// (or TooLarge for the size limits).
type ValidationError struct {
	Issues []Issue
}

// Error lists the first five errors with their locations, for operators.
func (e *ValidationError) Error() string {
	var b strings.Builder
	n := 0
	for _, is := range e.Issues {
		if is.Severity != Error {
			continue
		}
		if n > 0 {
			b.WriteString("; ")
		}
		if n == 5 {
			fmt.Fprintf(&b, "and %d more", e.count(Error)-5)
			break
		}
		b.WriteString(is.Location + ": " + is.Message)
		n++
	}
	return b.String()
}

func (e *ValidationError) count(s Severity) int {
	n := 0
	for _, is := range e.Issues {
		if is.Severity == s {
			n++
		}
	}
	return n
}

// invalid wraps issues in the renkei error users see: its message is the first error, in Japanese and English.
func invalid(op string, kind renkei.Kind, issues []Issue) error {
	ve := &ValidationError{Issues: issues}
	ja, en := "FHIRデータに誤りがあります", "the FHIR data has errors"
	for _, is := range issues {
		if is.Severity == Error {
			ja, en = is.MessageJa, is.Message
			break
		}
	}
	if n := ve.count(Error); n > 1 {
		ja += fmt.Sprintf("（ほか%d件）", n-1)
		en += fmt.Sprintf(" (and %d more)", n-1)
	}
	return &renkei.Error{Op: op, Kind: kind, Message: en, Japanese: ja, Err: ve}
}
