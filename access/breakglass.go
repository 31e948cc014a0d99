package access

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"renkei"
	"renkei/dicom/charset"
)

// BreakGlassStore is what break-glass needs of the index (implemented by sqlstore.DB).
type BreakGlassStore interface {
	FindPatients(ctx context.Context, birthDate, nameKey, patientID string, limit int) ([]renkei.LocalPatient, error)
	Linked(ctx context.Context, patient int64) ([]renkei.LocalPatient, error)
	CreateShare(ctx context.Context, s *renkei.Share, audit *renkei.AuditEvent) error
}

// BreakGlassRequest names the patient an emergency physician must see, and why.
type BreakGlassRequest struct {
	BirthDate string // YYYYMMDD, required
	Name      string // any script or width: 山田太郎, ヤマダ タロウ, yamada^taro
	PatientID string // a local patient ID, when the name is unknown
	Reason    string // required: it is shown to the owning institution's reviewer
}

// BreakGlass (緊急閲覧) opens a patient's data to one physician without a share and without consent: every local
// patient region-wide with the birth date and the name (or patient ID), and every one linked to them, is granted to
// the physician for period. Each grant is an audited share with purpose break-glass that lands in its owning
// institution's review queue. Only physicians may; a reason is mandatory.
func BreakGlass(ctx context.Context, store BreakGlassStore, p *renkei.Principal, req BreakGlassRequest, period time.Duration, now time.Time) ([]renkei.Share, error) {
	const op = "access.BreakGlass"
	if p == nil || p.Kind != renkei.UserPrincipal || p.Role != renkei.Physician {
		return nil, renkei.Errorj(op, renkei.Forbidden, "緊急時に患者の情報を開けるのは医師だけです。", "only a physician may open a patient's data in an emergency")
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if utf8.RuneCountInString(req.Reason) < 4 {
		return nil, renkei.Errorj(op, renkei.Invalid, "緊急閲覧の理由を入力してください(例:救急搬送、意識障害)。",
			"state the reason for emergency access (for example 救急搬送、意識障害)")
	}
	if len(req.BirthDate) != 8 {
		return nil, renkei.Errorj(op, renkei.Invalid, "患者の生年月日を YYYYMMDD の形で入力してください。", "give the patient's birth date as YYYYMMDD")
	}
	nameKey := strings.ReplaceAll(charset.Fold(req.Name), "^", "")
	found, err := store.FindPatients(ctx, req.BirthDate, nameKey, strings.TrimSpace(req.PatientID), 20)
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, renkei.Errorj(op, renkei.NotFound, "この生年月日と氏名の患者は、地域の中で見つかりません。",
			"no patient with this birth date and name is known in the region")
	}
	seen := map[int64]bool{}
	var grants []renkei.Share
	for _, f := range found {
		linked, err := store.Linked(ctx, f.PK)
		if err != nil {
			return nil, err
		}
		for _, lp := range linked {
			if seen[lp.PK] || lp.Institution == p.Institution {
				continue
			}
			seen[lp.PK] = true
			sh := renkei.Share{FromInstitution: lp.Institution, Patient: lp.Key, ToUser: p.ID, Purpose: renkei.PurposeBreakGlass, Reason: req.Reason,
				CreatedBy: p.ID, CreatedByName: p.Name, ExpiresAt: now.Add(period), WithoutConsent: true}
			e := renkei.EventFor(p, renkei.ActionBreakGlass, renkei.OutcomeSuccess)
			e.Purpose, e.DataInstitution, e.Patient = string(renkei.PurposeBreakGlass), lp.Institution, lp.Key
			e.Detail = "emergency access without share or consent until " + sh.ExpiresAt.Format(time.RFC3339) + ": " + req.Reason
			if err := store.CreateShare(ctx, &sh, &e); err != nil {
				return nil, err
			}
			grants = append(grants, sh)
		}
	}
	return grants, nil
}
