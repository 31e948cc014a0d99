package identity

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"strings"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"renkei"
)

// WebAuthn security keys and passkeys, for wards where personal phones (and so authenticator apps) are not allowed.
// A ceremony (registration or login) is a challenge the server issues and the browser's authenticator signs: its
// state is kept with the session that started it, so that any node can finish it.

// EnableWebAuthn configures the relying party: rpID is the host name users reach renkei by (not an IP address),
// origins the URLs they open (scheme, host and port).
func (s *Service) EnableWebAuthn(rpID, name string, origins []string) error {
	wa, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: name, RPOrigins: origins})
	if err != nil {
		return &renkei.Error{Op: "identity.EnableWebAuthn", Kind: renkei.Invalid, Message: "the WebAuthn relying party is not valid",
			Japanese: "WebAuthn の設定が正しくありません。", Err: err}
	}
	s.webauthn = wa
	return nil
}

// waUser is a user as go-webauthn sees them.
type waUser struct {
	u     renkei.User
	creds []webauthn.Credential
}

func (w waUser) WebAuthnID() []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(w.u.PK))
}
func (w waUser) WebAuthnName() string                       { return w.u.Login }
func (w waUser) WebAuthnDisplayName() string                { return w.u.Name }
func (w waUser) WebAuthnCredentials() []webauthn.Credential { return w.creds }

func (s *Service) waUser(ctx context.Context, u renkei.User) (waUser, error) {
	stored, err := s.Store.WebAuthnCredentials(ctx, u.PK)
	if err != nil {
		return waUser{}, err
	}
	w := waUser{u: u}
	for _, c := range stored {
		var cred webauthn.Credential
		if err := json.Unmarshal(c.Record, &cred); err == nil {
			w.creds = append(w.creds, cred)
		}
	}
	return w, nil
}

func (s *Service) needWebAuthn() error {
	if s.webauthn == nil {
		return renkei.Errorj("identity.WebAuthn", renkei.Unavailable, "このサーバーではセキュリティキーが設定されていません。",
			"security keys are not configured on this server")
	}
	return nil
}

const (
	ceremonyRegister = "register:"
	ceremonyLogin    = "login:"
)

// BeginWebAuthnRegistration starts registering a security key or passkey for the session's user: the options to
// pass to navigator.credentials.create(). A user who has a second factor already must have used it in this session.
func (s *Service) BeginWebAuthnRegistration(ctx context.Context, a *Authenticated) (*protocol.CredentialCreation, error) {
	if err := s.needWebAuthn(); err != nil {
		return nil, err
	}
	w, err := s.waUser(ctx, a.User)
	if err != nil {
		return nil, err
	}
	if a.Session.SecondFactorAt == nil && (a.User.HasTOTP || len(w.creds) > 0) {
		return nil, renkei.Errorj("identity.WebAuthn", renkei.Forbidden, "先に、今お使いの二段階認証でログインしてください。", "log in with your current second factor first")
	}
	var exclude []protocol.CredentialDescriptor
	for _, c := range w.creds {
		exclude = append(exclude, c.Descriptor())
	}
	creation, sd, err := s.webauthn.BeginRegistration(w, webauthn.WithExclusions(exclude),
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{ResidentKey: protocol.ResidentKeyRequirementPreferred,
			UserVerification: protocol.VerificationPreferred}))
	if err != nil {
		return nil, &renkei.Error{Op: "identity.WebAuthn", Kind: renkei.Internal, Err: err}
	}
	if err := s.saveCeremony(ctx, a.Session.IDHash, ceremonyRegister, sd); err != nil {
		return nil, err
	}
	return creation, nil
}

func (s *Service) saveCeremony(ctx context.Context, idHash, kind string, sd *webauthn.SessionData) error {
	b, err := json.Marshal(sd)
	if err != nil {
		return &renkei.Error{Op: "identity.WebAuthn", Kind: renkei.Internal, Err: err}
	}
	return s.Store.SetCeremony(ctx, idHash, kind+string(b))
}

