package fhir

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"renkei"
)

// Import is what Parse found in a FHIR resource or Bundle. Facts carry Source "fhir", SourceID = the resource
// id (or its fullUrl when it has no id), Author from recorder/requester/asserter, RecordedAt, InstitutionName
// from the source Organization, and Patient from the subject. Fact.ID and Fact.Institution are left zero: the
// caller stores the facts and maps InstitutionCodes to its own institutions.
type Import struct {
	Patient     *Patient // the Bundle's Patient, if any: the caller checks it is the patient it imports for
	Allergies   []renkei.Allergy
	Medications []renkei.Medication
	Conditions  []renkei.Condition
	Documents   []Document // with their bytes, for the caller to store as blobs
	// InstitutionCodes gives the 医療機関コード of each fact's source institution, where the input names one.
	InstitutionCodes map[Ref]string
	Warnings         []Issue
}

// Ref names one imported fact: its FHIR resource type and its Fact.SourceID.
type Ref struct{ Type, ID string }

// Document is an imported DocumentReference: the renkei.Document (BlobKey empty, Size = len(Data)) and the
// attachment's decoded bytes, which the caller stores as a blob before setting BlobKey.
type Document struct {
	renkei.Document
	Data []byte
}

// bundleTypes are the Bundle types Parse reads.
var bundleTypes = []string{"collection", "transaction", "batch", "searchset", "document"}

// entry is one resource of the input, located.
type entry struct {
	index   int    // position in Bundle.entry, or -1 for a lone resource
	fullURL string // Bundle.entry.fullUrl
	typ, id string
	raw     json.RawMessage
	loc     string // Bundle.entry[2].resource
	label   string // アレルギー 2件目
	value   any    // the decoded resource, once checked
	code    string // the fact's source institution's 医療機関コード, if named
}

// sourceID returns the Fact.SourceID of the entry: its id, else its fullUrl.
func (e *entry) sourceID() string {
	if e.id != "" {
		return e.id
	}
	return e.fullURL
}

// doc is the state of one Parse or ParseLetterDocument.
type doc struct {
	issues  []Issue
	bundle  *bundle
	entries []*entry
	byURL   map[string]*entry // fullUrl and Type/id
	patient *entry
	prov    map[*entry]*reference // fact entry → Provenance agent.who
}

func (d *doc) errAt(loc, en, ja string) {
	d.issues = append(d.issues, Issue{Severity: Error, Location: loc, Message: en, MessageJa: ja})
}

func (d *doc) failed() bool {
	return slices.ContainsFunc(d.issues, func(is Issue) bool { return is.Severity == Error })
}

func (d *doc) warnings() []Issue {
	var w []Issue
	for _, is := range d.issues {
		if is.Severity == Warning {
			w = append(w, is)
		}
	}
	return w
}

// Parse reads a FHIR R4 JSON resource or Bundle (collection, transaction, batch, searchset or document) of one
// patient's AllergyIntolerance, MedicationRequest, MedicationStatement, Condition and DocumentReference
// resources, with the Patient, Organization, Practitioner and Provenance resources they refer to, and checks
// them against JP Core and, where a resource claims a JP-CLINS profile, JP-CLINS.
//
// It is all or nothing: when any Error issue is found it returns no Import and an error of kind Invalid (kind
// TooLarge above MaxSize) wrapping a *ValidationError with every issue; otherwise Import.Warnings lists the
// rest. Other resource types are errors that name them: renkei never drops data it was given without saying
// so.
func Parse(data []byte) (*Import, error) {
	const op = "fhir.Parse"
	d, err := load(op, data)
	if err != nil {
		return nil, err
	}
	im := &Import{InstitutionCodes: map[Ref]string{}}
	counts := map[string]int{}
	// Supporting resources first, so that facts can resolve what they refer to.
	for _, e := range d.entries {
		switch e.typ {
		case "Patient", "Organization", "Practitioner", "Provenance", "OperationOutcome":
			d.support(e, counts)
		}
	}
	for _, e := range d.entries {
		switch e.typ {
		case "Patient", "Organization", "Practitioner", "Provenance", "OperationOutcome":
		case "AllergyIntolerance":
			e.label = d.label(e, "アレルギー", counts)
			if a, ok := d.allergy(e); ok {
				im.Allergies = append(im.Allergies, a)
			}
		case "Condition":
			e.label = d.label(e, "病名", counts)
			if c, ok := d.condition(e); ok {
				im.Conditions = append(im.Conditions, c)
			}
		case "MedicationRequest", "MedicationStatement":
			e.label = d.label(e, "処方", counts)
			if m, ok := d.medication(e); ok {
				im.Medications = append(im.Medications, m)
			}
		case "DocumentReference":
			e.label = d.label(e, "文書", counts)
			if doc, ok := d.document(e); ok {
				im.Documents = append(im.Documents, doc)
			}
		default:
			d.errAt(e.loc, "resource type "+e.typ+" is not supported: renkei imports AllergyIntolerance, MedicationRequest, MedicationStatement, Condition, DocumentReference and Patient",
				"このファイルには取り込めない種類のデータ（"+e.typ+"）が含まれています")
		}
	}
	if d.failed() {
		return nil, invalid(op, renkei.Invalid, d.issues)
	}
	if d.patient != nil {
		p := patientOf(d.patient.value.(*patient))
		im.Patient = &p
	}
	for _, e := range d.entries {
		if e.code != "" {
			im.InstitutionCodes[Ref{e.typ, e.sourceID()}] = e.code
		}
	}
	im.Warnings = d.warnings()
	return im, nil
}

