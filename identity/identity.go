// Package identity logs people and machines in: passwords (argon2id) with a mandatory second factor for staff
// (TOTP now; WebAuthn security keys, HPKI and IC cards plug in as SecondFactor), recovery codes, lockout after
// repeated failures, sessions with idle and absolute timeouts, and API tokens for gateways and scripts. It turns a
// cookie or a bearer token into the renkei.Principal that the access layer and the audit trail use.
package identity

import (
	"context"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"renkei"
)

// Store is what identity keeps in the index (implemented by sqlstore.DB).
type Store interface {
	UserByLogin(ctx context.Context, login string) (renkei.User, renkei.Credentials, error)
	UserByPK(ctx context.Context, pk int64) (renkei.User, renkei.Credentials, error)
	CreateUser(ctx context.Context, u *renkei.User, passwordHash string, audit *renkei.AuditEvent) error
	UpdateUser(ctx context.Context, pk int64, up renkei.UserUpdate, audit *renkei.AuditEvent) error
	UseTOTPStep(ctx context.Context, pk, step int64) (bool, error)
	UseRecoveryCode(ctx context.Context, pk int64, hash string) (bool, error)
	CreateSession(ctx context.Context, s *renkei.Session, audit *renkei.AuditEvent) error
	Session(ctx context.Context, idHash string) (renkei.Session, error)
	TouchSession(ctx context.Context, idHash string, at time.Time) error
	ReplaceSession(ctx context.Context, old string, s *renkei.Session, audit *renkei.AuditEvent) error
	DeleteSession(ctx context.Context, idHash string, audit *renkei.AuditEvent) error
	CreateToken(ctx context.Context, t *renkei.APIToken, hash string, audit *renkei.AuditEvent) error
	CreateInvitation(ctx context.Context, institution, patientPK int64, codeHash, by string, expires time.Time, audit *renkei.AuditEvent) error
	AcceptInvitation(ctx context.Context, codeHash string, u *renkei.User, passwordHash string, audit *renkei.AuditEvent) error
	TokenByHash(ctx context.Context, hash string) (renkei.APIToken, error)
	TouchToken(ctx context.Context, pk int64, at time.Time) error
	Audit(ctx context.Context, events ...*renkei.AuditEvent) error
	AddWebAuthnCredential(ctx context.Context, c *renkei.WebAuthnCredential, audit *renkei.AuditEvent) error
	WebAuthnCredentials(ctx context.Context, user int64) ([]renkei.WebAuthnCredential, error)
	DeleteWebAuthnCredential(ctx context.Context, user int64, id []byte, audit *renkei.AuditEvent) error
	UpdateWebAuthnCredential(ctx context.Context, id, record []byte) error
	SetCeremony(ctx context.Context, idHash, ceremony string) error
	Ceremony(ctx context.Context, idHash string) (string, error)
}

// Service logs users in and authenticates requests.
type Service struct {
	Store Store
	Now   func() time.Time
	// Issuer names the region in authenticator apps ("renkei 中央地域").
	Issuer string

	IdleTimeout     time.Duration // a session unused this long ends (default 30 min)
	AbsoluteTimeout time.Duration // a session ends this long after login whatever happens (default 12 h)
	MaxFailures     int           // failed logins (password or second factor) before a lockout (default 5)
	LockoutPeriod   time.Duration // how long a lockout lasts (default 15 min)
	// Demo accepts the demo region's printed passwords; outside demo mode accounts marked as demo cannot log in.
	Demo bool

	// SecondFactors are the one-step ways a user may complete a login, by name ("totp", "recovery"). WebAuthn, a
	// challenge and its signed answer, has its own Begin/Finish methods (webauthn.go).
	SecondFactors map[string]SecondFactor

	webauthn *webauthn.WebAuthn // nil until EnableWebAuthn
}

// New returns a service with the default timeouts and limits.
func New(store Store) *Service {
	s := &Service{Store: store, Now: time.Now, Issuer: "renkei", IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 12 * time.Hour,
		MaxFailures: 5, LockoutPeriod: 15 * time.Minute}
	s.SecondFactors = map[string]SecondFactor{"totp": TOTP{s}, "recovery": RecoveryCode{s}}
	return s
}

