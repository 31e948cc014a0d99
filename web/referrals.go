package web

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"renkei"
	"renkei/archive"
	"renkei/clinical"
	"renkei/dicom"
	"renkei/letterpdf"
	"renkei/notify"
)

// The clinical record and referrals over JSON. The rules live in package clinical; this file only translates.

type referralEventJSON struct {
	Status      string    `json:"status"`
	At          time.Time `json:"at"`
	By          string    `json:"by"`
	Institution string    `json:"institution"`
	Note        string    `json:"note,omitempty"`
}

type referralJSON struct {
	ID              int64               `json:"id"`
	Kind            string              `json:"kind"`
	Parent          int64               `json:"parent,omitempty"`
	Direction       string              `json:"direction"` // "out" (the caller's institution sent it) or "in"
	FromInstitution string              `json:"fromInstitution"`
	FromName        string              `json:"fromName"`
	FromUser        string              `json:"fromUser"`
	ToInstitution   string              `json:"toInstitution"`
	ToName          string              `json:"toName"`
	ToDepartment    string              `json:"toDepartment,omitempty"`
	ToDoctor        string              `json:"toDoctor,omitempty"`
	PatientInst     string              `json:"patientInstitution"`
	Issuer          string              `json:"issuer"`
	PatientID       string              `json:"patientId"`
	PatientName     string              `json:"patientName"`
	PatientBirth    string              `json:"patientBirthDate,omitempty"`
	PatientSex      string              `json:"patientSex,omitempty"`
	Priority        string              `json:"priority"`
	Status          string              `json:"status"`
	Studies         []string            `json:"studies"`
	Documents       []int64             `json:"documents"`
	Letter          renkei.Letter       `json:"letter"`
	Version         int                 `json:"version"`
	Reply           *renkei.Letter      `json:"reply,omitempty"`
	Appointment     string              `json:"appointment,omitempty"`
	DeclineReason   string              `json:"declineReason,omitempty"`
	CreatedAt       time.Time           `json:"createdAt"`
	UpdatedAt       time.Time           `json:"updatedAt"`
	SentAt          *time.Time          `json:"sentAt,omitempty"`
	DueAt           *time.Time          `json:"dueAt,omitempty"`
	Overdue         bool                `json:"overdue,omitempty"`
	Events          []referralEventJSON `json:"events,omitempty"`
	Warning         string              `json:"warning,omitempty"`
}

// instID returns an institution's short ID from its key ("" if unknown).
func (s *Server) instID(r *http.Request, pk int64) string {
	if pk == 0 {
		return ""
	}
	in, err := s.Store.InstitutionByPK(r.Context(), pk)
	if err != nil {
		return ""
	}
	return in.ID
}

func (s *Server) referralJSON(r *http.Request, ref renkei.Referral) referralJSON {
	p := renkei.PrincipalFrom(r.Context())
	dir := "in"
	if ref.FromInstitution == p.Institution {
		dir = "out"
	}
	out := referralJSON{ID: ref.ID, Kind: string(ref.Kind), Parent: ref.Parent, Direction: dir, FromInstitution: s.instID(r, ref.FromInstitution),
		FromName: ref.FromName, FromUser: ref.FromUserName, ToInstitution: s.instID(r, ref.ToInstitution), ToName: ref.ToName,
		ToDepartment: ref.ToDepartment, ToDoctor: ref.ToDoctor, Issuer: ref.Patient.Issuer, PatientID: ref.Patient.ID,
		PatientName: ref.PatientName, PatientBirth: ref.PatientBirth, PatientSex: ref.PatientSex, Priority: ref.Priority,
		Status: string(ref.Status), Studies: ref.Studies, Documents: ref.Documents, Letter: ref.Letter, Version: ref.Version, Reply: ref.Reply,
		Appointment: ref.Appointment, DeclineReason: ref.DeclineReason, CreatedAt: ref.CreatedAt, UpdatedAt: ref.UpdatedAt, SentAt: ref.SentAt,
		DueAt: ref.DueAt}
	if lp, err := s.Clinical.Store.LocalPatientByPK(r.Context(), ref.PatientPK); err == nil {
		out.PatientInst = s.instID(r, lp.Institution)
	}
	if out.Studies == nil {
		out.Studies = []string{}
	}
	if out.Documents == nil {
		out.Documents = []int64{}
	}
	if ref.DueAt != nil && ref.DueAt.Before(s.Now()) && !finished(ref.Status) {
		out.Overdue = true
	}
	for _, e := range ref.Events {
		out.Events = append(out.Events, referralEventJSON{Status: string(e.Status), At: e.At, By: e.By, Institution: s.instID(r, e.ByInst), Note: e.Note})
	}
	return out
}