func (s *Service) takeCeremony(ctx context.Context, idHash, kind string) (webauthn.SessionData, error) {
	var sd webauthn.SessionData
	c, err := s.Store.Ceremony(ctx, idHash)
	if err != nil {
		return sd, err
	}
	if !strings.HasPrefix(c, kind) || json.Unmarshal([]byte(strings.TrimPrefix(c, kind)), &sd) != nil {
		return sd, renkei.Errorj("identity.WebAuthn", renkei.Conflict, "セキュリティキーの手続きが始まっていません。最初からやり直してください。",
			"no security key step was started in this session; start again")
	}
	// A challenge is answered once.
	if err := s.Store.SetCeremony(ctx, idHash, ""); err != nil {
		return sd, err
	}
	return sd, nil
}

// FinishWebAuthnRegistration checks the browser's answer and stores the new credential under name. For a user's
// first second factor it also makes ten recovery codes (returned once) and, for a session waiting for its second
// factor, completes the login with a new session id.
func (s *Service) FinishWebAuthnRegistration(ctx context.Context, sessionID string, a *Authenticated, name string, body []byte) (*Login, []string, error) {
	if err := s.needWebAuthn(); err != nil {
		return nil, nil, err
	}
	sd, err := s.takeCeremony(ctx, a.Session.IDHash, ceremonyRegister)
	if err != nil {
		return nil, nil, err
	}
	w, err := s.waUser(ctx, a.User)
	if err != nil {
		return nil, nil, err
	}
	first := !a.User.HasTOTP && len(w.creds) == 0
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		return nil, nil, &renkei.Error{Op: "identity.WebAuthn", Kind: renkei.Invalid, Message: "the security key's answer could not be read",
			Japanese: "セキュリティキーの応答を読み取れませんでした。", Err: err}
	}
	cred, err := s.webauthn.CreateCredential(w, sd, parsed)
	if err != nil {
		return nil, nil, &renkei.Error{Op: "identity.WebAuthn", Kind: renkei.Unauthorized, Message: "the security key's answer was not accepted",
			Japanese: "セキュリティキーの応答が受け付けられませんでした。", Err: err}
	}
	rec, _ := json.Marshal(cred)
	if strings.TrimSpace(name) == "" {
		name = "security key"
	}
	e := renkei.EventFor(a.Principal, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.Detail = "registered a security key: " + name
	if err := s.Store.AddWebAuthnCredential(ctx, &renkei.WebAuthnCredential{ID: cred.ID, User: a.User.PK, Name: name, Record: rec}, &e); err != nil {
		return nil, nil, err
	}
	var codes []string
	if first {
		hashes := make([]string, 10)
		codes = make([]string, 10)
		for i := range codes {
			c := strings.ToLower(OneTimePassword()[:9])
			codes[i], hashes[i] = c, hashSecret(c)
		}
		if err := s.Store.UpdateUser(ctx, a.User.PK, renkei.UserUpdate{RecoveryCodes: hashes}, nil); err != nil {
			return nil, nil, err
		}
	}
	if a.Session.SecondFactorAt != nil {
		return nil, codes, nil
	}
	l, err := s.complete(ctx, sessionID, a.Session, a.User, "registered and used a security key")
	return l, codes, err
}

