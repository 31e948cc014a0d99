// Package clinical holds the clinical information that travels with a patient: the record (allergies, medications,
// conditions, documents, each with its source) and referrals (紹介, 逆紹介, 読影依頼) with their letters. It decides
// who may read and write them; the store keeps them. The principal in each call's context is the caller.
//
// Who sees a patient's record: their own institution, and whoever a share in force grants the patient to (a sent
// referral is such a share, made with the patient's consent), break-glass included. A fact is also always visible
// to the institution that wrote it. A referral is visible to its two institutions only (a draft to its sender only).
package clinical

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"renkei"
)

// Store keeps the record and the referrals (implemented by sqlstore.DB).
type Store interface {
	LocalPatient(ctx context.Context, institution int64, key renkei.PatientKey) (renkei.LocalPatient, error)
	LocalPatientByPK(ctx context.Context, pk int64) (renkei.LocalPatient, error)
	Linked(ctx context.Context, pk int64) ([]renkei.LocalPatient, error)
	MaySeePatient(ctx context.Context, institution, user, patient int64, now time.Time) (bool, error)
	InstitutionByPK(ctx context.Context, pk int64) (renkei.Institution, error)
	Audit(ctx context.Context, events ...*renkei.AuditEvent) error

	AddFacts(ctx context.Context, rec *renkei.Record, audit *renkei.AuditEvent) error
	WithdrawFact(ctx context.Context, id, institution int64, audit *renkei.AuditEvent) error
	Facts(ctx context.Context, patients []int64) (renkei.Record, error)
	Document(ctx context.Context, id int64) (renkei.Document, error)
	ReferralGrantsDocument(ctx context.Context, institution, doc int64) (bool, error)

	CreateReferral(ctx context.Context, r *renkei.Referral, audit *renkei.AuditEvent) error
	SaveDraft(ctx context.Context, r *renkei.Referral, audit *renkei.AuditEvent) error
	Referral(ctx context.Context, id int64) (renkei.Referral, error)
	Referrals(ctx context.Context, f renkei.ReferralFilter) ([]renkei.Referral, error)
	LetterVersions(ctx context.Context, id int64, reply bool) ([]renkei.LetterVersion, error)
	MoveReferral(ctx context.Context, m renkei.ReferralMove, audit *renkei.AuditEvent) error
	AddLetterVersion(ctx context.Context, id, institution int64, l renkei.Letter, by string, audit *renkei.AuditEvent) (int, error)
}

// Service applies the rules.
type Service struct {
	Store Store
	Now   func() time.Time
	// ShareDays is how long a sent referral lets the receiver see the attached studies and the record.
	ShareDays int
	// Changed is told, after each step, which institutions should refresh a referral (live updates, e-mail).
	Changed func(r renkei.Referral)
	// Left is told that an institution no longer has a referral (an emergency redirected elsewhere).
	Left func(institution, id int64)
	// ReportDocument turns a signed reading report into a stored document (a PDF blob) of the patient; nil keeps
	// the report in the referral only.
	ReportDocument func(ctx context.Context, r renkei.Referral, report renkei.Letter) (renkei.Document, error)
}

// New returns a service over store.
func New(store Store) *Service {
	return &Service{Store: store, Now: time.Now, ShareDays: 180}
}

func principal(ctx context.Context, op string) (*renkei.Principal, error) {
	p := renkei.PrincipalFrom(ctx)
	if p == nil {
		return nil, renkei.Errorj(op, renkei.Unauthorized, "ログインしてください。", "please log in")
	}
	if p.Kind != renkei.UserPrincipal && p.Kind != renkei.TokenPrincipal {
		return nil, renkei.Errorj(op, renkei.Forbidden, "診療記録を使えるのは、利用者と API トークンだけです。", "only people and API tokens use the clinical record")
	}
	if p.Role == renkei.PatientRole {
		return nil, renkei.Errorj(op, renkei.Forbidden, "患者さんは、患者さん用のページでご自身の記録をご覧ください。", "patients read their record in the patient pages")
	}
	return p, nil
}

func userOf(p *renkei.Principal) int64 {
	if p.Kind == renkei.UserPrincipal {
		return p.ID
	}
	return 0
}

// writers of the record: people who treat or coordinate care. Care homes and visiting nurses read.
func mayWriteRecord(p *renkei.Principal) bool {
	if p.Kind == renkei.TokenPrincipal {
		return p.Write
	}
	return slices.Contains([]renkei.Role{renkei.Physician, renkei.Radiologist, renkei.Nurse, renkei.Clerk}, p.Role)
}

// PatientView is the patient a record or referral is about, as the caller may see them.
type PatientView struct {
	renkei.LocalPatient
	InstitutionID   string
	InstitutionName string
}

