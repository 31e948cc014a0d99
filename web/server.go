// Package web is renkei's HTTP front: it authenticates every request (a session cookie with a CSRF token, or an API
// bearer token) and routes it to the JSON API, to DICOMweb and (later) to the UI. Routes that need no login are one
// declared list, Public; everything else answers 401 without credentials, and a test sweeps every registered route to
// keep it so.
package web

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"renkei"
	"renkei/access"
	"renkei/blob"
	"renkei/clinical"
	"renkei/consult"
	"renkei/dicomweb"
	"renkei/directory"
	"renkei/identity"
	"renkei/notify"
)

// Store is what the JSON API reads and writes directly (implemented by sqlstore.DB).
type Store interface {
	Institution(ctx context.Context, id string) (renkei.Institution, error)
	InstitutionByPK(ctx context.Context, pk int64) (renkei.Institution, error)
	Institutions(ctx context.Context) ([]renkei.Institution, error)
	Users(ctx context.Context, institution int64) ([]renkei.User, error)
	Tokens(ctx context.Context, institution int64) ([]renkei.APIToken, error)
	RevokeToken(ctx context.Context, pk, institution int64, audit *renkei.AuditEvent) error
	UserByLogin(ctx context.Context, login string) (renkei.User, renkei.Credentials, error)
	CreateShare(ctx context.Context, s *renkei.Share, audit *renkei.AuditEvent) error
	RevokeShare(ctx context.Context, id, institution int64, audit *renkei.AuditEvent) error
	Shares(ctx context.Context, f renkei.ShareFilter) ([]renkei.Share, error)
	AuditEvents(ctx context.Context, f renkei.AuditFilter) ([]renkei.AuditEvent, error)
	RecoveryCodesLeft(ctx context.Context, pk int64) (int, error)
	SetLanguage(ctx context.Context, pk int64, lang string) error
	KeepBlob(ctx context.Context, key, what string) error

	LocalPatient(ctx context.Context, institution int64, key renkei.PatientKey) (renkei.LocalPatient, error)
	Linked(ctx context.Context, patient int64) ([]renkei.LocalPatient, error)
	LinkProposals(ctx context.Context, limit int) ([]renkei.LinkProposal, error)
	Link(ctx context.Context, a, b int64, by string, audit *renkei.AuditEvent) (int64, error)
	Unlink(ctx context.Context, pk int64, audit *renkei.AuditEvent) error
	Unmerge(ctx context.Context, regional, from int64, audit *renkei.AuditEvent) (int, error)
	AddConsent(ctx context.Context, c *renkei.Consent, audit *renkei.AuditEvent) error
	WithdrawConsent(ctx context.Context, id, institution int64, by string, audit *renkei.AuditEvent) error
	Consents(ctx context.Context, institution, patientPK int64) ([]renkei.Consent, error)
	ReviewBreakGlass(ctx context.Context, id, institution int64, by, note string, audit *renkei.AuditEvent) error
	Audit(ctx context.Context, events ...*renkei.AuditEvent) error
	access.BreakGlassStore
}

// Public lists the routes that answer without a login: the login steps themselves, health, and (as they are
// added) static assets, share-link PIN pages and invitation pages. Keep it short: every other route requires a
// session or a token.
var Public = append([]string{
	"GET /healthz",
	"GET /readyz",
	"GET /metrics",
	"GET /{$}",
	"GET /ui/{file...}",
	"GET /IHEInvokeImageDisplay",
	"POST /api/login",
	"POST /api/invitations/accept",
}, linkPublic...)

// Partial lists the routes a session may use before its login is complete (second factor not yet given, or a
// one-time password not yet changed).
var Partial = []string{
	"POST /api/login/second-factor",
	"POST /api/login/totp/start",
	"POST /api/login/totp/confirm",
	"POST /api/login/webauthn/register/start",
	"POST /api/login/webauthn/register/finish",
	"POST /api/login/webauthn/start",
	"POST /api/login/webauthn/finish",
	"POST /api/password",
	"POST /api/logout",
	"GET /api/me",
}

