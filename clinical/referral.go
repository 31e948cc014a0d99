package clinical

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"renkei"
)

// Referrals: a draft is written and edited by its sender; sending freezes the letter (version 1) and shares the
// attached studies and the patient's record with the receiver in the same transaction (the share checks consent);
// the receiver opens (received), accepts with an appointment or declines with a reason, and completes with a reply
// letter (返書) or a signed report; the receiver may then refer back (逆紹介). Every step is a compare-and-set on the
// status, audited, and announced to both sides.

// writes letters: doctors. Sends and follows them: doctors and the 地域連携室.
func mayWriteLetter(p *renkei.Principal) bool {
	return p.Kind == renkei.UserPrincipal && (p.Role == renkei.Physician || p.Role == renkei.Radiologist)
}

func mayHandle(p *renkei.Principal) bool {
	return p.Kind == renkei.UserPrincipal && slices.Contains([]renkei.Role{renkei.Physician, renkei.Radiologist, renkei.Clerk, renkei.Nurse}, p.Role)
}

// NewReferral is what a sender writes.
type NewReferral struct {
	Kind          renkei.ReferralKind
	Patient       renkei.PatientKey // the sender's local patient
	ToInstitution int64
	ToDepartment  string
	ToDoctor      string
	Priority      string
	Studies       []string
	Documents     []int64
	Letter        renkei.Letter
	DueAt         *time.Time
	// NewPatient registers Patient with the draft: a patient renkei does not hold yet, typed in by the sender.
	NewPatient *renkei.NewPatient
}

