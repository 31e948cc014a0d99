package fhir

import (
	"strconv"
	"time"

	"renkei"
	"renkei/atna"
)

// The audit trail as FHIR R4 AuditEvent resources, coded as IHE ATNA codes them (the DICOM audit event IDs of
// PS3.16 CID 400 as type, the event type codes as subtype), from the same classification as the syslog export
// (package atna), so that both say the same thing about an event.

const (
	systemDCM          = "http://dicom.nema.org/resources/ontology/DCM"
	systemSourceType   = "http://terminology.hl7.org/CodeSystem/security-source-type"
	systemEntityType   = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	systemObjectRole   = "http://terminology.hl7.org/CodeSystem/object-role"
	systemDICOMUID     = "urn:dicom:uid"
	systemRenkeiLogin  = "urn:renkei:actor"
	systemRenkeiIssuer = "urn:renkei:issuer:" // + IssuerOfPatientID, for patients of institutions without a code
)

type auditEvent struct {
	ResourceType   string            `json:"resourceType"`
	ID             string            `json:"id"`
	Type           coding            `json:"type"`
	Subtype        []coding          `json:"subtype,omitempty"`
	Action         string            `json:"action,omitempty"`
	Recorded       string            `json:"recorded"`
	Outcome        string            `json:"outcome,omitempty"`
	OutcomeDesc    string            `json:"outcomeDesc,omitempty"`
	PurposeOfEvent []codeableConcept `json:"purposeOfEvent,omitempty"`
	Agent          []auditAgent      `json:"agent"`
	Source         auditSource       `json:"source"`
	Entity         []auditEntity     `json:"entity,omitempty"`
}

type auditAgent struct {
	Type      *codeableConcept  `json:"type,omitempty"`
	Role      []codeableConcept `json:"role,omitempty"`
	Who       *reference        `json:"who,omitempty"`
	AltID     string            `json:"altId,omitempty"`
	Requestor bool              `json:"requestor"`
	Network   *auditNetwork     `json:"network,omitempty"`
}

type auditNetwork struct {
	Address string `json:"address,omitempty"`
	Type    string `json:"type,omitempty"`
}

type auditSource struct {
	Site     string    `json:"site,omitempty"`
	Observer reference `json:"observer"`
	Type     []coding  `json:"type,omitempty"`
}

type auditEntity struct {
	What   *reference    `json:"what,omitempty"`
	Type   *coding       `json:"type,omitempty"`
	Role   *coding       `json:"role,omitempty"`
	Detail []auditDetail `json:"detail,omitempty"`
}

type auditDetail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

func dcmCoding(c atna.Code) coding {
	if c.System == atna.SystemDCM {
		return coding{System: systemDCM, Code: c.Code, Display: c.Meaning}
	}
	return coding{System: c.System, Code: c.Code, Display: c.Meaning}
}

// AuditBundle writes events as a FHIR R4 searchset Bundle of AuditEvent, in the order given. src names the
// institutions (by index key) and renkei itself as the observer; each resource's id is the event's Seq.
//
// The actor is the requesting agent (who: its login, token name or AE title; network: the client address), renkei
// the other; the patient is an entity of type Person and role Patient identified in JP Core's patient ID system of
// the institution holding the data (by its 医療機関コード; urn:renkei:issuer:… when it has none), with that
// institution as a detail; the study an entity identified by its Study Instance UID.
func AuditBundle(events []renkei.AuditEvent, src atna.Source, now time.Time) ([]byte, error) {
	entries := []bundleEntry{}
	for i := range events {
		e := &events[i]
		res := auditResource(e, src)
		raw, err := marshalResource(res)
		if err != nil {
			return nil, &renkei.Error{Op: "fhir.AuditBundle", Kind: renkei.Internal, Err: err}
		}
		entry := bundleEntry{FullURL: uuidURL("renkei audit", src.ID, res.ID), Resource: raw}
		entry.Search = &struct {
			Mode string `json:"mode,omitempty"`
		}{Mode: "match"}
		entries = append(entries, entry)
	}
	return marshal(&bundle{ResourceType: "Bundle", Type: "searchset", Timestamp: instantOut(now), Entry: entries})
}

func auditResource(e *renkei.AuditEvent, src atna.Source) *auditEvent {
	c := atna.Classify(e)
	r := &auditEvent{ResourceType: "AuditEvent", ID: strconv.FormatInt(e.Seq, 10), Type: dcmCoding(c.EventID), Action: c.ActionCode,
		Recorded: instantOut(e.Time.UTC()), Outcome: c.Outcome, OutcomeDesc: e.Detail}
	for _, t := range c.Types {
		r.Subtype = append(r.Subtype, dcmCoding(t))
	}
	if e.Purpose != "" {
		r.PurposeOfEvent = []codeableConcept{{Coding: []coding{{System: atna.SystemPurpose, Code: e.Purpose}}, Text: e.Purpose}}
	}
	actor := e.Actor
	if actor == "" {
		actor = "unknown"
	}
	who := &reference{Identifier: &identifier{System: systemRenkeiLogin, Value: actor}, Display: actor}
	if in, ok := src.Institutions[e.Institution]; ok {
		who.Display = actor + " (" + in.ID + ")"
	}
	requestor := auditAgent{Who: who, Requestor: true}
	if e.Role != "" {
		requestor.Role = []codeableConcept{{Coding: []coding{{System: atna.SystemRole, Code: string(e.Role)}}, Text: string(e.Role)}}
	}
	if c.RequestorRole != nil {
		requestor.Type = &codeableConcept{Coding: []coding{dcmCoding(*c.RequestorRole)}}
	}
	if host := atna.AccessPoint(e.Source); host != "" {
		requestor.Network = &auditNetwork{Address: host, Type: atna.AccessPointType(host)}
	}
	observer := src.ID
	if observer == "" {
		observer = "renkei"
	}
	self := auditAgent{Who: &reference{Display: observer}, Requestor: false}
	if src.AE != "" {
		self.AltID = src.AE
	}
	if src.Host != "" {
		self.Network = &auditNetwork{Address: src.Host, Type: atna.AccessPointType(src.Host)}
	}
	if c.RenkeiRole != nil {
		self.Type = &codeableConcept{Coding: []coding{dcmCoding(*c.RenkeiRole)}}
	}
	r.Agent = []auditAgent{requestor, self}
	r.Source = auditSource{Site: src.Site, Observer: reference{Display: observer},
		Type: []coding{{System: systemSourceType, Code: "4", Display: "Application Server"}}}
	if e.Patient.ID != "" {
		system := systemRenkeiIssuer + e.Patient.Issuer
		in, known := src.Institutions[e.DataInstitution]
		if known && in.Code != "" && in.Issuer == e.Patient.Issuer {
			system = PatientIDSystem(in.Code)
		}
		ent := auditEntity{What: &reference{Type: "Patient", Identifier: &identifier{System: system, Value: e.Patient.ID}},
			Type: &coding{System: systemEntityType, Code: "1", Display: "Person"}, Role: &coding{System: systemObjectRole, Code: "1", Display: "Patient"}}
		if known {
			ent.Detail = []auditDetail{{Type: "DataInstitution", ValueString: in.ID}}
		}
		r.Entity = append(r.Entity, ent)
	}
	if e.Study != "" {
		r.Entity = append(r.Entity, auditEntity{What: &reference{Type: "ImagingStudy", Identifier: &identifier{System: systemDICOMUID, Value: "urn:oid:" + e.Study}},
			Type: &coding{System: systemEntityType, Code: "2", Display: "System Object"}, Role: &coding{System: systemObjectRole, Code: "3", Display: "Report"}})
	}
	return r
}