func finished(st renkei.ReferralStatus) bool {
	return st == renkei.StatusCompleted || st == renkei.StatusDeclined || st == renkei.StatusCancelled || st == renkei.StatusClosed
}

// referralRequest is what the referral form sends.
type referralRequest struct {
	Kind          string        `json:"kind"`
	Issuer        string        `json:"issuer"`
	PatientID     string        `json:"patientId"`
	ToInstitution string        `json:"toInstitution"`
	ToDepartment  string        `json:"toDepartment"`
	ToDoctor      string        `json:"toDoctor"`
	Priority      string        `json:"priority"`
	Studies       []string      `json:"studies"`
	Documents     []int64       `json:"documents"`
	Letter        renkei.Letter `json:"letter"`
	DueDate       string        `json:"dueDate"` // YYYY-MM-DD, by when an answer is expected
	// ETAMinutes is, for an emergency transfer, when the patient is expected, in minutes from now.
	ETAMinutes int `json:"etaMinutes"`
	// NewPatient is a patient renkei does not hold yet, typed in by the sender (patientId is their ID at the
	// sender's institution, issuer the institution's): the new draft registers them.
	NewPatient *typedPatient `json:"newPatient"`
}

// typedPatient is a patient as the sender types them in: name in kanji (or Latin letters), its reading in kana,
// birth date YYYY-MM-DD, sex M, F, O or "".
type typedPatient struct {
	Name      string `json:"name"`
	Kana      string `json:"kana"`
	BirthDate string `json:"birthDate"`
	Sex       string `json:"sex"`
}

// personName writes a typed name as a DICOM PN (PS3.5 6.2.1.2): the name in the ideographic group (the alphabetic
// one when it is all Latin letters), the kana in the phonetic group; the first space parts family and given name.
func (tp *typedPatient) personName() string {
	pn := func(s string) string { return strings.Join(strings.Fields(s), "^") }
	alpha, ideo := "", pn(tp.Name)
	if !strings.ContainsFunc(ideo, func(r rune) bool { return r >= 0x80 }) {
		alpha, ideo = ideo, ""
	}
	return strings.TrimRight(alpha+"="+ideo+"="+pn(tp.Kana), "=")
}

