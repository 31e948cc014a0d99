package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"renkei"
	"renkei/access"
)

// staff reports whether p is a member of staff who works with patients' records at their institution.
func staff(p *renkei.Principal) bool {
	return p.Kind == renkei.UserPrincipal && slices.Contains([]renkei.Role{renkei.Physician, renkei.Radiologist, renkei.Nurse, renkei.Clerk,
		renkei.InstitutionAdmin}, p.Role)
}

// forbidden refuses a request the caller's role does not allow, in Japanese (ja) and English (en).
func forbidden(op, ja, en string) error {
	return &renkei.Error{Op: op, Kind: renkei.Forbidden, Message: en, Japanese: ja}
}

// ownPatient resolves a patient of the caller's institution from an issuer (default: the institution's) and ID.
func (s *Server) ownPatient(r *http.Request, issuer, id string) (renkei.LocalPatient, error) {
	p := renkei.PrincipalFrom(r.Context())
	if issuer == "" {
		issuer = p.Issuer
	}
	if strings.TrimSpace(id) == "" {
		return renkei.LocalPatient{}, renkei.Errorj("web", renkei.Invalid, "患者を指定してください(患者ID。貴施設で複数の発行者を使っている場合は発行者も)。",
			"name the patient (patientId, and issuer if your institution uses several)")
	}
	return s.Store.LocalPatient(r.Context(), p.Institution, renkei.PatientKey{Issuer: issuer, ID: id})
}

type consentJSON struct {
	ID          int64      `json:"id"`
	Issuer      string     `json:"issuer"`
	PatientID   string     `json:"patientId"`
	Scope       string     `json:"scope"`
	GivenAt     time.Time  `json:"givenAt"`
	Method      string     `json:"method"`
	HasDocument bool       `json:"hasDocument"`
	Note        string     `json:"note,omitempty"`
	RecordedBy  string     `json:"recordedBy"`
	RecordedAt  time.Time  `json:"recordedAt"`
	WithdrawnAt *time.Time `json:"withdrawnAt,omitempty"`
	WithdrawnBy string     `json:"withdrawnBy,omitempty"`
}

func toConsentJSON(c renkei.Consent) consentJSON {
	return consentJSON{c.ID, c.Patient.Issuer, c.Patient.ID, c.Scope, c.GivenAt, c.Method, c.DocumentKey != "", c.Note, c.RecordedBy, c.RecordedAt,
		c.WithdrawnAt, c.WithdrawnBy}
}

// maxConsentDocument bounds a scanned 同意書 (a few pages of PDF or images).
const maxConsentDocument = 20 << 20

