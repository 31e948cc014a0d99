package identity

import (
	"context"
	"strings"
	"time"

	"renkei"
)

// TokenPrefix starts every API token, so that a token pasted into a log or a chat is recognisable and scannable.
const TokenPrefix = "rk_"

// CreateToken makes an API token for an institution and returns its secret, which is shown once and stored only as
// a hash.
func (s *Service) CreateToken(ctx context.Context, by *renkei.Principal, t *renkei.APIToken) (string, error) {
	if strings.TrimSpace(t.Name) == "" {
		return "", renkei.Errorj("identity.CreateToken", renkei.Invalid, "トークンには、何に使うのかがわかる名前を付けてください。",
			"a token needs a name that says what uses it")
	}
	if by != nil && by.Kind != renkei.SystemPrincipal && by.Role != renkei.RegionAdmin &&
		!(by.Role == renkei.InstitutionAdmin && by.Institution == t.Institution) {
		return "", renkei.Errorj("identity.CreateToken", renkei.Forbidden, "トークンを作成できるのは、施設の管理者だけです。",
			"only an administrator of the institution may create its tokens")
	}
	secret := TokenPrefix + randomToken(32)
	t.CreatedBy = by.Label()
	e := renkei.EventFor(by, renkei.ActionAdmin, renkei.OutcomeSuccess)
	mode := "read"
	if t.Write {
		mode = "read-write"
	}
	e.Detail = "created " + mode + " API token " + t.Name
	if err := s.Store.CreateToken(ctx, t, hashSecret(secret), &e); err != nil {
		return "", err
	}
	return secret, nil
}

var errToken = renkei.Errorj("identity.Token", renkei.Unauthorized, "API トークンが無効です(不明、取り消し済み、または期限切れです)。",
	"the API token is not valid (unknown, revoked or expired)")

// AuthenticateToken turns a bearer token into a principal. A revoked token stops working at its next request.
func (s *Service) AuthenticateToken(ctx context.Context, secret, source string) (*renkei.Principal, error) {
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) > 100 {
		return nil, errToken
	}
	t, err := s.Store.TokenByHash(ctx, hashSecret(secret))
	if renkei.ErrorKind(err) == renkei.NotFound {
		return nil, errToken
	}
	if err != nil {
		return nil, err
	}
	now := s.Now()
	if t.RevokedAt != nil || (t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)) {
		return nil, errToken
	}
	if t.LastUsed == nil || now.Sub(*t.LastUsed) > time.Minute {
		if err := s.Store.TouchToken(ctx, t.PK, now); err != nil {
			return nil, err
		}
	}
	return &renkei.Principal{Kind: renkei.TokenPrincipal, ID: t.PK, Name: t.Name, Institution: t.Institution, Write: t.Write,
		Session: "token", Source: source, Issuer: t.Issuer}, nil
}
