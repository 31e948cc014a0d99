package identity

import (
	"context"
	"crypto/subtle"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"renkei"
)

// totpOpts are RFC 6238's defaults, which every authenticator app understands.
var totpOpts = totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// TOTP is the time-based one-time password factor (RFC 6238). A code is accepted within one 30-second step of the
// server's clock, and each step at most once per user (a code seen over a shoulder cannot be replayed).
type TOTP struct{ s *Service }

// Verify checks a six-digit code.
func (f TOTP) Verify(ctx context.Context, u renkei.User, c renkei.Credentials, code string) (bool, error) {
	if c.TOTPSecret == "" {
		return false, renkei.Errorj("identity.TOTP", renkei.Conflict, "このアカウントには認証アプリが登録されていません。",
			"no authenticator app is enrolled for this account")
	}
	step, ok := totpStep(c.TOTPSecret, strings.TrimSpace(code), f.s.Now())
	if !ok {
		return false, nil
	}
	return f.s.Store.UseTOTPStep(ctx, u.PK, step)
}

// totpStep finds the time step (−1, 0, +1 around now) whose code is code.
func totpStep(secret, code string, now time.Time) (int64, bool) {
	if len(code) != 6 {
		return 0, false
	}
	for _, d := range []int64{0, -1, 1} {
		t := now.Add(time.Duration(d) * 30 * time.Second)
		want, err := totp.GenerateCodeCustom(secret, t, totpOpts)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return t.Unix() / 30, true
		}
	}
	return 0, false
}

// RecoveryCode is the way back in when the authenticator is lost: ten single-use codes shown once at enrolment.
type RecoveryCode struct{ s *Service }

// Verify checks and uses up a recovery code.
func (f RecoveryCode) Verify(ctx context.Context, u renkei.User, c renkei.Credentials, code string) (bool, error) {
	code = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(code), " ", ""))
	return f.s.Store.UseRecoveryCode(ctx, u.PK, hashSecret(code))
}

// Enrolment is a TOTP secret offered to a user, not yet confirmed.
type Enrolment struct {
	Secret string // base32, for typing into an app
	URL    string // otpauth:// URL, for a QR code
}

// StartTOTP makes a new TOTP secret for the session's user. Nothing is stored until ConfirmTOTP proves the user's
// app produces the same codes.
func (s *Service) StartTOTP(a *Authenticated) (*Enrolment, error) {
	key, err := totp.Generate(totp.GenerateOpts{Issuer: s.Issuer, AccountName: a.User.Login, Period: 30, Digits: otp.DigitsSix,
		Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return nil, &renkei.Error{Op: "identity.StartTOTP", Kind: renkei.Internal, Err: err}
	}
	return &Enrolment{Secret: key.Secret(), URL: key.URL()}, nil
}

// ConfirmTOTP stores secret if code matches it, creates ten recovery codes (returned once, stored hashed) and, for
// a session waiting for its second factor, completes the login with a new session id.
func (s *Service) ConfirmTOTP(ctx context.Context, sessionID string, a *Authenticated, secret, code string) (*Login, []string, error) {
	if a.User.HasTOTP && a.Session.SecondFactorAt == nil {
		return nil, nil, renkei.Errorj("identity.ConfirmTOTP", renkei.Forbidden, "先に、今お使いの認証アプリでログインしてください。",
			"log in with your current authenticator first")
	}
	step, ok := totpStep(secret, strings.TrimSpace(code), s.Now())
	if !ok {
		return nil, nil, renkei.Errorj("identity.ConfirmTOTP", renkei.Invalid, "コードが一致しません。アプリの時刻が合っているか確かめて、次に表示されるコードでもう一度お試しください。",
			"the code does not match; check the app's clock and try the next code")
	}
	codes := make([]string, 10)
	hashes := make([]string, 10)
	for i := range codes {
		c := strings.ToLower(OneTimePassword()[:9]) // "abcd-efgh"
		codes[i], hashes[i] = c, hashSecret(c)
	}
	e := renkei.EventFor(a.Principal, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.Detail = "enrolled an authenticator app and new recovery codes"
	if err := s.Store.UpdateUser(ctx, a.User.PK, renkei.UserUpdate{TOTPSecret: &secret, RecoveryCodes: hashes}, &e); err != nil {
		return nil, nil, err
	}
	if _, err := s.Store.UseTOTPStep(ctx, a.User.PK, step); err != nil {
		return nil, nil, err
	}
	if a.Session.SecondFactorAt != nil {
		return nil, codes, nil
	}
	l, err := s.complete(ctx, sessionID, a.Session, a.User, "enrolled and used an authenticator app")
	return l, codes, err
}
