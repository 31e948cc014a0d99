package renkei

import "time"

// AlertStatus is where an alert is in its handling: open → acknowledged (someone is looking) → resolved (with a
// note saying what was found).
type AlertStatus string

// Alert statuses.
const (
	AlertOpen         AlertStatus = "open"
	AlertAcknowledged AlertStatus = "acknowledged"
	AlertResolved     AlertStatus = "resolved"
)

// Alert severities, highest first.
const (
	SeverityHigh   = "high"
	SeverityMedium = "medium"
	SeverityLow    = "low"
)

// MaxAlertEvents bounds the events kept with one alert: a flood of the same pattern counts on (Count) without
// growing the list without end.
const MaxAlertEvents = 500

// Alert is a pattern in the audit trail that an administrator should look at: many patients opened by one user,
// password spraying, an unknown DICOM peer, … Only one alert is open per rule and subject; new events of the same
// pattern are added to it rather than raising another.
type Alert struct {
	ID       int64
	Rule     string // the rule that raised it, e.g. "bulk-access"
	Subject  string // what the pattern is about, within the rule: "user:12", "addr:192.0.2.7", "ae:CT9@192.0.2.9"
	Severity string
	// Institution is whose administrators see the alert; 0: the region's administrators only.
	Institution int64
	// Explanation says in plain words what happened and what to check; ExplanationEn is the same in English.
	Explanation, ExplanationEn string

	// The user, token or AE behind the pattern, if one.
	Actor     string
	ActorKind PrincipalKind
	ActorID   int64
	// The patient concerned, if one.
	DataInstitution int64
	Patient         PatientKey
	Source          string // the client address, if the pattern is about one

	Events  []int64 // the Seq of the audit events behind it, oldest first (at most MaxAlertEvents)
	Count   int     // how many events the pattern counted in all
	FirstAt time.Time
	LastAt  time.Time

	Status         AlertStatus
	AcknowledgedBy string
	AcknowledgedAt *time.Time
	ResolvedBy     string
	ResolvedAt     *time.Time
	Note           string // the resolver's note

	// Once raises the pattern at most once per subject, whatever became of the first alert (a break-glass access
	// left unreviewed is one fact, not a recurring pattern).
	Once bool
}

// AlertFilter selects alerts. Zero fields do not filter.
type AlertFilter struct {
	ID          int64
	Institution int64 // alerts of this institution (its admins' view); 0 for all
	Status      AlertStatus
	Unresolved  bool // open or acknowledged
	Since       time.Time
	Limit       int
}
