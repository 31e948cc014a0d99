package web

import (
	"bytes"
	"encoding/base64"
	"image/png"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/pquerna/otp"

	"renkei"
	"renkei/identity"
)

// limiter is a per-key token bucket: rate events per period, in a burst of at most rate.
type limiter struct {
	mu      sync.Mutex
	rate    float64
	period  time.Duration
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate int, period time.Duration) *limiter {
	return &limiter{rate: float64(rate), period: period, buckets: map[string]*bucket{}}
}

// allow takes one token for key, reporting false when none is left.
func (l *limiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buckets) > 100_000 {
		clear(l.buckets) // a flood of addresses; forgetting them is the cheapest safe choice
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.rate, at: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.rate, b.tokens+now.Sub(b.at).Seconds()*l.rate/l.period.Seconds())
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// loginState is what the login steps answer: what the client must do next.
type loginState struct {
	Next      string   `json:"next"` // "second-factor", "enrol-second-factor", "change-password" or "done"
	CSRFToken string   `json:"csrfToken"`
	User      *meUser  `json:"user,omitempty"`
	Factors   []string `json:"factors,omitempty"`
}

type meUser struct {
	Login           string `json:"login"`
	Name            string `json:"name"`
	Role            string `json:"role"`
	Institution     string `json:"institution"`
	InstitutionName string `json:"institutionName"`
	Lang            string `json:"lang"`
}

func userJSON(u renkei.User) *meUser {
	return &meUser{Login: u.Login, Name: u.Name, Role: string(u.Role), Institution: u.Institution.ID, InstitutionName: u.Institution.Name, Lang: u.Lang}
}

func next(l *identity.Login) string {
	switch {
	case l.NeedsEnrolment && l.Session.SecondFactorAt == nil:
		return "enrol-second-factor"
	case l.Session.SecondFactorAt == nil:
		return "second-factor"
	case l.MustChangePassword:
		return "change-password"
	}
	return "done"
}

func (s *Server) answerLogin(w http.ResponseWriter, r *http.Request, l *identity.Login) {
	setCookie(w, r, l.SessionID)
	st := loginState{Next: next(l), CSRFToken: l.Session.CSRF, User: userJSON(l.User)}
	if st.Next == "second-factor" {
		st.Factors = l.Factors
	}
	writeJSON(w, http.StatusOK, st)
}

// login is the password step. Attempts are limited per client address (password spraying) on top of the
// per-account lockout.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Login    string `json:"login"`
		Password string `json:"password"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	if !s.loginLimit.allow(s.clientAddr(r), s.Now()) {
		w.Header().Set("Retry-After", "60")
		msg := "too many login attempts from this address; wait a minute and try again"
		if requestLang(r) == "ja" {
			msg = "この端末からのログインの試行が多すぎます。1分ほど待ってから、もう一度お試しください。"
		}
		writeProblem(w, http.StatusTooManyRequests, msg, "too-many-logins")
		return
	}
	l, err := s.Identity.Password(r.Context(), req.Login, req.Password, s.clientAddr(r))
	if err != nil {
		s.problem(w, r, err)
		return
	}
	s.answerLogin(w, r, l)
}

func sessionID(r *http.Request) string {
	if c, err := r.Cookie(SessionCookie); err == nil {
		return c.Value
	}
	return ""
}

func (s *Server) secondFactor(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Factor string `json:"factor"`
		Code   string `json:"code"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	if req.Factor == "" {
		req.Factor = "totp"
	}
	l, err := s.Identity.SecondFactor(r.Context(), sessionID(r), req.Factor, req.Code)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	s.answerLogin(w, r, l)
}

// needSession returns the request's login session, or answers that the route needs one (an API token has none).
func (s *Server) needSession(w http.ResponseWriter, r *http.Request) *identity.Authenticated {
	a := authFrom(r.Context())
	if a == nil {
		s.problem(w, r, renkei.Errorj("web", renkei.Invalid, "この操作は、パスワードでログインした利用者のためのものです(API トークンでは使えません)。",
			"this is for people logged in with a password, not for API tokens"))
	}
	return a
}

func (s *Server) totpStart(w http.ResponseWriter, r *http.Request) {
	a := s.needSession(w, r)
	if a == nil {
		return
	}
	if a.User.HasTOTP && a.Session.SecondFactorAt == nil {
		s.problem(w, r, renkei.Errorj("web.totp", renkei.Forbidden, "先に、今お使いの認証アプリでログインしてください。", "log in with your current authenticator first"))
		return
	}
	e, err := s.Identity.StartTOTP(a)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"secret": e.Secret, "url": e.URL, "qr": qrDataURL(e.URL)})
}

