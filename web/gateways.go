package web

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"renkei"
	"renkei/notify"
)

// GatewayStore keeps the hospital gateways' heartbeats (implemented by sqlstore.DB).
type GatewayStore interface {
	SaveGatewayReport(ctx context.Context, g renkei.GatewayReport) error
	GatewayReports(ctx context.Context, institution int64) ([]renkei.GatewayReport, error)
	CreateFetchRequest(ctx context.Context, f *renkei.FetchRequest, audit *renkei.AuditEvent) error
	FetchRequests(ctx context.Context, f renkei.FetchRequestFilter) ([]renkei.FetchRequest, error)
	UpdateFetchRequest(ctx context.Context, r renkei.FetchRequest, audit *renkei.AuditEvent) error
}

// Defaults for when a gateway needs attention.
const (
	DefaultGatewaySilent  = 10 * time.Minute // no heartbeat for this long
	DefaultGatewayBacklog = time.Hour        // its oldest waiting image is this old
)

// gatewayJSON is a gateway as the admin page shows it: its report and whether it needs attention.
type gatewayJSON struct {
	renkei.GatewayReport
	InstitutionID string `json:"institution"`
	// Health is ok, silent (no heartbeat for too long), backlog (images wait too long), failing (renkei refuses
	// some of its images) or revoked (its token was revoked).
	Health string `json:"health"`
}

// gatewayHealth says whether a gateway needs attention.
func (s *Server) gatewayHealth(g renkei.GatewayReport, now time.Time) string {
	silent, backlog := s.GatewaySilent, s.GatewayBacklog
	if silent <= 0 {
		silent = DefaultGatewaySilent
	}
	if backlog <= 0 {
		backlog = DefaultGatewayBacklog
	}
	switch {
	case g.Revoked:
		return "revoked"
	case now.Sub(g.SeenAt) > silent:
		return "silent"
	case g.Oldest != nil && now.Sub(*g.Oldest) > backlog:
		return "backlog"
	case g.Failures > 0:
		return "failing"
	}
	return "ok"
}