// SecondFactor checks the second step of a login. TOTP and recovery codes are built in; a WebAuthn security key or
// an HPKI card is another implementation behind the same interface.
type SecondFactor interface {
	// Verify checks response for the user; false with a nil error is a wrong answer.
	Verify(ctx context.Context, u renkei.User, c renkei.Credentials, response string) (bool, error)
}

// DemoPrefix marks the logins of the demo region; they are refused when the server is not in demo mode, so that a
// demo password printed in a README never opens a real deployment.
const DemoPrefix = "demo-"

// Login is the state of a login after its password step.
type Login struct {
	SessionID string // the cookie value; shown once
	Session   renkei.Session
	User      renkei.User
	// NeedsSecondFactor: the session may only complete the second factor. NeedsEnrolment: the user has none yet and
	// must enrol one first. MustChangePassword: a one-time password was used.
	NeedsSecondFactor  bool
	NeedsEnrolment     bool
	MustChangePassword bool
	// Factors are the second factors the user has enrolled ("totp", "webauthn", "recovery").
	Factors []string
}

var errLogin = renkei.Errorj("identity.Login", renkei.Unauthorized, "ログイン名またはパスワードが違います。", "the login name or the password is wrong")

// Password checks the first step of a login. Wrong logins and wrong passwords answer alike, after the same work.
// A locked account answers renkei.Forbidden with when to try again.
func (s *Service) Password(ctx context.Context, login, password, source string) (*Login, error) {
	login = strings.TrimSpace(login)
	u, c, err := s.Store.UserByLogin(ctx, login)
	if renkei.ErrorKind(err) == renkei.NotFound {
		CheckPassword(dummyHash, password)
		s.auditLogin(ctx, nil, login, source, renkei.OutcomeFailure, "unknown login")
		return nil, errLogin
	}
	if err != nil {
		return nil, err
	}
	now := s.Now()
	if err := s.usable(u, c, now); err != nil {
		CheckPassword(dummyHash, password)
		s.auditLogin(ctx, &u, login, source, renkei.OutcomeFailure, renkei.ErrorMessage(err))
		return nil, err
	}
	if !CheckPassword(c.PasswordHash, password) {
		return nil, s.failed(ctx, u, c, source, "wrong password", errLogin)
	}
	if c.FailedLogins > 0 && !u.Role.Staff() {
		zero := 0
		if err := s.Store.UpdateUser(ctx, u.PK, renkei.UserUpdate{FailedLogins: &zero}, nil); err != nil {
			return nil, err
		}
	}
	l := &Login{User: u, MustChangePassword: u.MustChangePassword}
	// Every account needs a second factor: staff by the MHLW guideline, patients because their data is as sensitive.
	l.NeedsSecondFactor = true
	if l.Factors, err = s.Factors(ctx, u); err != nil {
		return nil, err
	}
	l.NeedsEnrolment = len(l.Factors) == 1 // recovery codes alone are no factor
	l.SessionID = randomToken(32)
	l.Session = renkei.Session{IDHash: hashSecret(l.SessionID), User: u.PK, CSRF: randomToken(24), CreatedAt: now, LastSeen: now, Source: source}
	if !l.NeedsSecondFactor {
		l.Session.SecondFactorAt = &now
	}
	e := s.loginEvent(&u, source, renkei.OutcomeSuccess, "password accepted")
	if err := s.Store.CreateSession(ctx, &l.Session, e); err != nil {
		return nil, err
	}
	return l, nil
}

// usable refuses disabled, locked and (outside demo mode) demo accounts.
func (s *Service) usable(u renkei.User, c renkei.Credentials, now time.Time) error {
	switch {
	case u.Disabled:
		return errLogin
	case strings.HasPrefix(u.Login, DemoPrefix) && !s.Demo:
		return renkei.Errorj("identity.Login", renkei.Forbidden, "デモ用アカウントは、デモ用に起動したサーバーでのみ使えます。",
			"demo accounts work only on a server started with --demo")
	case now.Before(c.LockedUntil):
		return renkei.Errorj("identity.Login", renkei.Forbidden, "ログインの失敗が続いたため、このアカウントは%sまでロックされています。その時刻以降にもう一度お試しいただくか、管理者にご連絡ください。",
			"this account is locked after too many failed attempts until %s; try again then, or ask your administrator", c.LockedUntil.Format("15:04")).WithCode("account-locked")
	}
	return nil
}

