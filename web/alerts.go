package web

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"renkei"
	"renkei/identity"
)

// AlertStore keeps the security monitor's alerts and what acting on one needs (implemented by sqlstore.DB).
type AlertStore interface {
	Alerts(ctx context.Context, f renkei.AlertFilter) ([]renkei.Alert, error)
	Alert(ctx context.Context, id int64) (renkei.Alert, error)
	AlertEvents(ctx context.Context, id int64) ([]renkei.AuditEvent, error)
	AcknowledgeAlert(ctx context.Context, id, institution int64, by string, audit *renkei.AuditEvent) error
	ResolveAlert(ctx context.Context, id, institution int64, by, note string, audit *renkei.AuditEvent) error
	UserByPK(ctx context.Context, pk int64) (renkei.User, renkei.Credentials, error)
	UpdateUser(ctx context.Context, pk int64, up renkei.UserUpdate, audit *renkei.AuditEvent) error
	RevokeToken(ctx context.Context, pk, institution int64, audit *renkei.AuditEvent) error
}

func (s *Server) registerAlerts() {
	s.handle("GET /api/alerts", s.listAlerts)
	s.handle("GET /api/alerts/{id}", s.getAlert)
	s.handle("POST /api/alerts/{id}/acknowledge", s.acknowledgeAlert)
	s.handle("POST /api/alerts/{id}/resolve", s.resolveAlert)
	s.handle("POST /api/alerts/{id}/lock-user", s.lockAlertUser)
	s.handle("POST /api/alerts/{id}/unlock-user", s.unlockAlertUser)
	s.handle("POST /api/alerts/{id}/revoke-token", s.revokeAlertToken)
}

type alertPatientJSON struct {
	Institution     string `json:"institution"`
	InstitutionName string `json:"institutionName"`
	Issuer          string `json:"issuer"`
	ID              string `json:"id"`
}

type alertJSON struct {
	ID              int64             `json:"id"`
	Rule            string            `json:"rule"`
	Severity        string            `json:"severity"`
	Status          string            `json:"status"`
	Explanation     string            `json:"explanation"`
	ExplanationEn   string            `json:"explanationEn"`
	Institution     string            `json:"institution,omitempty"`
	InstitutionName string            `json:"institutionName,omitempty"`
	Actor           string            `json:"actor,omitempty"`
	ActorKind       string            `json:"actorKind,omitempty"`
	Source          string            `json:"source,omitempty"`
	Patient         *alertPatientJSON `json:"patient,omitempty"`
	Events          []int64           `json:"events"`
	Count           int               `json:"count"`
	FirstAt         time.Time         `json:"firstAt"`
	LastAt          time.Time         `json:"lastAt"`
	AcknowledgedBy  string            `json:"acknowledgedBy,omitempty"`
	AcknowledgedAt  *time.Time        `json:"acknowledgedAt,omitempty"`
	ResolvedBy      string            `json:"resolvedBy,omitempty"`
	ResolvedAt      *time.Time        `json:"resolvedAt,omitempty"`
	Note            string            `json:"note,omitempty"`
	// CanLockUser and CanRevokeToken say which one-click action fits (the alert names a user or a token).
	CanLockUser bool `json:"canLockUser"`
	// UserLocked says the user the alert names is disabled now (locked from an alert or by an admin).
	UserLocked     bool `json:"userLocked"`
	CanRevokeToken bool `json:"canRevokeToken"`
}

// alertAdmin returns the caller if they may see alerts: institution admins (their institution's) and region admins
// (all). Others are renkei.Forbidden.
func alertAdmin(r *http.Request) (*renkei.Principal, error) {
	p := renkei.PrincipalFrom(r.Context())
	if p == nil || p.Kind != renkei.UserPrincipal || (p.Role != renkei.InstitutionAdmin && p.Role != renkei.RegionAdmin) {
		return nil, forbidden("web.alerts", "セキュリティのアラートを見られるのは管理者だけです。", "only administrators see security alerts")
	}
	return p, nil
}

