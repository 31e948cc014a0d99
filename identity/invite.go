package identity

import (
	"context"
	"strings"
	"time"

	"renkei"
)

// InvitationPeriod is how long a patient's invitation code stays valid.
const InvitationPeriod = 14 * 24 * time.Hour

// Invite makes a one-time code with which a patient creates their own account, for a local patient of the
// inviting user's institution. The code is printed on paper and handed over; only its hash is stored.
func (s *Service) Invite(ctx context.Context, by *renkei.Principal, patient renkei.LocalPatient) (string, time.Time, error) {
	if by == nil || by.Kind != renkei.UserPrincipal || !by.Role.Staff() || by.Role == renkei.RegionAdmin {
		return "", time.Time{}, renkei.Errorj("identity.Invite", renkei.Forbidden, "患者を招待できるのは、その患者の施設の職員だけです。",
			"only staff of the patient's institution may invite a patient")
	}
	if patient.Institution != by.Institution {
		return "", time.Time{}, renkei.Errorj("identity.Invite", renkei.NotFound, "該当する患者は貴施設に登録されていません。", "your institution holds no such patient")
	}
	code := OneTimePassword() + "-" + OneTimePassword()[:4]
	expires := s.Now().Add(InvitationPeriod)
	e := renkei.EventFor(by, renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Detail = patient.Institution, patient.Key, "invited the patient to create an account"
	if err := s.Store.CreateInvitation(ctx, patient.Institution, patient.PK, hashSecret(code), by.Name, expires, &e); err != nil {
		return "", time.Time{}, err
	}
	return code, expires, nil
}

// AcceptInvitation creates a patient's account from an invitation code, with a password of their choosing; the
// first login then asks them to enrol an authenticator app.
func (s *Service) AcceptInvitation(ctx context.Context, code, login, name, password, source string) (*renkei.User, error) {
	u := &renkei.User{Login: strings.TrimSpace(login), Name: strings.TrimSpace(name), Role: renkei.PatientRole}
	if err := checkUser(u); err != nil {
		return nil, err
	}
	if strings.HasPrefix(u.Login, DemoPrefix) {
		return nil, renkei.Errorj("identity.AcceptInvitation", renkei.Invalid, "%q で始まるログイン名は予約されているため使えません。",
			"logins starting with %q are reserved", DemoPrefix)
	}
	if err := CheckPolicy(password, u.Login, u.Name); err != nil {
		return nil, err
	}
	e := renkei.AuditEvent{Actor: u.Login, ActorKind: renkei.UserPrincipal, Role: renkei.PatientRole, Action: renkei.ActionAdmin,
		Outcome: renkei.OutcomeSuccess, Source: source, Detail: "patient created their account from an invitation"}
	code = strings.ToLower(strings.TrimSpace(code))
	if err := s.Store.AcceptInvitation(ctx, hashSecret(code), u, HashPassword(password), &e); err != nil {
		return nil, err
	}
	return u, nil
}