// failed counts a failure and locks the account when there were too many.
func (s *Service) failed(ctx context.Context, u renkei.User, c renkei.Credentials, source, why string, answer error) error {
	n := c.FailedLogins + 1
	up := renkei.UserUpdate{FailedLogins: &n}
	detail := why
	if n >= s.MaxFailures {
		until := s.Now().Add(s.LockoutPeriod)
		zero := 0
		up.LockedUntil, up.FailedLogins = &until, &zero
		detail += "; account locked until " + until.Format(time.RFC3339)
	}
	if err := s.Store.UpdateUser(ctx, u.PK, up, s.loginEvent(&u, source, renkei.OutcomeFailure, detail)); err != nil {
		return err
	}
	return answer
}

func (s *Service) loginEvent(u *renkei.User, source, outcome, detail string) *renkei.AuditEvent {
	e := renkei.AuditEvent{ActorKind: renkei.UserPrincipal, Action: renkei.ActionLogin, Outcome: outcome, Source: source, Detail: detail}
	if u != nil {
		e.Actor, e.ActorID, e.Institution, e.Role = u.Login, u.PK, u.Institution.PK, u.Role
	}
	return &e
}

func (s *Service) auditLogin(ctx context.Context, u *renkei.User, login, source, outcome, detail string) {
	e := s.loginEvent(u, source, outcome, detail)
	if u == nil {
		e.Actor = login
	}
	s.Store.Audit(ctx, e) // a failed login is refused whether or not its event could be written
}

