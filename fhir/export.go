package fhir

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"renkei"
)

// RecordBundle writes a patient's record as a FHIR Bundle of type collection: a JP Core Patient (with the
// identifiers of every local patient the facts belong to), one JP Core Organization per source institution
// (name, 医療機関コード under SystemInstitutionNo), and the facts as JP Core AllergyIntolerance, Condition,
// MedicationRequest and DocumentReference resources. Each fact names its source institution twice: by the
// JP-CLINS extension JP_eCS_InstitutionNumber (when the institution has a code) and by a Provenance per
// institution whose agent is its Organization (which also serves institutions without a code); its author is
// the recorder (DocumentReference: author) display and its recorded time recordedDate / authoredOn / date.
//
// Medications are written as MedicationRequest rather than MedicationStatement: a renkei Medication is a
// prescription, and MedicationRequest carries all of it natively — recorder (Author), authoredOn (RecordedAt),
// reportedReference (PrescribedBy, when the source did not prescribe it) — where MedicationStatement has no
// author at all; it is also what JP-CLINS uses for 処方情報.
//
// A document's attachment is written as the relative url "Binary/<BlobKey>" with its size and no data; the
// caller either serves Binary/<key> or fills the data in with InlineAttachments before sending the Bundle to a
// reader that needs it inline (Parse does). Withdrawn facts (EnteredInError) are written with the
// entered-in-error status: the caller leaves out what the reader may not see.
//
// Parse(InlineAttachments(RecordBundle(x))) returns x's facts with Fact.ID and Fact.Institution zero, Source
// "fhir", SourceID the exported resource id and BlobKey empty (the caller stores the data); an empty Status
// comes back "active" and an empty document Kind "other". The error is of kind Invalid when a fact cannot be
// written (unknown status, a date that is not one, a fact with neither text nor code).
func RecordBundle(patient PatientInfo, rec renkei.Record, institutions map[int64]renkei.Institution) ([]byte, error) {
	const op = "fhir.RecordBundle"
	fail := func(err error) ([]byte, error) {
		return nil, &renkei.Error{Op: op, Kind: renkei.Invalid, Message: "FHIRに書き出せないデータがあります: " + err.Error(), Err: err}
	}
	x := newExporter(patient, institutions)
	var facts []renkei.Fact
	for _, a := range rec.Allergies {
		facts = append(facts, a.Fact)
	}
	for _, c := range rec.Conditions {
		facts = append(facts, c.Fact)
	}
	for _, m := range rec.Medications {
		facts = append(facts, m.Fact)
	}
	for _, d := range rec.Documents {
		facts = append(facts, d.Fact)
	}
	if err := x.addPatient(ProfilePatient, facts); err != nil {
		return fail(err)
	}
	for _, f := range facts {
		if err := x.addOrganization(f); err != nil {
			return fail(err)
		}
	}
	for i, a := range rec.Allergies {
		id := x.id("allergy", a.ID, i)
		r, err := allergyResource(a, id, x.subject(a.Patient), x.institutionExt(a.Fact), ProfileAllergyIntolerance)
		if err != nil {
			return fail(err)
		}
		x.addFact(r, "AllergyIntolerance", id, a.Fact)
	}
	for i, c := range rec.Conditions {
		id := x.id("condition", c.ID, i)
		r, err := conditionResource(c, id, x.subject(c.Patient), x.institutionExt(c.Fact), ProfileCondition)
		if err != nil {
			return fail(err)
		}
		x.addFact(r, "Condition", id, c.Fact)
	}
	for i, m := range rec.Medications {
		id := x.id("medication", m.ID, i)
		r, err := medicationResource(m, id, i+1, x.subject(m.Patient), x.institutionExt(m.Fact), ProfileMedicationRequest)
		if err != nil {
			return fail(err)
		}
		x.addFact(r, "MedicationRequest", id, m.Fact)
	}
	for i, d := range rec.Documents {
		id := x.id("document", d.ID, i)
		r, err := documentResource(d, id, x.subject(d.Patient), x.orgRef(d.Fact), x.institutionExt(d.Fact))
		if err != nil {
			return fail(err)
		}
		x.addFact(r, "DocumentReference", id, d.Fact)
	}
	if err := x.duplicates(); err != nil {
		return fail(err)
	}
	x.addProvenance()
	return marshal(&bundle{ResourceType: "Bundle", Type: "collection", Entry: x.entries})
}

