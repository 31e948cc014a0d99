package renkei

import "time"

// Consult is a live consult (相談) as kept: its study and who may join.
type Consult struct {
	ID            int64
	StudyUID      string
	StudyOwner    int64
	Patient       PatientKey
	Title         string
	CreatedBy     int64
	CreatedByName string
	Institution   int64
	CreatedAt     time.Time
	Members       []ConsultMember
}

// ConsultMember is an invited participant.
type ConsultMember struct {
	User      int64
	Login     string
	InvitedBy string
	InvitedAt time.Time
}

// ConsultEvent is one kept event of a consult.
type ConsultEvent struct {
	At    time.Time
	Login string
	Kind  string
	Body  string
}