// gatewayHeartbeat records what a gateway reports: POST /api/gateways/heartbeat with a read-write API token.
func (s *Server) gatewayHeartbeat(w http.ResponseWriter, r *http.Request) {
	if s.Gateways == nil {
		s.problem(w, r, renkei.Errorj("web.gateway", renkei.Unavailable, "このサーバーではゲートウェイを使えません。", "gateways are not available on this server"))
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	if p.Kind != renkei.TokenPrincipal {
		s.problem(w, r, renkei.Errorf("web.gateway", renkei.Forbidden, "a heartbeat comes from a gateway, with its API token"))
		return
	}
	if !p.Write {
		s.problem(w, r, renkei.Errorf("web.gateway", renkei.Forbidden, "a gateway's token must be a read-write token"))
		return
	}
	var hb struct {
		Name, Version, AE, LastError string
		Instances, Studies, Failures int
		Bytes, DiskFree              int64
		Oldest, LastSent             *time.Time
	}
	if err := readJSON(r, &hb); err != nil {
		s.problem(w, r, err)
		return
	}
	if hb.Name == "" {
		hb.Name = p.Name
	}
	g := renkei.GatewayReport{Token: p.ID, Institution: p.Institution, Name: truncate(hb.Name, 100), Version: truncate(hb.Version, 50), AE: truncate(hb.AE, 16),
		Address: s.clientAddr(r), Instances: hb.Instances, Studies: hb.Studies, Bytes: hb.Bytes, Oldest: hb.Oldest, LastSent: hb.LastSent,
		Failures: hb.Failures, LastError: truncate(hb.LastError, 500), DiskFree: hb.DiskFree, SeenAt: s.Now()}
	if err := s.Gateways.SaveGatewayReport(r.Context(), g); err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// listGateways answers GET /api/gateways: an institution admin sees its institution's gateways, a region admin all.
func (s *Server) listGateways(w http.ResponseWriter, r *http.Request) {
	if s.Gateways == nil {
		s.problem(w, r, renkei.Errorj("web.gateway", renkei.Unavailable, "このサーバーではゲートウェイを使えません。", "gateways are not available on this server"))
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	var inst int64
	switch {
	case p.Kind == renkei.UserPrincipal && p.Role == renkei.RegionAdmin:
	case p.Kind == renkei.UserPrincipal && p.Role == renkei.InstitutionAdmin:
		inst = p.Institution
	default:
		s.problem(w, r, renkei.Errorj("web.gateway", renkei.Forbidden, "ゲートウェイを見られるのは管理者だけです。", "only administrators see the gateways"))
		return
	}
	list, err := s.Gateways.GatewayReports(r.Context(), inst)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	ids := map[int64]string{}
	out := []gatewayJSON{}
	now := s.Now()
	for _, g := range list {
		if _, ok := ids[g.Institution]; !ok {
			if in, err := s.Store.InstitutionByPK(r.Context(), g.Institution); err == nil {
				ids[g.Institution] = in.ID
			}
		}
		out = append(out, gatewayJSON{GatewayReport: g, InstitutionID: ids[g.Institution], Health: s.gatewayHealth(g, now)})
	}
	writeJSON(w, http.StatusOK, out)
}

// inboxItem is one share a gateway delivers to its hospital's PACS: the studies, and the patient as the hospital
// knows them (its linked local patient), so that the images land under the hospital's own patient ID.
type inboxItem struct {
	Share           int64     `json:"share"`
	FromInstitution string    `json:"fromInstitution"`
	Purpose         string    `json:"purpose"`
	SharedAt        time.Time `json:"sharedAt"`
	Issuer          string    `json:"issuer"` // the patient at the sharing institution
	PatientID       string    `json:"patientId"`
	LocalIssuer     string    `json:"localIssuer,omitempty"` // the same patient at the gateway's institution, when linked
	LocalPatientID  string    `json:"localPatientId,omitempty"`
	Studies         []string  `json:"studies"`
	// Instances is how many instances each study holds now: a gateway that delivered that many already skips it.
	Instances map[string]int `json:"instances"`
}

// gatewayInbox answers GET /api/gateways/inbox: what was shared with the gateway's institution (as an institution:
// shares with one user are that user's) and is active now, with the studies each share covers today. The gateway
// fetches the images with WADO-RS (each read audited as usual) and C-STOREs them to the hospital's PACS.
func (s *Server) gatewayInbox(w http.ResponseWriter, r *http.Request) {
	p := renkei.PrincipalFrom(r.Context())
	if p.Kind != renkei.TokenPrincipal {
		s.problem(w, r, renkei.Errorf("web.gateway", renkei.Forbidden, "the inbox is read by a gateway, with its API token"))
		return
	}
	ctx := r.Context()
	shares, err := s.Store.Shares(ctx, renkei.ShareFilter{ToInstitution: p.Institution})
	if err != nil {
		s.problem(w, r, err)
		return
	}
	now := s.Now()
	out := []inboxItem{}
	for _, sh := range shares {
		if !sh.Active(now) || sh.ToUser != 0 || sh.RecordOnly || sh.ToInstitution != p.Institution {
			continue
		}
		from, err := s.Store.InstitutionByPK(ctx, sh.FromInstitution)
		if err != nil {
			continue
		}
		it := inboxItem{Share: sh.ID, FromInstitution: from.ID, Purpose: string(sh.Purpose), SharedAt: sh.CreatedAt,
			Issuer: sh.Patient.Issuer, PatientID: sh.Patient.ID, Studies: sh.Studies}
		if src, err := s.Store.LocalPatient(ctx, sh.FromInstitution, sh.Patient); err == nil {
			if linked, err := s.Store.Linked(ctx, src.PK); err == nil {
				for _, l := range linked {
					if l.Institution == p.Institution {
						it.LocalIssuer, it.LocalPatientID = l.Key.Issuer, l.Key.ID
						break
					}
				}
			}
		}
		// The studies the share covers as the sharing institution holds them now (the whole patient's, or the listed
		// ones), with their instance counts.
		q := &renkei.Query{Level: renkei.StudyLevel, Owner: sh.FromInstitution, Limit: 1000,
			Matches: []renkei.Match{{Keyword: "PatientID", Kind: renkei.MatchSingle, Value: sh.Patient.ID}}}
		if sh.Patient.Issuer != "" {
			q.Matches = append(q.Matches, renkei.Match{Keyword: "IssuerOfPatientID", Kind: renkei.MatchSingle, Value: sh.Patient.Issuer})
		}
		if len(sh.Studies) > 0 {
			q.Matches = append(q.Matches, renkei.Match{Keyword: "StudyInstanceUID", Kind: renkei.MatchList, Values: sh.Studies})
		}
		recs, err := s.DICOMweb.Archive.QueryStudies(ctx, q)
		if err != nil {
			s.problem(w, r, err)
			return
		}
		it.Studies, it.Instances = nil, map[string]int{}
		for _, rec := range recs {
			it.Studies = append(it.Studies, rec.StudyInstanceUID)
			it.Instances[rec.StudyInstanceUID] = rec.NumberOfInstances
		}
		if len(it.Studies) > 0 {
			out = append(out, it)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// WatchGateways looks at the gateways every interval until ctx ends: when one turns silent or its backlog grows too
// old, it is logged as a warning and, where SMTP is configured, the institution's 地域連携室 address is told once;
// when it recovers, that is logged too.
func (s *Server) WatchGateways(ctx context.Context, every time.Duration) {
	if s.Gateways == nil {
		return
	}
	var mu sync.Mutex
	last := map[int64]string{}
	check := func() {
		list, err := s.Gateways.GatewayReports(ctx, 0)
		if err != nil {
			if ctx.Err() == nil {
				s.Logger.Error("gateway watch", "err", err)
			}
			return
		}
		now := s.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, g := range list {
			h := s.gatewayHealth(g, now)
			prev, seen := last[g.Token]
			last[g.Token] = h
			if !seen && h == "ok" || prev == h {
				continue
			}
			switch h {
			case "silent", "backlog":
				s.Logger.Warn("gateway needs attention", "gateway", g.Name, "token", g.TokenName, "institution", g.Institution, "health", h,
					"last_heartbeat", g.SeenAt, "waiting", g.Instances)
				s.raiseGatewayAlert(ctx, g, h, now)
				s.mailGateway(ctx, g, h)
			case "ok":
				if seen {
					s.Logger.Info("gateway recovered", "gateway", g.Name, "institution", g.Institution)
				}
			}
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		check()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// raiseGatewayAlert puts a silent or stuck gateway on the alerts page of its institution's administrators (one open
// alert per gateway and kind; its token can be revoked from there if the gateway PC was stolen).
func (s *Server) raiseGatewayAlert(ctx context.Context, g renkei.GatewayReport, health string, now time.Time) {
	ar, ok := s.Gateways.(interface {
		RaiseAlert(ctx context.Context, a *renkei.Alert) error
	})
	if !ok {
		return
	}
	a := &renkei.Alert{Rule: "gateway-" + health, Subject: fmt.Sprintf("gateway:%d", g.Token), Severity: renkei.SeverityMedium,
		Institution: g.Institution, Actor: g.TokenName, ActorKind: renkei.TokenPrincipal, ActorID: g.Token, Source: g.Address,
		Count: 1, FirstAt: now, LastAt: now}
	if health == "silent" {
		a.Explanation = fmt.Sprintf("院内ゲートウェイ「%s」から %s 以降連絡がありません。ゲートウェイのPC、院内の回線、またはトークンを確認してください。モダリティからの画像がrenkeiに届いていない可能性があります。",
			g.Name, g.SeenAt.Format("2006-01-02 15:04"))
		a.ExplanationEn = fmt.Sprintf("The hospital gateway %q has not been heard from since %s. Check its computer, the hospital's line and its token: images from the modalities may not be reaching renkei.",
			g.Name, g.SeenAt.Format("2006-01-02 15:04"))
	} else {
		oldest := ""
		if g.Oldest != nil {
			oldest = g.Oldest.Format("2006-01-02 15:04")
		}
		a.Explanation = fmt.Sprintf("院内ゲートウェイ「%s」に送信待ちの画像が %d 件たまっています(最も古いものは %s 受信)。ゲートウェイの状態ページで送れない理由を確認してください。",
			g.Name, g.Instances, oldest)
		a.ExplanationEn = fmt.Sprintf("The hospital gateway %q holds %d images waiting to be sent (the oldest arrived %s). Its status page says why they are not sent.",
			g.Name, g.Instances, oldest)
	}
	if err := ar.RaiseAlert(ctx, a); err != nil && ctx.Err() == nil {
		s.Logger.Error("gateway alert", "err", err)
	}
}

func (s *Server) mailGateway(ctx context.Context, g renkei.GatewayReport, health string) {
	if s.Mailer == nil {
		return
	}
	in, err := s.Store.InstitutionByPK(ctx, g.Institution)
	if err != nil || in.Email == "" {
		return
	}
	what := fmt.Sprintf("ゲートウェイ「%s」から %s 以降連絡がありません。院内の回線か、ゲートウェイのPCを確認してください。\n"+
		"The gateway %q has not been heard from since %s: check the hospital's line or the gateway's computer.",
		g.Name, g.SeenAt.Format("2006-01-02 15:04"), g.Name, g.SeenAt.Format(time.RFC3339))
	if health == "backlog" {
		what = fmt.Sprintf("ゲートウェイ「%s」に送信待ちの画像が %d 件あり、最も古いものは %s に受信されました。\n"+
			"The gateway %q holds %d images waiting to be sent; the oldest arrived at %s.",
			g.Name, g.Instances, g.Oldest.Format("2006-01-02 15:04"), g.Name, g.Instances, g.Oldest.Format(time.RFC3339))
	}
	s.Mailer.Send(notify.Message{To: []string{in.Email}, Subject: fmt.Sprintf("[renkei] ゲートウェイ %s の確認をお願いします / gateway needs attention", g.Name),
		Body: what + "\n\n" + strings.TrimSuffix(s.PublicURL, "/") + "/#/admin\n"})
}

// fetchJSON is a fetch request as the API shows it.
type fetchJSON struct {
	renkei.FetchRequest
	InstitutionID          string `json:"institution"`
	Issuer                 string `json:"issuer"`
	PatientID              string `json:"patientId"`
	RequestedByInstitution string `json:"requestedByInstitution"`
}

func (s *Server) fetchJSON(ctx context.Context, f renkei.FetchRequest) fetchJSON {
	id := func(pk int64) string {
		if in, err := s.Store.InstitutionByPK(ctx, pk); err == nil {
			return in.ID
		}
		return ""
	}
	return fetchJSON{FetchRequest: f, InstitutionID: id(f.Institution), Issuer: f.Patient.Issuer, PatientID: f.Patient.ID,
		RequestedByInstitution: id(f.RequestedByInstitution)}
}

// requestFetch answers POST /api/gateways/requests {issuer, patientId, institution, since, reason}: a member of staff
// asks the patient's institution's gateway to fetch the patient's earlier studies from that hospital's PACS. For
// their own institution's patient any staff may ask; for another institution's patient only an institution that
// holds an active share of that patient from it (a referral's receiver asking for the priors). Audited.
func (s *Server) requestFetch(w http.ResponseWriter, r *http.Request) {
	if s.Gateways == nil {
		s.problem(w, r, renkei.Errorj("web.fetch", renkei.Unavailable, "このサーバーではゲートウェイを使えません。", "gateways are not available on this server"))
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	if !staff(p) {
		s.problem(w, r, forbidden("web.fetch", "過去の検査を取り寄せられるのは職員だけです。", "only staff ask for earlier studies"))
		return
	}
	var req struct{ Issuer, PatientID, Institution, Since, Reason string }
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	req.PatientID = strings.TrimSpace(req.PatientID)
	if req.PatientID == "" || len(req.PatientID) > 64 {
		s.problem(w, r, renkei.Errorj("web.fetch", renkei.Invalid, "画像を保有する施設での患者IDで、患者を指定してください。",
			"name the patient by their ID at the institution that holds the images"))
		return
	}
	if req.Since = strings.ReplaceAll(req.Since, "-", ""); req.Since != "" {
		if _, err := time.Parse("20060102", req.Since); err != nil {
			s.problem(w, r, renkei.Errorj("web.fetch", renkei.Invalid, "%q は日付(YYYY-MM-DD)ではありません。",
				"since %q is not a date (YYYY-MM-DD)", req.Since))
			return
		}
	}
	ctx := r.Context()
	inst, err := s.Store.InstitutionByPK(ctx, p.Institution)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if req.Institution != "" && req.Institution != inst.ID {
		if inst, err = s.Store.Institution(ctx, req.Institution); err != nil {
			s.problem(w, r, renkei.Errorj("web.fetch", renkei.Invalid, "施設 %q は見つかりません。", "there is no institution %q", req.Institution))
			return
		}
	}
	if req.Issuer == "" {
		req.Issuer = inst.Issuer
	}
	key := renkei.PatientKey{Issuer: req.Issuer, ID: req.PatientID}
	if inst.PK != p.Institution {
		shares, err := s.Store.Shares(ctx, renkei.ShareFilter{FromInstitution: inst.PK, ToInstitution: p.Institution})
		if err != nil {
			s.problem(w, r, err)
			return
		}
		ok := false
		for _, sh := range shares {
			ok = ok || (sh.Active(s.Now()) && sh.Patient == key && !sh.RecordOnly)
		}
		if !ok {
			// As for any patient the caller may not see: not found, not forbidden.
			s.problem(w, r, renkei.Errorj("web.fetch", renkei.NotFound, "貴施設に共有されている該当の患者はいません。",
				"there is no such patient shared with your institution"))
			return
		}
	}
	f := &renkei.FetchRequest{Institution: inst.PK, Patient: key, Since: req.Since, Reason: truncate(strings.TrimSpace(req.Reason), 500),
		RequestedBy: p.Name, RequestedByInstitution: p.Institution}
	e := renkei.EventFor(p, renkei.ActionFetch, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient = inst.PK, key
	e.Detail = "asked the gateway to fetch earlier studies from the hospital's PACS"
	if f.Reason != "" {
		e.Detail += ": " + f.Reason
	}
	if err := s.Gateways.CreateFetchRequest(ctx, f, &e); err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.fetchJSON(ctx, *f))
}

// listFetches answers GET /api/gateways/requests: a gateway's token sees its institution's open requests (its work);
// staff see the requests their institution made or must fetch.
func (s *Server) listFetches(w http.ResponseWriter, r *http.Request) {
	if s.Gateways == nil {
		s.problem(w, r, renkei.Errorj("web.fetch", renkei.Unavailable, "このサーバーではゲートウェイを使えません。", "gateways are not available on this server"))
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	var f renkei.FetchRequestFilter
	switch {
	case p.Kind == renkei.TokenPrincipal:
		f = renkei.FetchRequestFilter{Institution: p.Institution, Open: true}
	case staff(p):
		f = renkei.FetchRequestFilter{Involving: p.Institution}
	default:
		s.problem(w, r, forbidden("web.fetch", "取り寄せの依頼を見られるのは、職員とゲートウェイだけです。", "only staff and gateways see fetch requests"))
		return
	}
	list, err := s.Gateways.FetchRequests(r.Context(), f)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	out := []fetchJSON{}
	for _, fr := range list {
		out = append(out, s.fetchJSON(r.Context(), fr))
	}
	writeJSON(w, http.StatusOK, out)
}

// reportFetch answers POST /api/gateways/requests/{id} {status, detail, studies, instances}: the gateway says it is
// working on a request, or what it fetched. Audited with the patient, so the patient's access log shows it.
func (s *Server) reportFetch(w http.ResponseWriter, r *http.Request) {
	if s.Gateways == nil {
		s.problem(w, r, renkei.Errorj("web.fetch", renkei.Unavailable, "このサーバーではゲートウェイを使えません。", "gateways are not available on this server"))
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	if p.Kind != renkei.TokenPrincipal || !p.Write {
		s.problem(w, r, forbidden("web.fetch", "ゲートウェイは読み書き用のトークンで報告してください。", "a gateway reports with its read-write token"))
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.problem(w, r, renkei.Errorj("web.fetch", renkei.NotFound, "取り寄せ依頼 %q は見つかりません。", "there is no fetch request %q", r.PathValue("id")))
		return
	}
	var req struct {
		Status, Detail     string
		Studies, Instances int
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	if !slices.Contains([]string{"working", "done", "failed"}, req.Status) {
		s.problem(w, r, renkei.Errorf("web.fetch", renkei.Invalid, "status must be working, done or failed"))
		return
	}
	list, err := s.Gateways.FetchRequests(r.Context(), renkei.FetchRequestFilter{Institution: p.Institution, ID: id})
	if err != nil || len(list) == 0 {
		s.problem(w, r, renkei.Errorf("web.fetch", renkei.NotFound, "there is no fetch request %d for this gateway", id))
		return
	}
	fr := list[0]
	fr.Status, fr.Detail, fr.Studies, fr.Instances = req.Status, truncate(req.Detail, 1000), req.Studies, req.Instances
	var e *renkei.AuditEvent
	if req.Status != "working" {
		ev := renkei.EventFor(p, renkei.ActionFetch, renkei.OutcomeSuccess)
		if req.Status == "failed" {
			ev.Outcome = renkei.OutcomeFailure
		}
		ev.DataInstitution, ev.Patient = fr.Institution, fr.Patient
		ev.Detail = fmt.Sprintf("the gateway fetched %d studies (%d instances) from the hospital's PACS for request %d", fr.Studies, fr.Instances, fr.ID)
		if fr.Detail != "" {
			ev.Detail += ": " + fr.Detail
		}
		e = &ev
	}
	if err := s.Gateways.UpdateFetchRequest(r.Context(), fr, e); err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.fetchJSON(r.Context(), fr))
}
