package web

import (
	"context"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"renkei"
	"renkei/atna"
	"renkei/fhir"
	"renkei/security"
)

// The region's security status page (region admins) and the audit trail as FHIR AuditEvent (administrators).

// SecurityPage is what the security status needs beside the Store; nil in Server.Security leaves its routes
// answering 503.
type SecurityPage struct {
	Store  security.Store
	Config security.Config
	// Source names renkei (and the region) in exported audit events, as the syslog export does.
	Source atna.Source
	// Verify walks the audit chain, records the result and returns it (the page's "verify now").
	Verify func(ctx context.Context, by string) (renkei.AuditVerification, error)
}

func (s *Server) securityReady(w http.ResponseWriter, r *http.Request) bool {
	p := renkei.PrincipalFrom(r.Context())
	if p.Role != renkei.RegionAdmin {
		s.problem(w, r, renkei.Errorj("web.security", renkei.Forbidden, "セキュリティの状況を見られるのは、地域の管理者だけです。",
			"only the region's administrators may see the security status"))
		return false
	}
	if s.Security == nil || s.Security.Store == nil {
		s.problem(w, r, renkei.Errorj("web.security", renkei.Unavailable, "このサーバーではセキュリティの状況を見られません。",
			"the security status is not available on this server"))
		return false
	}
	return true
}

// requestHTTPS reports whether the request reached renkei over HTTPS: directly, or through a trusted proxy that
// says so.
func (s *Server) requestHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return s.trusted(host) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (s *Server) securityStatus(w http.ResponseWriter, r *http.Request) {
	if !s.securityReady(w, r) {
		return
	}
	rep, err := security.Status(r.Context(), s.Security.Store, s.Security.Config, s.Now(), s.requestHTTPS(r))
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) verifyAuditNow(w http.ResponseWriter, r *http.Request) {
	if !s.securityReady(w, r) {
		return
	}
	if s.Security.Verify == nil {
		s.problem(w, r, renkei.Errorf("web.security", renkei.Unavailable, "the audit trail cannot be verified from the web on this server; run renkei admin audit verify"))
		return
	}
	p := renkei.PrincipalFrom(r.Context())
	v, err := s.Security.Verify(r.Context(), p.Name)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"at": v.At, "by": v.By, "events": v.Events, "lastSeq": v.LastSeq, "problems": v.Problems,
		"firstProblem": v.FirstProblem})
}

var reAction = regexp.MustCompile(`^[a-z][a-z-]{0,31}$`)

// parseTime reads a time parameter: RFC 3339, or a date (midnight, server time).
func parseTime(name, v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", v, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, renkei.Errorf("web.audit", renkei.Invalid, "%s must be a date (2026-11-03) or a time (2026-11-03T09:00:00+09:00), not %q", name, v)
}

// auditFHIR answers the audit trail as a FHIR R4 searchset Bundle of AuditEvent, newest first: region admins all of
// it, institution admins what their institution's people did and what was done to its data. Parameters: action,
// since and until (dates or times), _count (1–10000, default 1000).
func (s *Server) auditFHIR(w http.ResponseWriter, r *http.Request) {
	const op = "web.audit"
	p := renkei.PrincipalFrom(r.Context())
	var f renkei.AuditFilter
	switch p.Role {
	case renkei.RegionAdmin:
	case renkei.InstitutionAdmin:
		f.Institution = p.Institution
	default:
		s.problem(w, r, renkei.Errorj(op, renkei.Forbidden, "監査記録を見られるのは管理者だけです。", "only administrators may read the audit trail"))
		return
	}
	q := r.URL.Query()
	for name, vals := range q {
		if len(vals) != 1 {
			s.problem(w, r, renkei.Errorf(op, renkei.Invalid, "give %s once", name))
			return
		}
		v := vals[0]
		var err error
		switch name {
		case "action":
			if !reAction.MatchString(v) {
				err = renkei.Errorf(op, renkei.Invalid, "action must be an audit action such as read, login or break-glass, not %q", v)
			}
			f.Action = renkei.AuditAction(v)
		case "since":
			f.Since, err = parseTime(name, v)
		case "until":
			f.Until, err = parseTime(name, v)
		case "_count":
			n, cerr := strconv.Atoi(v)
			if cerr != nil || n < 1 || n > 10000 {
				err = renkei.Errorf(op, renkei.Invalid, "_count must be a number from 1 to 10000, not %q", v)
			}
			f.Limit = n
		case "_format":
			if v != "json" && v != fhirJSON && v != "application/json" {
				err = renkei.Errorf(op, renkei.Invalid, "only JSON is served (_format=json)")
			}
		default:
			err = renkei.Errorf(op, renkei.Invalid, "unknown parameter %q: use action, since, until or _count", name)
		}
		if err != nil {
			s.problem(w, r, err)
			return
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "開始日時は終了日時より前にしてください。", "since must be before until"))
		return
	}
	events, err := s.Store.AuditEvents(r.Context(), f)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	var src atna.Source
	if s.Security != nil {
		src = s.Security.Source
	}
	insts, err := s.Store.Institutions(r.Context())
	if err != nil {
		s.problem(w, r, err)
		return
	}
	src.Institutions = map[int64]renkei.Institution{}
	for _, in := range insts {
		src.Institutions[in.PK] = in
	}
	b, err := fhir.AuditBundle(events, src, s.Now())
	if err != nil {
		s.problem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", fhirJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}