// scopeOf is the institution whose alerts p sees; 0 for a region admin (all).
func scopeOf(p *renkei.Principal) int64 {
	if p.Role == renkei.RegionAdmin {
		return 0
	}
	return p.Institution
}

func (s *Server) alertsReady(w http.ResponseWriter, r *http.Request) (*renkei.Principal, bool) {
	if s.Alerts == nil {
		s.problem(w, r, renkei.Errorj("web.alerts", renkei.Unavailable, "このサーバーではセキュリティ監視を使えません。",
			"security monitoring is not available on this server"))
		return nil, false
	}
	p, err := alertAdmin(r)
	if err != nil {
		s.problem(w, r, err)
		return nil, false
	}
	return p, true
}

func (s *Server) toAlertJSON(ctx context.Context, a renkei.Alert, names map[int64]renkei.Institution) alertJSON {
	out := alertJSON{ID: a.ID, Rule: a.Rule, Severity: a.Severity, Status: string(a.Status), Explanation: a.Explanation, ExplanationEn: a.ExplanationEn,
		Actor: a.Actor, ActorKind: string(a.ActorKind), Source: a.Source, Events: a.Events, Count: a.Count, FirstAt: a.FirstAt, LastAt: a.LastAt,
		AcknowledgedBy: a.AcknowledgedBy, AcknowledgedAt: a.AcknowledgedAt, ResolvedBy: a.ResolvedBy, ResolvedAt: a.ResolvedAt, Note: a.Note,
		CanLockUser: a.ActorKind == renkei.UserPrincipal && a.ActorID != 0, CanRevokeToken: a.ActorKind == renkei.TokenPrincipal && a.ActorID != 0}
	if out.Events == nil {
		out.Events = []int64{}
	}
	if out.CanLockUser {
		if u, _, err := s.Alerts.UserByPK(ctx, a.ActorID); err == nil {
			out.UserLocked = u.Disabled
		}
	}
	if in, ok := names[a.Institution]; ok {
		out.Institution, out.InstitutionName = in.ID, in.Name
	}
	if a.Patient.ID != "" {
		pj := &alertPatientJSON{Issuer: a.Patient.Issuer, ID: a.Patient.ID}
		if in, ok := names[a.DataInstitution]; ok {
			pj.Institution, pj.InstitutionName = in.ID, in.Name
		}
		out.Patient = pj
	}
	return out
}

func (s *Server) institutionsByPK(ctx context.Context) map[int64]renkei.Institution {
	m := map[int64]renkei.Institution{}
	list, err := s.Store.Institutions(ctx)
	if err != nil {
		return m
	}
	for _, in := range list {
		m[in.PK] = in
	}
	return m
}

// listAlerts: GET /api/alerts?status=open|acknowledged|resolved|all (default: open and acknowledged).
func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) {
	p, ok := s.alertsReady(w, r)
	if !ok {
		return
	}
	f := renkei.AlertFilter{Institution: scopeOf(p)}
	switch st := r.URL.Query().Get("status"); st {
	case "":
		f.Unresolved = true
	case "all":
	case string(renkei.AlertOpen), string(renkei.AlertAcknowledged), string(renkei.AlertResolved):
		f.Status = renkei.AlertStatus(st)
	default:
		s.problem(w, r, renkei.Errorf("web.alerts", renkei.Invalid, "status must be open, acknowledged, resolved or all, not %q", st))
		return
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.problem(w, r, renkei.Errorf("web.alerts", renkei.Invalid, "limit must be a number from 1 to 1000"))
			return
		}
		f.Limit = n
	}
	list, err := s.Alerts.Alerts(r.Context(), f)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	names := s.institutionsByPK(r.Context())
	out := []alertJSON{}
	for _, a := range list {
		out = append(out, s.toAlertJSON(r.Context(), a, names))
	}
	writeJSON(w, http.StatusOK, out)
}