func (s *Server) totpConfirm(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Secret string `json:"secret"`
		Code   string `json:"code"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	a := s.needSession(w, r)
	if a == nil {
		return
	}
	l, codes, err := s.Identity.ConfirmTOTP(r.Context(), sessionID(r), a, req.Secret, req.Code)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	s.answerEnrolment(w, r, a, l, codes)
}

// answerEnrolment answers a second factor's enrolment: the login's next step (with the new session's cookie when
// the enrolment completed a login) and the recovery codes, shown once.
func (s *Server) answerEnrolment(w http.ResponseWriter, r *http.Request, a *identity.Authenticated, l *identity.Login, codes []string) {
	st := loginState{Next: "done", CSRFToken: a.Session.CSRF, User: userJSON(a.User)}
	if l != nil {
		setCookie(w, r, l.SessionID)
		st.Next, st.CSRFToken = next(l), l.Session.CSRF
	}
	writeJSON(w, http.StatusOK, map[string]any{"login": st, "recoveryCodes": codes})
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Current string `json:"current"`
		New     string `json:"new"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	a := s.needSession(w, r)
	if a == nil {
		return
	}
	if a.Session.SecondFactorAt == nil {
		s.problem(w, r, renkei.Errorj("web.password", renkei.Forbidden, "先に、ログインの2段階目を済ませてください。", "please complete the second login step first"))
		return
	}
	if err := s.Identity.ChangePassword(r.Context(), a, req.Current, req.New); err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, loginState{Next: "done", CSRFToken: a.Session.CSRF, User: userJSON(a.User)})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Everywhere bool `json:"everywhere"`
	}
	if r.ContentLength != 0 {
		if err := readJSON(r, &req); err != nil {
			s.problem(w, r, err)
			return
		}
	}
	a := s.needSession(w, r)
	if a == nil {
		return
	}
	if err := s.Identity.Logout(r.Context(), a, req.Everywhere); err != nil {
		s.problem(w, r, err)
		return
	}
	clearCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	a := authFrom(r.Context())
	if a == nil {
		p := renkei.PrincipalFrom(r.Context())
		writeJSON(w, http.StatusOK, map[string]any{"kind": p.Kind, "name": p.Name, "write": p.Write})
		return
	}
	left, err := s.Store.RecoveryCodesLeft(r.Context(), a.User.PK)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	factors, err := s.Identity.Factors(r.Context(), a.User)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	st := "done"
	switch {
	case a.Session.SecondFactorAt == nil && !a.User.HasTOTP && len(factors) == 1:
		st = "enrol-second-factor"
	case a.Session.SecondFactorAt == nil:
		st = "second-factor"
	case a.User.MustChangePassword:
		st = "change-password"
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": "user", "user": userJSON(a.User), "next": st, "csrfToken": a.Session.CSRF,
		"factors": factors, "recoveryCodesLeft": left, "sessionStarted": a.Session.CreatedAt})
}

// readRaw reads a small request body as it is (a WebAuthn answer, which go-webauthn parses itself).
func readRaw(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil || len(b) == 0 {
		return nil, renkei.Errorj("web", renkei.Invalid, "送信された内容が空か、読み取れませんでした。", "the request body is empty or could not be read")
	}
	return b, nil
}

// webauthnRegisterStart answers the options for navigator.credentials.create(): a new security key or passkey
// for the session's user (as the first second factor, or an additional one).
func (s *Server) webauthnRegisterStart(w http.ResponseWriter, r *http.Request) {
	a := s.needSession(w, r)
	if a == nil {
		return
	}
	opts, err := s.Identity.BeginWebAuthnRegistration(r.Context(), a)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, opts)
}

// webauthnRegisterFinish takes the browser's PublicKeyCredential (JSON) and the key's name (?name=).
func (s *Server) webauthnRegisterFinish(w http.ResponseWriter, r *http.Request) {
	a := s.needSession(w, r)
	if a == nil {
		return
	}
	body, err := readRaw(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	l, codes, err := s.Identity.FinishWebAuthnRegistration(r.Context(), sessionID(r), a, r.URL.Query().Get("name"), body)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	s.answerEnrolment(w, r, a, l, codes)
}

// webauthnLoginStart answers the options for navigator.credentials.get() after the password step.
func (s *Server) webauthnLoginStart(w http.ResponseWriter, r *http.Request) {
	opts, err := s.Identity.BeginWebAuthnLogin(r.Context(), sessionID(r))
	if err != nil {
		s.problem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, opts)
}

func (s *Server) webauthnLoginFinish(w http.ResponseWriter, r *http.Request) {
	body, err := readRaw(r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	l, err := s.Identity.FinishWebAuthnLogin(r.Context(), sessionID(r), body)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	s.answerLogin(w, r, l)
}

// qrDataURL draws an otpauth URL as a QR code (a PNG data URL) for an authenticator app's camera; "" if it cannot.
func qrDataURL(u string) string {
	key, err := otp.NewKeyFromURL(u)
	if err != nil {
		return ""
	}
	img, err := key.Image(240, 240)
	if err != nil {
		return ""
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return ""
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b.Bytes())
}

// myKeys lists the logged-in user's security keys: a name, when it was registered and last used, and the id to
// remove it with (base64url).
func (s *Server) myKeys(w http.ResponseWriter, r *http.Request) {
	a := s.needSession(w, r)
	if a == nil {
		return
	}
	creds, err := s.Identity.Store.WebAuthnCredentials(r.Context(), a.User.PK)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	type key struct {
		ID        string     `json:"id"`
		Name      string     `json:"name"`
		CreatedAt time.Time  `json:"createdAt"`
		LastUsed  *time.Time `json:"lastUsed,omitempty"`
	}
	out := []key{}
	for _, c := range creds {
		out = append(out, key{base64.RawURLEncoding.EncodeToString(c.ID), c.Name, c.CreatedAt, c.LastUsed})
	}
	writeJSON(w, http.StatusOK, out)
}

// removeMyKey forgets one of the logged-in user's security keys (not the last second factor).
func (s *Server) removeMyKey(w http.ResponseWriter, r *http.Request) {
	a := s.needSession(w, r)
	if a == nil {
		return
	}
	id, err := base64.RawURLEncoding.DecodeString(r.PathValue("id"))
	if err != nil {
		s.problem(w, r, renkei.Errorj("web.keys", renkei.NotFound, "該当するセキュリティキーはありません。", "there is no such security key"))
		return
	}
	if err := s.Identity.RemoveSecurityKey(r.Context(), a, id); err != nil {
		s.problem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
