package renkei

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// InstitutionKind says what an institution is.
type InstitutionKind string

// Institution kinds.
const (
	Hospital       InstitutionKind = "hospital"
	Clinic         InstitutionKind = "clinic"
	CareHome       InstitutionKind = "care-home"
	Pharmacy       InstitutionKind = "pharmacy"
	ImagingCentre  InstitutionKind = "imaging-centre"
	RegionOperator InstitutionKind = "region" // the region's own operator (region admins belong to it)
)

// InstitutionKinds lists the valid kinds.
var InstitutionKinds = []InstitutionKind{Hospital, Clinic, CareHome, Pharmacy, ImagingCentre, RegionOperator}

// CareFunctions are the functions an institution may report (病床機能報告 plus home care and nursing care).
var CareFunctions = []string{"高度急性期", "急性期", "回復期", "慢性期", "在宅", "介護"}

// Institution is a hospital, clinic, care home, pharmacy or imaging centre of the region. It owns the data it
// produced: nothing it holds is visible to another institution until it is shared.
type Institution struct {
	PK     int64  // the index's key; used in scopes
	ID     string // short stable name used in commands and URLs, e.g. "chuo-hospital"
	Name   string // Japanese name, e.g. "中央病院"
	NameEn string
	Kind   InstitutionKind
	// Code is the 10-digit 医療機関コード (prefecture 2, point-table 1, institution 7), empty when it has none.
	Code          string
	CareFunctions []string
	Issuer        string // IssuerOfPatientID of its local patient IDs
	// Email is the 地域連携室's address: renkei tells it when a referral waits for the institution (a link to log
	// in, never patient data). Empty: no e-mail.
	Email string
}

// ValidInstitutionCode reports whether s has the shape of a 医療機関コード: ten digits whose first two are a
// prefecture number (01–47).
func ValidInstitutionCode(s string) bool {
	if len(s) != 10 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	pref := int(s[0]-'0')*10 + int(s[1]-'0')
	return pref >= 1 && pref <= 47
}

// Role is what a user does at their institution. Roles decide what a user may do; institutions (and grants) decide
// which data they may do it to.
type Role string

// Roles.
const (
	Physician        Role = "physician"
	Radiologist      Role = "radiologist"
	Nurse            Role = "nurse"
	Clerk            Role = "clerk" // 地域連携室
	InstitutionAdmin Role = "institution-admin"
	RegionAdmin      Role = "region-admin"
	PatientRole      Role = "patient"
)

// Roles lists the valid roles.
var Roles = []Role{Physician, Radiologist, Nurse, Clerk, InstitutionAdmin, RegionAdmin, PatientRole}

// Staff reports whether the role is a member of staff (a second factor is mandatory for every staff role).
func (r Role) Staff() bool { return r != PatientRole && slices.Contains(Roles, r) }

// Clinical reports whether the role treats patients (and so may use break-glass if a physician).
func (r Role) Clinical() bool { return r == Physician || r == Radiologist || r == Nurse }

// User is a person with one role at one institution. A doctor who works at two institutions has two accounts, linked
// by Person, so that each session acts for exactly one institution (see docs/decisions.md).
type User struct {
	PK          int64
	Login       string // unique in the region, e.g. "yamada@chuo-hospital"
	Name        string
	Institution Institution
	Role        Role
	Person      string // links the accounts of one person at several institutions; empty if only one
	PatientPK   int64  // for a patient's account: their local patient at the inviting institution
	Lang        string // the web app's language: "ja" (default) or "en"
	Disabled    bool
	// MustChangePassword is set for one-time passwords printed by `renkei admin user add` and by an admin reset.
	MustChangePassword bool
	HasTOTP            bool
	CreatedAt          time.Time
}

// PrincipalKind says what kind of caller a principal is.
type PrincipalKind string

// Principal kinds.
const (
	UserPrincipal   PrincipalKind = "user"
	TokenPrincipal  PrincipalKind = "token"
	AEPrincipal     PrincipalKind = "ae"
	SystemPrincipal PrincipalKind = "system"
)

// Principal is the authenticated caller of one request or association: a logged-in user, an API token, a DICOM AE,
// or renkei itself (maintenance). Every access to patient data carries one in its context; none means refused.
type Principal struct {
	Kind        PrincipalKind
	ID          int64  // user or token key; 0 for AEs and the system
	Name        string // login, token name or AE title, as the audit trail shows it
	Institution int64  // the institution it acts for
	Role        Role   // for users
	Write       bool   // may store and delete
	Session     string // an identifier of the login session or association, for audit de-duplication
	Source      string // client address or "AE@address"
	Purpose     string // why data is read, when the caller said so (e.g. "emergency")
	// Issuer is the IssuerOfPatientID given to what it stores without one: its institution's.
	Issuer string
	// Patient is, for a patient's own account, their local patient at the inviting institution.
	Patient int64
}