// visibleAlert loads the alert named in the path if the caller may see it; another institution's is not found.
func (s *Server) visibleAlert(r *http.Request, p *renkei.Principal) (renkei.Alert, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return renkei.Alert{}, renkei.Errorj("web.alerts", renkei.Invalid, "%q はアラート番号ではありません。", "%q is not an alert number", r.PathValue("id"))
	}
	a, err := s.Alerts.Alert(r.Context(), id)
	if err != nil {
		return a, err
	}
	if scope := scopeOf(p); scope != 0 && a.Institution != scope {
		return renkei.Alert{}, renkei.Errorj("web.alerts", renkei.NotFound, "アラート No. %d は見つかりません。", "there is no alert %d", id)
	}
	return a, nil
}

// getAlert: GET /api/alerts/{id}: the alert and the audit events behind it.
func (s *Server) getAlert(w http.ResponseWriter, r *http.Request) {
	p, ok := s.alertsReady(w, r)
	if !ok {
		return
	}
	a, err := s.visibleAlert(r, p)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	events, err := s.Alerts.AlertEvents(r.Context(), a.ID)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	type eventJSON struct {
		Seq       int64     `json:"seq"`
		Time      time.Time `json:"time"`
		Actor     string    `json:"actor"`
		Role      string    `json:"role,omitempty"`
		Action    string    `json:"action"`
		Outcome   string    `json:"outcome"`
		Source    string    `json:"source,omitempty"`
		PatientID string    `json:"patientId,omitempty"`
		Study     string    `json:"study,omitempty"`
		Detail    string    `json:"detail,omitempty"`
	}
	evs := []eventJSON{}
	for _, e := range events {
		evs = append(evs, eventJSON{e.Seq, e.Time, e.Actor, string(e.Role), string(e.Action), e.Outcome, e.Source, e.Patient.ID, e.Study, e.Detail})
	}
	writeJSON(w, http.StatusOK, map[string]any{"alert": s.toAlertJSON(r.Context(), a, s.institutionsByPK(r.Context())), "events": evs})
}