// load checks the input's shape, reads the Bundle (or the lone resource) and indexes its entries.
func load(op string, data []byte) (*doc, error) {
	if issues := scan(data); issues != nil {
		kind := renkei.Invalid
		if len(data) > MaxSize {
			kind = renkei.TooLarge
		}
		return nil, invalid(op, kind, issues)
	}
	d := &doc{byURL: map[string]*entry{}, prov: map[*entry]*reference{}}
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if is := decode(data, &head, "$", ""); is != nil {
		d.issues = append(d.issues, *is)
		return nil, invalid(op, renkei.Invalid, d.issues)
	}
	if head.ResourceType == "" {
		d.errAt("$", "no resourceType: not a FHIR resource", "FHIRのデータではありません（resourceTypeがありません）")
		return nil, invalid(op, renkei.Invalid, d.issues)
	}
	if head.ResourceType != "Bundle" {
		d.entries = []*entry{{index: -1, typ: head.ResourceType, raw: data, loc: head.ResourceType}}
	} else {
		b := &bundle{}
		if is := decode(data, b, "Bundle", "バンドル: "); is != nil {
			d.issues = append(d.issues, *is)
			return nil, invalid(op, renkei.Invalid, d.issues)
		}
		d.bundle = b
		if !slices.Contains(bundleTypes, b.Type) {
			d.errAt("Bundle.type", "Bundle type \""+b.Type+"\" is not one of "+strings.Join(bundleTypes, ", "), "バンドルの種類（"+b.Type+"）は取り込めません")
		}
		if b.ImplicitRules != "" {
			d.errAt("Bundle.implicitRules", "implicitRules is set: the Bundle follows rules renkei does not know", "独自の規則（implicitRules）で書かれているため取り込めません")
		}
		for i, be := range b.Entry {
			loc := "Bundle.entry[" + strconv.Itoa(i) + "]"
			if be.Request != nil && be.Request.Method != "POST" && be.Request.Method != "PUT" {
				d.errAt(loc+".request.method", "request method "+be.Request.Method+": renkei only imports what is created or updated (POST, PUT)",
					"このデータ（"+be.Request.Method+"要求）は取り込めません")
			}
			if len(be.Resource) == 0 {
				d.errAt(loc, "entry without a resource", "バンドルの"+strconv.Itoa(i+1)+"番目にデータがありません")
				continue
			}
			var h struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			}
			if is := decode(be.Resource, &h, loc+".resource", "バンドルの"+strconv.Itoa(i+1)+"番目: "); is != nil {
				d.issues = append(d.issues, *is)
				continue
			}
			if h.ResourceType == "" {
				d.errAt(loc+".resource", "resource without resourceType", "バンドルの"+strconv.Itoa(i+1)+"番目の種類（resourceType）がありません")
				continue
			}
			d.entries = append(d.entries, &entry{index: i, fullURL: be.FullURL, typ: h.ResourceType, id: h.ID, raw: be.Resource, loc: loc + ".resource"})
		}
	}
	if len(d.entries) == 1 && d.entries[0].index == -1 {
		var h struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(data, &h) // shape already checked
		d.entries[0].id = h.ID
	}
	for _, e := range d.entries {
		for _, key := range []string{e.fullURL, typedID(e)} {
			if key == "" {
				continue
			}
			if prev, dup := d.byURL[key]; dup && prev != e {
				d.errAt(e.loc, "two resources are named "+key, "同じID（"+key+"）のデータが2つあります")
				continue
			}
			d.byURL[key] = e
		}
	}
	if d.failed() {
		return nil, invalid(op, renkei.Invalid, d.issues)
	}
	return d, nil
}