// Server is the HTTP handler of `renkei serve`.
type Server struct {
	Identity *identity.Service
	Store    Store
	DICOMweb *dicomweb.Handler
	Logger   *slog.Logger
	Now      func() time.Time
	Version  string
	// ShareDays is the default lifetime of a share when the sharer gives none.
	ShareDays int
	// BreakGlassPeriod is how long an emergency access lasts.
	BreakGlassPeriod time.Duration
	// Blobs keeps documents (scanned consent forms).
	Blobs blob.Store
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// Ready, when set, answers GET /readyz: nil when this node can serve (its index and blob store answer), else
	// why not. A load balancer sends requests only to ready nodes.
	Ready func(ctx context.Context) error
	// Metrics, when set, answers GET /metrics (Prometheus), to clients in MetricsAllow or on the loopback only.
	Metrics      http.Handler
	MetricsAllow []netip.Prefix
	// Hub carries live updates to the open /api/events streams.
	Hub Events
	// UploadDir keeps resumable uploads until their last byte arrives.
	UploadDir string
	// Clinical is the clinical record and the referrals; nil leaves their routes answering 503.
	Clinical *clinical.Service
	// Directory is the region's directory of institutions and their capacity; nil leaves its routes answering 503.
	Directory *directory.Service
	// MapTiles is a tile URL template ({z}/{x}/{y}) for the directory's map, where the deployment provides one.
	MapTiles string
	// Consults keeps live consults and Rooms runs them (UseConsults); nil leaves their routes answering 503.
	Consults ConsultStore
	Rooms    *consult.Rooms
	// ICEServers is the WebRTC configuration (STUN/TURN) sent to consult participants for voice, as JSON.
	ICEServers json.RawMessage
	// Mailer tells institutions by e-mail that a referral waits for them; nil sends no e-mail.
	Mailer *notify.Mailer
	// Gateways keeps the hospital gateways' heartbeats; nil leaves their routes answering 503. GatewaySilent and
	// GatewayBacklog say when one needs attention (defaults DefaultGatewaySilent, DefaultGatewayBacklog).
	Gateways                      GatewayStore
	GatewaySilent, GatewayBacklog time.Duration
	// PublicURL is the address users reach renkei at, for links in e-mails (e.g. https://renkei.example.jp).
	PublicURL string
	// Security serves the region's security status page; nil leaves its routes answering 503.
	Security *SecurityPage
	// Alerts keeps the security monitor's alerts; nil leaves their routes answering 503.
	Alerts AlertStore

	mux        *http.ServeMux
	routes     []string
	loginLimit *limiter
	ui         http.Handler
	up         uploads
}

// SessionCookie is the name of the session cookie.
const SessionCookie = "renkei_session"

