package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"renkei"
	"renkei/fhir"
)

// The clinical record and referral letters in FHIR R4 (JP Core, JP-CLINS): export as a Bundle, import from an EMR.
// A bad import answers 400 with every issue located (English and Japanese) and stores nothing.

const fhirJSON = "application/fhir+json"

type fhirIssueJSON struct {
	Severity  string `json:"severity"`
	Location  string `json:"location"`
	Message   string `json:"message"`
	MessageJa string `json:"messageJa"`
}

func issuesJSON(issues []fhir.Issue) []fhirIssueJSON {
	out := []fhirIssueJSON{}
	for _, is := range issues {
		out = append(out, fhirIssueJSON{is.Severity.String(), is.Location, is.Message, is.MessageJa})
	}
	return out
}

// fhirProblem answers an import error: a problem+json whose detail is the first error in Japanese and whose issues
// list them all with their locations.
func (s *Server) fhirProblem(w http.ResponseWriter, r *http.Request, err error) {
	var ve *fhir.ValidationError
	if !errors.As(err, &ve) {
		s.problem(w, r, err)
		return
	}
	status := http.StatusBadRequest
	var re *renkei.Error
	if errors.As(err, &re) && re.Kind == renkei.TooLarge {
		status = http.StatusRequestEntityTooLarge
	}
	s.Logger.Info("FHIR import refused", "path", r.URL.Path, "err", err)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status,
		"detail": renkei.ErrorMessageIn(err, requestLang(r)), "issues": issuesJSON(ve.Issues)})
}

func readFHIR(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, fhir.MaxSize+1))
	if err != nil {
		return nil, renkei.Errorj("web.fhir", renkei.Invalid, "FHIR データを読み取れませんでした。", "the FHIR data could not be read")
	}
	if len(body) > fhir.MaxSize {
		return nil, renkei.Errorj("web.fhir", renkei.TooLarge, "FHIR データの大きさは%dMBまでです。", "FHIR data may be at most %d MB", fhir.MaxSize>>20)
	}
	return body, nil
}

// patientInfo describes a local patient for export.
func (s *Server) patientInfo(r *http.Request, lp renkei.LocalPatient) fhir.PatientInfo {
	info := fhir.PatientInfo{Key: lp.Key, Name: lp.Name, BirthDate: lp.BirthDate, Sex: lp.Sex}
	if in, err := s.Store.InstitutionByPK(r.Context(), lp.Institution); err == nil && in.Code != "" {
		info.IDSystem = fhir.PatientIDSystem(in.Code)
	}
	return info
}

// samePatient reports whether an imported Patient is the local patient: one of its identifiers carries the
// patient's ID under the institution's issuer or its 医療機関コード's system.
func (s *Server) samePatient(r *http.Request, p *fhir.Patient, lp renkei.LocalPatient) bool {
	if p == nil {
		return true
	}
	system := ""
	if in, err := s.Store.InstitutionByPK(r.Context(), lp.Institution); err == nil && in.Code != "" {
		system = fhir.PatientIDSystem(in.Code)
	}
	for _, id := range p.Identifiers {
		if id.Value == lp.Key.ID && (id.System == lp.Key.Issuer || id.Assigner == lp.Key.Issuer || (system != "" && id.System == system)) {
			return true
		}
	}
	return false
}

