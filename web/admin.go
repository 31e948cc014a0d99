package web

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"renkei"
	"renkei/identity"
)

// The institution's own administration in the web app: its staff accounts (add one, reset a lost password or second
// factor, disable a leaver's account) and its API tokens (for gateways and scripts). An institution admin manages
// their institution; a region admin any institution (?institution=ID). Everything is in the audit trail; the
// one-time passwords and token secrets are shown once, in the answer, and stored only as hashes.

// adminScope is the institution an administrator acts for: their own, or for a region admin the one named by the
// query (their own when none).
func (s *Server) adminScope(r *http.Request, op string) (*renkei.Principal, renkei.Institution, error) {
	p := renkei.PrincipalFrom(r.Context())
	if p.Kind != renkei.UserPrincipal || (p.Role != renkei.InstitutionAdmin && p.Role != renkei.RegionAdmin) {
		return nil, renkei.Institution{}, forbidden(op, "アカウントとトークンを管理できるのは、施設の管理者だけです。",
			"only an administrator of the institution manages its accounts and tokens")
	}
	if id := r.URL.Query().Get("institution"); id != "" && p.Role == renkei.RegionAdmin {
		in, err := s.Store.Institution(r.Context(), id)
		return p, in, err
	}
	in, err := s.Store.InstitutionByPK(r.Context(), p.Institution)
	return p, in, err
}

type adminUserJSON struct {
	ID          int64     `json:"id"`
	Login       string    `json:"login"`
	Name        string    `json:"name"`
	Role        string    `json:"role"`
	Institution string    `json:"institution"`
	Disabled    bool      `json:"disabled"`
	Enrolled    bool      `json:"enrolled"` // changed the first password and set up a second factor
	CreatedAt   time.Time `json:"createdAt"`
}

func toAdminUser(u renkei.User) adminUserJSON {
	return adminUserJSON{u.PK, u.Login, u.Name, string(u.Role), u.Institution.ID, u.Disabled, !u.MustChangePassword && u.HasTOTP, u.CreatedAt}
}

func (s *Server) adminUsers(w http.ResponseWriter, r *http.Request) {
	_, in, err := s.adminScope(r, "web.adminUsers")
	if err != nil {
		s.problem(w, r, err)
		return
	}
	list, err := s.Store.Users(r.Context(), in.PK)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	out := []adminUserJSON{}
	for _, u := range list {
		if u.Role != renkei.PatientRole { // patients join by invitation and manage their own account
			out = append(out, toAdminUser(u))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// staffRoles are the roles an institution admin may give; a region admin may also make region admins (of the
// region's operator).
var staffRoles = []renkei.Role{renkei.Physician, renkei.Radiologist, renkei.Nurse, renkei.Clerk, renkei.InstitutionAdmin}

func (s *Server) adminAddUser(w http.ResponseWriter, r *http.Request) {
	const op = "web.adminAddUser"
	p, in, err := s.adminScope(r, op)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	var req struct{ Login, Name, Role string }
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	role := renkei.Role(req.Role)
	if !slices.Contains(staffRoles, role) && !(role == renkei.RegionAdmin && p.Role == renkei.RegionAdmin) {
		s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "職員の役割を選んでください(医師・放射線科医・看護師・事務・施設管理者)。",
			"choose the role of a staff member: physician, radiologist, nurse, clerk or institution-admin"))
		return
	}
	if strings.TrimSpace(req.Name) == "" {
		s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "職員の氏名を、同僚がわかる形で入力してください。", "give the person's name as colleagues know it"))
		return
	}
	u := renkei.User{Login: strings.TrimSpace(req.Login), Name: strings.TrimSpace(req.Name), Institution: in, Role: role}
	pw, err := s.Identity.CreateUser(r.Context(), p, &u)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user": toAdminUser(u), "oneTimePassword": pw})
}

