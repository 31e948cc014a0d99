package renkei

import (
	"slices"
	"time"
)

// ReferralKind says what a referral asks for.
type ReferralKind string

// Referral kinds.
const (
	KindReferral ReferralKind = "referral" // 紹介: take over or advise on care
	KindReverse  ReferralKind = "reverse"  // 逆紹介: the way back, with a discharge summary and a follow-up plan
	KindReading  ReferralKind = "reading"  // 読影依頼: a radiologist's read
	// KindEmergency is an emergency transfer (救急搬送): the receiving hospital sees the patient's images, allergies
	// and medications before the ambulance arrives. DueAt is the expected time of arrival.
	KindEmergency ReferralKind = "emergency"
)

// ReferralStatus is where a referral stands. Both sides see it, with the time of every step.
type ReferralStatus string

// Referral statuses, in their order.
const (
	StatusDraft     ReferralStatus = "draft"
	StatusSent      ReferralStatus = "sent"
	StatusReceived  ReferralStatus = "received"  // opened by the receiver
	StatusAccepted  ReferralStatus = "accepted"  // with an appointment date
	StatusDeclined  ReferralStatus = "declined"  // with a reason
	StatusCompleted ReferralStatus = "completed" // answered with a reply letter (返書) or a signed report
	StatusCancelled ReferralStatus = "cancelled" // withdrawn by the sender before it was accepted
	StatusArrived   ReferralStatus = "arrived"   // an emergency transfer's patient arrived
	StatusClosed    ReferralStatus = "closed"    // an emergency transfer is over
)

// Japanese names the status as the web app does in Japanese (its i18n.js ref.status.*), for messages to users.
func (s ReferralStatus) Japanese() string {
	switch s {
	case StatusDraft:
		return "下書き"
	case StatusSent:
		return "送信済み(未読)"
	case StatusReceived:
		return "受付(開封済み)"
	case StatusAccepted:
		return "受入れ決定"
	case StatusDeclined:
		return "お断り"
	case StatusCompleted:
		return "返書済み"
	case StatusCancelled:
		return "取り消し"
	case StatusArrived:
		return "到着"
	case StatusClosed:
		return "終了"
	}
	return string(s)
}

// referralNext lists the statuses each status may move to. Anything else is refused: two people acting at once
// cannot skip or repeat a step.
var referralNext = map[ReferralStatus][]ReferralStatus{
	StatusDraft:    {StatusSent, StatusCancelled},
	StatusSent:     {StatusReceived, StatusCancelled},
	StatusReceived: {StatusAccepted, StatusDeclined, StatusCompleted, StatusCancelled},
	StatusAccepted: {StatusCompleted, StatusArrived},
	StatusArrived:  {StatusClosed},
}

// CanMove reports whether a referral in status from may move to to.
func CanMove(from, to ReferralStatus) bool { return slices.Contains(referralNext[from], to) }

// Letter is a 診療情報提供書 (or a reply 返書, or a reading report), in the structure of the national HS038 document.
// Once sent it never changes: a correction is a new version.
type Letter struct {
	Purpose        string `json:"purpose,omitempty"`        // 紹介目的
	Diagnosis      string `json:"diagnosis,omitempty"`      // 傷病名
	ChiefComplaint string `json:"chiefComplaint,omitempty"` // 主訴
	History        string `json:"history,omitempty"`        // 既往歴・家族歴
	PresentIllness string `json:"presentIllness,omitempty"` // 現病歴
	Course         string `json:"course,omitempty"`         // 症状経過・治療経過
	TestResults    string `json:"testResults,omitempty"`    // 検査結果
	Medications    string `json:"medications,omitempty"`    // 現在の処方
	Allergies      string `json:"allergies,omitempty"`      // アレルギー・不適応反応
	Remarks        string `json:"remarks,omitempty"`        // 備考
	FollowUp       string `json:"followUp,omitempty"`       // 今後の方針 (reverse referrals and replies)
	Findings       string `json:"findings,omitempty"`       // 所見 (reading reports)
	Impression     string `json:"impression,omitempty"`     // 診断 (reading reports)
	Author         string `json:"author,omitempty"`         // the writing doctor's name
	Department     string `json:"department,omitempty"`     // the writing doctor's department
	// KeyImages are the images a reading report points to (marked in the viewer).
	KeyImages []KeyImage `json:"keyImages,omitempty"`
	// Attachment is the letter the clinic's EMR already printed (PDF or scan), when it is uploaded instead of typed.
	AttachmentKey  string `json:"attachmentKey,omitempty"`
	AttachmentType string `json:"attachmentType,omitempty"`
}