// New builds the server and its routes.
func New(id *identity.Service, store Store, dw *dicomweb.Handler, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{Identity: id, Store: store, DICOMweb: dw, Logger: logger, Now: time.Now, ShareDays: 30, BreakGlassPeriod: 4 * time.Hour,
		mux:        http.NewServeMux(),
		loginLimit: newLimiter(10, time.Minute), ui: uiFS(), Hub: NewHub(), up: uploads{byID: map[string]*partial{}, locks: map[string]*sync.Mutex{}}}
	if dw != nil && dw.Archive != nil && dw.Archive.Stored == nil {
		dw.Archive.Stored = func(inst *renkei.Instance) { publishStudy(s.Hub, inst.Institution, 0, inst.StudyInstanceUID) }
	}
	s.handle("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	s.handle("GET /readyz", s.readyz)
	s.handle("GET /metrics", s.metrics)
	s.handle("GET /{$}", s.app)
	s.handle("GET /ui/{file...}", s.assets)
	s.handle("GET /IHEInvokeImageDisplay", s.invokeImageDisplay)
	s.handle("GET /api/studies", s.listStudies)
	s.handle("POST /api/upload", s.upload)
	s.handle("POST /api/dicomdir", s.dicomdir)
	s.handle("GET /api/events", s.events)
	s.handle("POST /api/uploads", s.startUpload)
	s.handle("GET /api/uploads/{id}", s.uploadStatus)
	s.handle("PATCH /api/uploads/{id}", s.uploadChunk)
	s.handle("POST /api/me/lang", s.setLanguage)

	s.handle("POST /api/login", s.login)
	s.handle("POST /api/login/second-factor", s.secondFactor)
	s.handle("POST /api/login/totp/start", s.totpStart)
	s.handle("POST /api/login/totp/confirm", s.totpConfirm)
	s.handle("POST /api/login/webauthn/register/start", s.webauthnRegisterStart)
	s.handle("POST /api/login/webauthn/register/finish", s.webauthnRegisterFinish)
	s.handle("POST /api/login/webauthn/start", s.webauthnLoginStart)
	s.handle("POST /api/login/webauthn/finish", s.webauthnLoginFinish)
	s.handle("POST /api/password", s.changePassword)
	s.handle("POST /api/logout", s.logout)
	s.handle("GET /api/me", s.me)
	s.handle("GET /api/me/keys", s.myKeys)
	s.handle("DELETE /api/me/keys/{id}", s.removeMyKey)

	s.handle("GET /api/institutions", s.institutions)
	s.handle("GET /api/shares", s.listShares)
	s.handle("POST /api/shares", s.createShare)
	s.handle("POST /api/shares/{id}/revoke", s.revokeShare)
	s.handle("GET /api/audit", s.auditEvents)
	s.handle("GET /api/audit/fhir", s.auditFHIR)
	s.handle("GET /api/security/status", s.securityStatus)
	s.handle("POST /api/security/verify", s.verifyAuditNow)

	s.handle("POST /api/consents", s.addConsent)
	s.handle("GET /api/consents", s.listConsents)
	s.handle("POST /api/consents/{id}/withdraw", s.withdrawConsent)
	s.handle("GET /api/consents/{id}/document", s.consentDocument)
	s.handle("GET /api/patients", s.findPatients)
	s.handle("GET /api/patients/link-proposals", s.linkProposals)
	s.handle("POST /api/patients/links", s.link)
	s.handle("POST /api/patients/unlink", s.unlink)
	s.handle("POST /api/patients/unmerge", s.unmerge)
	s.handle("GET /api/patients/studies", s.regionalStudies)
	s.handle("POST /api/break-glass", s.breakGlass)
	s.handle("GET /api/break-glass/reviews", s.breakGlassReviews)
	s.handle("POST /api/break-glass/{id}/review", s.reviewBreakGlass)
	s.handle("POST /api/invitations", s.invite)
	s.handle("GET /api/admin/users", s.adminUsers)
	s.handle("POST /api/admin/users", s.adminAddUser)
	s.handle("POST /api/admin/users/{id}/reset", s.adminResetUser)
	s.handle("POST /api/admin/users/{id}/disable", s.adminDisableUser)
	s.handle("GET /api/admin/tokens", s.adminTokens)
	s.handle("POST /api/admin/tokens", s.adminAddToken)
	s.handle("POST /api/admin/tokens/{id}/revoke", s.adminRevokeToken)
	s.handle("POST /api/invitations/accept", s.acceptInvitation)
	s.handle("GET /api/my/studies", s.myStudies)
	s.handle("GET /api/my/access-log", s.myAccessLog)

	s.handle("GET /api/referrals", s.listReferrals)
	s.handle("POST /api/referrals", s.createReferral)
	s.handle("GET /api/referrals/{id}", s.getReferral)
	s.handle("PUT /api/referrals/{id}", s.saveDraft)
	s.handle("POST /api/referrals/{id}/{action}", s.actOnReferral)
	s.handle("GET /api/referrals/{id}/versions", s.referralVersions)
	s.handle("POST /api/referrals/{id}/versions", s.correctReferral)
	s.handle("POST /api/referrals/{id}/reverse", s.reverseReferral)
	s.handle("GET /api/referrals/{id}/letter.pdf", s.referralPDF)
	s.handle("GET /api/referrals/{id}/related", s.relatedStudies)
	s.handle("PUT /api/referrals/{id}/attachment", s.attachLetter)
	s.handle("GET /api/referrals/{id}/attachment", s.letterAttachment)
	s.registerLinks()
	s.registerAlerts()
	s.handle("GET /api/consults", s.listConsults)
	s.handle("POST /api/consults", s.createConsult)
	s.handle("GET /api/consults/{id}", s.getConsult)
	s.handle("POST /api/consults/{id}/invite", s.inviteToConsult)
	s.handle("GET /api/colleagues", s.colleagues)
	s.handle("GET /api/consults/{id}/ws", s.consultSocket)
	s.handle("GET /api/directory", s.searchDirectory)
	s.handle("GET /api/directory/options", s.directoryOptions)
	s.handle("GET /api/directory/fhir", s.directoryFHIR)
	s.handle("GET /api/directory/{id}", s.directoryEntry)
	s.handle("GET /api/directory/{id}/history", s.capacityHistory)
	s.handle("PUT /api/directory/{id}/profile", s.saveProfile)
	s.handle("POST /api/directory/{id}/capacity", s.reportCapacity)
	s.handle("POST /api/gateways/heartbeat", s.gatewayHeartbeat)
	s.handle("GET /api/gateways", s.listGateways)
	s.handle("GET /api/gateways/inbox", s.gatewayInbox)
	s.handle("GET /api/gateways/requests", s.listFetches)
	s.handle("POST /api/gateways/requests", s.requestFetch)
	s.handle("POST /api/gateways/requests/{id}", s.reportFetch)
	s.handle("GET /api/patients/record", s.getRecord)
	s.handle("GET /api/patients/record/fhir", s.exportRecord)
	s.handle("POST /api/patients/record/fhir", s.importRecord)
	s.handle("GET /api/referrals/{id}/letter.fhir.json", s.letterFHIR)
	s.handle("POST /api/referrals/import", s.importLetter)
	s.handle("POST /api/patients/record", s.addRecord)
	s.handle("POST /api/patients/documents", s.addDocument)
	s.handle("GET /api/documents/{id}", s.document)
	s.handle("POST /api/facts/{id}/withdraw", s.withdrawFact)

	if dw != nil {
		for _, p := range dw.Routes() {
			s.routes = append(s.routes, p)
		}
		s.mux.Handle("/dicomweb/", dw)
		s.mux.Handle("/api/trash", dw)
		s.mux.Handle("/api/trash/", dw)
	}
	return s
}

func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.routes = append(s.routes, pattern)
	s.mux.HandleFunc(pattern, h)
}

