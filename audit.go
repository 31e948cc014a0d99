package renkei

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// AuditAction names what an audit event records.
type AuditAction string

// Audit actions. Reads and writes of patient data, logins, grants and admin actions.
const (
	ActionQuery      AuditAction = "query"   // a search returned the study
	ActionRead       AuditAction = "read"    // images, metadata or frames of the study were read
	ActionStore      AuditAction = "store"   // an instance of the study was stored
	ActionDelete     AuditAction = "delete"  // moved to the trash
	ActionRestore    AuditAction = "restore" // restored from the trash
	ActionLogin      AuditAction = "login"   // a login step (password, second factor)
	ActionLogout     AuditAction = "logout"  // a logout (or logout everywhere)
	ActionShare      AuditAction = "share"   // a share was created
	ActionRevoke     AuditAction = "revoke"  // a share or token was revoked
	ActionBreakGlass AuditAction = "break-glass"
	ActionAdmin      AuditAction = "admin"    // institutions, users, tokens, AE titles, resets
	ActionDenied     AuditAction = "denied"   // a request for something the caller may not see (answered 404)
	ActionRecord     AuditAction = "record"   // a clinical fact (allergy, medication, condition, document) was written
	ActionReferral   AuditAction = "referral" // a referral was written, sent or moved on (Detail says which step)
	ActionConsult    AuditAction = "consult"  // something was said or drawn in a live consult, or control passed
	// ActionExport: whole DICOM objects were sent out (WADO-RS retrieve, WADO-URI): a copy left renkei, unlike a
	// look in the viewer (PS3.15 A.5.3.5 Export).
	ActionExport AuditAction = "export"
	// ActionAssociate: a DICOM association was refused (an unregistered AE title, or one calling from another host).
	ActionAssociate AuditAction = "associate"
)

// Audit outcomes (after IHE ATNA EventOutcomeIndicator, in words).
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// AuditEvent is one record of who did what to which data. Events form a hash chain: Hash is the SHA-256 of the
// previous event's hash and this event's canonical encoding, so changing, removing or inserting an event breaks the
// chain from there on.
type AuditEvent struct {
	Seq         int64 // position in the chain, from 1; assigned when appended
	Time        time.Time
	Actor       string // login, token name, AE title or "renkei"
	ActorKind   PrincipalKind
	ActorID     int64
	Institution int64 // the institution the actor acted for
	Role        Role
	Action      AuditAction
	Outcome     string
	Purpose     string
	Source      string // client address or AE and address

	// The data touched, if any: the owning institution's local patient and the study.
	DataInstitution int64
	Patient         PatientKey
	Study           string
	Detail          string // free text: what was asked, why it failed, the reason given for break-glass

	PrevHash []byte
	Hash     []byte
}

// EventFor fills an event's actor fields from a principal.
func EventFor(p *Principal, action AuditAction, outcome string) AuditEvent {
	e := AuditEvent{Action: action, Outcome: outcome}
	if p != nil {
		e.Actor, e.ActorKind, e.ActorID, e.Institution, e.Role, e.Source, e.Purpose = p.Name, p.Kind, p.ID, p.Institution, p.Role, p.Source, p.Purpose
	}
	return e
}

// ChainHash returns the hash that chains e after an event whose hash is prev: SHA-256 over prev and a
// length-prefixed encoding of every recorded field, so that no two different events encode alike.
func (e *AuditEvent) ChainHash(prev []byte) []byte {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	num := func(v int64) {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	field(prev)
	num(e.Seq)
	num(e.Time.UnixMilli())
	for _, s := range []string{e.Actor, string(e.ActorKind)} {
		field([]byte(s))
	}
	num(e.ActorID)
	num(e.Institution)
	for _, s := range []string{string(e.Role), string(e.Action), e.Outcome, e.Purpose, e.Source} {
		field([]byte(s))
	}
	num(e.DataInstitution)
	for _, s := range []string{e.Patient.Issuer, e.Patient.ID, e.Study, e.Detail} {
		field([]byte(s))
	}
	return h.Sum(nil)
}

type actionKey struct{}

// WithAction returns ctx saying what reading through it is for: transports mark retrievals ActionRead so that the
// audit trail tells a look at the images from a search that listed them.
func WithAction(ctx context.Context, a AuditAction) context.Context {
	return context.WithValue(ctx, actionKey{}, a)
}

// ActionFrom returns the action set by WithAction, or ActionQuery.
func ActionFrom(ctx context.Context) AuditAction {
	if a, ok := ctx.Value(actionKey{}).(AuditAction); ok {
		return a
	}
	return ActionQuery
}

// AuditFilter selects audit events.
type AuditFilter struct {
	// Patient selects the events about one institution's local patient (the patient's own access log).
	DataInstitution int64
	Patient         *PatientKey
	Institution     int64 // events by actors of this institution or about its data; 0 for all
	Action          AuditAction
	Since, Until    time.Time
	Limit           int
}
