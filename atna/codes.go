// Package atna exports renkei's audit trail as IHE ATNA audit messages: DICOM PS3.15 Annex A.5 XML (the schema of
// A.5.1) in RFC 5424 syslog messages over TLS with RFC 5425 octet-counting framing, sent from a durable cursor over
// the chain's Seq so that nothing is lost while the collector (a SIEM, an Audit Record Repository) is down.
//
// Classify maps each renkei action to its DICOM audit event (PS3.15 A.5.3, codes of PS3.16 CID 400–403); Message
// writes one event as an AuditMessage; Exporter sends the chain. The FHIR AuditEvent export (package fhir) uses the
// same classification, so both say the same thing about an event.
package atna

import (
	"strings"

	"renkei"
)

// Code is a coded value of the audit message schema (PS3.15 A.5.1 CodedValueType): csd-code, codeSystemName and
// originalText (the code meaning).
type Code struct {
	Code, System, Meaning string
}

// Code systems.
const (
	SystemDCM     = "DCM"                     // DICOM PS3.16 codes
	SystemRFC3881 = "RFC-3881"                // the ParticipantObjectIDTypeCode values taken over from RFC 3881
	SystemAction  = "urn:renkei:audit-action" // renkei's own action names, beside the DICOM event type
	SystemRole    = "urn:renkei:role"
	SystemPurpose = "urn:renkei:purpose"
)

// DICOM audit event IDs (PS3.16 CID 400) and event type codes (CID 401–403) renkei uses.
var (
	EventApplicationActivity = Code{"110100", SystemDCM, "Application Activity"}
	EventBeginTransferring   = Code{"110102", SystemDCM, "Begin Transferring DICOM Instances"}
	EventInstancesAccessed   = Code{"110103", SystemDCM, "DICOM Instances Accessed"}
	EventInstancesTransfer   = Code{"110104", SystemDCM, "DICOM Instances Transferred"}
	EventStudyDeleted        = Code{"110105", SystemDCM, "DICOM Study Deleted"}
	EventExport              = Code{"110106", SystemDCM, "Export"}
	EventPatientRecord       = Code{"110110", SystemDCM, "Patient Record"}
	EventQuery               = Code{"110112", SystemDCM, "Query"}
	EventSecurityAlert       = Code{"110113", SystemDCM, "Security Alert"}
	EventUserAuthentication  = Code{"110114", SystemDCM, "User Authentication"}

	TypeLogin                    = Code{"110122", SystemDCM, "Login"}
	TypeNodeAuthentication       = Code{"110126", SystemDCM, "Node Authentication"}
	TypeLogout                   = Code{"110123", SystemDCM, "Logout"}
	TypeEmergencyOverrideStarted = Code{"110127", SystemDCM, "Emergency Override Started"}
	TypeNetworkConfiguration     = Code{"110128", SystemDCM, "Network Configuration"}
	TypeSecurityConfiguration    = Code{"110129", SystemDCM, "Security Configuration"}
	TypeUseOfRestrictedFunction  = Code{"110132", SystemDCM, "Use of Restricted Function"}
	TypeObjectSecurityChanged    = Code{"110135", SystemDCM, "Object Security Attributes Changed"}
	TypeUserSecurityChanged      = Code{"110137", SystemDCM, "User Security Attributes Changed"}

	RoleSource      = Code{"110153", SystemDCM, "Source Role ID"}
	RoleDestination = Code{"110152", SystemDCM, "Destination Role ID"}

	IDPatientNumber = Code{"2", SystemRFC3881, "Patient Number"}
	IDStudyUID      = Code{"110180", SystemDCM, "Study Instance UID"}
)

// Event action codes (PS3.15 A.5.1 EventActionCode).
const (
	ActionCreate  = "C"
	ActionRead    = "R"
	ActionUpdate  = "U"
	ActionDelete  = "D"
	ActionExecute = "E"
)

// Event outcome indicators (PS3.15 A.5.1 EventOutcomeIndicator).
const (
	OutcomeSuccess      = "0"
	OutcomeMinorFailure = "4" // the action was refused or failed without harm: a wrong password, a denied read
	OutcomeSeriousFail  = "8"
)

// Actions named here by their value: the monitoring work adds them to the root package.
const (
	actionExport    renkei.AuditAction = "export"
	actionAssociate renkei.AuditAction = "associate"
)