// addConsent records a patient's consent to disclosure by the caller's institution: on paper (a scanned 同意書
// attached) or electronically (the patient's signed statement).
func (s *Server) addConsent(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Issuer       string   `json:"issuer"`
		PatientID    string   `json:"patientId"`
		Scope        []string `json:"scope"` // ["region"] or institution IDs
		GivenAt      string   `json:"givenAt"`
		Method       string   `json:"method"`
		Document     string   `json:"document"` // base64
		DocumentType string   `json:"documentType"`
		Signature    string   `json:"signature"` // electronic: the statement the patient signed, with their name
		// SignatureImage is the signature the patient drew (on a tablet at the counter), a PNG in base64.
		SignatureImage string `json:"signatureImage"`
		Note           string `json:"note"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxConsentDocument*4/3+4096)
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	const op = "web.addConsent"
	p := renkei.PrincipalFrom(r.Context())
	if !staff(p) {
		s.problem(w, r, forbidden(op, "同意を記録できるのは、患者の施設の職員だけです。", "only staff of the patient's institution record consent"))
		return
	}
	lp, err := s.ownPatient(r, req.Issuer, req.PatientID)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	c := renkei.Consent{Institution: p.Institution, Patient: lp.Key, Method: req.Method, Note: req.Note, RecordedBy: p.Name, GivenAt: s.Now()}
	if req.GivenAt != "" {
		t, err := time.ParseInLocation("2006-01-02", req.GivenAt, time.Local)
		if err != nil || t.After(s.Now()) {
			s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "同意日は、患者が同意した日を YYYY-MM-DD の形で入力してください(未来の日付は入力できません)。",
				"givenAt must be the date the patient consented, as YYYY-MM-DD, not in the future"))
			return
		}
		c.GivenAt = t
	}
	switch {
	case len(req.Scope) == 1 && req.Scope[0] == renkei.ConsentScopeRegion:
		c.Scope = renkei.ConsentScopeRegion
	case len(req.Scope) > 0:
		for _, id := range req.Scope {
			if _, err := s.Store.Institution(r.Context(), id); err != nil {
				s.problem(w, r, err)
				return
			}
		}
		c.Scope = strings.Join(req.Scope, ",")
	default:
		s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "同意の範囲には、地域全体か、患者が同意した施設を選んでください。",
			`scope must be ["region"] or the IDs of the institutions the patient agreed to`))
		return
	}
	var doc []byte
	switch req.Method {
	case "paper":
		if req.Document == "" {
			s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "スキャンした同意書を添付してください。", "attach the scanned consent form (同意書)"))
			return
		}
		doc, err = base64.StdEncoding.DecodeString(req.Document)
		if err != nil || len(doc) == 0 {
			s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "書類のデータが正しくありません(base64 で送ってください)。", "the document must be base64"))
			return
		}
		c.DocumentType = req.DocumentType
		if c.DocumentType == "" {
			c.DocumentType = http.DetectContentType(doc)
		}
	case "electronic":
		if strings.TrimSpace(req.Signature) == "" {
			s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "電子同意には、患者が署名した同意文が必要です。",
				"an electronic consent needs the statement the patient signed"))
			return
		}
		doc, c.DocumentType = []byte(req.Signature), "text/plain; charset=utf-8"
		if req.SignatureImage != "" {
			png, err := signatureImage(req.SignatureImage)
			if err != nil {
				s.problem(w, r, renkei.Errorf(op, renkei.Invalid, "%v", err))
				return
			}
			// The statement and the drawn signature are kept together, as the patient saw and signed them.
			doc, _ = json.Marshal(signedStatement{Statement: req.Signature, Signature: "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)})
			c.DocumentType = signedStatementType
		}
	default:
		s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "同意の方法は「紙」か「電子」を選んでください。", `method must be "paper" or "electronic"`))
		return
	}
	if c.DocumentKey, err = s.putBlob(r, doc); err != nil {
		s.problem(w, r, err)
		return
	}
	e := renkei.EventFor(p, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Detail = p.Institution, lp.Key, "recorded consent ("+c.Method+") to disclose to "+c.Scope
	if err := s.Store.AddConsent(r.Context(), &c, &e); err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toConsentJSON(c))
}

// signedStatementType is the media type of an electronic consent with a drawn signature: the statement shown to the
// patient and their signature, one JSON document (see signedStatement).
const signedStatementType = "application/vnd.renkei.signed-statement+json"

type signedStatement struct {
	Statement string `json:"statement"`
	Signature string `json:"signature"` // a data: URL of the PNG the patient drew
}

// signatureImage checks a drawn signature: base64 (or a data: URL) of a PNG of a sensible size with something drawn
// on it, so that an empty pad or a stray tap is not taken for a signature.
func signatureImage(b64 string) ([]byte, error) {
	b64 = strings.TrimPrefix(b64, "data:image/png;base64,")
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) > 2<<20 {
		return nil, errors.New("the drawn signature must be a PNG image in base64, at most 2 MB")
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil || cfg.Width < 50 || cfg.Height < 20 || cfg.Width > 4000 || cfg.Height > 2000 {
		return nil, errors.New("the drawn signature is not a PNG image of a signature pad's size")
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, errors.New("the drawn signature is not a readable PNG image")
	}
	// Ink: pixels clearly darker than the pad, drawn (not transparent).
	ink := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			if a > 0x8000 && (r+g+bl)/3 < 0x8000 {
				ink++
			}
		}
	}
	if ink < 100 {
		return nil, errors.New("the signature pad is empty: ask the patient to sign with a finger or the pen")
	}
	return b, nil
}

func (s *Server) putBlob(r *http.Request, b []byte) (string, error) {
	if s.Blobs == nil {
		return "", renkei.Errorj("web", renkei.Unavailable, "このサーバーには書類の保存先が設定されていません。", "no document store is configured")
	}
	bw, err := s.Blobs.Create(r.Context())
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(bw, bytes.NewReader(b)); err != nil {
		bw.Abort()
		return "", err
	}
	key, _, err := bw.Commit(r.Context())
	if err != nil {
		return "", err
	}
	// Named at once, so that the sweep of blobs nothing refers to keeps it (it is not a DICOM instance).
	return key, s.Store.KeepBlob(r.Context(), key, "document")
}

func (s *Server) listConsents(w http.ResponseWriter, r *http.Request) {
	p := renkei.PrincipalFrom(r.Context())
	if !staff(p) {
		s.problem(w, r, forbidden("web.consents", "施設の同意記録を見られるのは職員だけです。", "only staff read their institution's consents"))
		return
	}
	var pk int64
	if id := r.URL.Query().Get("patientId"); id != "" {
		lp, err := s.ownPatient(r, r.URL.Query().Get("issuer"), id)
		if err != nil {
			s.problem(w, r, err)
			return
		}
		pk = lp.PK
	}
	list, err := s.Store.Consents(r.Context(), p.Institution, pk)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	out := []consentJSON{}
	for _, c := range list {
		out = append(out, toConsentJSON(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) ownConsent(r *http.Request) (renkei.Consent, error) {
	p := renkei.PrincipalFrom(r.Context())
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if !staff(p) {
		return renkei.Consent{}, forbidden("web.consent", "施設の同意記録を見られるのは職員だけです。", "only staff read their institution's consents")
	}
	list, err := s.Store.Consents(r.Context(), p.Institution, 0)
	if err != nil {
		return renkei.Consent{}, err
	}
	for _, c := range list {
		if c.ID == id {
			return c, nil
		}
	}
	return renkei.Consent{}, renkei.Errorj("web.consent", renkei.NotFound, "同意 %q は見つかりません。", "there is no consent %q", r.PathValue("id"))
}

func (s *Server) withdrawConsent(w http.ResponseWriter, r *http.Request) {
	c, err := s.ownConsent(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	e := renkei.EventFor(p, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Detail = p.Institution, c.Patient, "recorded the withdrawal of consent "+strconv.FormatInt(c.ID, 10)
	if err := s.Store.WithdrawConsent(r.Context(), c.ID, p.Institution, p.Name, &e); err != nil {
		s.problem(w, r, err)
		return
	}
	now := s.Now()
	c.WithdrawnAt, c.WithdrawnBy = &now, p.Name
	writeJSON(w, http.StatusOK, toConsentJSON(c))
}

func (s *Server) consentDocument(w http.ResponseWriter, r *http.Request) {
	c, err := s.ownConsent(r)
	if err == nil && c.DocumentKey == "" {
		err = renkei.Errorj("web.consentDocument", renkei.NotFound, "この同意には書類がありません。", "this consent has no document")
	}
	if err != nil {
		s.problem(w, r, err)
		return
	}
	s.serveBlob(w, r, c.DocumentKey, c.DocumentType, "attachment")
}

// serveBlob answers a stored document's bytes (a scanned form, a letter, a report), never cached by the browser.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, key, contentType, disposition string) {
	b, err := s.Blobs.Open(r.Context(), key)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	defer b.Close()
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Disposition", disposition)
	w.Header().Set("Cache-Control", "private, no-store")
	io.Copy(w, b)
}

type patientRef struct {
	Institution string `json:"institution"`
	Issuer      string `json:"issuer"`
	PatientID   string `json:"patientId"`
}

type localPatientJSON struct {
	patientRef
	Name      string `json:"name"`
	BirthDate string `json:"birthDate"`
	Sex       string `json:"sex"`
	Regional  int64  `json:"regional,omitempty"`
}

// localPatientJSONOf renders a local patient, naming its institution through institutionID (s.institutionIDs).
func localPatientJSONOf(lp renkei.LocalPatient, institutionID func(int64) string) localPatientJSON {
	return localPatientJSON{patientRef{institutionID(lp.Institution), lp.Key.Issuer, lp.Key.ID}, lp.Name, lp.BirthDate, lp.Sex, lp.Regional}
}

// institutionIDs returns the IDs of institutions by key, asking the index once per institution for the request (a
// list repeats the same few institutions: a search's 50 patients, a hospital's shares); "" for one not found.
func (s *Server) institutionIDs(ctx context.Context) func(pk int64) string {
	ids := map[int64]string{0: ""}
	return func(pk int64) string {
		v, ok := ids[pk]
		if !ok {
			if in, err := s.Store.InstitutionByPK(ctx, pk); err == nil {
				v = in.ID
			}
			ids[pk] = v
		}
		return v
	}
}

func (s *Server) resolve(r *http.Request, ref patientRef) (renkei.LocalPatient, error) {
	in, err := s.Store.Institution(r.Context(), ref.Institution)
	if err != nil {
		return renkei.LocalPatient{}, err
	}
	return s.Store.LocalPatient(r.Context(), in.PK, renkei.PatientKey{Issuer: ref.Issuer, ID: ref.PatientID})
}

// regionAdmin: the patient index is kept by the region's operator, who sees which institutions know a person;
// institutions do not see each other's patients through it.
func regionAdmin(p *renkei.Principal) bool {
	return p.Kind == renkei.UserPrincipal && p.Role == renkei.RegionAdmin
}

func (s *Server) linkProposals(w http.ResponseWriter, r *http.Request) {
	if !regionAdmin(renkei.PrincipalFrom(r.Context())) {
		s.problem(w, r, forbidden("web.linkProposals", "患者の名寄せ(地域患者インデックス)を管理できるのは、地域の管理者だけです。",
			"only a region administrator keeps the patient index"))
		return
	}
	list, err := s.Store.LinkProposals(r.Context(), 200)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	type proposal struct {
		A, B localPatientJSON
	}
	out := []proposal{}
	id := s.institutionIDs(r.Context())
	for _, lp := range list {
		out = append(out, proposal{localPatientJSONOf(lp.A, id), localPatientJSONOf(lp.B, id)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) link(w http.ResponseWriter, r *http.Request) {
	var req struct{ A, B patientRef }
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	if !regionAdmin(p) {
		s.problem(w, r, forbidden("web.link", "患者の名寄せができるのは、地域の管理者だけです。", "only a region administrator links patients"))
		return
	}
	a, err := s.resolve(r, req.A)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	b, err := s.resolve(r, req.B)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	e := renkei.EventFor(p, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient = a.Institution, a.Key
	e.Detail = "with " + req.B.Institution + " " + b.Key.ID
	regional, err := s.Store.Link(r.Context(), a.PK, b.PK, p.Name, &e)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"regional": regional})
}

// unmerge undoes a merge of two regional patients (a link that joined two people wrongly): {"regional": the merged
// one, "from": the one merged into it}, both as the link's answer and audit event name them.
func (s *Server) unmerge(w http.ResponseWriter, r *http.Request) {
	var req struct{ Regional, From int64 }
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	if !regionAdmin(p) {
		s.problem(w, r, forbidden("web.unmerge", "名寄せの取り消しができるのは、地域の管理者だけです。", "only a region administrator unmerges patients"))
		return
	}
	e := renkei.EventFor(p, renkei.ActionAdmin, renkei.OutcomeSuccess)
	n, err := s.Store.Unmerge(r.Context(), req.Regional, req.From, &e)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"regional": req.From, "patients": int64(n)})
}

func (s *Server) unlink(w http.ResponseWriter, r *http.Request) {
	var req patientRef
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	if !regionAdmin(p) {
		s.problem(w, r, forbidden("web.unlink", "名寄せの解除ができるのは、地域の管理者だけです。", "only a region administrator unlinks patients"))
		return
	}
	lp, err := s.resolve(r, req)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	e := renkei.EventFor(p, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient = lp.Institution, lp.Key
	if err := s.Store.Unlink(r.Context(), lp.PK, &e); err != nil {
		s.problem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type studyJSON struct {
	Institution       string   `json:"institution"`
	Issuer            string   `json:"issuer"`
	PatientID         string   `json:"patientId"`
	PatientName       string   `json:"patientName"`
	StudyInstanceUID  string   `json:"studyInstanceUID"`
	StudyDate         string   `json:"studyDate"`
	StudyDescription  string   `json:"studyDescription,omitempty"`
	Modalities        []string `json:"modalities"`
	NumberOfInstances int      `json:"numberOfInstances"`
	Own               bool     `json:"own"` // false: shared with the caller (or opened by break-glass)
}

// studies answers with the studies of some local patients that the caller may see (the access decorator decides).
func (s *Server) studies(w http.ResponseWriter, r *http.Request, patients []int64) {
	if len(patients) == 0 {
		writeJSON(w, http.StatusOK, []studyJSON{})
		return
	}
	recs, err := s.DICOMweb.Archive.QueryStudies(r.Context(), &renkei.Query{Level: renkei.StudyLevel, Patients: patients, Limit: 1000})
	if err != nil {
		s.problem(w, r, err)
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	out := []studyJSON{}
	id := s.institutionIDs(r.Context())
	for _, st := range recs {
		out = append(out, studyJSON{id(st.Institution), st.Patient.Issuer, st.Patient.ID, st.PatientName, st.StudyInstanceUID, st.StudyDate, st.StudyDescription,
			st.ModalitiesInStudy, st.NumberOfInstances, st.Institution == p.Institution})
	}
	writeJSON(w, http.StatusOK, out)
}

type foundPatientJSON struct {
	localPatientJSON
	LastStudyDate string `json:"lastStudyDate,omitempty"`
	Own           bool   `json:"own"`
}

// findPatients is the "which patient?" search of a new referral or transfer: ?q= the start of the patient ID (any
// case) or of the name (kanji, kana of either width, romaji), ?institution= the owner (as for /api/studies). It finds
// patients with no study too (known from their record, a consent, a referral), within what the caller may see and
// recorded in the audit trail, both by the access decorator, as for studies.
func (s *Server) findPatients(w http.ResponseWriter, r *http.Request) {
	p := renkei.PrincipalFrom(r.Context())
	if !staff(p) {
		s.problem(w, r, forbidden("web.findPatients", "患者を検索できるのは職員だけです。", "only staff look patients up"))
		return
	}
	q := &renkei.PatientQuery{Text: r.URL.Query().Get("q")}
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil {
		q.Limit = n
	}
	if id := r.URL.Query().Get("institution"); id != "" {
		in, err := s.Store.Institution(r.Context(), id)
		if err != nil {
			s.problem(w, r, err)
			return
		}
		q.Owner = in.PK
	}
	recs, err := s.DICOMweb.Archive.QueryPatients(r.Context(), q)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	out := []foundPatientJSON{}
	id := s.institutionIDs(r.Context())
	for _, pr := range recs {
		out = append(out, foundPatientJSON{localPatientJSONOf(pr.LocalPatient, id), pr.LastStudyDate, pr.Institution == p.Institution})
	}
	writeJSON(w, http.StatusOK, out)
}

// regionalStudies lists the studies of every local patient linked with one of the caller's institution's patients
// that the caller may see: its own, and what other institutions shared.
func (s *Server) regionalStudies(w http.ResponseWriter, r *http.Request) {
	p := renkei.PrincipalFrom(r.Context())
	if !staff(p) {
		s.problem(w, r, forbidden("web.regionalStudies", "患者を検索できるのは職員だけです。", "only staff look patients up"))
		return
	}
	lp, err := s.ownPatient(r, r.URL.Query().Get("issuer"), r.URL.Query().Get("patientId"))
	if err != nil {
		s.problem(w, r, err)
		return
	}
	s.linkedStudies(w, r, lp.PK)
}

func (s *Server) breakGlass(w http.ResponseWriter, r *http.Request) {
	var req access.BreakGlassRequest
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	grants, err := access.BreakGlass(r.Context(), s.Store, renkei.PrincipalFrom(r.Context()), req, s.BreakGlassPeriod, s.Now())
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.sharesJSON(r, grants))
}

// breakGlassReviews is the owning institution's queue of emergency accesses to review.
func (s *Server) breakGlassReviews(w http.ResponseWriter, r *http.Request) {
	p := renkei.PrincipalFrom(r.Context())
	if p.Role != renkei.InstitutionAdmin || p.Kind != renkei.UserPrincipal {
		s.problem(w, r, forbidden("web.breakGlassReviews", "緊急閲覧を確認できるのは、施設の管理者だけです。",
			"only the institution's administrator reviews emergency accesses"))
		return
	}
	list, err := s.Store.Shares(r.Context(), renkei.ShareFilter{FromInstitution: p.Institution, Purpose: renkei.PurposeBreakGlass,
		Unreviewed: r.URL.Query().Get("all") == ""})
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.sharesJSON(r, list))
}

func (s *Server) reviewBreakGlass(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Note string `json:"note"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	if p.Role != renkei.InstitutionAdmin || p.Kind != renkei.UserPrincipal {
		s.problem(w, r, forbidden("web.reviewBreakGlass", "緊急閲覧を確認できるのは、施設の管理者だけです。",
			"only the institution's administrator reviews emergency accesses"))
		return
	}
	if strings.TrimSpace(req.Note) == "" {
		s.problem(w, r, renkei.Errorj("web.reviewBreakGlass", renkei.Invalid, "確認の結果を記入してください。", "write what the review found"))
		return
	}
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	list, err := s.Store.Shares(r.Context(), renkei.ShareFilter{ID: id, FromInstitution: p.Institution, Purpose: renkei.PurposeBreakGlass})
	if err != nil || len(list) == 0 {
		s.problem(w, r, renkei.Errorj("web.reviewBreakGlass", renkei.NotFound, "確認する緊急閲覧 %q は見つかりません。",
			"there is no emergency access %q to review", r.PathValue("id")))
		return
	}
	e := renkei.EventFor(p, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Detail = p.Institution, list[0].Patient, "reviewed break-glass "+r.PathValue("id")+": "+req.Note
	if err := s.Store.ReviewBreakGlass(r.Context(), id, p.Institution, p.Name, req.Note, &e); err != nil {
		s.problem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) invite(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Issuer    string `json:"issuer"`
		PatientID string `json:"patientId"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	lp, err := s.ownPatient(r, req.Issuer, req.PatientID)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	code, expires, err := s.Identity.Invite(r.Context(), renkei.PrincipalFrom(r.Context()), lp)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"code": code, "expiresAt": expires})
}

// acceptInvitation is public: the patient has no account yet. Attempts are limited per address.
func (s *Server) acceptInvitation(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Code     string `json:"code"`
		Login    string `json:"login"`
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	if !s.loginLimit.allow(s.clientAddr(r), s.Now()) {
		w.Header().Set("Retry-After", "60")
		s.problem(w, r, renkei.Errorj("web.acceptInvitation", renkei.Unavailable, "この端末からの試行が多すぎます。1分ほど待ってから、もう一度お試しください。",
			"too many attempts from this address; wait a minute and try again"))
		return
	}
	u, err := s.Identity.AcceptInvitation(r.Context(), req.Code, req.Login, req.Name, req.Password, s.clientAddr(r))
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"login": u.Login, "next": "log in, then enrol an authenticator app"})
}

func (s *Server) patientOnly(w http.ResponseWriter, r *http.Request) *renkei.Principal {
	p := renkei.PrincipalFrom(r.Context())
	if p.Role != renkei.PatientRole || p.Patient == 0 {
		s.problem(w, r, forbidden("web.my", "このページは患者さんご本人のアカウント用です。", "this page is for patients' own accounts"))
		return nil
	}
	return p
}

func (s *Server) myStudies(w http.ResponseWriter, r *http.Request) {
	p := s.patientOnly(w, r)
	if p == nil {
		return
	}
	s.linkedStudies(w, r, p.Patient)
}

// linkedStudies answers with the studies of a local patient and of every local patient linked with it, that the
// caller may see.
func (s *Server) linkedStudies(w http.ResponseWriter, r *http.Request, patient int64) {
	linked, err := s.Store.Linked(r.Context(), patient)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	var pks []int64
	for _, l := range linked {
		pks = append(pks, l.PK)
	}
	s.studies(w, r, pks)
}

// myAccessLog shows a patient who looked at their data: which institution, which role, when, what, for what
// purpose (as Estonia shows its citizens). Staff names are not shown; the institution answers for its staff.
func (s *Server) myAccessLog(w http.ResponseWriter, r *http.Request) {
	p := s.patientOnly(w, r)
	if p == nil {
		return
	}
	linked, err := s.Store.Linked(r.Context(), p.Patient)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	var events []renkei.AuditEvent
	for _, lp := range linked {
		list, err := s.Store.AuditEvents(r.Context(), renkei.AuditFilter{DataInstitution: lp.Institution, Patient: &lp.Key, Limit: 1000})
		if err != nil {
			s.problem(w, r, err)
			return
		}
		events = append(events, list...)
	}
	slices.SortFunc(events, func(a, b renkei.AuditEvent) int { return int(b.Seq - a.Seq) })
	type entry struct {
		Time        time.Time `json:"time"`
		Institution string    `json:"institution"`
		Role        string    `json:"role"`
		ActorKind   string    `json:"actorKind"`
		Action      string    `json:"action"`
		Purpose     string    `json:"purpose,omitempty"`
		Study       string    `json:"study,omitempty"`
		Self        bool      `json:"self"`
	}
	out := []entry{}
	names := map[int64]string{} // one lookup per institution, not per event (a log holds up to 1,000 per linked ID)
	for _, e := range events {
		name, ok := names[e.Institution]
		if !ok && e.Institution != 0 {
			in, _ := s.Store.InstitutionByPK(r.Context(), e.Institution)
			name, names[e.Institution] = in.Name, in.Name
		}
		if e.ActorKind == renkei.AEPrincipal {
			name += " (DICOM " + e.Actor + ")"
		}
		out = append(out, entry{e.Time, name, string(e.Role), string(e.ActorKind), string(e.Action), e.Purpose, e.Study,
			e.ActorKind == renkei.UserPrincipal && e.ActorID == p.ID})
	}
	writeJSON(w, http.StatusOK, out)
}