// BeginWebAuthnLogin starts the second login step with a security key: the options for navigator.credentials.get().
func (s *Service) BeginWebAuthnLogin(ctx context.Context, sessionID string) (*protocol.CredentialAssertion, error) {
	if err := s.needWebAuthn(); err != nil {
		return nil, err
	}
	sess, u, _, err := s.session(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	w, err := s.waUser(ctx, u)
	if err != nil {
		return nil, err
	}
	if len(w.creds) == 0 {
		return nil, renkei.Errorj("identity.WebAuthn", renkei.Conflict, "このアカウントにはセキュリティキーが登録されていません。",
			"no security key is registered for this account")
	}
	assertion, sd, err := s.webauthn.BeginLogin(w, webauthn.WithUserVerification(protocol.VerificationPreferred))
	if err != nil {
		return nil, &renkei.Error{Op: "identity.WebAuthn", Kind: renkei.Internal, Err: err}
	}
	if err := s.saveCeremony(ctx, sess.IDHash, ceremonyLogin, sd); err != nil {
		return nil, err
	}
	return assertion, nil
}

// FinishWebAuthnLogin checks the security key's signature and completes the login with a new session id. A wrong
// answer counts as a failed login (lockout).
func (s *Service) FinishWebAuthnLogin(ctx context.Context, sessionID string, body []byte) (*Login, error) {
	if err := s.needWebAuthn(); err != nil {
		return nil, err
	}
	sess, u, c, err := s.session(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	if sess.SecondFactorAt != nil {
		return nil, renkei.Errorj("identity.WebAuthn", renkei.Conflict, "このセッションはすでにログインを終えています。", "this session has already completed its login")
	}
	if err := s.usable(u, c, s.Now()); err != nil {
		return nil, err
	}
	sd, err := s.takeCeremony(ctx, sess.IDHash, ceremonyLogin)
	if err != nil {
		return nil, err
	}
	w, err := s.waUser(ctx, u)
	if err != nil {
		return nil, err
	}
	wrong := renkei.Errorj("identity.WebAuthn", renkei.Unauthorized, "セキュリティキーの応答が受け付けられませんでした。", "the security key's answer was not accepted")
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return nil, s.failed(ctx, u, c, sess.Source, "unreadable security key answer", wrong)
	}
	cred, err := s.webauthn.ValidateLogin(w, sd, parsed)
	if err != nil {
		return nil, s.failed(ctx, u, c, sess.Source, "security key answer refused: "+err.Error(), wrong)
	}
	if cred.Authenticator.CloneWarning {
		// The signature counter went backwards: two devices hold the same key.
		return nil, s.failed(ctx, u, c, sess.Source, "security key signature counter went backwards (a cloned key?)", wrong)
	}
	rec, _ := json.Marshal(cred)
	if err := s.Store.UpdateWebAuthnCredential(ctx, cred.ID, rec); err != nil {
		return nil, err
	}
	return s.complete(ctx, sessionID, sess, u, "second factor webauthn accepted")
}

// Factors lists the second factors a user can complete a login with.
func (s *Service) Factors(ctx context.Context, u renkei.User) ([]string, error) {
	var f []string
	if u.HasTOTP {
		f = append(f, "totp")
	}
	creds, err := s.Store.WebAuthnCredentials(ctx, u.PK)
	if err != nil {
		return nil, err
	}
	if len(creds) > 0 {
		f = append(f, "webauthn")
	}
	return append(f, "recovery"), nil
}

// RemoveSecurityKey forgets one of the logged-in user's security keys (a lost one, or one being replaced). It is
// refused when it is the user's last second factor: enrol another first, or ask an administrator to reset.
func (s *Service) RemoveSecurityKey(ctx context.Context, a *Authenticated, id []byte) error {
	if a.Session.SecondFactorAt == nil {
		return renkei.Errorj("identity.WebAuthn", renkei.Forbidden, "先に、二段階認証でログインしてください。", "log in with your second factor first")
	}
	creds, err := s.Store.WebAuthnCredentials(ctx, a.User.PK)
	if err != nil {
		return err
	}
	name := ""
	for _, c := range creds {
		if string(c.ID) == string(id) {
			name = c.Name
		}
	}
	if name == "" {
		return renkei.Errorj("identity.WebAuthn", renkei.NotFound, "該当するセキュリティキーはありません。", "there is no such security key")
	}
	if len(creds) == 1 && !a.User.HasTOTP {
		return renkei.Errorj("identity.WebAuthn", renkei.Conflict, "これは唯一の二段階認証の手段です。先に別のセキュリティキーか認証アプリを登録してください。",
			"this is your only second factor: register another security key or an authenticator app first")
	}
	e := renkei.EventFor(a.Principal, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.Detail = "removed a security key: " + name
	return s.Store.DeleteWebAuthnCredential(ctx, a.User.PK, id, &e)
}