// KeyImage is one frame of one instance that a report points to.
type KeyImage struct {
	Study    string `json:"study"`
	Series   string `json:"series"`
	Instance string `json:"instance"`
	Frame    int    `json:"frame"`
}

// LetterVersion is one version of a referral's letter (or of its reply).
type LetterVersion struct {
	Version   int
	Reply     bool // the receiver's reply (返書) or report, not the sender's letter
	Letter    Letter
	WrittenBy string
	WrittenAt time.Time
}

// ReferralEvent is one step of a referral's history, shown to both sides.
type ReferralEvent struct {
	Status ReferralStatus
	At     time.Time
	By     string // the user's name
	ByInst int64
	Note   string // appointment, reason, …
}

// NewPatient is a patient a sender types in because renkei does not hold them yet (a clinic's patient with a letter
// and no image): the first referral about them registers them, under the sender's institution and its issuer.
type NewPatient struct {
	Name      string   // PN in DICOM form
	BirthDate string   // YYYYMMDD
	Sex       string   // M, F, O or ""
	NameKeys  []string // the folded search keys of Name (archive.NameKeys), so that the patient search finds them
}

// Referral is a request from one institution to another, with its letter, its attachments and its history.
type Referral struct {
	ID              int64
	Kind            ReferralKind
	Parent          int64 // the referral a reverse referral answers; 0 if none
	FromInstitution int64
	FromName        string
	FromUser        int64
	FromUserName    string
	ToInstitution   int64
	ToName          string
	ToDepartment    string
	ToDoctor        string     // a named doctor, or empty
	Patient         PatientKey // the local patient it is about: the sender's (a reverse referral keeps its parent's)
	PatientPK       int64      // that local patient's index key
	PatientName     string     // PN in DICOM form, from the sender's index
	PatientBirth    string
	PatientSex      string
	Priority        string // "routine" (default), "urgent", "stat" (reading requests)
	Status          ReferralStatus
	Studies         []string // attached StudyInstanceUIDs (the sender's)
	Documents       []int64  // attached documents
	Letter          Letter   // the latest version
	Version         int
	Reply           *Letter // the latest reply, when there is one
	Appointment     string  // accepted: the appointment date (YYYY-MM-DD or a date-time)
	DeclineReason   string
	Share           int64 // the share that lets the receiver see the attachments and the record while it runs
	CreatedAt       time.Time
	UpdatedAt       time.Time
	SentAt          *time.Time
	DueAt           *time.Time // when the sender expects an answer; overdue items come first on the board
	// NewPatient, when a draft is created, registers the patient it is about with the sender's institution in the
	// same transaction: a patient renkei does not hold yet (no image, no record), typed in by the sender. It is not
	// kept as such (the patient is); nil for a patient renkei holds.
	NewPatient *NewPatient
	Events     []ReferralEvent
}

// ReferralFilter selects referrals for a board.
type ReferralFilter struct {
	Institution int64  // the board's institution: referrals it sent or received
	Direction   string // "in", "out" or "" for both
	Status      []ReferralStatus
	Kind        ReferralKind
	Patient     string // a PatientID or part of a name
	Limit       int
	Offset      int
}

// ReferralMove is one step of a referral: from one of the statuses in From to To, by a person of the side whose
// turn it is, with what the step carries.
type ReferralMove struct {
	ID          int64
	Institution int64 // the acting side: the sender for sent/cancelled, the receiver for the rest
	Side        string
	From        []ReferralStatus
	To          ReferralStatus
	Event       ReferralEvent
	Appointment string
	Reason      string
	Reply       *Letter // completed: the reply letter or report, stored as a new reply version
	Share       *Share  // sent: the share that lets the receiver see the attachments
	Revoke      bool    // declined, cancelled: the share ends
	Facts       *Record // written with the step (a reading report kept as a document of the patient)
	NewTo       int64   // redirected: the institution that gets it now
}