// exporter builds a Bundle.
type exporter struct {
	patient      PatientInfo
	patientURL   string
	institutions map[int64]renkei.Institution
	orgs         map[int64]*organization // by institution PK
	orgURL       map[int64]string
	orgFacts     map[int64][]string  // fullUrls of the facts of each institution
	orgRecorded  map[int64]time.Time // latest RecordedAt of them
	orgOrder     []int64
	entries      []bundleEntry
	ids          map[string]bool
	dup          string
}

func newExporter(p PatientInfo, institutions map[int64]renkei.Institution) *exporter {
	return &exporter{
		patient: p, institutions: institutions,
		orgs: map[int64]*organization{}, orgURL: map[int64]string{}, orgFacts: map[int64][]string{},
		orgRecorded: map[int64]time.Time{}, ids: map[string]bool{},
	}
}

// uuidURL returns a name-based (SHA-1, version 5 layout) urn:uuid, so that the same input writes the same Bundle.
func uuidURL(parts ...string) string {
	h := sha1.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	b := h.Sum(nil)[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (x *exporter) scope() string { return x.patient.Key.Issuer + "\x00" + x.patient.Key.ID }

func (x *exporter) add(r any, typ, id string) string {
	url := uuidURL(x.scope(), typ, id)
	raw, _ := marshalResource(r)
	x.entries = append(x.entries, bundleEntry{FullURL: url, Resource: raw})
	if x.ids[typ+"/"+id] && x.dup == "" {
		x.dup = typ + "/" + id
	}
	x.ids[typ+"/"+id] = true
	return url
}

func (x *exporter) duplicates() error {
	if x.dup != "" {
		return fmt.Errorf("two facts would be written as %s (same ID)", x.dup)
	}
	return nil
}

func (x *exporter) id(kind string, id int64, i int) string {
	if id != 0 {
		return kind + "-" + strconv.FormatInt(id, 10)
	}
	return kind + "-n" + strconv.Itoa(i+1)
}

func (x *exporter) addPatient(profile string, facts []renkei.Fact) error {
	var keys []renkei.PatientKey
	for _, f := range facts {
		if f.Patient.ID != "" && !slices.Contains(keys, f.Patient) {
			keys = append(keys, f.Patient)
		}
	}
	r, err := patientResource(x.patient, "patient", profile, keys)
	if err != nil {
		return err
	}
	x.patientURL = x.add(r, "Patient", "patient")
	return nil
}

// subject refers to the Patient, with the fact's own local patient identifier when it has one.
func (x *exporter) subject(k renkei.PatientKey) *reference {
	r := &reference{Reference: x.patientURL, Type: "Patient"}
	if k.ID != "" {
		sys := ""
		if k == x.patient.Key {
			sys = x.patient.IDSystem
		}
		id := identifierOf(k, sys)
		r.Identifier = &id
	}
	return r
}

func (x *exporter) addOrganization(f renkei.Fact) error {
	if _, ok := x.orgs[f.Institution]; ok {
		return nil
	}
	inst, ok := x.institutions[f.Institution]
	if !ok {
		inst = renkei.Institution{PK: f.Institution, Name: f.InstitutionName}
	}
	if inst.Name == "" && inst.Code == "" {
		return nil
	}
	if inst.Code != "" && !renkei.ValidInstitutionCode(inst.Code) {
		return fmt.Errorf("institution %q: %q is not a 医療機関コード", inst.Name, inst.Code)
	}
	x.orgs[f.Institution] = organizationResource(inst, "org-"+strconv.FormatInt(f.Institution, 10))
	x.orgURL[f.Institution] = x.add(x.orgs[f.Institution], "Organization", x.orgs[f.Institution].ID)
	x.orgOrder = append(x.orgOrder, f.Institution)
	return nil
}

func organizationResource(inst renkei.Institution, id string) *organization {
	o := &organization{header: header{ResourceType: "Organization", ID: id, Meta: &meta{Profile: []string{ProfileOrganization}}}, Name: inst.Name}
	if inst.Code != "" {
		o.Identifier = []identifier{{System: SystemInstitutionNo, Value: inst.Code}}
	}
	if inst.NameEn != "" {
		o.Alias = []string{inst.NameEn}
	}
	return o
}

func (x *exporter) orgRef(f renkei.Fact) *reference {
	o, ok := x.orgs[f.Institution]
	if !ok {
		return nil
	}
	return &reference{Reference: x.orgURL[f.Institution], Type: "Organization", Display: o.Name}
}

// institutionExt is the JP-CLINS extension naming a fact's source institution by its 医療機関コード.
func (x *exporter) institutionExt(f renkei.Fact) []extension {
	o, ok := x.orgs[f.Institution]
	if !ok || len(o.Identifier) == 0 {
		return nil
	}
	return []extension{{URL: extInstitutionNumber, ValueIdentifier: &identifier{System: SystemInstitutionNo, Value: o.Identifier[0].Value}}}
}

func (x *exporter) addFact(r any, typ, id string, f renkei.Fact) {
	url := x.add(r, typ, id)
	if _, ok := x.orgs[f.Institution]; ok {
		x.orgFacts[f.Institution] = append(x.orgFacts[f.Institution], url)
		if f.RecordedAt.After(x.orgRecorded[f.Institution]) {
			x.orgRecorded[f.Institution] = f.RecordedAt
		}
	}
}

// addProvenance writes one Provenance per institution: its facts were recorded by it. Provenance.recorded is
// the latest of their recorded times; an institution whose facts carry no time gets none (the JP-CLINS
// extension still names it when it has a code).
func (x *exporter) addProvenance() {
	for _, pk := range x.orgOrder {
		if len(x.orgFacts[pk]) == 0 || x.orgRecorded[pk].IsZero() {
			continue
		}
		p := &provenance{
			header:   header{ResourceType: "Provenance", ID: "provenance-" + strconv.FormatInt(pk, 10)},
			Recorded: instantOut(x.orgRecorded[pk]),
			Agent:    []provenanceAgent{{Who: &reference{Reference: x.orgURL[pk], Type: "Organization", Display: x.orgs[pk].Name}}},
		}
		for _, u := range x.orgFacts[pk] {
			p.Target = append(p.Target, reference{Reference: u})
		}
		x.add(p, "Provenance", p.ID)
	}
}

func marshalResource(r any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

func marshal(b *bundle) ([]byte, error) {
	out, err := marshalResource(b)
	if err != nil {
		return nil, &renkei.Error{Op: "fhir.marshal", Kind: renkei.Internal, Err: err}
	}
	return out, nil
}

// InlineAttachments returns a Bundle written by RecordBundle or LetterDocument with every attachment url
// "Binary/<BlobKey>" replaced by the blob's bytes (attachment.data, base64) and their SHA-1 hash, as read by
// read. Parse needs attachments inline; so does a reader that cannot reach renkei's blob store. Errors from read
// are returned as they are; a Bundle this package did not write may lose elements it does not model.
func InlineAttachments(data []byte, read func(blobKey string) ([]byte, error)) ([]byte, error) {
	const op = "fhir.InlineAttachments"
	b := &bundle{}
	if err := json.Unmarshal(data, b); err != nil {
		return nil, &renkei.Error{Op: op, Kind: renkei.Invalid, Message: "FHIRバンドルではありません", Err: err}
	}
	for i, e := range b.Entry {
		var h struct {
			ResourceType string `json:"resourceType"`
		}
		if json.Unmarshal(e.Resource, &h) != nil || h.ResourceType != "DocumentReference" {
			continue
		}
		r := &documentReference{}
		if err := json.Unmarshal(e.Resource, r); err != nil {
			return nil, &renkei.Error{Op: op, Kind: renkei.Invalid, Err: err}
		}
		changed := false
		for _, c := range r.Content {
			if c.Attachment == nil {
				continue
			}
			key, ok := blobKeyOf(c.Attachment.URL)
			if !ok {
				continue
			}
			blob, err := read(key)
			if err != nil {
				return nil, err
			}
			sum := sha1.Sum(blob)
			c.Attachment.URL = ""
			c.Attachment.Data = base64.StdEncoding.EncodeToString(blob)
			c.Attachment.Size = jsonInt(int64(len(blob)))
			c.Attachment.Hash = base64.StdEncoding.EncodeToString(sum[:])
			changed = true
		}
		if changed {
			raw, err := marshalResource(r)
			if err != nil {
				return nil, &renkei.Error{Op: op, Kind: renkei.Internal, Err: err}
			}
			b.Entry[i].Resource = raw
		}
	}
	return marshal(b)
}