func alertEvent(p *renkei.Principal, a renkei.Alert, detail string) *renkei.AuditEvent {
	e := renkei.EventFor(p, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient = a.DataInstitution, a.Patient
	e.Detail = fmt.Sprintf("alert %d (%s): %s", a.ID, a.Rule, detail)
	return &e
}

// acknowledgeAlert: POST /api/alerts/{id}/acknowledge: someone is looking at it.
func (s *Server) acknowledgeAlert(w http.ResponseWriter, r *http.Request) {
	p, ok := s.alertsReady(w, r)
	if !ok {
		return
	}
	a, err := s.visibleAlert(r, p)
	if err == nil {
		err = s.Alerts.AcknowledgeAlert(r.Context(), a.ID, scopeOf(p), p.Name, alertEvent(p, a, "acknowledged"))
	}
	if err != nil {
		s.problem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// resolveAlert: POST /api/alerts/{id}/resolve {"note": "…"}: closed, with what was found.
func (s *Server) resolveAlert(w http.ResponseWriter, r *http.Request) {
	p, ok := s.alertsReady(w, r)
	if !ok {
		return
	}
	var req struct {
		Note string `json:"note"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	req.Note = strings.TrimSpace(req.Note)
	if req.Note == "" || utf8.RuneCountInString(req.Note) > 2000 {
		s.problem(w, r, renkei.Errorj("web.alerts", renkei.Invalid, "アラートを解決済みにする前に、確認した内容を記入してください(2000文字まで)。",
			"write what you found (a note of up to 2000 characters) before resolving the alert"))
		return
	}
	a, err := s.visibleAlert(r, p)
	if err == nil {
		err = s.Alerts.ResolveAlert(r.Context(), a.ID, scopeOf(p), p.Name, req.Note, alertEvent(p, a, "resolved: "+req.Note))
	}
	if err != nil {
		s.problem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// alertUser resolves the alert of the request and the user account it names, which the caller must be allowed to
// administer; false means answered.
func (s *Server) alertUser(w http.ResponseWriter, r *http.Request) (*renkei.Principal, renkei.Alert, renkei.User, bool) {
	p, ok := s.alertsReady(w, r)
	if !ok {
		return nil, renkei.Alert{}, renkei.User{}, false
	}
	a, err := s.visibleAlert(r, p)
	if err == nil && (a.ActorKind != renkei.UserPrincipal || a.ActorID == 0) {
		err = renkei.Errorj("web.alerts", renkei.Conflict, "このアラートには対象の利用者アカウントがありません。", "this alert names no user account")
	}
	var u renkei.User
	if err == nil {
		u, _, err = s.Alerts.UserByPK(r.Context(), a.ActorID)
	}
	if err == nil {
		err = identity.CanAdminister(p, u)
	}
	if err != nil {
		s.problem(w, r, err)
		return nil, renkei.Alert{}, renkei.User{}, false
	}
	return p, a, u, true
}

// lockAlertUser: POST /api/alerts/{id}/lock-user: the user the alert names is disabled and logged out everywhere
// (unlock-user, or renkei admin user enable, undoes it). The alert is acknowledged if it was open.
func (s *Server) lockAlertUser(w http.ResponseWriter, r *http.Request) {
	p, a, u, ok := s.alertUser(w, r)
	if !ok {
		return
	}
	if u.PK == p.ID {
		s.problem(w, r, renkei.Errorj("web.alerts", renkei.Conflict, "自分のアカウントはロックできません。別の管理者に依頼してください。",
			"you cannot lock your own account; ask another administrator"))
		return
	}
	t := true
	if err := s.Alerts.UpdateUser(r.Context(), u.PK, renkei.UserUpdate{Disabled: &t, EndSessions: true}, alertEvent(p, a, "locked user "+u.Login)); err != nil {
		s.problem(w, r, err)
		return
	}
	s.ackIfOpen(r, p, a)
	writeJSON(w, http.StatusOK, map[string]string{"locked": u.Login})
}

// unlockAlertUser: POST /api/alerts/{id}/unlock-user: the administrator found the user's activity was theirs after
// all; the user logs in again with their password and second factor (if those may have been stolen, a reset is the
// way instead). Audited.
func (s *Server) unlockAlertUser(w http.ResponseWriter, r *http.Request) {
	p, a, u, ok := s.alertUser(w, r)
	if !ok {
		return
	}
	f := false
	if err := s.Alerts.UpdateUser(r.Context(), u.PK, renkei.UserUpdate{Disabled: &f}, alertEvent(p, a, "unlocked user "+u.Login)); err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"unlocked": u.Login})
}

// revokeAlertToken: POST /api/alerts/{id}/revoke-token: the API token the alert names stops working at once.
func (s *Server) revokeAlertToken(w http.ResponseWriter, r *http.Request) {
	p, ok := s.alertsReady(w, r)
	if !ok {
		return
	}
	a, err := s.visibleAlert(r, p)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if a.ActorKind != renkei.TokenPrincipal || a.ActorID == 0 {
		s.problem(w, r, renkei.Errorj("web.alerts", renkei.Conflict, "このアラートには取り消す API トークンがありません。", "this alert names no API token to revoke"))
		return
	}
	e := alertEvent(p, a, "revoked API token "+a.Actor)
	e.Action = renkei.ActionRevoke
	if err := s.Alerts.RevokeToken(r.Context(), a.ActorID, scopeOf(p), e); err != nil {
		s.problem(w, r, err)
		return
	}
	s.ackIfOpen(r, p, a)
	writeJSON(w, http.StatusOK, map[string]string{"revoked": a.Actor})
}

func (s *Server) ackIfOpen(r *http.Request, p *renkei.Principal, a renkei.Alert) {
	if a.Status != renkei.AlertOpen {
		return
	}
	if err := s.Alerts.AcknowledgeAlert(r.Context(), a.ID, scopeOf(p), p.Name, alertEvent(p, a, "acknowledged")); err != nil &&
		renkei.ErrorKind(err) != renkei.Conflict {
		s.Logger.Warn("acknowledging an alert after acting on it", "alert", a.ID, "err", err)
	}
}