// visiblePatients returns the local patients linked to pk (pk first) that the caller may see. pk itself must be
// visible, or the answer is renkei.NotFound, exactly as for a patient that does not exist.
func (s *Service) visiblePatients(ctx context.Context, p *renkei.Principal, pk int64, op string) ([]renkei.LocalPatient, error) {
	linked, err := s.Store.Linked(ctx, pk)
	if err != nil {
		return nil, err
	}
	if len(linked) == 0 {
		lp, err := s.Store.LocalPatientByPK(ctx, pk)
		if err != nil {
			return nil, err
		}
		linked = []renkei.LocalPatient{lp}
	}
	var out []renkei.LocalPatient
	for i, lp := range linked {
		ok, err := s.Store.MaySeePatient(ctx, p.Institution, userOf(p), lp.PK, s.Now())
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, lp)
		} else if i == 0 {
			return nil, renkei.Errorj(op, renkei.NotFound, "該当する患者はいません。", "there is no such patient")
		}
	}
	return out, nil
}

// Patient resolves a patient the caller may see: their own institution's (issuer, ID), or another institution's
// (by that institution's key) when a share grants it.
func (s *Service) Patient(ctx context.Context, institution int64, key renkei.PatientKey) (renkei.LocalPatient, error) {
	p, err := principal(ctx, "clinical.Patient")
	if err != nil {
		return renkei.LocalPatient{}, err
	}
	if institution == 0 {
		institution = p.Institution
	}
	lp, err := s.Store.LocalPatient(ctx, institution, key)
	if err != nil {
		return lp, renkei.Errorj("clinical.Patient", renkei.NotFound, "該当する患者はいません。", "there is no such patient")
	}
	if _, err := s.visiblePatients(ctx, p, lp.PK, "clinical.Patient"); err != nil {
		return renkei.LocalPatient{}, err
	}
	return lp, nil
}

