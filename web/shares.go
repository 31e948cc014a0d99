package web

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"renkei"
)

type institutionJSON struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	NameEn        string   `json:"nameEn,omitempty"`
	Kind          string   `json:"kind"`
	Code          string   `json:"code,omitempty"`
	CareFunctions []string `json:"careFunctions,omitempty"`
}

// institutions lists the region's institutions (to choose whom to share with or refer to).
func (s *Server) institutions(w http.ResponseWriter, r *http.Request) {
	list, err := s.Store.Institutions(r.Context())
	if err != nil {
		s.problem(w, r, err)
		return
	}
	out := []institutionJSON{}
	for _, in := range list {
		out = append(out, institutionJSON{in.ID, in.Name, in.NameEn, string(in.Kind), in.Code, in.CareFunctions})
	}
	writeJSON(w, http.StatusOK, out)
}

type shareJSON struct {
	ID              int64      `json:"id"`
	FromInstitution string     `json:"fromInstitution"`
	Issuer          string     `json:"issuer"`
	PatientID       string     `json:"patientId"`
	PatientName     string     `json:"patientName,omitempty"` // PN in DICOM form; only when the caller may see the patient
	Studies         []string   `json:"studies"`
	ToInstitution   string     `json:"toInstitution,omitempty"`
	ToUser          int64      `json:"toUser,omitempty"`
	ToUserName      string     `json:"toUserName,omitempty"` // "name(institution)" of ToUser
	Purpose         string     `json:"purpose"`
	Reason          string     `json:"reason,omitempty"`
	SharedBy        string     `json:"sharedBy"`
	CreatedAt       time.Time  `json:"createdAt"`
	ExpiresAt       time.Time  `json:"expiresAt"`
	RevokedAt       *time.Time `json:"revokedAt,omitempty"`
	Active          bool       `json:"active"`
}

func (s *Server) shareJSON(r *http.Request, sh renkei.Share) shareJSON {
	return s.sharesJSON(r, []renkei.Share{sh})[0]
}

// sharesJSON renders a list of shares, looking each institution, person and patient up once for the whole list (a
// hospital's list repeats the same few institutions hundreds of times).
func (s *Server) sharesJSON(r *http.Request, list []renkei.Share) []shareJSON {
	ctx := r.Context()
	p := renkei.PrincipalFrom(ctx)
	lang := requestLang(r)
	id := s.institutionIDs(ctx)
	// A share to one person (a break-glass, a consult's guest) names them: the institution that shares sees who
	// may look, not a number.
	users := map[int64]string{0: ""}
	userName := func(pk int64) string {
		v, ok := users[pk]
		if !ok && s.Identity != nil {
			if u, _, err := s.Identity.Store.UserByPK(ctx, pk); err == nil {
				inst := u.Institution.Name
				if lang == "en" && u.Institution.NameEn != "" {
					inst = u.Institution.NameEn
				}
				v = u.Name + "(" + inst + ")"
			}
			users[pk] = v
		}
		return v
	}
	// The patient's name, so that a clerk recognises whom a share is about (an ID alone says little).
	type patientRef struct {
		institution int64
		key         renkei.PatientKey
	}
	patients := map[patientRef]string{}
	patientName := func(sh renkei.Share) string {
		if !sharedPatientVisible(p, sh, s.Now()) {
			return ""
		}
		ref := patientRef{sh.FromInstitution, sh.Patient}
		v, ok := patients[ref]
		if !ok {
			if lp, err := s.Store.LocalPatient(ctx, sh.FromInstitution, sh.Patient); err == nil {
				v = lp.Name
			}
			patients[ref] = v
		}
		return v
	}
	out := make([]shareJSON, 0, len(list))
	for _, sh := range list {
		studies := sh.Studies
		if studies == nil {
			studies = []string{}
		}
		out = append(out, shareJSON{ID: sh.ID, FromInstitution: id(sh.FromInstitution), Issuer: sh.Patient.Issuer, PatientID: sh.Patient.ID,
			PatientName: patientName(sh), Studies: studies, ToInstitution: id(sh.ToInstitution), ToUser: sh.ToUser, ToUserName: userName(sh.ToUser),
			Purpose: string(sh.Purpose), Reason: sh.Reason, SharedBy: sh.CreatedByName, CreatedAt: sh.CreatedAt, ExpiresAt: sh.ExpiresAt,
			RevokedAt: sh.RevokedAt, Active: sh.Active(s.Now())})
	}
	return out
}

// sharedPatientVisible reports whether p may read the name of the patient sh is about: staff (or a token) of the
// institution that shared its own patient, or the institution or user that receives sh while it is in force. A
// patient's account, and a receiver whose share was revoked or expired, get the ID only, as the study list would.
func sharedPatientVisible(p *renkei.Principal, sh renkei.Share, now time.Time) bool {
	switch {
	case p == nil || p.Role == renkei.PatientRole:
		return false
	case p.Kind == renkei.SystemPrincipal || sh.FromInstitution == p.Institution:
		return true
	}
	received := (sh.ToUser == 0 && sh.ToInstitution == p.Institution) || (sh.ToUser != 0 && p.Kind == renkei.UserPrincipal && sh.ToUser == p.ID)
	return received && sh.Active(now)
}

