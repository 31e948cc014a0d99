package fhir

import (
	"encoding/json"
	"reflect"
)

// The structs below are hand-written subsets of the FHIR R4 (4.0.1) resources and data types renkei reads and
// writes. Elements renkei does not use are absent: encoding/json skips them when reading, and the checks in
// this package look at every element that changes the meaning of what is imported (modifierExtension, status,
// verificationStatus, …). Numbers that are FHIR decimals or integers are a number, so that they round-trip
// digit for digit.

// number is a JSON number kept as written. Unlike json.Number it refuses a JSON string ("1"), which FHIR JSON
// does not allow for decimal and integer elements, with an error that decode can locate.
type number string

// UnmarshalJSON accepts a JSON number literal.
func (n *number) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')) {
		*n = number(b)
		return nil
	}
	kind := "string"
	switch {
	case len(b) == 0:
	case b[0] == '{':
		kind = "object"
	case b[0] == '[':
		kind = "array"
	case b[0] == 't' || b[0] == 'f':
		kind = "bool"
	case b[0] == 'n':
		return nil // null: refused earlier by scan
	}
	return &json.UnmarshalTypeError{Value: kind, Type: reflect.TypeFor[number]()}
}

// MarshalJSON writes the number as it was read or built.
func (n number) MarshalJSON() ([]byte, error) { return []byte(n), nil }

type coding struct {
	System       string `json:"system,omitempty"`
	Version      string `json:"version,omitempty"`
	Code         string `json:"code,omitempty"`
	Display      string `json:"display,omitempty"`
	UserSelected *bool  `json:"userSelected,omitempty"`
}

type codeableConcept struct {
	Extension []extension `json:"extension,omitempty"`
	Coding    []coding    `json:"coding,omitempty"`
	Text      string      `json:"text,omitempty"`
}

type identifier struct {
	Use      string           `json:"use,omitempty"`
	Type     *codeableConcept `json:"type,omitempty"`
	System   string           `json:"system,omitempty"`
	Value    string           `json:"value,omitempty"`
	Period   *period          `json:"period,omitempty"`
	Assigner *reference       `json:"assigner,omitempty"`
}