func typedID(e *entry) string {
	if e.id == "" {
		return ""
	}
	return e.typ + "/" + e.id
}

// label names the n-th resource of a kind for a clerk.
func (d *doc) label(e *entry, ja string, counts map[string]int) string {
	counts[ja]++
	if e.index < 0 {
		return ja
	}
	return ja + " " + strconv.Itoa(counts[ja]) + "件目"
}

// checker returns a checker for e.
func (d *doc) checker(e *entry) *checker {
	return &checker{issues: &d.issues, base: e.loc, label: e.label}
}

// resolve finds the Bundle entry a literal reference points to, or nil.
func (d *doc) resolve(ref string) *entry {
	if ref == "" || strings.HasPrefix(ref, "#") {
		return nil
	}
	if e, ok := d.byURL[ref]; ok {
		return e
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(ref, "/")
	if len(parts) >= 2 {
		return d.byURL[parts[len(parts)-2]+"/"+parts[len(parts)-1]]
	}
	return nil
}

// support checks and keeps a Patient, Organization, Practitioner, Provenance or OperationOutcome.
func (d *doc) support(e *entry, counts map[string]int) {
	switch e.typ {
	case "Patient":
		e.label = d.label(e, "患者情報", counts)
		c := d.checker(e)
		p := &patient{}
		if is := decode(e.raw, p, e.loc, e.label+": "); is != nil {
			d.issues = append(d.issues, *is)
			return
		}
		c.header(&p.header)
		c.codeIn("gender", p.Gender, []string{"male", "female", "other", "unknown"}, "性別")
		c.date("birthDate", p.BirthDate)
		if d.patient != nil {
			c.err("", "a second Patient: a Bundle imports the facts of one patient", "患者情報が2人分あります。1人ずつ取り込んでください")
			return
		}
		e.value = p
		d.patient = e
	case "Organization":
		e.label = d.label(e, "医療機関情報", counts)
		c := d.checker(e)
		o := &organization{}
		if is := decode(e.raw, o, e.loc, e.label+": "); is != nil {
			d.issues = append(d.issues, *is)
			return
		}
		c.header(&o.header)
		for i, id := range o.Identifier {
			if id.System == SystemInstitutionNo && !renkei.ValidInstitutionCode(id.Value) {
				c.err(idx("identifier", i)+".value", "\""+id.Value+"\" is not a 医療機関コード (10 digits, prefecture 01-47)", "医療機関コード（"+id.Value+"）の形式が正しくありません")
			}
		}
		e.value = o
	case "Practitioner":
		e.label = d.label(e, "医療者情報", counts)
		c := d.checker(e)
		p := &practitioner{}
		if is := decode(e.raw, p, e.loc, e.label+": "); is != nil {
			d.issues = append(d.issues, *is)
			return
		}
		c.header(&p.header)
		e.value = p
	case "Provenance":
		e.label = d.label(e, "由来情報", counts)
		c := d.checker(e)
		p := &provenance{}
		if is := decode(e.raw, p, e.loc, e.label+": "); is != nil {
			d.issues = append(d.issues, *is)
			return
		}
		c.header(&p.header)
		c.instant("recorded", p.Recorded)
		// The source institution is the agent that is an Organization; other agents (people, devices) are not
		// where a fact came from in renkei's sense.
		var org *reference
		for i, a := range p.Agent {
			if a.Who == nil {
				c.err(idx("agent", i)+".who", "agent without who", "由来（agent.who）の指定がありません")
				continue
			}
			oe := d.resolve(a.Who.Reference)
			if org == nil && (a.Who.Type == "Organization" || (oe != nil && oe.typ == "Organization")) {
				org = a.Who
			}
		}
		for i, t := range p.Target {
			te := d.resolve(t.Reference)
			if te == nil {
				c.err(idx("target", i), "target "+t.Reference+" is not in the Bundle", "由来の対象（"+t.Reference+"）がバンドルにありません")
				continue
			}
			if org != nil {
				if prev, ok := d.prov[te]; ok && (prev.Reference != org.Reference || prev.Display != org.Display) {
					c.err(idx("target", i), "a second Provenance names another source institution for "+t.Reference, "作成した医療機関が2通り書かれています")
				}
				d.prov[te] = org
			}
		}
		e.value = p
	case "OperationOutcome":
		e.label = d.label(e, "処理結果", counts)
		c := d.checker(e)
		oo := &operationOutcome{}
		if is := decode(e.raw, oo, e.loc, e.label+": "); is != nil {
			d.issues = append(d.issues, *is)
			return
		}
		for i, is := range oo.Issue {
			msg := is.Diagnostics
			if msg == "" {
				msg = text(is.Details)
			}
			c.warn(idx("issue", i), "the sender reported ("+is.Severity+"): "+msg, "送信元からの通知: "+msg)
		}
		e.value = oo
	}
}

// subject checks a fact's patient reference against the Bundle's Patient and returns the fact's PatientKey.
func (d *doc) subject(c *checker, path string, r *reference) renkei.PatientKey {
	c.reference(path, r, true, "患者")
	if r == nil {
		return renkei.PatientKey{}
	}
	var p *patient
	if d.patient != nil {
		p = d.patient.value.(*patient)
	}
	if r.Reference != "" && !strings.HasPrefix(r.Reference, "#") {
		e := d.resolve(r.Reference)
		switch {
		case e == nil && d.patient != nil:
			c.err(path+".reference", "refers to "+r.Reference+", which is not the Bundle's Patient", "別の患者（"+r.Reference+"）のデータが含まれています")
		case e != nil && e.typ != "Patient":
			c.err(path+".reference", "refers to a "+e.typ+", not a Patient", "患者の参照先が患者情報ではありません")
		}
	}
	if r.Identifier != nil && p != nil {
		same, other := false, false
		for _, id := range p.Identifier {
			if id.System == r.Identifier.System {
				if id.Value == r.Identifier.Value {
					same = true
				} else {
					other = true
				}
			}
		}
		if other && !same {
			c.err(path+".identifier", "patient identifier "+r.Identifier.Value+" is not the Bundle's Patient's", "別の患者（ID "+r.Identifier.Value+"）のデータが含まれています")
		}
	}
	if r.Identifier != nil && r.Identifier.Value != "" {
		return keyOf(*r.Identifier)
	}
	if p != nil && len(p.Identifier) > 0 {
		return keyOf(p.Identifier[0])
	}
	return renkei.PatientKey{}
}

// keyOf reads a PatientKey from an identifier: the issuer is the assigner's name when given (renkei writes its
// IssuerOfPatientID there), else the identifier system.
func keyOf(id identifier) renkei.PatientKey {
	k := renkei.PatientKey{Issuer: id.System, ID: id.Value}
	if id.Assigner != nil && id.Assigner.Display != "" {
		k.Issuer = id.Assigner.Display
	}
	return k
}

// contained finds a contained resource by the local reference "#id" and decodes it into v.
func (d *doc) contained(c *checker, h *header, ref string, v any) (string, bool) {
	id := strings.TrimPrefix(ref, "#")
	for i, raw := range h.Contained {
		var hh struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if json.Unmarshal(raw, &hh) != nil || hh.ID != id {
			continue
		}
		loc := c.base + "." + idx("contained", i)
		if v != nil {
			if is := decode(raw, v, loc, c.label+": "); is != nil {
				d.issues = append(d.issues, *is)
				return "", false
			}
		}
		return hh.ResourceType, true
	}
	return "", false
}

// who returns the name of the person or organization a reference names: its display, else the name of the
// contained or Bundle resource it points to.
func (d *doc) who(c *checker, h *header, r *reference) string {
	if r == nil {
		return ""
	}
	if r.Display != "" {
		return r.Display
	}
	if strings.HasPrefix(r.Reference, "#") {
		var raw struct {
			ResourceType string          `json:"resourceType"`
			Name         json.RawMessage `json:"name"`
		}
		if _, ok := d.contained(c, h, r.Reference, &raw); ok {
			return nameOfRaw(raw.ResourceType, raw.Name)
		}
		return ""
	}
	if e := d.resolve(r.Reference); e != nil {
		switch v := e.value.(type) {
		case *practitioner:
			return personName(v.Name)
		case *organization:
			return v.Name
		case *patient:
			return personName(v.Name)
		}
	}
	return ""
}

func nameOfRaw(typ string, raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	if typ == "Organization" {
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	}
	var names []humanName
	_ = json.Unmarshal(raw, &names)
	return personName(names)
}

// personName returns a name to show: the ideographic (漢字) one when there is one.
func personName(names []humanName) string {
	pick := -1
	for i, n := range names {
		if representation(n) == "IDE" {
			pick = i
			break
		}
	}
	if pick < 0 && len(names) > 0 {
		pick = 0
	}
	if pick < 0 {
		return ""
	}
	n := names[pick]
	if n.Text != "" {
		return n.Text
	}
	return strings.TrimSpace(n.Family + " " + strings.Join(n.Given, " "))
}

// source works out a fact's source institution: the Organization a Provenance names as agent, the custodian
// (DocumentReference), and the JP-CLINS extension JP_eCS_InstitutionNumber. It returns the institution's name
// and 医療機関コード.
func (d *doc) source(c *checker, e *entry, h *header, custodian *reference) (name, code string) {
	extCode := ""
	for i, x := range h.Extension {
		if x.URL != extInstitutionNumber {
			continue
		}
		if x.ValueIdentifier == nil || !renkei.ValidInstitutionCode(x.ValueIdentifier.Value) {
			v := ""
			if x.ValueIdentifier != nil {
				v = x.ValueIdentifier.Value
			}
			c.err(idx("extension", i)+".valueIdentifier.value", "\""+v+"\" is not a 医療機関コード (10 digits, prefecture 01-47)", "医療機関コード（"+v+"）の形式が正しくありません")
			continue
		}
		extCode = x.ValueIdentifier.Value
	}
	var org *reference
	if r, ok := d.prov[e]; ok {
		org = r
	} else if custodian != nil {
		org = custodian
	}
	if org != nil {
		name = org.Display
		if oe := d.resolve(org.Reference); oe != nil {
			if o, ok := oe.value.(*organization); ok {
				name = o.Name
				code = institutionCode(o)
			}
		}
		if org.Identifier != nil && org.Identifier.System == SystemInstitutionNo {
			code = org.Identifier.Value
		}
	}
	if extCode != "" {
		if code != "" && code != extCode {
			c.err("extension", "the source institution is given twice, as "+code+" and "+extCode, "作成した医療機関が2通り（"+code+"と"+extCode+"）書かれています")
		}
		code = extCode
		if name == "" {
			for _, oe := range d.entries {
				if o, ok := oe.value.(*organization); ok && institutionCode(o) == code {
					name = o.Name
				}
			}
		}
	}
	return name, code
}

func institutionCode(o *organization) string {
	for _, id := range o.Identifier {
		if id.System == SystemInstitutionNo {
			return id.Value
		}
	}
	return ""
}

// notes reports the annotations renkei does not keep, so that nobody believes they were imported.
func notes(c *checker, ns []annotation) {
	for i := range ns {
		c.warn(idx("note", i), "note not imported: renkei keeps no free-text notes on this fact", "備考（note）は取り込まれません")
	}
}

// fact fills the bookkeeping every imported fact carries.
func fact(e *entry, author string, recorded string, patientKey renkei.PatientKey, instName string) renkei.Fact {
	return renkei.Fact{
		InstitutionName: instName,
		Patient:         patientKey,
		Author:          author,
		RecordedAt:      parseDateTime(recorded),
		Source:          "fhir",
		SourceID:        e.sourceID(),
	}
}