// Routes lists every registered route pattern (for the sweep test and the docs).
func (s *Server) Routes() []string { return slices.Clone(s.routes) }

type authKey struct{}

// authFrom returns the request's verified session, or nil for token and public requests.
func authFrom(ctx context.Context) *identity.Authenticated {
	a, _ := ctx.Value(authKey{}).(*identity.Authenticated)
	return a
}

// ServeHTTP authenticates, checks CSRF, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	_, pattern := s.mux.Handler(r)
	// CORS preflights carry no credentials by design (Fetch standard); DICOMweb answers them without touching data.
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if slices.Contains(Public, pattern) || preflight {
		s.mux.ServeHTTP(w, r)
		return
	}
	ctx, err := s.authenticate(w, r, pattern)
	if err != nil {
		if renkei.ErrorKind(err) == renkei.Unauthorized {
			h.Set("WWW-Authenticate", `Bearer realm="renkei"`)
		}
		s.problem(w, r, err)
		return
	}
	s.mux.ServeHTTP(w, r.WithContext(ctx))
}

func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, pattern string) (context.Context, error) {
	ctx := r.Context()
	source := s.clientAddr(r)
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, token, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return nil, renkei.Errorj("web.auth", renkei.Unauthorized, "Authorization ヘッダーには Bearer の API トークンだけが使えます。",
				"only bearer API tokens are accepted in the Authorization header")
		}
		p, err := s.Identity.AuthenticateToken(ctx, strings.TrimSpace(token), source)
		if err != nil {
			return nil, err
		}
		return renkei.WithPrincipal(ctx, p), nil
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil, renkei.Errorj("web.auth", renkei.Unauthorized, "ログインしてください。", "please log in")
	}
	a, err := s.Identity.Authenticate(ctx, c.Value, source)
	if err != nil {
		clearCookie(w, r)
		return nil, err
	}
	if !safeMethod(r.Method) {
		// A session cookie rides along with any request the browser makes, including one forged by another site:
		// state-changing requests must also carry the session's CSRF token, which another site cannot read.
		got := r.Header.Get("X-CSRF-Token")
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(a.Session.CSRF)) != 1 {
			return nil, renkei.Errorj("web.auth", renkei.Forbidden, "画面の情報が古くなっています。ページを再読み込みしてから、もう一度お試しください。",
				"the request lacks this session's CSRF token; reload the page and try again")
		}
	}
	if a.Partial && !slices.Contains(Partial, pattern) {
		if a.Session.SecondFactorAt != nil {
			return nil, renkei.Errorj("web.auth", renkei.Forbidden, "先に、仮パスワードを変更してください。", "please change your one-time password first")
		}
		return nil, renkei.Errorj("web.auth", renkei.Forbidden, "先に、ログインの2段階目を済ませてください。", "please complete the second login step first")
	}
	ctx = context.WithValue(ctx, authKey{}, a)
	if !a.Partial {
		ctx = renkei.WithPrincipal(ctx, a.Principal)
	}
	return ctx, nil
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// readyz answers whether this node can serve: 200 "ready", or 503 with why not (the index or the blob store does
// not answer). /healthz only says that the process runs.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			s.Logger.Warn("not ready", "err", err)
			msg := "not ready" // the reason names internal hosts: for the operator's own networks only
			if s.operator(r) {
				msg += ": " + err.Error()
			}
			s.problem(w, r, &renkei.Error{Op: "web.readyz", Kind: renkei.Unavailable, Message: msg, Err: err})
			return
		}
	}
	io.WriteString(w, "ready\n")
}