// Record returns what the caller may see of a patient's record: the facts about every linked local patient the
// caller may see, plus those its own institution wrote. Reading it is audited before the answer (fail closed).
func (s *Service) Record(ctx context.Context, patient int64) (renkei.Record, error) {
	p, err := principal(ctx, "clinical.Record")
	if err != nil {
		return renkei.Record{}, err
	}
	pts, err := s.visiblePatients(ctx, p, patient, "clinical.Record")
	if err != nil {
		return renkei.Record{}, err
	}
	keys := make([]int64, len(pts))
	for i, lp := range pts {
		keys[i] = lp.PK
	}
	e := renkei.EventFor(p, renkei.ActionRead, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Detail = pts[0].Institution, pts[0].Key, "clinical record"
	if err := s.Store.Audit(ctx, &e); err != nil {
		return renkei.Record{}, err
	}
	return s.Store.Facts(ctx, keys)
}

// AddFacts records facts the caller's institution writes about a patient the caller may see. Each fact takes the
// caller's institution and name as its source unless it came with an author (an import).
func (s *Service) AddFacts(ctx context.Context, patient int64, rec *renkei.Record) error {
	p, err := principal(ctx, "clinical.AddFacts")
	if err != nil {
		return err
	}
	if !mayWriteRecord(p) {
		return renkei.Errorj("clinical.AddFacts", renkei.Forbidden, "あなたの役割では、記録を見ることはできますが、書き込むことはできません。",
			"your role may read the record but not write it")
	}
	// Care homes read the medication list, allergies and summaries of the residents shared with them; they do not
	// write the clinical record.
	if in, err := s.Store.InstitutionByPK(ctx, p.Institution); err == nil && in.Kind == renkei.CareHome {
		return renkei.Errorj("clinical.AddFacts", renkei.Forbidden, "介護施設は、入所者の記録を見ることはできますが、書き込むことはできません。",
			"a care home reads the record of its residents but does not write it")
	}
	pts, err := s.visiblePatients(ctx, p, patient, "clinical.AddFacts")
	if err != nil {
		return err
	}
	if err := Validate(rec); err != nil {
		return err
	}
	n := 0
	stamp := func(f *renkei.Fact) {
		f.Institution, f.PatientPK, f.Patient = p.Institution, patient, pts[0].Key
		if f.Author == "" {
			f.Author = p.Name
		}
		f.RecordedAt = time.Time{}
		n++
	}
	for i := range rec.Allergies {
		stamp(&rec.Allergies[i].Fact)
	}
	for i := range rec.Medications {
		stamp(&rec.Medications[i].Fact)
	}
	for i := range rec.Conditions {
		stamp(&rec.Conditions[i].Fact)
	}
	for i := range rec.Documents {
		stamp(&rec.Documents[i].Fact)
	}
	if n == 0 {
		return renkei.Errorj("clinical.AddFacts", renkei.Invalid, "記録する内容がありません。", "nothing to record")
	}
	e := renkei.EventFor(p, renkei.ActionRecord, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient = pts[0].Institution, pts[0].Key
	e.Detail = summary(rec)
	return s.Store.AddFacts(ctx, rec, &e)
}

func summary(rec *renkei.Record) string {
	var parts []string
	for _, c := range []struct {
		n    int
		what string
	}{{len(rec.Allergies), "allergies"}, {len(rec.Medications), "medications"}, {len(rec.Conditions), "conditions"}, {len(rec.Documents), "documents"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	return strings.Join(parts, ", ")
}

// Validate checks what a person typed or an import carried: the fields a reader needs are there and the
// enumerations hold known values.
func Validate(rec *renkei.Record) error {
	bad := func(ja, en string, args ...any) error {
		return renkei.Errorj("clinical.Validate", renkei.Invalid, ja, en, args...)
	}
	for i, a := range rec.Allergies {
		if strings.TrimSpace(a.Substance) == "" && len(a.Codes) == 0 {
			return bad("アレルギー %d 件目:何に反応するのかを入力してください。", "allergy %d: say what the patient reacts to", i+1)
		}
		if a.Category == "" {
			rec.Allergies[i].Category = renkei.AllergyOther
		} else if !slices.Contains([]renkei.AllergyCategory{renkei.AllergyDrug, renkei.AllergyFood, renkei.AllergyOther}, a.Category) {
			return bad("アレルギー %d 件目:種類は、薬剤・食物・その他のいずれかにしてください。", "allergy %d: the kind must be drug, food or other", i+1)
		}
		if !slices.Contains([]string{"", "mild", "moderate", "severe"}, a.Severity) {
			return bad("アレルギー %d 件目:重症度は、軽度・中等度・重度のいずれかにしてください。", "allergy %d: the severity must be mild, moderate or severe", i+1)
		}
		if a.Status == "" {
			rec.Allergies[i].Status = "active"
		}
	}
	for i, m := range rec.Medications {
		if strings.TrimSpace(m.Drug) == "" && len(m.Codes) == 0 {
			return bad("処方 %d 件目:薬剤名を入力してください。", "medication %d: say which drug", i+1)
		}
		if m.Status == "" {
			rec.Medications[i].Status = "active"
		}
	}
	for i, c := range rec.Conditions {
		if strings.TrimSpace(c.Name) == "" && len(c.Codes) == 0 {
			return bad("病名 %d 件目:診断名を入力してください。", "condition %d: say which diagnosis", i+1)
		}
		if c.Status == "" {
			rec.Conditions[i].Status = "active"
		}
	}
	for i, d := range rec.Documents {
		if d.BlobKey == "" {
			return bad("書類 %d 件目に内容がありません。", "document %d has no content", i+1)
		}
		if d.Kind == "" {
			rec.Documents[i].Kind = renkei.DocOther
		}
	}
	return nil
}

// WithdrawFact marks a fact of the caller's institution as entered in error; it stays in the audit trail.
func (s *Service) WithdrawFact(ctx context.Context, id int64) error {
	p, err := principal(ctx, "clinical.WithdrawFact")
	if err != nil {
		return err
	}
	if !mayWriteRecord(p) {
		return renkei.Errorj("clinical.WithdrawFact", renkei.Forbidden, "あなたの役割では、記録を見ることはできますが、変更することはできません。",
			"your role may read the record but not change it")
	}
	e := renkei.EventFor(p, renkei.ActionRecord, renkei.OutcomeSuccess)
	e.Detail = fmt.Sprintf("withdrawn as entered in error: fact %d", id)
	return s.Store.WithdrawFact(ctx, id, p.Institution, &e)
}

// Document returns a document the caller may read (its institution wrote it, or it may see the patient).
func (s *Service) Document(ctx context.Context, id int64) (renkei.Document, error) {
	p, err := principal(ctx, "clinical.Document")
	if err != nil {
		return renkei.Document{}, err
	}
	d, err := s.Store.Document(ctx, id)
	if err != nil {
		return d, err
	}
	if d.Institution != p.Institution {
		if _, err := s.visiblePatients(ctx, p, d.PatientPK, "clinical.Document"); err != nil {
			if ok, err2 := s.Store.ReferralGrantsDocument(ctx, p.Institution, id); err2 != nil || !ok {
				return renkei.Document{}, renkei.Errorj("clinical.Document", renkei.NotFound, "該当する書類はありません。", "there is no such document")
			}
		}
	}
	lp, err := s.Store.LocalPatientByPK(ctx, d.PatientPK)
	if err != nil {
		return d, err
	}
	e := renkei.EventFor(p, renkei.ActionRead, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Detail = lp.Institution, lp.Key, fmt.Sprintf("document %d: %s", id, d.Title)
	if err := s.Store.Audit(ctx, &e); err != nil {
		return renkei.Document{}, err
	}
	return d, nil
}
