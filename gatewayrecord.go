package renkei

import "time"

// GatewayReport is what a hospital gateway (renkei gateway) last told renkei in its heartbeat, kept per gateway
// token: a gateway is known by its token, which belongs to one institution.
type GatewayReport struct {
	Token       int64  `json:"token"`
	TokenName   string `json:"tokenName"`
	Institution int64  `json:"-"`
	Name        string `json:"name"`
	Version     string `json:"version,omitempty"`
	AE          string `json:"ae"`
	Address     string `json:"address"` // where the heartbeat came from
	// The gateway's queue: images received from its modalities and not yet acknowledged by renkei.
	Instances int        `json:"instances"`
	Studies   int        `json:"studies"`
	Bytes     int64      `json:"bytes"`
	Oldest    *time.Time `json:"oldest,omitempty"`
	LastSent  *time.Time `json:"lastSent,omitempty"`
	Failures  int        `json:"failures"`
	LastError string     `json:"lastError,omitempty"`
	DiskFree  int64      `json:"diskFree"`
	SeenAt    time.Time  `json:"seenAt"`
	Revoked   bool       `json:"revoked"` // its token was revoked since
}

// FetchRequest asks an institution's gateway to fetch a patient's earlier studies from the hospital's own PACS
// (C-FIND, C-MOVE) and send them to renkei: images that never left the hospital become available to the referral.
type FetchRequest struct {
	ID          int64      `json:"id"`
	Institution int64      `json:"-"` // whose gateway fetches: the patient's institution
	Patient     PatientKey `json:"-"`
	Since       string     `json:"since,omitempty"` // earliest StudyDate, YYYYMMDD ("" for all)
	Reason      string     `json:"reason"`
	RequestedBy string     `json:"requestedBy"`
	// RequestedByInstitution is the requester's institution (another one when a referral's receiver asks).
	RequestedByInstitution int64     `json:"-"`
	CreatedAt              time.Time `json:"createdAt"`
	Status                 string    `json:"status"` // pending, working, done, failed
	Detail                 string    `json:"detail,omitempty"`
	Studies                int       `json:"studies"`
	Instances              int       `json:"instances"`
	UpdatedAt              time.Time `json:"updatedAt"`
}

// ActionFetch records a request to a gateway to fetch from a local PACS, and what the gateway did.
const ActionFetch AuditAction = "fetch"

// FetchRequestFilter selects fetch requests: those a gateway works on (Institution, Open) or those an institution
// made or concerns (Involving).
type FetchRequestFilter struct {
	Institution int64 // the fetching institution
	Involving   int64 // requested by or fetched by this institution
	Open        bool  // pending or working only
	ID          int64
	Limit       int
}