// metrics serves Prometheus's scrape to the loopback and to MetricsAllow; to anyone else it does not exist.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.Metrics == nil || !s.operator(r) {
		http.NotFound(w, r)
		return
	}
	s.Metrics.ServeHTTP(w, r)
}

// operator reports whether a request comes from the loopback or from one of MetricsAllow (the region's monitoring).
func (s *Server) operator(r *http.Request) bool {
	ip, err := netip.ParseAddr(s.clientAddr(r))
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return true
	}
	for _, p := range s.MetricsAllow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Route is the route pattern a request matches ("" when none), for metrics.
func (s *Server) Route(r *http.Request) string {
	_, pattern := s.mux.Handler(r)
	return pattern
}

// clientAddr is the address the request came from: the TCP peer, or, when the peer is one of TrustedProxies (a
// load balancer or reverse proxy in front of renkei), the nearest address in X-Forwarded-For that is not. Without
// it, every client behind a proxy would share one address, and one address's login limit.
func (s *Server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !s.trusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		if h == "" {
			continue
		}
		if !s.trusted(h) {
			return h
		}
		host = h
	}
	return host
}

func (s *Server) trusted(addr string) bool {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	for _, p := range s.TrustedProxies {
		if p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// secureCookie says whether the session cookie must be Secure: always, except on a plain-HTTP loopback address
// where a browser on the same machine is the only possible client (the demo).
func secureCookie(r *http.Request) bool {
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		return true
	}
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

func setCookie(w http.ResponseWriter, r *http.Request, value string) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: value, Path: "/", HttpOnly: true, Secure: secureCookie(r),
		SameSite: http.SameSiteLaxMode})
}

func clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secureCookie(r),
		SameSite: http.SameSiteLaxMode})
}

func (s *Server) problem(w http.ResponseWriter, r *http.Request, err error) {
	status := dicomweb.HTTPStatus(err)
	if status >= 500 {
		s.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.Logger.Info("request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	writeProblem(w, status, renkei.ErrorMessageIn(err, requestLang(r)), renkei.ErrorCode(err))
}

// writeProblem answers an RFC 9457 problem: type and title stay fixed per status, detail is in the request's
// language, and code (when the error has one, e.g. "consent-required") lets the web app and integrations recognise
// the refusal whatever its wording.
func writeProblem(w http.ResponseWriter, status int, detail, code string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	p := map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail}
	if code != "" {
		p["code"] = code
	}
	json.NewEncoder(w).Encode(p)
}

// requestLang is the language to answer r in, "ja" or "en": the logged-in user's setting (the web app keeps it in
// step with its language switch); else the Accept-Language header, which the web app sets to its own language on
// every request, so that a login error before any session is in the language on the screen; else English, since
// a request that states no language is a program's (the web app, whose default is Japanese, always states one). API
// tokens carry no language setting: their clients get English unless they ask for Japanese.
func requestLang(r *http.Request) string {
	if a := authFrom(r.Context()); a != nil && (a.User.Lang == "ja" || a.User.Lang == "en") {
		return a.User.Lang
	}
	return renkei.AcceptLanguage(r.Header.Get("Accept-Language"))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// readJSON decodes a small JSON request body into v.
func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return renkei.Errorj("web", renkei.Invalid, "送信された内容を読み取れませんでした(JSON の形式が正しくありません)。", "the request body is not valid JSON")
		}
		return renkei.Errorf("web", renkei.Invalid, "the request body does not fit: %v", err)
	}
	return nil
}