func (s *Server) newReferral(r *http.Request, req referralRequest) (clinical.NewReferral, error) {
	n := clinical.NewReferral{Kind: renkei.ReferralKind(req.Kind), Patient: renkei.PatientKey{Issuer: req.Issuer, ID: req.PatientID},
		ToDepartment: req.ToDepartment, ToDoctor: req.ToDoctor, Priority: req.Priority, Studies: req.Studies, Documents: req.Documents, Letter: req.Letter}
	if tp := req.NewPatient; tp != nil {
		if strings.ContainsAny(tp.Name+tp.Kana, `=\`) {
			// The delimiters of a PN's groups and values: typed in, they would move the kana into another group.
			return n, renkei.Errorj("web", renkei.Invalid, "氏名・ふりがなに記号の \\ と = は使えません。", "the name and its kana cannot hold backslash or =")
		}
		// Registered under the institution's own issuer of patient IDs, the one its images carry, so that the images
		// that come later join this patient; another issuer (a typo in an API call) would keep them apart for good.
		own := renkei.PrincipalFrom(r.Context()).Issuer
		if n.Patient.Issuer != "" && n.Patient.Issuer != own {
			return n, renkei.Errorj("web", renkei.Invalid, "renkei にまだいない患者さんは、貴施設の患者ID発行者 %[1]s で登録します(%[2]s ではなく)。",
				"a patient renkei does not hold yet is registered under your institution's issuer of patient IDs, %[1]s (not %[2]s)", own, n.Patient.Issuer)
		}
		n.Patient.Issuer = own
		n.Patient.ID = strings.TrimSpace(n.Patient.ID)
		name := tp.personName()
		n.NewPatient = &renkei.NewPatient{Name: name, BirthDate: strings.ReplaceAll(tp.BirthDate, "-", ""), Sex: tp.Sex, NameKeys: archive.NameKeys(name)}
	}
	if req.ToInstitution != "" {
		in, err := s.Store.Institution(r.Context(), req.ToInstitution)
		if err != nil {
			return n, renkei.Errorj("web.referral", renkei.Invalid, "施設 %q は見つかりません。", "there is no institution %q", req.ToInstitution)
		}
		n.ToInstitution = in.PK
	}
	if req.ETAMinutes != 0 {
		if req.ETAMinutes < 0 || req.ETAMinutes > 24*60 {
			return n, renkei.Errorj("web.referral", renkei.Invalid, "到着予定時刻は、今から24時間以内にしてください。", "the arrival time must be within the next 24 hours")
		}
		eta := s.Now().Add(time.Duration(req.ETAMinutes) * time.Minute)
		n.DueAt = &eta
	}
	if req.DueDate != "" {
		d, err := time.ParseInLocation("2006-01-02", req.DueDate, time.Local)
		if err != nil {
			return n, renkei.Errorj("web.referral", renkei.Invalid, "回答期限は日付(YYYY-MM-DD)で入力してください。", "the answer-by date must be a date (YYYY-MM-DD)")
		}
		d = d.Add(24*time.Hour - time.Millisecond)
		n.DueAt = &d
	}
	return n, nil
}

// readReferral reads a referral form (JSON) into what the clinical service takes; false means answered.
func (s *Server) readReferral(w http.ResponseWriter, r *http.Request) (clinical.NewReferral, bool) {
	var req referralRequest
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return clinical.NewReferral{}, false
	}
	n, err := s.newReferral(r, req)
	if err != nil {
		s.problem(w, r, err)
		return n, false
	}
	return n, true
}

func (s *Server) clinicalReady(w http.ResponseWriter, r *http.Request) bool {
	if s.Clinical == nil {
		s.problem(w, r, renkei.Errorj("web", renkei.Unavailable, "このサーバーでは診療記録を使えません。", "the clinical record is not available on this server"))
		return false
	}
	return true
}

func (s *Server) createReferral(w http.ResponseWriter, r *http.Request) {
	if !s.clinicalReady(w, r) {
		return
	}
	n, ok := s.readReferral(w, r)
	if !ok {
		return
	}
	ref, err := s.Clinical.Create(r.Context(), n)
	s.answerReferral(w, r, http.StatusCreated, ref, err)
}

// clinicalID checks that the clinical service is there and reads the {id} of the path; false means answered.
func (s *Server) clinicalID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	if !s.clinicalReady(w, r) {
		return 0, false
	}
	id, err := pathID(r)
	if err != nil {
		s.problem(w, r, err)
		return 0, false
	}
	return id, true
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, renkei.Errorj("web", renkei.NotFound, "該当する項目はありません。", "there is no such item")
	}
	return id, nil
}

func (s *Server) saveDraft(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	n, ok := s.readReferral(w, r)
	if !ok {
		return
	}
	ref, err := s.Clinical.SaveDraft(r.Context(), id, n)
	s.answerReferral(w, r, http.StatusOK, ref, err)
}

// answerReferral answers a referral a step returned, as JSON with status, or the step's error as problem+json.
func (s *Server) answerReferral(w http.ResponseWriter, r *http.Request, status int, ref renkei.Referral, err error) {
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, status, s.referralJSON(r, ref))
}

func (s *Server) getReferral(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	ref, err := s.Clinical.Get(r.Context(), id)
	s.answerReferral(w, r, http.StatusOK, ref, err)
}

// listReferrals is the referrals board: ?direction=in|out, ?status=a,b, ?kind=, ?patient=, ?limit, ?offset.
func (s *Server) listReferrals(w http.ResponseWriter, r *http.Request) {
	if !s.clinicalReady(w, r) {
		return
	}
	q := r.URL.Query()
	f := renkei.ReferralFilter{Direction: q.Get("direction"), Kind: renkei.ReferralKind(q.Get("kind")), Patient: strings.TrimSpace(q.Get("patient"))}
	if f.Direction != "" && f.Direction != "in" && f.Direction != "out" {
		s.problem(w, r, renkei.Errorj("web.referrals", renkei.Invalid, "direction には in か out を指定してください。", "direction must be in or out"))
		return
	}
	for _, st := range strings.Split(q.Get("status"), ",") {
		if st = strings.TrimSpace(st); st != "" {
			f.Status = append(f.Status, renkei.ReferralStatus(st))
		}
	}
	f.Limit, _ = strconv.Atoi(q.Get("limit"))
	f.Offset, _ = strconv.Atoi(q.Get("offset"))
	list, err := s.Clinical.List(r.Context(), f)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	out := []referralJSON{}
	for _, ref := range list {
		out = append(out, s.referralJSON(r, ref))
	}
	writeJSON(w, http.StatusOK, out)
}

// actOnReferral takes a step: POST /api/referrals/{id}/{action} with {appointment}, {reason} or {reply}.
func (s *Server) actOnReferral(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	var req struct {
		Appointment string         `json:"appointment"`
		Reason      string         `json:"reason"`
		Reply       *renkei.Letter `json:"reply"`
		To          string         `json:"toInstitution"` // redirect
	}
	if r.ContentLength != 0 {
		if err := readJSON(r, &req); err != nil {
			s.problem(w, r, err)
			return
		}
	}
	step := clinical.Step{Action: r.PathValue("action"), Appointment: req.Appointment, Reason: req.Reason, Reply: req.Reply}
	if req.To != "" {
		in, err := s.Store.Institution(r.Context(), req.To)
		if err != nil {
			s.problem(w, r, renkei.Errorj("web.referral", renkei.Invalid, "施設 %q は見つかりません。", "there is no institution %q", req.To))
			return
		}
		step.To = in.PK
	}
	ref, err := s.Clinical.Act(r.Context(), id, step)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	out := s.referralJSON(r, ref)
	if (ref.Kind == renkei.KindReading || ref.Kind == renkei.KindReferral) && ref.Status == renkei.StatusCompleted && r.PathValue("action") == "complete" {
		if err := s.reportToStudies(r, ref); err != nil {
			// The report or reply is signed and in the referral and the record; only the copy for PACS is missing.
			s.Logger.Error("the reply could not be filed in the study as DICOM", "referral", id, "kind", ref.Kind, "err", err)
			out.Warning = "返書・レポートは保存しましたが、検査へのDICOM登録に失敗しました。管理者に連絡してください。"
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) correctReferral(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	var l renkei.Letter
	if err := readJSON(r, &l); err != nil {
		s.problem(w, r, err)
		return
	}
	ref, err := s.Clinical.Correct(r.Context(), id, l)
	s.answerReferral(w, r, http.StatusCreated, ref, err)
}

func (s *Server) referralVersions(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	list, err := s.Clinical.Versions(r.Context(), id, r.URL.Query().Get("reply") == "1")
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if list == nil {
		list = []renkei.LetterVersion{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) reverseReferral(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	n, ok := s.readReferral(w, r)
	if !ok {
		return
	}
	ref, err := s.Clinical.Reverse(r.Context(), id, n)
	s.answerReferral(w, r, http.StatusCreated, ref, err)
}

// ---- the record ----

// recordPatient resolves ?institution=&issuer=&patientId= (institution defaults to the caller's) to a local patient
// the caller may see.
func (s *Server) recordPatient(r *http.Request) (renkei.LocalPatient, error) {
	q := r.URL.Query()
	var inst int64
	if id := q.Get("institution"); id != "" {
		in, err := s.Store.Institution(r.Context(), id)
		if err != nil {
			return renkei.LocalPatient{}, renkei.Errorj("web.record", renkei.NotFound, "該当する患者はいません。", "there is no such patient")
		}
		inst = in.PK
	}
	return s.Clinical.Patient(r.Context(), inst, renkei.PatientKey{Issuer: q.Get("issuer"), ID: q.Get("patientId")})
}

type recordJSON struct {
	Allergies   []renkei.Allergy    `json:"allergies"`
	Medications []renkei.Medication `json:"medications"`
	Conditions  []renkei.Condition  `json:"conditions"`
	Documents   []renkei.Document   `json:"documents"`
}

func toRecordJSON(rec renkei.Record) recordJSON {
	out := recordJSON{rec.Allergies, rec.Medications, rec.Conditions, rec.Documents}
	if out.Allergies == nil {
		out.Allergies = []renkei.Allergy{}
	}
	if out.Medications == nil {
		out.Medications = []renkei.Medication{}
	}
	if out.Conditions == nil {
		out.Conditions = []renkei.Condition{}
	}
	if out.Documents == nil {
		out.Documents = []renkei.Document{}
	}
	for i := range out.Documents {
		out.Documents[i].BlobKey = "" // fetched through /api/documents/{id}, which checks and audits
	}
	return out
}

// readRecord answers what the caller may see of the record of the patient the query names; false means answered.
func (s *Server) readRecord(w http.ResponseWriter, r *http.Request) (renkei.LocalPatient, renkei.Record, bool) {
	if !s.clinicalReady(w, r) {
		return renkei.LocalPatient{}, renkei.Record{}, false
	}
	lp, err := s.recordPatient(r)
	if err != nil {
		s.problem(w, r, err)
		return lp, renkei.Record{}, false
	}
	rec, err := s.Clinical.Record(r.Context(), lp.PK)
	if err != nil {
		s.problem(w, r, err)
		return lp, rec, false
	}
	return lp, rec, true
}

func (s *Server) getRecord(w http.ResponseWriter, r *http.Request) {
	_, rec, ok := s.readRecord(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, toRecordJSON(rec))
}

// addRecord records allergies, medications and conditions typed in the UI.
func (s *Server) addRecord(w http.ResponseWriter, r *http.Request) {
	if !s.clinicalReady(w, r) {
		return
	}
	lp, err := s.recordPatient(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	var req recordJSON
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	if len(req.Documents) > 0 {
		s.problem(w, r, renkei.Errorj("web.record", renkei.Invalid, "書類は /api/patients/documents に送って登録してください。",
			"documents are uploaded to /api/patients/documents"))
		return
	}
	rec := renkei.Record{Allergies: req.Allergies, Medications: req.Medications, Conditions: req.Conditions}
	for i := range rec.Allergies {
		rec.Allergies[i].Fact = renkei.Fact{}
	}
	for i := range rec.Medications {
		rec.Medications[i].Fact = renkei.Fact{}
	}
	for i := range rec.Conditions {
		rec.Conditions[i].Fact = renkei.Fact{}
	}
	if err := s.Clinical.AddFacts(r.Context(), lp.PK, &rec); err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toRecordJSON(rec))
}

// documentTypes are the media types a document may have.
var documentTypes = []string{"application/pdf", "image/jpeg", "image/png", "text/plain"}

// addDocument stores a document of a patient: the body is the file, ?title=&kind=&date= describe it.
func (s *Server) addDocument(w http.ResponseWriter, r *http.Request) {
	if !s.clinicalReady(w, r) {
		return
	}
	lp, err := s.recordPatient(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	body, ct, err := readDocument(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	key, err := s.putBlob(r, body)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	q := r.URL.Query()
	title := strings.TrimSpace(q.Get("title"))
	if title == "" {
		title = "文書"
	}
	rec := renkei.Record{Documents: []renkei.Document{{Kind: q.Get("kind"), Title: title, Date: q.Get("date"), ContentType: ct, BlobKey: key, Size: int64(len(body))}}}
	if err := s.Clinical.AddFacts(r.Context(), lp.PK, &rec); err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toRecordJSON(rec).Documents[0])
}

// document answers a document's bytes to a caller who may read it.
func (s *Server) document(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	d, err := s.Clinical.Document(r.Context(), id)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	s.serveBlob(w, r, d.BlobKey, d.ContentType, "inline")
}

func (s *Server) withdrawFact(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	if err := s.Clinical.WithdrawFact(r.Context(), id); err != nil {
		s.problem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// UseClinical serves the clinical record and referrals from c, and announces each referral step to both of its
// institutions' open pages.
func (s *Server) UseClinical(c *clinical.Service) {
	s.Clinical = c
	c.ReportDocument = func(ctx context.Context, ref renkei.Referral, report renkei.Letter) (renkei.Document, error) {
		var buf bytes.Buffer
		doc := letterpdf.Doc{Referral: ref, Reply: true, Letter: &report, Date: s.Now()}
		doc.From, _ = s.Store.InstitutionByPK(ctx, ref.FromInstitution)
		doc.To, _ = s.Store.InstitutionByPK(ctx, ref.ToInstitution)
		if err := letterpdf.Render(&buf, doc); err != nil {
			return renkei.Document{}, err
		}
		if s.Blobs == nil {
			return renkei.Document{}, renkei.Errorj("web", renkei.Unavailable, "このサーバーには書類の保存先が設定されていません。", "no document store is configured")
		}
		bw, err := s.Blobs.Create(ctx)
		if err != nil {
			return renkei.Document{}, err
		}
		if _, err := bw.Write(buf.Bytes()); err != nil {
			bw.Abort()
			return renkei.Document{}, err
		}
		key, _, err := bw.Commit(ctx)
		if err != nil {
			return renkei.Document{}, err
		}
		if err := s.Store.KeepBlob(ctx, key, "report"); err != nil {
			return renkei.Document{}, err
		}
		return renkei.Document{Title: "読影レポート", Date: s.Now().Format("2006-01-02"), ContentType: "application/pdf", BlobKey: key,
			Size: int64(buf.Len())}, nil
	}
	c.Left = func(institution, id int64) {
		if s.Hub != nil {
			publishReferral(s.Hub, institution, id)
		}
	}
	c.Changed = func(ref renkei.Referral) {
		s.mailReferral(ref)
		if s.Hub != nil {
			publishReferral(s.Hub, ref.FromInstitution, ref.ID)
			publishReferral(s.Hub, ref.ToInstitution, ref.ID)
			if ref.Status == renkei.StatusSent {
				for _, uid := range ref.Studies { // the attached studies just became visible to the receiver
					publishStudy(s.Hub, ref.ToInstitution, 0, uid)
				}
			}
		}
	}
}

// referralPDF prints a referral's letter (or, with ?reply=1, its reply or report) as an A4 PDF in the familiar
// 診療情報提供書 layout; ?version=N prints an earlier version. The letter prints what was sent: the record's
// allergies and medications are added only where the letter left those sections empty.
func (s *Server) referralPDF(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	ref, err := s.Clinical.Get(r.Context(), id)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	reply := r.URL.Query().Get("reply") == "1"
	if reply && ref.Reply == nil {
		s.problem(w, r, renkei.Errorj("web.pdf", renkei.NotFound, "この紹介にはまだ返書がありません。", "this referral has no reply yet"))
		return
	}
	doc := letterpdf.Doc{Referral: ref, Reply: reply}
	if v := r.URL.Query().Get("version"); v != "" {
		versions, err := s.Clinical.Versions(r.Context(), id, reply)
		if err != nil {
			s.problem(w, r, err)
			return
		}
		n, _ := strconv.Atoi(v)
		for _, lv := range versions {
			if lv.Version == n {
				l := lv.Letter
				doc.Letter, doc.Version = &l, n
			}
		}
		if doc.Letter == nil {
			s.problem(w, r, renkei.Errorj("web.pdf", renkei.NotFound, "版 %s はありません。", "there is no version %s", v))
			return
		}
	}
	doc.From, _ = s.Store.InstitutionByPK(r.Context(), ref.FromInstitution)
	doc.To, _ = s.Store.InstitutionByPK(r.Context(), ref.ToInstitution)
	letter := ref.Letter
	if doc.Letter != nil {
		letter = *doc.Letter
	}
	if !reply && (letter.Allergies == "" || letter.Medications == "") {
		if rec, err := s.Clinical.Record(r.Context(), ref.PatientPK); err == nil {
			if letter.Allergies == "" {
				doc.Allergies = rec.Allergies
			}
			if letter.Medications == "" {
				doc.Medications = rec.Medications
			}
		}
	}
	var buf bytes.Buffer
	if err := letterpdf.Render(&buf, doc); err != nil {
		s.problem(w, r, err)
		return
	}
	name := fmt.Sprintf("referral-%d.pdf", id)
	if reply {
		name = fmt.Sprintf("referral-%d-reply.pdf", id)
	}
	w.Header().Set("Content-Type", "application/pdf")
	w.Header().Set("Cache-Control", "private, no-store")
	w.Header().Set("Content-Disposition", `inline; filename="`+name+`"`)
	w.Write(buf.Bytes())
}

type relatedStudyJSON struct {
	StudyInstanceUID string   `json:"studyInstanceUID"`
	StudyDate        string   `json:"studyDate"`
	StudyDescription string   `json:"studyDescription,omitempty"`
	Modalities       []string `json:"modalities"`
	BodyParts        []string `json:"bodyParts"`
	Institution      string   `json:"institution"`
	InstitutionName  string   `json:"institutionName"`
	Attached         bool     `json:"attached"`
	// Similar marks an exam of the same modality and body part as an attached one, done in the last SimilarDays:
	// the receiver should not repeat it.
	Similar bool `json:"similar"`
}

// SimilarDays is how far back an exam counts as recent enough not to repeat.
const SimilarDays = 90

// relatedStudies lists the studies of a referral's patient (every linked local patient) that the caller may see,
// newest first, marking the attached ones and the recent exams similar to them.
func (s *Server) relatedStudies(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	ref, err := s.Clinical.Get(r.Context(), id)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	pks := []int64{ref.PatientPK}
	if linked, err := s.Clinical.Store.Linked(r.Context(), ref.PatientPK); err == nil {
		for _, lp := range linked {
			if lp.PK != ref.PatientPK {
				pks = append(pks, lp.PK)
			}
		}
	}
	series, err := s.DICOMweb.Archive.QuerySeries(r.Context(), &renkei.Query{Level: renkei.SeriesLevel, Patients: pks, Limit: 5000})
	if err != nil {
		s.problem(w, r, err)
		return
	}
	type kindKey struct{ modality, part string }
	byStudy := map[string]*relatedStudyJSON{}
	kinds := map[string]map[kindKey]bool{}
	var order []string
	for _, se := range series {
		st := byStudy[se.Study.StudyInstanceUID]
		if st == nil {
			in, _ := s.Store.InstitutionByPK(r.Context(), se.Study.Institution)
			st = &relatedStudyJSON{StudyInstanceUID: se.Study.StudyInstanceUID, StudyDate: se.Study.StudyDate, StudyDescription: se.Study.StudyDescription,
				Modalities: []string{}, BodyParts: []string{}, Institution: in.ID, InstitutionName: in.Name}
			byStudy[se.Study.StudyInstanceUID] = st
			kinds[se.Study.StudyInstanceUID] = map[kindKey]bool{}
			order = append(order, se.Study.StudyInstanceUID)
		}
		part := strings.ToUpper(strings.TrimSpace(se.BodyPartExamined))
		if !slices.Contains(st.Modalities, se.Modality) {
			st.Modalities = append(st.Modalities, se.Modality)
		}
		if part != "" && !slices.Contains(st.BodyParts, part) {
			st.BodyParts = append(st.BodyParts, part)
		}
		kinds[se.Study.StudyInstanceUID][kindKey{se.Modality, part}] = true
	}
	attached := map[kindKey]bool{}
	for _, uid := range ref.Studies {
		if st := byStudy[uid]; st != nil {
			st.Attached = true
			for k := range kinds[uid] {
				attached[k] = true
			}
		}
	}
	since := s.Now().AddDate(0, 0, -SimilarDays).Format("20060102")
	out := []relatedStudyJSON{}
	for _, uid := range order {
		st := byStudy[uid]
		if !st.Attached && st.StudyDate >= since {
			for k := range kinds[uid] {
				if attached[k] {
					st.Similar = true
				}
			}
		}
		out = append(out, *st)
	}
	slices.SortStableFunc(out, func(a, b relatedStudyJSON) int { return strings.Compare(b.StudyDate, a.StudyDate) })
	writeJSON(w, http.StatusOK, out)
}

// statusJa names a referral's status in the e-mails.
var statusJa = map[renkei.ReferralStatus]string{renkei.StatusSent: "送信済み(未読)", renkei.StatusReceived: "受付(開封済み)",
	renkei.StatusAccepted: "受入れ決定", renkei.StatusDeclined: "お断り", renkei.StatusCompleted: "返書済み", renkei.StatusCancelled: "取り消し",
	renkei.StatusArrived: "到着", renkei.StatusClosed: "終了"}

// mailReferral tells the other side's 地域連携室 (the institution that did not take the step) that the referral
// moved on, when a mail server and the institution's address are configured. The e-mail names the two
// institutions, the referral's number and its status, and links to it; nothing about the patient.
func (s *Server) mailReferral(ref renkei.Referral) {
	if s.Mailer == nil || len(ref.Events) == 0 {
		return
	}
	actor := ref.Events[len(ref.Events)-1].ByInst
	other := ref.ToInstitution
	if actor == ref.ToInstitution {
		other = ref.FromInstitution
	}
	ctx := context.Background()
	to, err := s.Store.InstitutionByPK(ctx, other)
	if err != nil || to.Email == "" {
		return
	}
	by, _ := s.Store.InstitutionByPK(ctx, actor)
	kind := map[renkei.ReferralKind]string{renkei.KindReferral: "紹介", renkei.KindReverse: "逆紹介", renkei.KindReading: "読影依頼",
		renkei.KindEmergency: "救急搬送"}[ref.Kind]
	link := strings.TrimRight(s.PublicURL, "/") + fmt.Sprintf("/#/referral/%d", ref.ID)
	st := statusJa[ref.Status]
	if st == "" {
		st = string(ref.Status)
	}
	body := fmt.Sprintf("%s 地域連携室 御中\n\nrenkei で、%sとの%s(No. %d)が「%s」になりました(%s による操作)。\n"+
		"ログインしてご確認ください:\n%s\n\nこのメールには患者さんの情報を含めていません。\n\n--\n"+
		"renkei: %s No. %d is now %q (by %s). Log in to see it: %s\n",
		to.Name, otherName(ref, other), kind, ref.ID, st, by.Name, link, ref.Kind, ref.ID, ref.Status, by.Name, link)
	s.Mailer.Send(notify.Message{To: []string{to.Email}, Subject: fmt.Sprintf("[renkei] %s No. %d: %s", kind, ref.ID, st), Body: body})
}

// otherName is the institution on the other side of the referral from inst.
func otherName(ref renkei.Referral, inst int64) string {
	if inst == ref.ToInstitution {
		return ref.FromName
	}
	return ref.ToName
}

// readDocument reads a document upload: a PDF, JPEG, PNG or plain text of at most 50 MB, checked to be what it
// says it is.
func readDocument(r *http.Request) ([]byte, string, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if !slices.Contains(documentTypes, ct) {
		return nil, "", renkei.Errorj("web.document", renkei.Invalid, "書類は PDF、JPEG・PNG 画像、またはテキストにしてください。",
			"a document must be a PDF, a JPEG or PNG image, or plain text")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 50<<20+1))
	if err != nil {
		return nil, "", renkei.Errorj("web.document", renkei.Invalid, "書類を読み取れませんでした。", "the document could not be read")
	}
	if len(body) > 50<<20 {
		return nil, "", renkei.Errorj("web.document", renkei.TooLarge, "書類の大きさは50MBまでです。", "a document may be at most 50 MB")
	}
	if len(body) == 0 {
		return nil, "", renkei.Errorj("web.document", renkei.Invalid, "書類が空です。", "the document is empty")
	}
	if sniff := http.DetectContentType(body); ct != "text/plain" && !strings.HasPrefix(sniff, ct) {
		return nil, "", renkei.Errorj("web.document", renkei.Invalid, "ファイルが %s ではありません(%s のようです)。",
			"the file is not a %s (it looks like %s)", ct, sniff)
	}
	return body, ct, nil
}

// attachLetter stores the printed letter (PDF or scan) of a draft.
func (s *Server) attachLetter(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	// Asked before the file is stored: a stored file is kept for good (KeepBlob), and an upload to another
	// institution's referral, or to one already sent, must leave nothing behind.
	if err := s.Clinical.MayAttachLetter(r.Context(), id); err != nil {
		s.problem(w, r, err)
		return
	}
	body, ct, err := readDocument(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	key, err := s.putBlob(r, body)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	ref, err := s.Clinical.AttachLetter(r.Context(), id, key, ct)
	s.answerReferral(w, r, http.StatusOK, ref, err)
}

// letterAttachment answers the printed letter of a referral to either side.
func (s *Server) letterAttachment(w http.ResponseWriter, r *http.Request) {
	id, ok := s.clinicalID(w, r)
	if !ok {
		return
	}
	ref, err := s.Clinical.Get(r.Context(), id)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if ref.Letter.AttachmentKey == "" {
		s.problem(w, r, renkei.Errorj("web.attachment", renkei.NotFound, "この紹介には紹介状が添付されていません。", "this referral has no attached letter"))
		return
	}
	s.serveBlob(w, r, ref.Letter.AttachmentKey, ref.Letter.AttachmentType, "inline")
}

// reportToStudies files a signed reading report as an Encapsulated PDF in each study it reports on, so that the
// requester's PACS receives it with the images (through its gateway, which fetches what is shared with it). The
// object is the reading institution's own, in the study's UID, and is shared back to the requester: returning the
// report a requester commissioned is part of the request, so this share needs no further consent.
func (s *Server) reportToStudies(r *http.Request, ref renkei.Referral) error {
	ctx := r.Context()
	p := renkei.PrincipalFrom(ctx)
	if ref.Reply == nil || s.DICOMweb == nil || s.DICOMweb.Archive == nil {
		return nil
	}
	// A reading request is answered with a report, a referral with a reply letter (返書): either goes back to the
	// sender as DICOM in the referral's studies, which its gateway delivers to its PACS like images.
	title, what := "読影レポート", "reading report"
	if ref.Kind == renkei.KindReferral {
		title, what = "返書", "reply letter"
	}
	from, _ := s.Store.InstitutionByPK(ctx, ref.FromInstitution)
	to, _ := s.Store.InstitutionByPK(ctx, ref.ToInstitution)
	var pdf bytes.Buffer
	if err := letterpdf.Render(&pdf, letterpdf.Doc{Referral: ref, Reply: true, Letter: ref.Reply, From: from, To: to, Date: s.Now()}); err != nil {
		return err
	}
	for _, uid := range ref.Studies {
		recs, err := s.DICOMweb.Archive.QueryStudies(ctx, &renkei.Query{Level: renkei.StudyLevel, Limit: 1,
			Matches: []renkei.Match{{Keyword: "StudyInstanceUID", Kind: renkei.MatchSingle, Value: uid}}, Owner: ref.FromInstitution})
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			continue // no longer visible (the share ended): nothing to file it in
		}
		st := recs[0]
		file, _, _ := dicom.EncapsulatedPDF(dicom.DocumentStudy{PatientName: st.PatientName, PatientID: st.Patient.ID, IssuerOfPatientID: st.Patient.Issuer,
			PatientBirthDate: st.PatientBirthDate, PatientSex: st.PatientSex, StudyInstanceUID: st.StudyInstanceUID, StudyDate: st.StudyDate,
			StudyTime: st.StudyTime, AccessionNumber: st.AccessionNumber, StudyID: st.StudyID, ReferringPhysicianName: st.ReferringPhysicianName,
			StudyDescription: st.StudyDescription}, pdf.Bytes(), title, to.Name, s.Now())
		res := s.DICOMweb.Archive.Store(ctx, bytes.NewReader(file), archive.StoreRequest{Source: fmt.Sprintf("%s of referral %d", what, ref.ID), Issuer: st.Patient.Issuer})
		if res.Err != nil {
			return res.Err
		}
		e := renkei.EventFor(p, renkei.ActionShare, renkei.OutcomeSuccess)
		e.DataInstitution, e.Patient, e.Study = p.Institution, st.Patient, uid
		e.Detail = fmt.Sprintf("%s of referral %d returned to %s", what, ref.ID, from.Name)
		if err := s.Store.CreateShare(ctx, &renkei.Share{FromInstitution: p.Institution, Patient: st.Patient, Studies: []string{uid},
			ToInstitution: ref.FromInstitution, Purpose: renkei.PurposeReferral, Reason: fmt.Sprintf("%s of referral %d", what, ref.ID),
			CreatedBy: p.ID, CreatedByName: p.Name, ExpiresAt: s.Now().AddDate(10, 0, 0), WithoutConsent: true}, &e); err != nil {
			return err
		}
		if s.Hub != nil {
			publishStudy(s.Hub, ref.FromInstitution, 0, uid)
		}
	}
	return nil
}