// Classification is what a renkei audit event is in DICOM's terms.
type Classification struct {
	EventID    Code
	ActionCode string
	Types      []Code // EventTypeCode: DICOM's where it has one, then renkei's action name
	Outcome    string
	// RequestorRole and RenkeiRole are the RoleIDCodes of the two active participants, for transfers.
	RequestorRole, RenkeiRole *Code
}

// Classify maps an event to its DICOM audit event. Actions renkei adds later without a mapping here are
// Application Activity, still with their own name as an event type, so that nothing is dropped.
func Classify(e *renkei.AuditEvent) Classification {
	c := Classification{EventID: EventApplicationActivity, ActionCode: ActionExecute, Outcome: OutcomeSuccess}
	if e.Outcome != "" && e.Outcome != renkei.OutcomeSuccess {
		c.Outcome = OutcomeMinorFailure
	}
	var typ *Code
	switch e.Action {
	case renkei.ActionQuery:
		c.EventID = EventQuery
	case renkei.ActionRead:
		if e.ActorKind == renkei.AEPrincipal {
			// C-MOVE or C-GET: renkei begins sending instances to the AE (PS3.15 A.5.3.2).
			c.EventID, c.RequestorRole, c.RenkeiRole = EventBeginTransferring, &RoleDestination, &RoleSource
		} else {
			c.EventID, c.ActionCode = EventInstancesAccessed, ActionRead
		}
	case renkei.ActionStore:
		// Instances received and stored (PS3.15 A.5.3.4, "Create").
		c.EventID, c.ActionCode, c.RequestorRole, c.RenkeiRole = EventInstancesTransfer, ActionCreate, &RoleSource, &RoleDestination
	case renkei.ActionDelete:
		c.EventID, c.ActionCode = EventStudyDeleted, ActionDelete
	case renkei.ActionRestore:
		c.EventID, c.ActionCode = EventInstancesAccessed, ActionUpdate
	case renkei.ActionLogin:
		c.EventID, typ = EventUserAuthentication, &TypeLogin
	case renkei.ActionLogout:
		c.EventID, typ = EventUserAuthentication, &TypeLogout
	case renkei.ActionShare, renkei.ActionRevoke:
		c.EventID, typ = EventSecurityAlert, &TypeObjectSecurityChanged
	case renkei.ActionBreakGlass:
		c.EventID, typ = EventSecurityAlert, &TypeEmergencyOverrideStarted
	case renkei.ActionDenied:
		c.EventID, typ, c.Outcome = EventSecurityAlert, &TypeUseOfRestrictedFunction, OutcomeMinorFailure
	case renkei.ActionAdmin:
		switch d := strings.ToLower(e.Detail); {
		case e.Patient.ID != "":
			c.EventID, c.ActionCode = EventPatientRecord, ActionUpdate // linking or unlinking a patient's identities
		case strings.Contains(d, " ae ") || strings.HasPrefix(d, "ae ") || strings.Contains(d, "ae title"):
			c.EventID, typ = EventSecurityAlert, &TypeNetworkConfiguration
		case strings.Contains(d, "user") || strings.Contains(d, "token") || strings.Contains(d, "password") ||
			strings.Contains(d, "second factor") || strings.Contains(d, "totp") || strings.Contains(d, "security key"):
			c.EventID, typ = EventSecurityAlert, &TypeUserSecurityChanged
		default:
			c.EventID, typ = EventSecurityAlert, &TypeSecurityConfiguration
		}
	case renkei.ActionRecord:
		c.EventID, c.ActionCode = EventPatientRecord, ActionCreate
		if strings.Contains(strings.ToLower(e.Detail), "withdr") {
			c.ActionCode = ActionUpdate
		}
	case renkei.ActionReferral:
		c.EventID, c.ActionCode = EventPatientRecord, ActionUpdate
	case renkei.ActionConsult:
		c.EventID, c.ActionCode = EventInstancesAccessed, ActionRead
	case actionExport:
		// Whole objects left renkei (WADO-RS, WADO-URI): PS3.15 A.5.3.5 Export, renkei as the source.
		c.EventID, c.ActionCode, c.RequestorRole, c.RenkeiRole = EventExport, ActionRead, &RoleDestination, &RoleSource
	case actionAssociate:
		// A refused DICOM association: the peer failed node authentication (PS3.15 A.5.3.11).
		c.EventID, typ = EventSecurityAlert, &TypeNodeAuthentication
	}
	if typ != nil {
		c.Types = append(c.Types, *typ)
	}
	c.Types = append(c.Types, Code{string(e.Action), SystemAction, string(e.Action)})
	return c
}
