package renkei

import "time"

// Account is what the security status needs to know of a user: how they log in and when they last did.
type Account struct {
	PK           int64
	Login        string
	Name         string
	Institution  string // the institution's ID
	Role         Role
	Disabled     bool
	HasTOTP      bool
	SecurityKeys int // WebAuthn credentials
	CreatedAt    time.Time
	LastLogin    *time.Time // the last completed login; nil if never
}

// SecondFactor reports whether the account can give a second factor (an authenticator app or a security key).
func (a *Account) SecondFactor() bool { return a.HasTOTP || a.SecurityKeys > 0 }

// AuditVerification is the result of one walk of the audit chain (renkei admin audit verify).
type AuditVerification struct {
	At           time.Time
	By           string // who ran it: "admin shell (os user)" or a region admin's login
	Events       int64
	LastSeq      int64
	Problems     int
	FirstProblem string // the earliest problem, in words; empty when intact
}

// AEConnection is how a DICOM AE title last associated with renkei.
type AEConnection struct {
	Title   string
	At      time.Time
	TLS     bool
	Address string
}