type reference struct {
	Reference  string      `json:"reference,omitempty"`
	Type       string      `json:"type,omitempty"`
	Identifier *identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

type period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

type quantity struct {
	Value      number `json:"value,omitempty"`
	Comparator string `json:"comparator,omitempty"`
	Unit       string `json:"unit,omitempty"`
	System     string `json:"system,omitempty"`
	Code       string `json:"code,omitempty"`
}

type extension struct {
	URL                  string           `json:"url"`
	Extension            []extension      `json:"extension,omitempty"`
	ValueString          string           `json:"valueString,omitempty"`
	ValueCode            string           `json:"valueCode,omitempty"`
	ValueBoolean         *bool            `json:"valueBoolean,omitempty"`
	ValueDateTime        string           `json:"valueDateTime,omitempty"`
	ValueIdentifier      *identifier      `json:"valueIdentifier,omitempty"`
	ValueCoding          *coding          `json:"valueCoding,omitempty"`
	ValueCodeableConcept *codeableConcept `json:"valueCodeableConcept,omitempty"`
	ValuePeriod          *period          `json:"valuePeriod,omitempty"`
	ValueReference       *reference       `json:"valueReference,omitempty"`
}

type meta struct {
	VersionID   string   `json:"versionId,omitempty"`
	LastUpdated string   `json:"lastUpdated,omitempty"`
	Source      string   `json:"source,omitempty"`
	Profile     []string `json:"profile,omitempty"`
	Tag         []coding `json:"tag,omitempty"`
}

type narrative struct {
	Status string `json:"status"`
	Div    string `json:"div"`
}

type humanName struct {
	Extension []extension `json:"extension,omitempty"`
	Use       string      `json:"use,omitempty"`
	Text      string      `json:"text,omitempty"`
	Family    string      `json:"family,omitempty"`
	Given     []string    `json:"given,omitempty"`
	Prefix    []string    `json:"prefix,omitempty"`
	Suffix    []string    `json:"suffix,omitempty"`
}

type attachment struct {
	ContentType string `json:"contentType,omitempty"`
	Language    string `json:"language,omitempty"`
	Data        string `json:"data,omitempty"`
	URL         string `json:"url,omitempty"`
	Size        number `json:"size,omitempty"`
	Hash        string `json:"hash,omitempty"`
	Title       string `json:"title,omitempty"`
	Creation    string `json:"creation,omitempty"`
}

type annotation struct {
	AuthorString string `json:"authorString,omitempty"`
	Time         string `json:"time,omitempty"`
	Text         string `json:"text"`
}

// header holds the elements every resource has (Resource and DomainResource in FHIR terms). The resource
// structs embed it, so they marshal with resourceType first.
type header struct {
	ResourceType      string            `json:"resourceType"`
	ID                string            `json:"id,omitempty"`
	Meta              *meta             `json:"meta,omitempty"`
	ImplicitRules     string            `json:"implicitRules,omitempty"`
	Language          string            `json:"language,omitempty"`
	Text              *narrative        `json:"text,omitempty"`
	Contained         []json.RawMessage `json:"contained,omitempty"`
	Extension         []extension       `json:"extension,omitempty"`
	ModifierExtension []extension       `json:"modifierExtension,omitempty"`
}

type allergyIntolerance struct {
	header
	Identifier         []identifier      `json:"identifier,omitempty"`
	ClinicalStatus     *codeableConcept  `json:"clinicalStatus,omitempty"`
	VerificationStatus *codeableConcept  `json:"verificationStatus,omitempty"`
	Type               string            `json:"type,omitempty"`
	Category           []string          `json:"category,omitempty"`
	Criticality        string            `json:"criticality,omitempty"`
	Code               *codeableConcept  `json:"code,omitempty"`
	Patient            *reference        `json:"patient,omitempty"`
	Encounter          *reference        `json:"encounter,omitempty"`
	OnsetDateTime      string            `json:"onsetDateTime,omitempty"`
	OnsetAge           *quantity         `json:"onsetAge,omitempty"`
	OnsetPeriod        *period           `json:"onsetPeriod,omitempty"`
	OnsetString        string            `json:"onsetString,omitempty"`
	RecordedDate       string            `json:"recordedDate,omitempty"`
	Recorder           *reference        `json:"recorder,omitempty"`
	Asserter           *reference        `json:"asserter,omitempty"`
	LastOccurrence     string            `json:"lastOccurrence,omitempty"`
	Note               []annotation      `json:"note,omitempty"`
	Reaction           []allergyReaction `json:"reaction,omitempty"`
}

type allergyReaction struct {
	Extension         []extension       `json:"extension,omitempty"`
	ModifierExtension []extension       `json:"modifierExtension,omitempty"`
	Substance         *codeableConcept  `json:"substance,omitempty"`
	Manifestation     []codeableConcept `json:"manifestation"`
	Description       string            `json:"description,omitempty"`
	Onset             string            `json:"onset,omitempty"`
	Severity          string            `json:"severity,omitempty"`
}

type condition struct {
	header
	Identifier         []identifier      `json:"identifier,omitempty"`
	ClinicalStatus     *codeableConcept  `json:"clinicalStatus,omitempty"`
	VerificationStatus *codeableConcept  `json:"verificationStatus,omitempty"`
	Category           []codeableConcept `json:"category,omitempty"`
	Severity           *codeableConcept  `json:"severity,omitempty"`
	Code               *codeableConcept  `json:"code,omitempty"`
	Subject            *reference        `json:"subject,omitempty"`
	Encounter          *reference        `json:"encounter,omitempty"`
	OnsetDateTime      string            `json:"onsetDateTime,omitempty"`
	OnsetAge           *quantity         `json:"onsetAge,omitempty"`
	OnsetPeriod        *period           `json:"onsetPeriod,omitempty"`
	OnsetString        string            `json:"onsetString,omitempty"`
	AbatementDateTime  string            `json:"abatementDateTime,omitempty"`
	AbatementString    string            `json:"abatementString,omitempty"`
	RecordedDate       string            `json:"recordedDate,omitempty"`
	Recorder           *reference        `json:"recorder,omitempty"`
	Asserter           *reference        `json:"asserter,omitempty"`
	Note               []annotation      `json:"note,omitempty"`
}

// medicationRequest and medicationStatement share medicationFields: both are read into one renkei.Medication.
type medicationRequest struct {
	header
	Identifier                []identifier      `json:"identifier,omitempty"`
	Status                    string            `json:"status,omitempty"`
	Intent                    string            `json:"intent,omitempty"`
	Category                  []codeableConcept `json:"category,omitempty"`
	DoNotPerform              *bool             `json:"doNotPerform,omitempty"`
	ReportedBoolean           *bool             `json:"reportedBoolean,omitempty"`
	ReportedReference         *reference        `json:"reportedReference,omitempty"`
	MedicationCodeableConcept *codeableConcept  `json:"medicationCodeableConcept,omitempty"`
	MedicationReference       *reference        `json:"medicationReference,omitempty"`
	Subject                   *reference        `json:"subject,omitempty"`
	Encounter                 *reference        `json:"encounter,omitempty"`
	AuthoredOn                string            `json:"authoredOn,omitempty"`
	Requester                 *reference        `json:"requester,omitempty"`
	Performer                 *reference        `json:"performer,omitempty"`
	Recorder                  *reference        `json:"recorder,omitempty"`
	Note                      []annotation      `json:"note,omitempty"`
	DosageInstruction         []dosage          `json:"dosageInstruction,omitempty"`
	DispenseRequest           *dispenseRequest  `json:"dispenseRequest,omitempty"`
}

type dispenseRequest struct {
	ValidityPeriod         *period   `json:"validityPeriod,omitempty"`
	Quantity               *quantity `json:"quantity,omitempty"`
	ExpectedSupplyDuration *quantity `json:"expectedSupplyDuration,omitempty"`
}

type medicationStatement struct {
	header
	Identifier                []identifier     `json:"identifier,omitempty"`
	Status                    string           `json:"status,omitempty"`
	Category                  *codeableConcept `json:"category,omitempty"`
	MedicationCodeableConcept *codeableConcept `json:"medicationCodeableConcept,omitempty"`
	MedicationReference       *reference       `json:"medicationReference,omitempty"`
	Subject                   *reference       `json:"subject,omitempty"`
	EffectiveDateTime         string           `json:"effectiveDateTime,omitempty"`
	EffectivePeriod           *period          `json:"effectivePeriod,omitempty"`
	DateAsserted              string           `json:"dateAsserted,omitempty"`
	InformationSource         *reference       `json:"informationSource,omitempty"`
	Note                      []annotation     `json:"note,omitempty"`
	Dosage                    []dosage         `json:"dosage,omitempty"`
}

type dosage struct {
	Extension          []extension       `json:"extension,omitempty"`
	ModifierExtension  []extension       `json:"modifierExtension,omitempty"`
	Sequence           number            `json:"sequence,omitempty"`
	Text               string            `json:"text,omitempty"`
	PatientInstruction string            `json:"patientInstruction,omitempty"`
	Timing             *timing           `json:"timing,omitempty"`
	Route              *codeableConcept  `json:"route,omitempty"`
	Method             *codeableConcept  `json:"method,omitempty"`
	DoseAndRate        []doseAndRate     `json:"doseAndRate,omitempty"`
	AdditionalInstr    []codeableConcept `json:"additionalInstruction,omitempty"`
}

type doseAndRate struct {
	Type         *codeableConcept `json:"type,omitempty"`
	DoseQuantity *quantity        `json:"doseQuantity,omitempty"`
}

type timing struct {
	Event  []string         `json:"event,omitempty"`
	Repeat *timingRepeat    `json:"repeat,omitempty"`
	Code   *codeableConcept `json:"code,omitempty"`
}

type timingRepeat struct {
	BoundsPeriod *period `json:"boundsPeriod,omitempty"`
	Frequency    number  `json:"frequency,omitempty"`
	Period       number  `json:"period,omitempty"`
	PeriodUnit   string  `json:"periodUnit,omitempty"`
}

// medication is read only when it is contained in a MedicationRequest or MedicationStatement.
type medication struct {
	header
	Code *codeableConcept `json:"code,omitempty"`
}

type documentReference struct {
	header
	Identifier  []identifier      `json:"identifier,omitempty"`
	Status      string            `json:"status,omitempty"`
	DocStatus   string            `json:"docStatus,omitempty"`
	Type        *codeableConcept  `json:"type,omitempty"`
	Category    []codeableConcept `json:"category,omitempty"`
	Subject     *reference        `json:"subject,omitempty"`
	Date        string            `json:"date,omitempty"`
	Author      []reference       `json:"author,omitempty"`
	Custodian   *reference        `json:"custodian,omitempty"`
	Description string            `json:"description,omitempty"`
	Content     []docContent      `json:"content,omitempty"`
}

type docContent struct {
	Attachment *attachment `json:"attachment,omitempty"`
	Format     *coding     `json:"format,omitempty"`
}

type patient struct {
	header
	Identifier []identifier `json:"identifier,omitempty"`
	Active     *bool        `json:"active,omitempty"`
	Name       []humanName  `json:"name,omitempty"`
	Gender     string       `json:"gender,omitempty"`
	BirthDate  string       `json:"birthDate,omitempty"`
}

type organization struct {
	header
	Identifier []identifier      `json:"identifier,omitempty"`
	Type       []codeableConcept `json:"type,omitempty"`
	Name       string            `json:"name,omitempty"`
	Alias      []string          `json:"alias,omitempty"`
}

type practitioner struct {
	header
	Identifier []identifier `json:"identifier,omitempty"`
	Name       []humanName  `json:"name,omitempty"`
}

type provenance struct {
	header
	Target   []reference       `json:"target"`
	Recorded string            `json:"recorded"`
	Agent    []provenanceAgent `json:"agent"`
}

type provenanceAgent struct {
	Type *codeableConcept `json:"type,omitempty"`
	Who  *reference       `json:"who"`
}

type operationOutcome struct {
	header
	Issue []struct {
		Severity    string           `json:"severity"`
		Code        string           `json:"code"`
		Details     *codeableConcept `json:"details,omitempty"`
		Diagnostics string           `json:"diagnostics,omitempty"`
		Expression  []string         `json:"expression,omitempty"`
	} `json:"issue"`
}

type encounter struct {
	header
	ReasonCode []codeableConcept `json:"reasonCode,omitempty"`
}

type composition struct {
	header
	Identifier *identifier        `json:"identifier,omitempty"`
	Status     string             `json:"status,omitempty"`
	Type       *codeableConcept   `json:"type,omitempty"`
	Category   []codeableConcept  `json:"category,omitempty"`
	Subject    *reference         `json:"subject,omitempty"`
	Encounter  *reference         `json:"encounter,omitempty"`
	Date       string             `json:"date,omitempty"`
	Author     []reference        `json:"author,omitempty"`
	Title      string             `json:"title,omitempty"`
	Custodian  *reference         `json:"custodian,omitempty"`
	Event      []compositionEvent `json:"event,omitempty"`
	Section    []section          `json:"section,omitempty"`
}

type compositionEvent struct {
	Code   []codeableConcept `json:"code,omitempty"`
	Period *period           `json:"period,omitempty"`
}

type section struct {
	Title       string           `json:"title,omitempty"`
	Code        *codeableConcept `json:"code,omitempty"`
	Text        *narrative       `json:"text,omitempty"`
	Entry       []reference      `json:"entry,omitempty"`
	EmptyReason *codeableConcept `json:"emptyReason,omitempty"`
	Section     []section        `json:"section,omitempty"`
}

type bundle struct {
	ResourceType  string        `json:"resourceType"`
	ID            string        `json:"id,omitempty"`
	Meta          *meta         `json:"meta,omitempty"`
	ImplicitRules string        `json:"implicitRules,omitempty"`
	Language      string        `json:"language,omitempty"`
	Identifier    *identifier   `json:"identifier,omitempty"`
	Type          string        `json:"type"`
	Timestamp     string        `json:"timestamp,omitempty"`
	Entry         []bundleEntry `json:"entry,omitempty"`
}

type bundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *struct {
		Mode string `json:"mode,omitempty"`
	} `json:"search,omitempty"`
	Request *struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"request,omitempty"`
}