// listShares lists the shares the caller's institution made (?direction=out, the default) or received (in).
func (s *Server) listShares(w http.ResponseWriter, r *http.Request) {
	p := renkei.PrincipalFrom(r.Context())
	if p == nil || p.Role == renkei.PatientRole {
		// A patient's account belongs to the institution that invited him: its shares are other patients'.
		s.problem(w, r, forbidden("web.shares", "共有の一覧は施設の職員だけが見られます。", "only staff see their institution's shares"))
		return
	}
	f := renkei.ShareFilter{FromInstitution: p.Institution}
	switch r.URL.Query().Get("direction") {
	case "", "out":
	case "in":
		f = renkei.ShareFilter{ToInstitution: p.Institution}
		if p.Kind == renkei.UserPrincipal {
			f.ToUser = p.ID
		}
	default:
		s.problem(w, r, renkei.Errorj("web.shares", renkei.Invalid, "direction には in か out を指定してください。", "direction must be in or out"))
		return
	}
	list, err := s.Store.Shares(r.Context(), f)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.sharesJSON(r, list))
}

// mayShare: people who treat or coordinate care share (physicians, radiologists, nurses, 地域連携室 clerks,
// institution admins); tokens, AEs and patients do not.
func mayShare(p *renkei.Principal) bool {
	return p.Kind == renkei.UserPrincipal && slices.Contains([]renkei.Role{renkei.Physician, renkei.Radiologist, renkei.Nurse, renkei.Clerk,
		renkei.InstitutionAdmin}, p.Role)
}