func (s *Service) event(ctx context.Context, p *renkei.Principal, r renkei.Referral, step string) *renkei.AuditEvent {
	e := renkei.EventFor(p, renkei.ActionReferral, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient = s.dataInstitution(ctx, r), r.Patient
	if r.ID == 0 {
		e.Detail = fmt.Sprintf("new referral to %s: %s", r.ToName, step)
	} else {
		e.Detail = fmt.Sprintf("referral %d to %s: %s", r.ID, r.ToName, step)
	}
	return &e
}

// dataInstitution is the institution whose patient a referral is about: the one that holds its local patient. That
// is the sender, except for a reverse referral (逆紹介), written by the hospital about the clinic's patient; the
// audit trail files its events there, where the clinic's audit view and the patient's access log look for them.
func (s *Service) dataInstitution(ctx context.Context, r renkei.Referral) int64 {
	if r.PatientPK != 0 {
		if owner := ownerOf(ctx, s, r); owner != 0 {
			return owner
		}
	}
	return r.FromInstitution
}

func checkNew(n *NewReferral) error {
	bad := func(ja, en string) error {
		return &renkei.Error{Op: "clinical.Referral", Kind: renkei.Invalid, Message: en, Japanese: ja}
	}
	if n.Kind == "" {
		n.Kind = renkei.KindReferral
	}
	if !slices.Contains([]renkei.ReferralKind{renkei.KindReferral, renkei.KindReading, renkei.KindReverse, renkei.KindEmergency}, n.Kind) {
		return bad("種類は、紹介・逆紹介・読影依頼・救急搬送のいずれかにしてください。", "the kind must be referral, reverse, reading or emergency")
	}
	if n.Priority == "" {
		n.Priority = "routine"
	}
	if !slices.Contains([]string{"routine", "urgent", "stat"}, n.Priority) {
		return bad("緊急度は、通常・至急・緊急のいずれかにしてください。", "the priority must be routine, urgent or stat")
	}
	if n.ToInstitution == 0 {
		return bad("紹介先の施設を選んでください。", "choose the institution the letter goes to")
	}
	if np := n.NewPatient; np != nil {
		if n.Kind == renkei.KindReverse {
			return bad("逆紹介は、紹介元の患者さんについて書きます。", "a reverse referral is about the referring institution's patient")
		}
		id := n.Patient.ID
		if strings.TrimSpace(id) == "" || len(id) > 64 || strings.ContainsFunc(id, func(r rune) bool { return r < ' ' || r == '\\' || r == 0x7f }) {
			// PS3.5 6.2: PatientID is an LO, at most 64 characters, without control characters or backslash.
			return bad("患者IDを入力してください(64文字まで。記号の \\ は使えません)。", "type the patient ID (at most 64 characters, no backslash)")
		}
		if strings.Trim(np.Name, "^= ") == "" {
			return bad("患者さんの氏名を入力してください。", "type the patient's name")
		}
		// PS3.5 6.2: a PN has at most three component groups of 64 characters each, without control characters or
		// backslash (a backslash would make it two values).
		groups := strings.Split(np.Name, "=")
		if len(groups) > 3 || strings.ContainsFunc(np.Name, func(r rune) bool { return unicode.IsControl(r) || r == '\\' }) ||
			slices.ContainsFunc(groups, func(g string) bool { return utf8.RuneCountInString(g) > 64 }) {
			return bad("氏名・ふりがなは、それぞれ64文字までで入力してください(記号の \\ と = は使えません)。",
				"type the name and its kana in at most 64 characters each, without backslash or =")
		}
		if _, err := time.Parse("20060102", np.BirthDate); err != nil {
			return bad("生年月日を入力してください(未来の日付は入力できません)。", "type the birth date (not in the future)")
		}
		if !slices.Contains([]string{"", "M", "F", "O"}, np.Sex) {
			return bad("性別は、男性・女性・その他・不明から選んでください。", "the sex must be M, F, O or empty")
		}
	}
	for _, f := range []string{n.Letter.Purpose, n.Letter.Diagnosis, n.Letter.ChiefComplaint, n.Letter.History, n.Letter.PresentIllness,
		n.Letter.Course, n.Letter.TestResults, n.Letter.Medications, n.Letter.Allergies, n.Letter.Remarks, n.Letter.FollowUp} {
		if len(f) > 20000 {
			return bad("紹介状の項目が長すぎます(1項目20,000文字まで)。", "a section of the letter is longer than 20,000 characters")
		}
	}
	return nil
}

// jst is the zone of the dates people type: renkei serves Japan (a fixed zone is exact, Japan has no daylight saving).
var jst = time.FixedZone("JST", 9*60*60)

// Create saves a draft from the caller's institution.
func (s *Service) Create(ctx context.Context, n NewReferral) (renkei.Referral, error) {
	p, err := principal(ctx, "clinical.Create")
	if err != nil {
		return renkei.Referral{}, err
	}
	if !mayHandle(p) {
		return renkei.Referral{}, renkei.Errorj("clinical.Create", renkei.Forbidden, "あなたの役割では紹介状を書けません。", "your role may not write referrals")
	}
	if err := checkNew(&n); err != nil {
		return renkei.Referral{}, err
	}
	if n.ToInstitution == p.Institution {
		return renkei.Referral{}, renkei.Errorj("clinical.Create", renkei.Invalid, "紹介先には他の施設を選んでください。", "a referral goes to another institution")
	}
	to, err := s.Store.InstitutionByPK(ctx, n.ToInstitution)
	if err != nil {
		return renkei.Referral{}, renkei.Errorj("clinical.Create", renkei.Invalid, "該当する紹介先の施設はありません。", "there is no such institution to refer to")
	}
	if len(n.Documents) > 0 {
		lp, err := s.Store.LocalPatient(ctx, p.Institution, n.Patient)
		if err != nil {
			return renkei.Referral{}, err
		}
		if err := s.checkDocuments(ctx, p, lp.PK, n.Documents); err != nil {
			return renkei.Referral{}, err
		}
	}
	r := renkei.Referral{Kind: n.Kind, FromInstitution: p.Institution, FromUser: userOf(p), FromUserName: p.Name, ToInstitution: n.ToInstitution,
		ToName: to.Name, ToDepartment: n.ToDepartment, ToDoctor: n.ToDoctor, Patient: n.Patient, Priority: n.Priority, Studies: n.Studies,
		Documents: n.Documents, Letter: n.Letter, DueAt: n.DueAt, NewPatient: n.NewPatient}
	step := "draft written"
	if n.NewPatient != nil {
		if n.NewPatient.BirthDate > s.Now().In(jst).Format("20060102") {
			return renkei.Referral{}, renkei.Errorj("clinical.Create", renkei.Invalid, "生年月日に未来の日付は入力できません。", "the birth date is in the future")
		}
		step += "; the patient, typed in, registered"
	}
	if err := s.Store.CreateReferral(ctx, &r, s.event(ctx, p, r, step)); err != nil {
		return r, err
	}
	return s.Store.Referral(ctx, r.ID)
}

// Get returns a referral the caller's institution sent or received, with its history; opening one's received
// referral for the first time is the step "received". Anything else is renkei.NotFound.
func (s *Service) Get(ctx context.Context, id int64) (renkei.Referral, error) {
	p, err := principal(ctx, "clinical.Get")
	if err != nil {
		return renkei.Referral{}, err
	}
	r, err := s.visible(ctx, p, id, "clinical.Get")
	if err != nil {
		return r, err
	}
	e := renkei.EventFor(p, renkei.ActionRead, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Detail = s.dataInstitution(ctx, r), r.Patient, fmt.Sprintf("referral %d", r.ID)
	if err := s.Store.Audit(ctx, &e); err != nil {
		return renkei.Referral{}, err
	}
	return r, nil
}

func (s *Service) visible(ctx context.Context, p *renkei.Principal, id int64, op string) (renkei.Referral, error) {
	r, err := s.Store.Referral(ctx, id)
	if err != nil {
		return r, err
	}
	if r.FromInstitution == p.Institution || (r.ToInstitution == p.Institution && r.Status != renkei.StatusDraft) {
		return r, nil
	}
	return renkei.Referral{}, renkei.Errorj(op, renkei.NotFound, "紹介 No. %d は見つかりません。", "there is no referral %d", id)
}

// Versions returns every sent version of a referral's letter (or of its reply).
func (s *Service) Versions(ctx context.Context, id int64, reply bool) ([]renkei.LetterVersion, error) {
	p, err := principal(ctx, "clinical.Versions")
	if err != nil {
		return nil, err
	}
	if _, err := s.visible(ctx, p, id, "clinical.Versions"); err != nil {
		return nil, err
	}
	return s.Store.LetterVersions(ctx, id, reply)
}

// List is the caller's institution's referrals board.
func (s *Service) List(ctx context.Context, f renkei.ReferralFilter) ([]renkei.Referral, error) {
	p, err := principal(ctx, "clinical.List")
	if err != nil {
		return nil, err
	}
	f.Institution = p.Institution
	return s.Store.Referrals(ctx, f)
}

// SaveDraft replaces a draft of the caller's institution.
func (s *Service) SaveDraft(ctx context.Context, id int64, n NewReferral) (renkei.Referral, error) {
	p, err := principal(ctx, "clinical.SaveDraft")
	if err != nil {
		return renkei.Referral{}, err
	}
	if !mayHandle(p) {
		return renkei.Referral{}, renkei.Errorj("clinical.SaveDraft", renkei.Forbidden, "あなたの役割では紹介状を書けません。", "your role may not write referrals")
	}
	r, err := s.visible(ctx, p, id, "clinical.SaveDraft")
	if err != nil {
		return r, err
	}
	if err := checkNew(&n); err != nil {
		return r, err
	}
	if n.ToInstitution == p.Institution {
		return r, renkei.Errorj("clinical.SaveDraft", renkei.Invalid, "紹介先には他の施設を選んでください。", "a referral goes to another institution")
	}
	if _, err := s.Store.InstitutionByPK(ctx, n.ToInstitution); err != nil {
		return r, renkei.Errorj("clinical.SaveDraft", renkei.Invalid, "該当する紹介先の施設はありません。", "there is no such institution to refer to")
	}
	if err := s.checkDocuments(ctx, p, r.PatientPK, n.Documents); err != nil {
		return r, err
	}
	r.ToInstitution, r.ToDepartment, r.ToDoctor, r.Priority, r.Studies, r.Documents, r.Letter, r.DueAt =
		n.ToInstitution, n.ToDepartment, n.ToDoctor, n.Priority, n.Studies, n.Documents, n.Letter, n.DueAt
	r.FromUserName = p.Name
	if err := s.Store.SaveDraft(ctx, &r, s.event(ctx, p, r, "draft saved")); err != nil {
		return r, err
	}
	return s.Store.Referral(ctx, id)
}

// Step names what a person does to a referral.
type Step struct {
	Action      string // send, receive, accept, decline, complete, cancel; for emergencies also redirect, arrive, close
	To          int64  // redirect: the institution that takes it instead
	Appointment string // accept
	Reason      string // decline, cancel
	Reply       *renkei.Letter
}

// Act takes one step. It is refused unless it is the caller's side's turn and the referral is where the step
// starts; two people acting at once get one success and one renkei.Conflict.
func (s *Service) Act(ctx context.Context, id int64, st Step) (renkei.Referral, error) {
	const op = "clinical.Act"
	p, err := principal(ctx, op)
	if err != nil {
		return renkei.Referral{}, err
	}
	if !mayHandle(p) {
		return renkei.Referral{}, renkei.Errorj(op, renkei.Forbidden, "あなたの役割では紹介の手続きはできません。", "your role may not act on referrals")
	}
	r, err := s.visible(ctx, p, id, op)
	if err != nil {
		return r, err
	}
	m := renkei.ReferralMove{ID: id, Institution: p.Institution, Side: "receiver",
		Event: renkei.ReferralEvent{By: p.Name, ByInst: p.Institution}}
	switch st.Action {
	case "send":
		m.Side, m.From, m.To = "sender", []renkei.ReferralStatus{renkei.StatusDraft}, renkei.StatusSent
		if strings.TrimSpace(r.Letter.Purpose) == "" && r.Letter.AttachmentKey == "" {
			return r, renkei.Errorj(op, renkei.Invalid, "送信する前に、紹介目的を記入するか、印刷した紹介状を添付してください。",
				"write the purpose of the referral (紹介目的), or attach the printed letter, before sending")
		}
		if r.Kind != renkei.KindReverse || r.FromInstitution == ownerOf(ctx, s, r) {
			// The attached studies and the record go with the letter, for the referral's duration, with consent.
			m.Share = s.shareFor(p, r, r.ToInstitution)
		}
	case "redirect":
		// An emergency the receiver cannot take goes on to another hospital, which then gets it (and the images);
		// the first one's access ends in the same step.
		if r.Kind != renkei.KindEmergency {
			return r, renkei.Errorj(op, renkei.Invalid, "搬送先の変更ができるのは救急搬送だけです。通常の紹介はお断りの手続きをしてください。",
				"only an emergency transfer is redirected; decline a referral instead")
		}
		if st.To == 0 || st.To == r.ToInstitution || st.To == r.FromInstitution {
			return r, renkei.Errorj(op, renkei.Invalid, "代わりに患者を受け入れる病院を選んでください。", "choose the hospital that takes the patient instead")
		}
		if _, err := s.Store.InstitutionByPK(ctx, st.To); err != nil {
			return r, renkei.Errorj(op, renkei.Invalid, "該当する病院はありません。", "there is no such hospital")
		}
		if p.Institution == r.FromInstitution {
			m.Side = "sender"
		}
		m.From, m.To, m.NewTo, m.Revoke = []renkei.ReferralStatus{renkei.StatusSent, renkei.StatusReceived}, renkei.StatusSent, st.To, true
		m.Reason, m.Event.Note = st.Reason, st.Reason
		m.Share = s.shareFor(p, r, st.To)
	case "arrive":
		if r.Kind != renkei.KindEmergency {
			return r, renkei.Errorj(op, renkei.Invalid, "到着の記録ができるのは救急搬送だけです。", "only an emergency transfer arrives")
		}
		m.From, m.To = []renkei.ReferralStatus{renkei.StatusAccepted}, renkei.StatusArrived
	case "close":
		if r.Kind != renkei.KindEmergency {
			return r, renkei.Errorj(op, renkei.Invalid, "終了にできるのは救急搬送だけです。", "only an emergency transfer is closed")
		}
		m.From, m.To, m.Event.Note = []renkei.ReferralStatus{renkei.StatusArrived}, renkei.StatusClosed, st.Reason
	case "receive":
		if r.Status == renkei.StatusReceived {
			return r, nil // opened again: nothing to record
		}
		m.From, m.To = []renkei.ReferralStatus{renkei.StatusSent}, renkei.StatusReceived
	case "accept":
		if r.Kind == renkei.KindEmergency {
			// An emergency is accepted as soon as it is read (opening it and accepting may be one step).
			m.From, m.To = []renkei.ReferralStatus{renkei.StatusSent, renkei.StatusReceived}, renkei.StatusAccepted
			break
		}
		if strings.TrimSpace(st.Appointment) == "" {
			return r, renkei.Errorj(op, renkei.Invalid, "受け入れる場合は、予約日を入力してください。", "give the appointment date when accepting")
		}
		m.From, m.To, m.Appointment, m.Event.Note = []renkei.ReferralStatus{renkei.StatusReceived}, renkei.StatusAccepted, st.Appointment, st.Appointment
	case "decline":
		if strings.TrimSpace(st.Reason) == "" {
			return r, renkei.Errorj(op, renkei.Invalid, "紹介元が他の施設を探せるよう、お断りの理由を記入してください。",
				"say why the referral is declined, so that the sender can look elsewhere")
		}
		m.From, m.To, m.Reason, m.Event.Note, m.Revoke = []renkei.ReferralStatus{renkei.StatusReceived}, renkei.StatusDeclined, st.Reason, st.Reason, true
	case "complete":
		if !mayWriteLetter(p) {
			return r, renkei.Errorj(op, renkei.Forbidden, "返書や読影レポートに署名できるのは医師だけです。", "only a doctor signs a reply or a report")
		}
		if st.Reply == nil || (strings.TrimSpace(st.Reply.Course+st.Reply.Findings+st.Reply.Impression+st.Reply.Remarks+st.Reply.FollowUp+st.Reply.Diagnosis) == "" && st.Reply.AttachmentKey == "") {
			return r, renkei.Errorj(op, renkei.Invalid, "完了にする前に、返書またはレポートを記入してください。", "write the reply (返書) or the report before completing")
		}
		reply := *st.Reply
		reply.Author = p.Name
		m.Reply = &reply
		m.From, m.To = []renkei.ReferralStatus{renkei.StatusAccepted, renkei.StatusReceived}, renkei.StatusCompleted
	case "cancel":
		m.Side, m.From, m.To, m.Reason, m.Event.Note, m.Revoke = "sender",
			[]renkei.ReferralStatus{renkei.StatusDraft, renkei.StatusSent, renkei.StatusReceived}, renkei.StatusCancelled, st.Reason, st.Reason, true
	default:
		return r, renkei.Errorj(op, renkei.Invalid, "手続き %q はありません。", "unknown step %q", st.Action)
	}
	if m.Side == "sender" && r.FromInstitution != p.Institution || m.Side == "receiver" && r.ToInstitution != p.Institution {
		return r, renkei.Errorj(op, renkei.Forbidden, "今は相手の施設が手続きをする番です。", "it is the other institution's turn")
	}
	if m.Reply != nil && r.Kind == renkei.KindReading && s.ReportDocument != nil {
		// The signed report is also a document of the patient, in the requester's record, written with the step.
		// Its PDF is stored (and kept for good) first, so only for a step that can still be taken: a second click
		// on a completed request must not leave a second file behind. (MoveReferral still decides a race.)
		if !slices.Contains(m.From, r.Status) {
			return r, renkei.Errorj(op, renkei.Conflict, "この紹介はすでに「%[2]s」になっています。画面には最新の状態を表示しています。",
				"this referral is already %[1]s; the page shows the latest state", r.Status, r.Status.Japanese())
		}
		d, err := s.ReportDocument(ctx, r, *m.Reply)
		if err != nil {
			return r, err
		}
		d.Kind, d.Institution, d.PatientPK, d.Patient, d.Author, d.Source, d.SourceID =
			renkei.DocReadingReport, p.Institution, r.PatientPK, r.Patient, p.Name, "referral", fmt.Sprint(r.ID)
		m.Facts = &renkei.Record{Documents: []renkei.Document{d}}
	}
	step := string(m.To)
	if m.NewTo != 0 {
		step = fmt.Sprintf("redirected from institution %d to %d", r.ToInstitution, m.NewTo)
	}
	if err := s.Store.MoveReferral(ctx, m, s.event(ctx, p, r, step)); err != nil {
		return r, err
	}
	out, err := s.Store.Referral(ctx, id)
	if err != nil {
		return out, err
	}
	if s.Changed != nil {
		s.Changed(out)
	}
	if m.NewTo != 0 && s.Left != nil {
		s.Left(r.ToInstitution, r.ID) // the first receiver's board drops it
	}
	return out, nil
}

// shareFor is the share a sent referral makes: its studies (or the record only) to the receiver, for the referral's
// duration; an emergency transfer's share has the purpose "emergency" and lasts a week.
func (s *Service) shareFor(p *renkei.Principal, r renkei.Referral, to int64) *renkei.Share {
	purpose, days := renkei.PurposeReferral, s.ShareDays
	if r.Kind == renkei.KindEmergency {
		purpose, days = renkei.PurposeEmergency, 7
	}
	return &renkei.Share{FromInstitution: r.FromInstitution, Patient: r.Patient, Studies: r.Studies, RecordOnly: len(r.Studies) == 0,
		ToInstitution: to, Purpose: purpose, Reason: fmt.Sprintf("%s %d", r.Kind, r.ID), CreatedBy: userOf(p), CreatedByName: p.Name,
		ExpiresAt: s.Now().AddDate(0, 0, days)}
}

// ownerOf returns the institution that holds the referral's patient.
func ownerOf(ctx context.Context, s *Service, r renkei.Referral) int64 {
	lp, err := s.Store.LocalPatientByPK(ctx, r.PatientPK)
	if err != nil {
		return 0
	}
	return lp.Institution
}

// Correct records a corrected letter of a sent referral as a new version; earlier versions stay readable. A
// referral that was cancelled or declined takes none (renkei.Conflict, saying to write a new referral), nor does a
// draft, which is edited instead.
func (s *Service) Correct(ctx context.Context, id int64, l renkei.Letter) (renkei.Referral, error) {
	p, err := principal(ctx, "clinical.Correct")
	if err != nil {
		return renkei.Referral{}, err
	}
	if !mayHandle(p) {
		return renkei.Referral{}, renkei.Errorj("clinical.Correct", renkei.Forbidden, "あなたの役割では紹介状を書けません。", "your role may not write referrals")
	}
	r, err := s.visible(ctx, p, id, "clinical.Correct")
	if err != nil {
		return r, err
	}
	if _, err := s.Store.AddLetterVersion(ctx, id, p.Institution, l, p.Name, s.event(ctx, p, r, "letter corrected")); err != nil {
		return r, err
	}
	out, err := s.Store.Referral(ctx, id)
	if err == nil && s.Changed != nil {
		s.Changed(out)
	}
	return out, err
}

// Reverse writes a reverse referral (逆紹介) as a draft: from the receiver of parent back to its sender, or to
// another institution (a 回復期 hospital, a home-care clinic), about the same patient.
func (s *Service) Reverse(ctx context.Context, parent int64, n NewReferral) (renkei.Referral, error) {
	const op = "clinical.Reverse"
	p, err := principal(ctx, op)
	if err != nil {
		return renkei.Referral{}, err
	}
	if !mayHandle(p) {
		return renkei.Referral{}, renkei.Errorj(op, renkei.Forbidden, "あなたの役割では紹介状を書けません。", "your role may not write referrals")
	}
	par, err := s.visible(ctx, p, parent, op)
	if err != nil {
		return par, err
	}
	if par.ToInstitution != p.Institution {
		return par, renkei.Errorj(op, renkei.Forbidden, "逆紹介ができるのは、紹介を受けた施設だけです。",
			"only the institution that received the referral refers the patient back")
	}
	if !slices.Contains([]renkei.ReferralStatus{renkei.StatusAccepted, renkei.StatusCompleted, renkei.StatusReceived}, par.Status) {
		return par, renkei.Errorj(op, renkei.Conflict, "この紹介は「%[2]s」です。逆紹介は、紹介の受入れが決まった後にできます。",
			"the referral is %[1]s; a patient is referred back once it was accepted", par.Status, par.Status.Japanese())
	}
	n.Kind = renkei.KindReverse
	if n.ToInstitution == 0 {
		n.ToInstitution = par.FromInstitution
	}
	if err := checkNew(&n); err != nil {
		return renkei.Referral{}, err
	}
	to, err := s.Store.InstitutionByPK(ctx, n.ToInstitution)
	if err != nil || n.ToInstitution == p.Institution {
		return renkei.Referral{}, renkei.Errorj(op, renkei.Invalid, "該当する紹介先の施設はありません。", "there is no such institution to refer to")
	}
	if err := s.checkDocuments(ctx, p, par.PatientPK, n.Documents); err != nil {
		return renkei.Referral{}, err
	}
	r := renkei.Referral{Kind: renkei.KindReverse, Parent: parent, FromInstitution: p.Institution, FromUser: userOf(p), FromUserName: p.Name,
		ToInstitution: n.ToInstitution, ToName: to.Name, ToDepartment: n.ToDepartment, ToDoctor: n.ToDoctor, Patient: par.Patient,
		PatientPK: par.PatientPK, Priority: n.Priority, Studies: n.Studies, Documents: n.Documents, Letter: n.Letter, DueAt: n.DueAt}
	if err := s.Store.CreateReferral(ctx, &r, s.event(ctx, p, par, "reverse referral written")); err != nil {
		return r, err
	}
	return s.Store.Referral(ctx, r.ID)
}

// MayAttachLetter checks, without writing anything, that the caller may attach a printed letter to referral id:
// one of its institution's drafts. Another institution's referral is renkei.NotFound, a sent one renkei.Conflict.
// A transport asks before it stores the file, so that a refused upload leaves nothing kept behind.
func (s *Service) MayAttachLetter(ctx context.Context, id int64) error {
	_, _, err := s.draftToAttach(ctx, id)
	return err
}

func (s *Service) draftToAttach(ctx context.Context, id int64) (*renkei.Principal, renkei.Referral, error) {
	p, err := principal(ctx, "clinical.AttachLetter")
	if err != nil {
		return nil, renkei.Referral{}, err
	}
	if !mayHandle(p) {
		return nil, renkei.Referral{}, renkei.Errorj("clinical.AttachLetter", renkei.Forbidden, "あなたの役割では紹介状を書けません。",
			"your role may not write referrals")
	}
	r, err := s.visible(ctx, p, id, "clinical.AttachLetter")
	if err != nil {
		return nil, r, err
	}
	if r.FromInstitution != p.Institution || r.Status != renkei.StatusDraft {
		return nil, r, renkei.Errorj("clinical.AttachLetter", renkei.Conflict, "紹介状の添付は、送信前の下書きにしてください。",
			"a letter is attached to a draft, before it is sent")
	}
	return p, r, nil
}

// AttachLetter sets the letter a clinic's EMR already printed (a PDF or a scan, stored as blob key) as a draft's
// letter, instead of or beside the typed one.
func (s *Service) AttachLetter(ctx context.Context, id int64, key, contentType string) (renkei.Referral, error) {
	p, r, err := s.draftToAttach(ctx, id)
	if err != nil {
		return r, err
	}
	r.Letter.AttachmentKey, r.Letter.AttachmentType = key, contentType
	r.FromUserName = p.Name
	if err := s.Store.SaveDraft(ctx, &r, s.event(ctx, p, r, "printed letter attached")); err != nil {
		return r, err
	}
	return s.Store.Referral(ctx, id)
}

// checkDocuments refuses attached documents that are not about the referral's patient (or a linked local patient
// the caller may see): an attachment must not become a way to disclose another patient's papers.
func (s *Service) checkDocuments(ctx context.Context, p *renkei.Principal, patient int64, docs []int64) error {
	if len(docs) == 0 {
		return nil
	}
	pts, err := s.visiblePatients(ctx, p, patient, "clinical.Documents")
	if err != nil {
		return err
	}
	for _, id := range docs {
		d, err := s.Store.Document(ctx, id)
		ok := err == nil && slices.ContainsFunc(pts, func(lp renkei.LocalPatient) bool { return lp.PK == d.PatientPK })
		if !ok {
			return renkei.Errorj("clinical.Documents", renkei.Invalid, "書類 No. %d は、この患者の書類ではありません。",
				"document %d is not one of this patient's documents", id)
		}
	}
	return nil
}