// SecondFactor completes a login with the named factor ("totp" or "recovery"). It ends the password-step session
// and returns a new one, so that an id seen before login never becomes a full session (session fixation).
func (s *Service) SecondFactor(ctx context.Context, sessionID, factor, response string) (*Login, error) {
	sess, u, c, err := s.session(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	if sess.SecondFactorAt != nil {
		return nil, renkei.Errorj("identity.SecondFactor", renkei.Conflict, "このセッションはすでにログインを終えています。", "this session has already completed its login")
	}
	f, ok := s.SecondFactors[factor]
	if !ok {
		return nil, renkei.Errorj("identity.SecondFactor", renkei.Invalid, "二段階目の認証方法 %q には対応していません。", "unknown second factor %q", factor)
	}
	if err := s.usable(u, c, s.Now()); err != nil {
		return nil, err
	}
	good, err := f.Verify(ctx, u, c, response)
	if err != nil {
		return nil, err
	}
	if !good {
		return nil, s.failed(ctx, u, c, sess.Source, "wrong "+factor+" code",
			renkei.Errorj("identity.SecondFactor", renkei.Unauthorized, "コードが違うか、すでに使われたコードです。", "the code is wrong or was already used"))
	}
	return s.complete(ctx, sessionID, sess, u, "second factor "+factor+" accepted")
}

func (s *Service) complete(ctx context.Context, oldID string, sess renkei.Session, u renkei.User, detail string) (*Login, error) {
	now := s.Now()
	l := &Login{User: u, MustChangePassword: u.MustChangePassword, SessionID: randomToken(32)}
	l.Session = renkei.Session{IDHash: hashSecret(l.SessionID), User: u.PK, CSRF: randomToken(24), CreatedAt: sess.CreatedAt, LastSeen: now,
		SecondFactorAt: &now, Source: sess.Source}
	zero := 0
	e := s.loginEvent(&u, sess.Source, renkei.OutcomeSuccess, detail)
	if err := s.Store.UpdateUser(ctx, u.PK, renkei.UserUpdate{FailedLogins: &zero}, nil); err != nil {
		return nil, err
	}
	if err := s.Store.ReplaceSession(ctx, hashSecret(oldID), &l.Session, e); err != nil {
		return nil, err
	}
	return l, nil
}

var errSession = renkei.Errorj("identity.Session", renkei.Unauthorized, "セッションが終了しました。もう一度ログインしてください。", "your session has ended; please log in again")

// session loads a session and its user, enforcing the timeouts.
func (s *Service) session(ctx context.Context, sessionID string) (renkei.Session, renkei.User, renkei.Credentials, error) {
	if sessionID == "" || len(sessionID) > 100 {
		return renkei.Session{}, renkei.User{}, renkei.Credentials{}, errSession
	}
	sess, err := s.Store.Session(ctx, hashSecret(sessionID))
	if renkei.ErrorKind(err) == renkei.NotFound {
		return sess, renkei.User{}, renkei.Credentials{}, errSession
	}
	if err != nil {
		return sess, renkei.User{}, renkei.Credentials{}, err
	}
	now := s.Now()
	if now.Sub(sess.LastSeen) > s.IdleTimeout || now.Sub(sess.CreatedAt) > s.AbsoluteTimeout {
		s.Store.DeleteSession(ctx, sess.IDHash, nil)
		return sess, renkei.User{}, renkei.Credentials{}, errSession
	}
	u, c, err := s.Store.UserByPK(ctx, sess.User)
	if err != nil {
		return sess, u, c, errSession
	}
	if u.Disabled {
		return sess, u, c, errSession
	}
	return sess, u, c, nil
}

// Authenticated is a request's verified session.
type Authenticated struct {
	Principal *renkei.Principal
	Session   renkei.Session
	User      renkei.User
	// Partial: only the second factor (or its enrolment) may be done with this session.
	Partial bool
}

// Authenticate turns a session cookie's value into the request's principal. Expired, unknown and tampered values
// are renkei.Unauthorized.
func (s *Service) Authenticate(ctx context.Context, sessionID, source string) (*Authenticated, error) {
	sess, u, _, err := s.session(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	if now.Sub(sess.LastSeen) > time.Minute {
		if err := s.Store.TouchSession(ctx, sess.IDHash, now); err != nil {
			return nil, err
		}
	}
	p := &renkei.Principal{Kind: renkei.UserPrincipal, ID: u.PK, Name: u.Login, Institution: u.Institution.PK, Role: u.Role,
		Write: u.Role != renkei.PatientRole, Session: sess.IDHash[:16], Source: source, Issuer: u.Institution.Issuer,
		Patient: u.PatientPK}
	return &Authenticated{Principal: p, Session: sess, User: u, Partial: sess.SecondFactorAt == nil || u.MustChangePassword}, nil
}

// Logout ends one session, or with everywhere every session of its user.
func (s *Service) Logout(ctx context.Context, a *Authenticated, everywhere bool) error {
	e := renkei.EventFor(a.Principal, renkei.ActionLogout, renkei.OutcomeSuccess)
	if everywhere {
		e.Detail = "every session"
		return s.Store.UpdateUser(ctx, a.User.PK, renkei.UserUpdate{EndSessions: true}, &e)
	}
	return s.Store.DeleteSession(ctx, a.Session.IDHash, &e)
}

// ChangePassword sets a new password after checking the current one and the policy; it clears the one-time flag.
func (s *Service) ChangePassword(ctx context.Context, a *Authenticated, current, next string) error {
	_, c, err := s.Store.UserByPK(ctx, a.User.PK)
	if err != nil {
		return err
	}
	if !CheckPassword(c.PasswordHash, current) {
		return s.failed(ctx, a.User, c, a.Principal.Source, "wrong current password at password change",
			renkei.Errorj("identity.ChangePassword", renkei.Unauthorized, "今のパスワードが違います。", "the current password is wrong"))
	}
	if err := CheckPolicy(next, a.User.Login, a.User.Name); err != nil {
		return err
	}
	if next == current {
		return renkei.Errorj("identity.ChangePassword", renkei.Invalid, "新しいパスワードは今のパスワードと違うものにしてください。",
			"the new password must differ from the current one").WithCode("password-same")
	}
	h, f := HashPassword(next), false
	e := renkei.EventFor(a.Principal, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.Detail = "changed own password"
	return s.Store.UpdateUser(ctx, a.User.PK, renkei.UserUpdate{PasswordHash: &h, MustChange: &f}, &e)
}

// CreateUser adds a user with a one-time password, which it returns for the administrator to hand over; the user
// must change it and enrol a second factor at first login.
func (s *Service) CreateUser(ctx context.Context, by *renkei.Principal, u *renkei.User) (string, error) {
	if err := checkUser(u); err != nil {
		return "", err
	}
	pw := OneTimePassword()
	u.MustChangePassword = true
	e := renkei.EventFor(by, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.Detail = "created user " + u.Login + " (" + string(u.Role) + ")"
	if err := s.Store.CreateUser(ctx, u, HashPassword(pw), &e); err != nil {
		return "", err
	}
	return pw, nil
}

// CreateUserWithPassword adds a user with a chosen password (the demo region). The password must meet the policy.
func (s *Service) CreateUserWithPassword(ctx context.Context, by *renkei.Principal, u *renkei.User, password string) error {
	if err := checkUser(u); err != nil {
		return err
	}
	if err := CheckPolicy(password, u.Login, u.Name); err != nil {
		return err
	}
	e := renkei.EventFor(by, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.Detail = "created user " + u.Login + " (" + string(u.Role) + ")"
	return s.Store.CreateUser(ctx, u, HashPassword(password), &e)
}

func checkUser(u *renkei.User) error {
	const op = "identity.CreateUser"
	login := strings.TrimSpace(u.Login)
	if login == "" || len(login) > 100 || login != u.Login || strings.ContainsAny(login, " \t\r\n/\\") {
		return renkei.Errorj(op, renkei.Invalid, "ログイン名は、空白やスラッシュを含まない1～100文字にしてください。",
			"a login must be 1 to 100 characters without spaces or slashes")
	}
	if !u.Role.Staff() && u.Role != renkei.PatientRole {
		return renkei.Errorj(op, renkei.Invalid, "役割 %q はありません。", "unknown role %q", u.Role)
	}
	if u.Role == renkei.RegionAdmin && u.Institution.Kind != renkei.RegionOperator {
		return renkei.Errorj(op, renkei.Invalid, "地域の管理者は、地域の運営機関に所属します(%s ではありません)。",
			"a region administrator belongs to the region's operator, not to %s", u.Institution.ID)
	}
	return nil
}

// ResetUser is an administrator's reset of a user who lost their password or second factor: a new one-time
// password, the second factor and recovery codes cleared (to be enrolled again), every session ended, all audited.
func (s *Service) ResetUser(ctx context.Context, by *renkei.Principal, pk int64) (string, error) {
	u, _, err := s.Store.UserByPK(ctx, pk)
	if err != nil {
		return "", err
	}
	if err := CanAdminister(by, u); err != nil {
		return "", err
	}
	pw := OneTimePassword()
	h, t, empty, zero, past := HashPassword(pw), true, "", 0, time.UnixMilli(0)
	e := renkei.EventFor(by, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.Detail = "reset password and second factor (authenticator, recovery codes, security keys) of " + u.Login
	err = s.Store.UpdateUser(ctx, pk, renkei.UserUpdate{PasswordHash: &h, MustChange: &t, TOTPSecret: &empty, RecoveryCodes: []string{},
		FailedLogins: &zero, LockedUntil: &past, EndSessions: true, RemoveSecurityKeys: true}, &e)
	return pw, err
}

// CanAdminister says whether by may manage user u: the system and region admins may manage anyone, an institution
// admin the users of their own institution. Nobody raises their own rights this way.
func CanAdminister(by *renkei.Principal, u renkei.User) error {
	switch {
	case by == nil:
		return renkei.Errorj("identity.Admin", renkei.Unauthorized, "ログインしてください。", "please log in")
	case by.Kind == renkei.SystemPrincipal, by.Role == renkei.RegionAdmin:
		return nil
	case by.Role == renkei.InstitutionAdmin && by.Institution == u.Institution.PK:
		return nil
	}
	return renkei.Errorj("identity.Admin", renkei.Forbidden, "%s の利用者を管理できるのは、その施設の管理者だけです。",
		"only an administrator of %s may manage its users", u.Institution.ID)
}