// createShare shares one of the caller's institution's patients (all studies, or the listed ones) with another
// institution or one of its users, for a purpose, until an expiry.
func (s *Server) createShare(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Issuer        string   `json:"issuer"`
		PatientID     string   `json:"patientId"`
		Studies       []string `json:"studies"`
		ToInstitution string   `json:"toInstitution"`
		ToUser        string   `json:"toUser"` // a login
		Purpose       string   `json:"purpose"`
		Reason        string   `json:"reason"`
		Days          int      `json:"days"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	const op = "web.createShare"
	if !mayShare(p) {
		s.problem(w, r, renkei.Errorj(op, renkei.Forbidden, "データを共有できるのは、患者の診療やケアの調整に携わる職員だけです。",
			"only staff who treat patients or coordinate their care may share data"))
		return
	}
	if !slices.Contains(renkei.SharePurposes, renkei.SharePurpose(req.Purpose)) {
		s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "共有の目的を選んでください(紹介・救急・相談・セカンドオピニオン)。",
			"purpose must be one of referral, emergency, consult, second-opinion"))
		return
	}
	if strings.TrimSpace(req.PatientID) == "" {
		s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "患者を指定してください(患者ID。貴施設で複数の発行者を使っている場合は発行者も)。",
			"name the patient (patientId, and issuer if your institution uses several)"))
		return
	}
	if req.Days == 0 {
		req.Days = s.ShareDays
	}
	if req.Days < 0 || req.Days > 3650 {
		s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "共有の期間は1日から3650日までです。", "a share lasts from 1 to 3650 days"))
		return
	}
	sh := renkei.Share{FromInstitution: p.Institution, Patient: renkei.PatientKey{Issuer: req.Issuer, ID: req.PatientID}, Studies: req.Studies,
		Purpose: renkei.SharePurpose(req.Purpose), Reason: req.Reason, CreatedBy: p.ID, CreatedByName: p.Name,
		ExpiresAt: s.Now().Add(time.Duration(req.Days) * 24 * time.Hour)}
	if me := authFrom(r.Context()); me != nil {
		if sh.Patient.Issuer == "" {
			sh.Patient.Issuer = me.User.Institution.Issuer
		}
		if me.User.Name != "" {
			sh.CreatedByName = me.User.Name // the receiver reads who shared it as colleagues know them
		}
	}
	switch {
	case req.ToUser != "":
		u, _, err := s.Store.UserByLogin(r.Context(), req.ToUser)
		if err != nil {
			s.problem(w, r, renkei.Errorj(op, renkei.NotFound, "利用者 %q は見つかりません。", "there is no user %q", req.ToUser))
			return
		}
		sh.ToUser = u.PK
	case req.ToInstitution != "":
		in, err := s.Store.Institution(r.Context(), req.ToInstitution)
		if err != nil {
			s.problem(w, r, err)
			return
		}
		sh.ToInstitution = in.PK
	default:
		s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "共有先(施設または利用者)を指定してください。", "say whom to share with: toInstitution or toUser"))
		return
	}
	if sh.ToInstitution == p.Institution {
		s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "自施設のデータは、共有しなくても自施設で見られます。", "your own institution sees its data already"))
		return
	}
	e := renkei.EventFor(p, renkei.ActionShare, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Purpose = p.Institution, sh.Patient, req.Purpose
	e.Detail = "shared with " + req.ToInstitution + req.ToUser + " until " + sh.ExpiresAt.Format(time.RFC3339)
	if len(sh.Studies) > 0 {
		e.Detail += "; studies " + strings.Join(sh.Studies, " ")
	}
	if err := s.Store.CreateShare(r.Context(), &sh, &e); err != nil {
		s.problem(w, r, err)
		return
	}
	s.announceShare(r, sh)
	writeJSON(w, http.StatusCreated, s.shareJSON(r, sh))
}

// revokeShare ends one of the caller's institution's shares at once.
func (s *Server) revokeShare(w http.ResponseWriter, r *http.Request) {
	p := renkei.PrincipalFrom(r.Context())
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.problem(w, r, renkei.Errorj("web.revokeShare", renkei.NotFound, "共有 %q は見つかりません。", "there is no share %q", r.PathValue("id")))
		return
	}
	if !mayShare(p) {
		s.problem(w, r, renkei.Errorj("web.revokeShare", renkei.Forbidden, "共有を取り消せるのは、共有の権限を持つ職員だけです。",
			"only staff who may share may revoke a share"))
		return
	}
	list, err := s.Store.Shares(r.Context(), renkei.ShareFilter{ID: id, FromInstitution: p.Institution})
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if len(list) == 0 {
		s.problem(w, r, renkei.Errorj("web.revokeShare", renkei.NotFound, "共有 No. %d は見つかりません。", "there is no share %d", id))
		return
	}
	e := renkei.EventFor(p, renkei.ActionRevoke, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Detail = p.Institution, list[0].Patient, "revoked share "+strconv.FormatInt(id, 10)
	if err := s.Store.RevokeShare(r.Context(), id, p.Institution, &e); err != nil {
		s.problem(w, r, err)
		return
	}
	list[0].RevokedAt = new(time.Time)
	*list[0].RevokedAt = s.Now()
	writeJSON(w, http.StatusOK, s.shareJSON(r, list[0]))
}

// auditEvents shows an institution admin the events of their institution's users and of its data; a region admin
// sees every event.
func (s *Server) auditEvents(w http.ResponseWriter, r *http.Request) {
	p := renkei.PrincipalFrom(r.Context())
	var f renkei.AuditFilter
	switch p.Role {
	case renkei.RegionAdmin:
	case renkei.InstitutionAdmin:
		f.Institution = p.Institution
	default:
		s.problem(w, r, renkei.Errorj("web.audit", renkei.Forbidden, "監査記録を見られるのは管理者だけです。", "only administrators may read the audit trail"))
		return
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 && n <= 10000 {
		f.Limit = n
	}
	f.Action = renkei.AuditAction(r.URL.Query().Get("action"))
	list, err := s.Store.AuditEvents(r.Context(), f)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	type eventJSON struct {
		Seq       int64     `json:"seq"`
		Time      time.Time `json:"time"`
		Actor     string    `json:"actor"`
		ActorKind string    `json:"actorKind"`
		Role      string    `json:"role,omitempty"`
		Action    string    `json:"action"`
		Outcome   string    `json:"outcome"`
		Purpose   string    `json:"purpose,omitempty"`
		Source    string    `json:"source,omitempty"`
		Issuer    string    `json:"issuer,omitempty"`
		PatientID string    `json:"patientId,omitempty"`
		Study     string    `json:"study,omitempty"`
		Detail    string    `json:"detail,omitempty"`
	}
	out := []eventJSON{}
	for _, e := range list {
		out = append(out, eventJSON{e.Seq, e.Time, e.Actor, string(e.ActorKind), string(e.Role), string(e.Action), e.Outcome, e.Purpose, e.Source,
			e.Patient.Issuer, e.Patient.ID, e.Study, e.Detail})
	}
	writeJSON(w, http.StatusOK, out)
}

// announceShare tells the receiver's open apps that the patient's studies are now theirs to see.
func (s *Server) announceShare(r *http.Request, sh renkei.Share) {
	if s.Hub == nil {
		return
	}
	studies := sh.Studies
	if len(studies) == 0 {
		recs, err := s.DICOMweb.Archive.Index.QueryStudies(renkei.WithPrincipal(r.Context(), renkei.System), &renkei.Query{Level: renkei.StudyLevel, Owner: sh.FromInstitution,
			Matches: []renkei.Match{{Keyword: "PatientID", Kind: renkei.MatchSingle, Value: sh.Patient.ID}, {Keyword: "IssuerOfPatientID", Kind: renkei.MatchSingle, Value: sh.Patient.Issuer}}, Limit: 100})
		if err != nil {
			return
		}
		for _, st := range recs {
			studies = append(studies, st.StudyInstanceUID)
		}
	}
	for _, uid := range studies {
		publishStudy(s.Hub, sh.ToInstitution, sh.ToUser, uid)
	}
}