// adminUser is the user named in the path, if the caller may administer them.
func (s *Server) adminUser(r *http.Request, op string) (*renkei.Principal, renkei.User, error) {
	p := renkei.PrincipalFrom(r.Context())
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	u, _, err := s.Identity.Store.UserByPK(r.Context(), id)
	if err == nil {
		err = identity.CanAdminister(p, u)
	}
	if renkei.ErrorKind(err) == renkei.Forbidden || renkei.ErrorKind(err) == renkei.NotFound || err == nil && u.Role == renkei.PatientRole {
		// Another institution's account answers as one that does not exist.
		return nil, renkei.User{}, renkei.Errorj(op, renkei.NotFound, "貴施設にアカウント %q はありません。",
			"there is no account %q at your institution", r.PathValue("id"))
	}
	return p, u, err
}

func (s *Server) adminResetUser(w http.ResponseWriter, r *http.Request) {
	p, u, err := s.adminUser(r, "web.adminResetUser")
	if err != nil {
		s.problem(w, r, err)
		return
	}
	pw, err := s.Identity.ResetUser(r.Context(), p, u.PK)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"oneTimePassword": pw})
}

func (s *Server) adminDisableUser(w http.ResponseWriter, r *http.Request) {
	const op = "web.adminDisableUser"
	p, u, err := s.adminUser(r, op)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	var req struct {
		Disabled bool `json:"disabled"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	if u.PK == p.ID {
		s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "自分のアカウントは無効にできません。別の管理者に依頼してください。",
			"you cannot disable your own account; ask another administrator"))
		return
	}
	e := renkei.EventFor(p, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.Detail = "enabled the account " + u.Login
	if req.Disabled {
		e.Detail = "disabled the account " + u.Login + " and ended its sessions"
	}
	if err := s.Identity.Store.UpdateUser(r.Context(), u.PK, renkei.UserUpdate{Disabled: &req.Disabled, EndSessions: req.Disabled}, &e); err != nil {
		s.problem(w, r, err)
		return
	}
	u.Disabled = req.Disabled
	writeJSON(w, http.StatusOK, toAdminUser(u))
}

type adminTokenJSON struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Write     bool       `json:"write"`
	CreatedBy string     `json:"createdBy"`
	CreatedAt time.Time  `json:"createdAt"`
	LastUsed  *time.Time `json:"lastUsed,omitempty"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

func (s *Server) adminTokens(w http.ResponseWriter, r *http.Request) {
	_, in, err := s.adminScope(r, "web.adminTokens")
	if err != nil {
		s.problem(w, r, err)
		return
	}
	list, err := s.Store.Tokens(r.Context(), in.PK)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	out := []adminTokenJSON{}
	for _, t := range list {
		out = append(out, adminTokenJSON{t.PK, t.Name, t.Write, t.CreatedBy, t.CreatedAt, t.LastUsed, t.RevokedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminAddToken(w http.ResponseWriter, r *http.Request) {
	p, in, err := s.adminScope(r, "web.adminAddToken")
	if err != nil {
		s.problem(w, r, err)
		return
	}
	var req struct {
		Name  string `json:"name"`
		Write bool   `json:"write"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	t := renkei.APIToken{Institution: in.PK, Name: strings.TrimSpace(req.Name), Write: req.Write}
	secret, err := s.Identity.CreateToken(r.Context(), p, &t)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": t.PK, "name": t.Name, "write": t.Write, "secret": secret})
}

func (s *Server) adminRevokeToken(w http.ResponseWriter, r *http.Request) {
	p, in, err := s.adminScope(r, "web.adminRevokeToken")
	if err != nil {
		s.problem(w, r, err)
		return
	}
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	scope := scopeOf(p) // an institution admin their own institution's tokens, a region admin any
	if r.URL.Query().Get("institution") != "" {
		scope = in.PK
	}
	e := renkei.EventFor(p, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.Detail = "revoked API token " + r.PathValue("id")
	if err := s.Store.RevokeToken(r.Context(), id, scope, &e); err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "revoked": true})
}
