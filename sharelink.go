package renkei

import "time"

// ShareLink is a time-limited link that shows one patient's studies, view-only, to someone outside renkei (the
// patient, their family, a doctor elsewhere): whoever holds the link's URL (or its QR code) and the PIN given by
// another channel. Only the SHA-256 of the URL's token and an argon2id hash of the PIN are kept. Ten wrong PINs in
// a row, from wherever they come, lock the link for good; revoking it ends it at once.
type ShareLink struct {
	ID          int64
	Institution int64      // the owning institution, which made the link
	Patient     PatientKey // its local patient
	PatientPK   int64
	// AllStudies shows every study of the patient at the institution, present and future; otherwise only Studies
	// (StudyInstanceUIDs), which to create a link may be left empty to mean all.
	AllStudies    bool
	Studies       []string
	Note          string // for whom and why, as the sharer wrote it
	CreatedBy     int64
	CreatedByName string
	CreatedAt     time.Time
	ExpiresAt     time.Time
	RevokedAt     *time.Time
	LockedAt      *time.Time
	FailedPINs    int // wrong PINs since the last right one
	LastViewAt    *time.Time

	TokenHash string // hex SHA-256 of the URL's token; never shown
	PINHash   string // argon2id of the PIN; never shown
}

// ShareLinkPrincipal is the kind of actor the audit trail names for a view through a share link (the actor's ID
// is the link's).
const ShareLinkPrincipal PrincipalKind = "share-link"

// State says what a link answers at a time: "active", "expired", "revoked" or "locked".
func (l *ShareLink) State(t time.Time) string {
	switch {
	case l.RevokedAt != nil:
		return "revoked"
	case l.LockedAt != nil:
		return "locked"
	case !t.Before(l.ExpiresAt):
		return "expired"
	}
	return "active"
}