// exportRecord answers what the caller may see of a patient's record as a FHIR Bundle (collection), documents
// inline.
func (s *Server) exportRecord(w http.ResponseWriter, r *http.Request) {
	lp, rec, ok := s.readRecord(w, r)
	if !ok {
		return
	}
	insts := map[int64]renkei.Institution{}
	for _, f := range factsOf(rec) {
		if _, ok := insts[f.Institution]; !ok {
			if in, err := s.Store.InstitutionByPK(r.Context(), f.Institution); err == nil {
				insts[f.Institution] = in
			}
		}
	}
	b, err := fhir.RecordBundle(s.patientInfo(r, lp), rec, insts)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if inl, err := fhir.InlineAttachments(b, func(key string) ([]byte, error) {
		rc, err := s.Blobs.Open(r.Context(), key)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(io.LimitReader(rc, fhir.MaxAttachmentSize+1))
	}); err == nil {
		b = inl
	} else {
		s.Logger.Info("FHIR export keeps document links", "err", err)
	}
	w.Header().Set("Content-Type", fhirJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", `attachment; filename="record.fhir.json"`)
	w.Write(b)
}

func factsOf(rec renkei.Record) []renkei.Fact {
	var out []renkei.Fact
	for _, a := range rec.Allergies {
		out = append(out, a.Fact)
	}
	for _, m := range rec.Medications {
		out = append(out, m.Fact)
	}
	for _, c := range rec.Conditions {
		out = append(out, c.Fact)
	}
	for _, d := range rec.Documents {
		out = append(out, d.Fact)
	}
	return out
}

// importRecord reads a FHIR resource or Bundle from an EMR (JP Core AllergyIntolerance, MedicationRequest or
// MedicationStatement, Condition, DocumentReference) into the patient's record, as the caller's institution's
// entries. All or nothing.
func (s *Server) importRecord(w http.ResponseWriter, r *http.Request) {
	if !s.clinicalReady(w, r) {
		return
	}
	lp, err := s.recordPatient(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	body, err := readFHIR(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	imp, err := fhir.Parse(body)
	if err != nil {
		s.fhirProblem(w, r, err)
		return
	}
	if !s.samePatient(r, imp.Patient, lp) {
		s.problem(w, r, renkei.Errorj("web.fhir", renkei.Invalid, "このFHIRデータは別の患者さんのものです(患者IDが一致しません)",
			"this FHIR data belongs to another patient (the patient ID does not match)"))
		return
	}
	rec := renkei.Record{Allergies: imp.Allergies, Medications: imp.Medications, Conditions: imp.Conditions}
	for _, d := range imp.Documents {
		key, err := s.putBlob(r, d.Data)
		if err != nil {
			s.problem(w, r, err)
			return
		}
		doc := d.Document
		doc.BlobKey, doc.Size = key, int64(len(d.Data))
		rec.Documents = append(rec.Documents, doc)
	}
	if err := s.Clinical.AddFacts(r.Context(), lp.PK, &rec); err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"allergies": len(rec.Allergies), "medications": len(rec.Medications),
		"conditions": len(rec.Conditions), "documents": len(rec.Documents), "warnings": issuesJSON(imp.Warnings)})
}

// letterFHIR answers a referral's letter as an HS038-shaped FHIR Document Bundle (JP-CLINS 診療情報提供書).
func (s *Server) letterFHIR(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	ref, err := s.Clinical.Get(r.Context(), id)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if ref.Status == renkei.StatusDraft {
		s.problem(w, r, renkei.Errorj("web.fhir", renkei.Conflict, "下書きは、送信した後に出力できます。", "a draft is exported once it is sent"))
		return
	}
	from, _ := s.Store.InstitutionByPK(r.Context(), ref.FromInstitution)
	to, _ := s.Store.InstitutionByPK(r.Context(), ref.ToInstitution)
	lp, err := s.Clinical.Store.LocalPatientByPK(r.Context(), ref.PatientPK)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	var allergies []renkei.Allergy
	var meds []renkei.Medication
	if rec, err := s.Clinical.Record(r.Context(), ref.PatientPK); err == nil {
		allergies, meds = rec.Allergies, rec.Medications
	}
	b, err := fhir.LetterDocument(ref, from, to, s.patientInfo(r, lp), allergies, meds)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", fhirJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

// importLetter makes a draft referral from the 診療情報提供書 a clinic's EMR produced as a FHIR document
// (?issuer=&patientId= name the clinic's patient; ?toInstitution= the receiver, else the document's 医療機関コード).
func (s *Server) importLetter(w http.ResponseWriter, r *http.Request) {
	if !s.clinicalReady(w, r) {
		return
	}
	lp, err := s.recordPatient(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	body, err := readFHIR(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	imp, err := fhir.ParseLetterDocument(body)
	if err != nil {
		s.fhirProblem(w, r, err)
		return
	}
	if !s.samePatient(r, imp.Patient, lp) {
		s.problem(w, r, renkei.Errorj("web.fhir", renkei.Invalid, "この紹介状は別の患者さんのものです(患者IDが一致しません)",
			"this referral letter belongs to another patient (the patient ID does not match)"))
		return
	}
	to := r.URL.Query().Get("toInstitution")
	if to == "" && imp.To.InstitutionCode != "" {
		insts, err := s.Store.Institutions(r.Context())
		if err != nil {
			s.problem(w, r, err)
			return
		}
		for _, in := range insts {
			if in.Code == imp.To.InstitutionCode {
				to = in.ID
			}
		}
	}
	if to == "" {
		s.problem(w, r, renkei.Errorj("web.fhir", renkei.Invalid, "紹介先の医療機関が renkei に見つかりません(医療機関コード %s)。紹介先を選んでください",
			"the receiving institution is not in renkei (institution code %s); choose the institution the letter goes to", imp.To.InstitutionCode))
		return
	}
	letter := imp.Letter
	if len(imp.Attachments) > 0 {
		key, err := s.putBlob(r, imp.Attachments[0].Data)
		if err != nil {
			s.problem(w, r, err)
			return
		}
		letter.AttachmentKey, letter.AttachmentType = key, imp.Attachments[0].ContentType
	}
	n, err := s.newReferral(r, referralRequest{Issuer: lp.Key.Issuer, PatientID: lp.Key.ID, ToInstitution: to, ToDepartment: imp.To.Department,
		ToDoctor: imp.To.Doctor, Letter: letter})
	if err != nil {
		s.problem(w, r, err)
		return
	}
	ref, err := s.Clinical.Create(r.Context(), n)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	out := s.referralJSON(r, ref)
	var warn []string
	for _, is := range imp.Warnings {
		warn = append(warn, is.MessageJa)
	}
	out.Warning = strings.Join(warn, "\n")
	writeJSON(w, http.StatusCreated, out)
}
