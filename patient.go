package renkei

import "time"

// RegionalIssuer is the IssuerOfPatientID that names a regional patient (IHE PIX's affinity domain): QIDO-RS and
// C-FIND with PatientID=<regional number> and this issuer answer the studies of every local patient linked to it that
// the caller may see.
const RegionalIssuer = "RENKEI-REGION"

// LocalPatient is one institution's record of a patient: the patient as the index knows them from that institution's
// studies, keyed by (issuer, PatientID) within the institution.
type LocalPatient struct {
	PK          int64
	Institution int64
	Key         PatientKey
	Name        string // PN in DICOM form
	BirthDate   string // YYYYMMDD
	Sex         string
	Regional    int64 // the regional patient it is linked to; 0 if none
}

// LinkProposal is a pair of local patients of two institutions that look like one person: the same birth date and
// sex, and a name that matches after folding (kana, width, spaces, variant kanji). A person confirms it or not.
type LinkProposal struct {
	A, B LocalPatient
	Name string // the folded name key they share
}

// Consent is a patient's agreement (同意) that an institution may disclose their data in the region. Shares,
// referrals and identity links check it; only break-glass goes without, and the audit trail says so. Withdrawing it
// ends what it alone covered: the institution's shares, its share links and the patient's identity link.
type Consent struct {
	ID           int64
	Institution  int64 // the disclosing institution
	Patient      PatientKey
	Scope        string // "region", or a comma-separated list of institution IDs it may be disclosed to
	GivenAt      time.Time
	Method       string // "paper" (a scanned 同意書) or "electronic"
	DocumentKey  string // blob key of the scanned form or the signed statement
	DocumentType string // its media type
	Note         string
	RecordedBy   string
	RecordedAt   time.Time
	WithdrawnAt  *time.Time
	WithdrawnBy  string
}

// ConsentScopeRegion lets the institution disclose to every institution of the region.
const ConsentScopeRegion = "region"

// Grants is what shares and break-glass add to a caller's own institution's data.
type Grants struct {
	Patients   []int64 // local patients granted with all their studies
	Studies    []int64 // single studies
	BreakGlass []int64 // the subset of Patients granted by break-glass
}