// Label is how the principal appears in logs.
func (p *Principal) Label() string {
	if p == nil {
		return "anonymous"
	}
	return fmt.Sprintf("%s %s", p.Kind, p.Name)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal in ctx, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// System is the principal of renkei's own maintenance (purging the trash, sweeping blobs, migrations).
var System = &Principal{Kind: SystemPrincipal, Name: "renkei", Write: true}

// Scope limits a query to what one caller may see: everything owned by Institutions, plus the patients and studies
// that grants (shares, break-glass) added. A nil *Scope in a Query means no limit and is used only by the system.
type Scope struct {
	Institutions []int64
	Patients     []int64 // local patients (index keys) granted with all their studies
	Studies      []int64 // single studies granted
	// Grantee adds what the shares in force (to an institution, or to one of its users) grant: the index evaluates
	// them in the same query, so that a thousand shares cost one subquery, not a thousand literals.
	Grantee *Grantee
	// OwnOnly restricts to Institutions (grants are ignored): used when an ingest compares with the caller's own copy.
	OwnOnly bool
}

// Grantee names who receives shares: an institution and, optionally, one of its users, at a time.
type Grantee struct {
	Institution, User int64
	At                time.Time
}

// SharePurpose says why data is shared.
type SharePurpose string

// Share purposes.
const (
	PurposeReferral      SharePurpose = "referral"
	PurposeEmergency     SharePurpose = "emergency"
	PurposeConsult       SharePurpose = "consult"
	PurposeSecondOpinion SharePurpose = "second-opinion"
	PurposeBreakGlass    SharePurpose = "break-glass"
)

// SharePurposes lists the purposes a user may choose (break-glass is granted only by the break-glass action).
var SharePurposes = []SharePurpose{PurposeReferral, PurposeEmergency, PurposeConsult, PurposeSecondOpinion}

// Share is a grant that lets another institution or user see one patient's studies (all of them, present and
// future, or the chosen ones) for a purpose until an expiry. Revoking ends it at once.
type Share struct {
	ID              int64
	FromInstitution int64
	Patient         PatientKey // the owning institution's local patient
	Studies         []string   // StudyInstanceUIDs; empty shares all the patient's studies
	ToInstitution   int64      // 0 when shared with a user only
	ToUser          int64      // 0 when shared with a whole institution
	Purpose         SharePurpose
	Reason          string
	CreatedBy       int64
	CreatedByName   string
	CreatedAt       time.Time
	ExpiresAt       time.Time
	RevokedAt       *time.Time
	// RecordOnly grants the patient's clinical record and none of their studies (a referral with no images).
	RecordOnly bool
	// WithoutConsent skips the consent check: break-glass sets it, and so does the return of a reading report to
	// the institution that asked for it (the request itself is the reason to disclose).
	WithoutConsent bool
	// Review of a break-glass grant by the owning institution's administrator.
	ReviewedAt *time.Time
	ReviewedBy string
	ReviewNote string
}

// Active reports whether the share grants access at t.
func (s *Share) Active(t time.Time) bool { return s.RevokedAt == nil && t.Before(s.ExpiresAt) }

// Credentials are what the index keeps to check a user's login. Hashes only; never shown.
type Credentials struct {
	PasswordHash string // argon2id, PHC string format
	TOTPSecret   string // base32; empty until enrolled
	TOTPLastStep int64  // the last time step accepted, so a code is never accepted twice
	FailedLogins int
	LockedUntil  time.Time
}

// Session is a login session. It is full only after the second factor; before that it may only complete it.
type Session struct {
	IDHash         string // SHA-256 of the cookie's random value
	User           int64
	CSRF           string
	CreatedAt      time.Time
	LastSeen       time.Time
	SecondFactorAt *time.Time
	Source         string
}

// APIToken is a bearer token for gateways, scripts and DICOMweb clients, scoped to one institution and to reading or
// reading and writing. Only its hash is stored.
type APIToken struct {
	PK          int64
	Institution int64
	Name        string
	Write       bool
	Issuer      string // the institution's issuer of patient IDs (read only)
	CreatedBy   string
	CreatedAt   time.Time
	ExpiresAt   *time.Time
	RevokedAt   *time.Time
	LastUsed    *time.Time
}

// UserUpdate changes some of a user's stored fields; nil fields are left alone.
type UserUpdate struct {
	PasswordHash *string
	MustChange   *bool
	TOTPSecret   *string
	Disabled     *bool
	// FailedLogins and LockedUntil record login failures (lockout).
	FailedLogins *int
	LockedUntil  *time.Time
	// RecoveryCodes replaces the user's recovery codes with these hashes.
	RecoveryCodes []string
	// EndSessions ends every session of the user (logout everywhere; a password or second-factor reset).
	EndSessions bool
	// RemoveSecurityKeys forgets every WebAuthn security key and passkey of the user (a second-factor reset: a lost
	// key must not stay able to log in, and the user enrols a new one).
	RemoveSecurityKeys bool
}

// WebAuthnCredential is a user's security key or passkey: its credential id and the verifier's record of it
// (public key, signature counter, flags) as JSON.
type WebAuthnCredential struct {
	ID        []byte
	User      int64
	Name      string // what the user called it ("病棟の鍵")
	Record    []byte
	CreatedAt time.Time
	LastUsed  *time.Time
}

// ShareFilter selects shares. Zero fields do not filter.
type ShareFilter struct {
	ID              int64
	FromInstitution int64
	// To selects shares received by an institution or by a user of it.
	ToInstitution int64
	ToUser        int64
	ActiveAt      time.Time // only shares in force at this time
	Purpose       SharePurpose
	Unreviewed    bool // only break-glass grants not reviewed yet
}
